"""Finding 4: groups of two are pairwise comparisons (THEORY.md sections 6-7).

At G = 2 the shift_scale advantage is s sign(r_1 - r_2), so P_2(o|pi) = s (M pi)(o) with M
the antisymmetric margin matrix: any matrix of win probabilities, transitive or not,
defines a stationary policy. Shown: the two-answer policy against the confidence margin,
GRPO (direct KL) at G = 2 against NLHF's regularised Nash policy, and rock-paper-scissors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from grpo_align.report.model import JSON, Cell, FigureOut, ReportConfig, Table, Verdict, max_abs
from grpo_align.report.style import color, new_figure
from grpo_align.theory import (
    GRPO,
    Problem,
    binary_direct_kl_g2_policy,
    binary_g2_policy,
    nash_policy,
    pairwise_policy,
    stationary_policy,
)
from grpo_align.theory.penalties import Penalty

KEY = "pairwise"
TITLE = "Groups of two are pairwise comparisons"
#: the penalties whose G = 2 closed forms are checked: k3 and the direct KL's k2
G2_PENALTIES: tuple[Penalty, ...] = ("k3", "k2")
TOLERANCE = 1e-9
P0 = 0.3
BETAS = (0.1, 0.3, 1.0)
CLAIM = (
    "With groups of two, GRPO's advantage is s·sign(r₁ − r₂): its preference model is the pairwise margin "
    "P₂(o|π) = s (Mπ)(o). A two-answer question depends only on γ/β (γ the confidence margin); with a "
    "direct-KL penalty the stationary policy is the regularised Nash equilibrium of NLHF with τ = β/(2s); and "
    "a non-transitive preference such as rock-paper-scissors has a unique stationary policy that moves from "
    "π_ref toward the uniform Nash equilibrium as β falls."
)
RPS = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # W[o, o'] = Pr[o beats o']: R > S, P > R, S > P


@dataclass(frozen=True)
class MarginRow:
    """Two answers at one beta, against the margin gamma: solver and closed form per penalty."""

    beta: float
    gamma: np.ndarray
    k3: np.ndarray
    k3_closed_form: np.ndarray
    k2: np.ndarray
    k2_closed_form: np.ndarray


@dataclass(frozen=True)
class NashRow:
    """GRPO (G = 2, direct KL) and NLHF's Nash policy on one random preference matrix."""

    matrix: int
    k: int
    beta: float
    ddof: int
    tau: float
    grpo: np.ndarray
    nash: np.ndarray


@dataclass(frozen=True)
class RPSPath:
    """Rock-paper-scissors stationary policies along a decreasing beta, (n_beta, 3) per penalty."""

    ref: np.ndarray
    win_prob: np.ndarray
    beta: np.ndarray
    k3: np.ndarray
    k2: np.ndarray


@dataclass(frozen=True)
class PairwiseData:
    """Everything the pairwise section measured."""

    margin: tuple[MarginRow, ...]
    nash: tuple[NashRow, ...]
    rps: RPSPath
    #: max |general solver - independent route| per comparison
    worst: dict[str, float]
    all_success: bool
    rps_unique_and_stable: bool
    tables: tuple[Table, ...]

    def measured(self) -> dict[str, JSON]:
        gaps: dict[str, JSON] = {f"max_gap_{k}": v for k, v in self.worst.items()}
        return gaps | dict(all_solves_succeeded=self.all_success, rps_unique_and_stable=self.rps_unique_and_stable)

    def json(self) -> dict[str, JSON]:
        return dict(
            p0=P0,
            margin=[dict(vars(r)) for r in self.margin],
            nash=[dict(vars(r)) for r in self.nash],
            rps=dict(vars(self.rps)),
        )


def margin_problem(p0: float, gammas: np.ndarray) -> Problem:
    """Two answers with Bernoulli rewards (1 ± gamma)/2: Pr[a beats b] - Pr[b beats a] = gamma."""
    g = np.asarray(gammas, float)
    ref = np.tile([p0, 1 - p0], (g.size, 1))
    return Problem.from_bernoulli(ref=ref, success=np.stack([(1 + g) / 2, (1 - g) / 2], axis=1))


def random_win_matrix(rng: np.random.Generator, k: int) -> np.ndarray:
    """Random win probabilities with random ties: W[o,o'] + W[o',o] <= 1, mostly non-transitive."""
    upper = np.triu(rng.random((k, k)), 1)
    tie = np.triu(rng.random((k, k)) * 0.3, 1)
    win = upper * (1 - tie)
    lose = np.triu((1 - upper) * (1 - tie), 1)
    return win + lose.T


