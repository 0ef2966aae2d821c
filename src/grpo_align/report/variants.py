"""Finding 6: the variants (THEORY.md sections 2, 6 and 9).

shift_scale against shift (no scale normalisation, Dr. GRPO) against RLOO's leave-one-out
baseline; the population (ddof 0) against the sample (ddof 1) standard deviation, with the
identity ddof 1 at beta = ddof 0 at beta sqrt(G/(G-1)); and the direct-KL penalty, whose
stationary policies need not be unique at large G.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit
from scipy.stats import binom

from grpo_align.report.common import binary_problem, g_text
from grpo_align.report.model import JSON, Cell, FigureOut, ReportConfig, Table, Verdict, max_abs
from grpo_align.report.style import CLOSED_FORM_MARKER, color, new_figure
from grpo_align.theory import (
    GRPO,
    binary_policy,
    binary_preference,
    binary_shift_policy,
    rlhf_policy,
    stationary_policy,
)

KEY = "variants"
TITLE = "Variants: normalisation, ddof and direct KL"
TOLERANCE = 1e-9
BETA = 0.5
G = 8

#: (colour key, label, GRPO fields) of the variants compared
VARIANTS = (
    ("shift_scale", "shift_scale, ddof 0 (paper)", dict(normalization="shift_scale", ddof=0)),
    ("shift_scale ddof=1", "shift_scale, ddof 1 (TRL, verl)", dict(normalization="shift_scale", ddof=1)),
    ("shift", "shift (Dr. GRPO)", dict(normalization="shift")),
    ("rloo", "rloo", dict(normalization="rloo")),
    ("kl", "shift_scale + direct KL", dict(normalization="shift_scale", penalty="kl")),
)

CLAIM = (
    "The choice of advantage normalisation and penalty changes the objective: without scale normalisation "
    "(shift, Dr. GRPO) or with RLOO's baseline the stationary policy stays closer to π_ref; the sample std "
    "(ddof 1) is the population std (ddof 0) with β replaced by β√(G/(G−1)); and with a direct-KL penalty "
    "several stationary policies can coexist at large G (THEORY.md §9)."
)
SIZES = (2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
G_KL, BETA_KL = 64, 1.0


@dataclass(frozen=True)
class Root:
    """One stationary point of the direct-KL binary question."""

    p0: float
    p: float
    stable: bool


@dataclass(frozen=True)
class VariantsData:
    """Everything the variants section measured."""

    p0: np.ndarray
    #: per variant key: {"solver": p, "closed_form": p} against p0
    vs_p0: dict[str, dict[str, np.ndarray]]
    rlhf: np.ndarray
    #: per variant key: p against SIZES at p0 = 0.3
    vs_group_size: dict[str, list[float]]
    roots: tuple[Root, ...]
    n_p0_kl: int
    #: max |solver - independent route| per check
    checks: dict[str, float]
    count_mismatch: int
    all_success: bool
    tables: tuple[Table, ...]

    @property
    def multi(self) -> list[float]:
        """Reference probabilities with several direct-KL stationary points."""
        p0s = [r.p0 for r in self.roots]
        return sorted({a for a in p0s if p0s.count(a) > 1})

    def measured(self) -> dict[str, JSON]:
        return {
            **{k.replace(" ", "_"): v for k, v in self.checks.items()},
            "direct_kl_multiple_root_p0s": len(self.multi),
            "direct_kl_root_count_mismatches": self.count_mismatch,
            "all_solves_succeeded": self.all_success,
        }

    def json(self) -> dict[str, JSON]:
        vs_p0: dict[str, JSON] = {k: dict(v) for k, v in self.vs_p0.items()}
        vs_g: dict[str, JSON] = {k: list(v) for k, v in self.vs_group_size.items()}
        return dict(
            beta=BETA,
            group_size=G,
            p0=self.p0,
            vs_p0=vs_p0,
            rlhf=self.rlhf,
            sizes=list(SIZES),
            vs_group_size=vs_g,
            direct_kl=dict(group_size=g_text(G_KL), beta=BETA_KL, roots=[dict(vars(r)) for r in self.roots]),
        )


def closed_form(key: str, p0: float, beta: float, group_size: int) -> float:
    """Independent routes for the k3 variants of a binary question (THEORY.md sections 2 and 6)."""
    if key == "shift_scale":
        return binary_policy(p0, beta, group_size)
    if key == "shift_scale ddof=1":
        return binary_policy(p0, beta, group_size, ddof=1)
    if key == "shift":
        return binary_shift_policy(p0, beta, group_size)
    if key == "rloo":  # rloo = G/(G-1) shift: the shift policy at beta (G-1)/G
        return binary_shift_policy(p0, beta * (group_size - 1) / group_size, group_size)
    return math.nan


def direct_kl_equation(p: np.ndarray, p0: float, beta: float, group_size: int) -> np.ndarray:
    """logit p - logit p0 - (P_correct(p) - P_wrong(p))/beta: zero at a direct-KL stationary p (§5-6).

    P_correct and P_wrong are the binomial sums of THEORY.md section 6, vectorised over p.
    """
    p = np.atleast_1d(np.asarray(p, float))
    k = np.arange(group_size)
    pmf = binom.pmf(k[None, :], group_size - 1, p[:, None])
    p_correct = pmf @ np.sqrt((group_size - 1 - k) / (k + 1))
    p_wrong = -(pmf @ np.sqrt(k / (group_size - k)))
    return logit(p) - logit(p0) - (p_correct - p_wrong) / beta


def count_roots_by_scan(p0: float, beta: float, group_size: int, n: int) -> int:
    """Sign changes of the direct-KL equation on a grid uniform in logit p (independent count)."""
    p = expit(np.linspace(-35, 35, n))
    f = direct_kl_equation(p, p0, beta, group_size)
    return int(np.sum(np.sign(f[:-1]) * np.sign(f[1:]) < 0))


def compute(cfg: ReportConfig) -> VariantsData:
    """Each variant against its closed form, against G, and every direct-KL stationary point."""
    p0 = np.linspace(0.02, 0.95, 20 if cfg.quick else 40)
    problem = binary_problem(p0)
    checks: dict[str, float] = {}
    all_success = True
    vs_p0 = {}
    for key, label, fields in VARIANTS:
        cfg.status(label)
        res = stationary_policy(problem, GRPO(group_size=G, beta=BETA, **fields))
        all_success &= bool(np.all(res.success))
        cf = np.array([closed_form(key, a, BETA, G) for a in p0])
        if key != "kl":
            checks[f"{key} vs closed form"] = max_abs(res.policy[:, 0], cf)
        vs_p0[key] = dict(solver=res.policy[:, 0], closed_form=cf)
    rlhf_p0 = rlhf_policy(problem, BETA)[:, 0]

    # p against G at p0 = 0.3, and the ddof identity at every G
    cfg.status("group sizes")
    sizes = SIZES
    single = binary_problem([0.3])
    vs_g: dict[str, list[float]] = {key: [] for key, _, _ in VARIANTS}
    ddof_gap = 0.0
    for g in sizes:
        for key, _, fields in VARIANTS:
            res = stationary_policy(single, GRPO(group_size=g, beta=BETA, **fields))
            all_success &= bool(np.all(res.success))
            vs_g[key].append(float(res.policy[0, 0]))
        scaled = stationary_policy(single, GRPO(group_size=g, beta=BETA * math.sqrt(g / (g - 1))))
        ddof_gap = max(ddof_gap, abs(vs_g["shift_scale ddof=1"][-1] - float(scaled.policy[0, 0])))
    checks["ddof 1 at β vs ddof 0 at β√(G/(G−1))"] = ddof_gap

    # direct KL at a large group: several stationary policies
    cfg.status("direct KL roots")
    g_kl, beta_kl = G_KL, BETA_KL
    p0_kl = np.geomspace(1e-3, 0.5, 24 if cfg.quick else 48)
    res_kl = stationary_policy(binary_problem(p0_kl), GRPO(group_size=g_kl, beta=beta_kl, penalty="kl"))
    all_success &= bool(np.all(res_kl.success))
    roots = []
    worst_eq = 0.0
    count_mismatch = 0
    scan_n = 4000 if cfg.quick else 12000
    for c, a in enumerate(p0_kl):
        ps = np.array([r.policy[0] for r in res_kl.roots[c]])
        worst_eq = max(worst_eq, float(np.max(np.abs(direct_kl_equation(ps, float(a), beta_kl, g_kl)))))
        # and through the theory's own binary_preference, as a second route
        pc_pw = np.array([binary_preference(float(x), g_kl) for x in ps])
        second = logit(ps) - logit(a) - (pc_pw[:, 0] - pc_pw[:, 1]) / beta_kl
        worst_eq = max(worst_eq, float(np.max(np.abs(second))))
        n_scan = count_roots_by_scan(float(a), beta_kl, g_kl, scan_n)
        count_mismatch += int(n_scan != len(ps))
        for r in res_kl.roots[c]:
            roots.append(Root(p0=float(a), p=float(r.policy[0]), stable=bool(r.stable)))
    checks["direct KL roots: |stationarity equation|"] = worst_eq

    rows: list[list[Cell]] = [[name, gap] for name, gap in checks.items()]
    rows.append(["direct KL: root counts differing from an independent scan", count_mismatch])
    table = Table(
        "identities",
        ["check (general solver against an independent route)", "max |difference| / count"],
        rows,
        f"Binary question; G = {G}, β = {BETA} unless stated. Closed forms: THEORY.md §6; rloo = G/(G−1) × shift.",
    )
    table_g = Table(
        "vs-group-size",
        ["G", *[label for _, label, _ in VARIANTS]],
        [[g, *[vs_g[key][i] for key, _, _ in VARIANTS]] for i, g in enumerate(sizes)],
        f"Stationary probability of the correct answer, p₀ = 0.3, β = {BETA}.",
    )
    return VariantsData(
        p0=p0,
        vs_p0=vs_p0,
        rlhf=rlhf_p0,
        vs_group_size=vs_g,
        roots=tuple(roots),
        n_p0_kl=len(p0_kl),
        checks=checks,
        count_mismatch=count_mismatch,
        all_success=all_success,
        tables=(table, table_g),
    )


def verdict(data: VariantsData) -> Verdict:
    """Every identity within TOLERANCE, root counts agree with the scan, and several roots exist somewhere."""
    biggest = max(data.checks.values())
    multi, n_kl = data.multi, data.n_p0_kl
    passed = data.all_success and biggest < TOLERANCE and data.count_mismatch == 0 and len(multi) > 0
    return Verdict(
        passed,
        f"max |solver − independent route| = {biggest:.1e} (tolerance {TOLERANCE:g}) over the shift, rloo, ddof-0/1 "
        f"closed forms and the ddof identity at {len(SIZES)} group sizes; direct KL at G = {G_KL}: {len(multi)} of "
        f"{n_kl} reference probabilities have several stationary policies, root counts agree with an "
        f"independent scan in {n_kl - data.count_mismatch}/{n_kl}.",
    )


def render(data: VariantsData) -> list[FigureOut]:
    """p against p0 per variant, p against G, and the direct-KL stationary points with their stability."""
    p0, sizes, g_kl, beta_kl = data.p0, list(SIZES), G_KL, BETA_KL
    # ---- figure
    fig, axes = new_figure(11.5, 3.9, ncols=3)
    ax = axes[0, 0]
    every = max(1, len(p0) // 10)
    ax.plot([0, 1], [0, 1], color=color("reference"), ls=":", lw=1)
    for key, label, _ in VARIANTS:
        ax.plot(p0, data.vs_p0[key]["solver"], color=color(key), label=label)
        if key != "kl":
            ax.plot(p0[::every], data.vs_p0[key]["closed_form"][::every], color=color(key), **CLOSED_FORM_MARKER)
    ax.plot(p0, data.rlhf, color=color("rlhf"), ls="--", label="RLHF")
    ax.plot([], [], color="0.3", label="closed form", **CLOSED_FORM_MARKER)
    ax.set_xlabel("reference probability p₀")
    ax.set_ylabel("stationary probability p")
    ax.set_title(f"binary question, G = {G}, β = {BETA}")
    ax.legend(fontsize=7.5, loc="lower right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)

    ax = axes[0, 1]
    for key, label, _ in VARIANTS:
        ax.semilogx(sizes, data.vs_group_size[key], "o-", color=color(key), ms=3.5, label=label)
    ax.set_xlabel("group size G")
    ax.set_ylabel("stationary probability p")
    ax.set_title(f"p₀ = 0.3, β = {BETA}")
    ax.set_xticks([*sizes[::2], 64], [str(s) for s in sizes[::2]] + ["64"])
    ax.minorticks_off()

    ax = axes[0, 2]
    st = [r for r in data.roots if r.stable]
    un = [r for r in data.roots if not r.stable]
    ax.semilogx([r.p0 for r in st], [r.p for r in st], "o", color=color("kl"), ms=4, label="stable")
    ax.semilogx([r.p0 for r in un], [r.p for r in un], "o", color=color("kl"), mfc="white", ms=4, label="unstable")
    ax.set_xlabel("reference probability p₀")
    ax.set_ylabel("stationary probability p")
    ax.set_title(f"direct KL, G = {g_kl}, β = {beta_kl}: all stationary points")
    ax.legend(loc="lower right")
    ax.set_ylim(0, 1.02)

    return [
        FigureOut(
            "variants",
            fig,
            "Left: stationary probability of the correct answer per variant (markers: "
            "closed forms). Middle: against G. Right: every stationary point of the direct-KL variant "
            "at G = 64, with its stability.",
        )
    ]