def simplex_xy(pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ternary coordinates: R at (0, 0), P at (1, 0), S at (1/2, sqrt(3)/2)."""
    pi = np.atleast_2d(pi)
    return pi[:, 1] + 0.5 * pi[:, 2], math.sqrt(3) / 2 * pi[:, 2]


def compute(cfg: ReportConfig) -> PairwiseData:
    """Two-answer margins, random preference matrices against NLHF, and rock-paper-scissors."""
    rng = cfg.rng(KEY)
    # ---- (a) two answers: p against gamma / beta
    p0 = P0
    gammas = np.linspace(0.05, 1.0, 12 if cfg.quick else 20)
    worst = {"margin_k3": 0.0, "margin_k2": 0.0, "nash": 0.0, "rps_k3": 0.0, "rps_k2": 0.0}
    all_success = True
    margin_data = []
    for beta in BETAS:
        prob = margin_problem(p0, gammas)
        row: dict[str, np.ndarray] = {}
        for pen, closed in zip(G2_PENALTIES, (binary_g2_policy, binary_direct_kl_g2_policy), strict=True):
            res = stationary_policy(prob, GRPO(group_size=2, beta=beta, penalty=pen))
            all_success &= bool(np.all(res.success))
            cf = np.array([closed(p0, beta, float(g)) for g in gammas])
            worst[f"margin_{pen}"] = max(worst[f"margin_{pen}"], max_abs(res.policy[:, 0], cf))
            row[pen] = res.policy[:, 0]
            row[f"{pen}_closed_form"] = cf
        margin_data.append(MarginRow(beta=beta, gamma=gammas, **row))

    # ---- (b) GRPO at G = 2 with a direct-KL penalty against NLHF's regularised Nash policy
    cfg.status("Nash policies")
    n_mat = 4 if cfg.quick else 10
    nash_rows = []
    for i in range(n_mat):
        k = int(rng.integers(3, 7))
        win = random_win_matrix(rng, k)
        ref = rng.dirichlet(np.ones(k) * 1.5)
        prob = Problem.from_preference(ref, win)
        for beta in (0.1, 0.5):
            for ddof in (0, 1):
                algo = GRPO(group_size=2, beta=beta, penalty="k2", ddof=ddof)
                one = stationary_policy(prob, algo)[0]  # the one context
                all_success &= bool(one.success)
                tau = beta / (2 * algo.pairwise_scale)
                nash = nash_policy(ref, win, tau)
                worst["nash"] = max(worst["nash"], max_abs(one.policy, nash))
                nash_rows.append(NashRow(matrix=i, k=k, beta=beta, ddof=ddof, tau=tau, grpo=one.policy, nash=nash))

    # ---- (c) rock-paper-scissors
    cfg.status("rock-paper-scissors")
    ref_rps = np.array([0.6, 0.3, 0.1])
    prob_rps = Problem.from_preference(ref_rps, RPS)
    beta_path = np.geomspace(10.0, 0.02, 10 if cfg.quick else 24)
    rps: dict[str, list[np.ndarray]] = {"k3": [], "k2": []}
    rps_stable = True
    n_roots = 0
    for beta in beta_path:
        for pen in G2_PENALTIES:
            one = stationary_policy(prob_rps, GRPO(group_size=2, beta=float(beta), penalty=pen))[0]
            all_success &= bool(one.success)
            rps_stable &= all(r.stable for r in one.roots)
            n_roots = max(n_roots, len(one.roots))
            other = (
                pairwise_policy(ref_rps, RPS, float(beta))
                if pen == "k3"
                else nash_policy(ref_rps, RPS, float(beta) / 2)
            )
            worst[f"rps_{pen}"] = max(worst[f"rps_{pen}"], max_abs(one.policy, other))
            rps[pen].append(one.policy)
    path = RPSPath(ref=ref_rps, win_prob=RPS, beta=beta_path, k3=np.array(rps["k3"]), k2=np.array(rps["k2"]))

    rows: list[list[Cell]] = [
        ["two answers, k3 vs closed form (§6)", worst["margin_k3"]],
        ["two answers, direct KL vs closed form (§6)", worst["margin_k2"]],
        ["G = 2 direct KL vs NLHF Nash policy (§7)", worst["nash"]],
        ["rock-paper-scissors, k3 vs mirror-prox equilibrium", worst["rps_k3"]],
        ["rock-paper-scissors, direct KL vs NLHF Nash policy", worst["rps_k2"]],
    ]
    table = Table(
        "checks",
        ["comparison (general solver against an independent route)", "max |difference|"],
        rows,
        "The independent routes: the closed forms of THEORY.md §6 and an extragradient (mirror-prox) "
        "solver of the variational inequality for pairwise preferences.",
    )
    table_rps = Table(
        "rock-paper-scissors",
        ["β", "k3: rock", "k3: paper", "k3: scissors", "direct KL: rock", "direct KL: paper", "direct KL: scissors"],
        [[float(b), *path.k3[i], *path.k2[i]] for i, b in enumerate(beta_path) if i % max(1, len(beta_path) // 5) == 0],
        f"π_ref = {tuple(ref_rps.tolist())}; every stationary policy found is unique and stable: {rps_stable and n_roots == 1}.",
    )
    return PairwiseData(
        margin=tuple(margin_data),
        nash=tuple(nash_rows),
        rps=path,
        worst=worst,
        all_success=all_success,
        rps_unique_and_stable=rps_stable and n_roots == 1,
        tables=(table, table_rps),
    )


def verdict(data: PairwiseData) -> Verdict:
    """Every comparison with an independent route within TOLERANCE; the rock-paper-scissors root unique and stable."""
    biggest = max(data.worst.values())
    passed = data.all_success and biggest < TOLERANCE and data.rps_unique_and_stable
    return Verdict(
        passed,
        f"max |general solver − independent route| = {biggest:.1e} over the margin closed forms, {len(data.nash)} "
        f"NLHF equilibria and {len(data.rps.beta)} rock-paper-scissors policies per penalty (tolerance {TOLERANCE:g}); "
        f"rock-paper-scissors roots unique and stable: {data.rps_unique_and_stable}.",
    )


def render(data: PairwiseData) -> list[FigureOut]:
    """The two-answer collapse on gamma/beta, GRPO against NLHF, and the rock-paper-scissors path."""
    p0, betas, margin_data, nash_rows = P0, BETAS, data.margin, data.nash
    n_mat = len({r.matrix for r in nash_rows})
    ref_rps, beta_path = data.rps.ref, data.rps.beta
    rps = {"k3": data.rps.k3, "k2": data.rps.k2}
    # ---- figure
    fig, axes = new_figure(11.5, 3.9, ncols=3, gridspec_kw=dict(width_ratios=[1.15, 1, 1.05]))
    ax = axes[0, 0]
    markers = ("o", "s", "^")
    for beta, row, mk in zip(betas, margin_data, markers, strict=False):
        x = row.gamma / beta
        ax.plot(x, row.k3, mk, color=color("k3"), ms=4, mfc="none", label=f"k3, β = {beta}")
        ax.plot(x, row.k2, mk, color=color("k2"), ms=4, mfc="none", label=f"direct KL, β = {beta}")
    xs = np.geomspace(0.04, 25, 200)
    # the closed forms depend on beta/gamma only: beta = 1/x at gamma = 1 draws them
    ax.plot(xs, [binary_g2_policy(p0, 1 / x) for x in xs], color=color("k3"), lw=1.3, label="closed form, k3")
    ax.plot(xs, 1 / (1 + (1 - p0) / p0 * np.exp(-xs)), color=color("k2"), lw=1.3, label="closed form, direct KL")
    ax.axhline(p0, color=color("reference"), ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("confidence margin / penalty weight, γ/β")
    ax.set_ylabel("stationary probability of the better answer")
    ax.set_title(f"two answers, p₀ = {p0}, G = 2")
    ax.legend(fontsize=7, loc="upper left", ncols=1)
    ax.set_ylim(0.25, 1.02)

    ax = axes[0, 1]
    g_all = np.concatenate([r.grpo for r in nash_rows])
    n_all = np.concatenate([r.nash for r in nash_rows])
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1)
    ax.plot(n_all, g_all, "o", color=color("nash"), ms=4, mfc="none")
    ax.set_xlabel("NLHF regularised Nash policy, τ = β/(2s)")
    ax.set_ylabel("GRPO G = 2, direct KL: stationary π(o)")
    ax.set_title(f"{n_mat} random preference matrices")
    top = float(max(g_all.max(), n_all.max())) * 1.05
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)

    ax = axes[0, 2]
    tri_x, tri_y = simplex_xy(np.eye(3))
    ax.fill(tri_x, tri_y, facecolor="#f6f8fa", edgecolor="0.5", lw=1)
    for name, (vx, vy), off in zip(
        ("rock", "paper", "scissors"),
        zip(tri_x, tri_y, strict=False),
        ((-0.02, -0.07), (0.02, -0.07), (0, 0.03)),
        strict=False,
    ):
        ax.annotate(name, (vx + off[0], vy + off[1]), ha="center", fontsize=9)
    for pen, label in (("k3", "GRPO k3"), ("k2", "GRPO direct KL = NLHF")):
        x, y = simplex_xy(rps[pen])
        ax.plot(x, y, "-o", color=color(pen), ms=3, label=label)
    rx, ry = simplex_xy(ref_rps)
    ax.plot(rx, ry, "*", color=color("reference"), ms=12, label="π_ref (β → ∞)")
    ux, uy = simplex_xy(np.full(3, 1 / 3))
    ax.plot(ux, uy, "P", color=color("rlhf"), ms=9, label="uniform Nash (β → 0)")
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"rock-paper-scissors, β from {beta_path[0]:g} to {beta_path[-1]:g}")
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(-0.06, 1.02), frameon=False)
    ax.set_xlim(-0.08, 1.08)
    ax.set_ylim(-0.1, 0.95)

    return [
        FigureOut(
            "pairwise",
            fig,
            "Left: the two-answer policy against γ/β; points from three β collapse "
            "on the closed forms. Middle: GRPO at G = 2 with direct KL against NLHF's Nash policy. "
            "Right: rock-paper-scissors stationary policies as β decreases (ternary plot).",
        )
    ]
