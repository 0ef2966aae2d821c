"""Finding 1: binary questions (THEORY.md section 6).

The stationary probability of the correct answer, from the general solver
(``stationary_policy``), against its reference probability for several beta and group
sizes, and against beta for several reference probabilities; the paper's closed forms
(G = 2, G -> infinity) and the one-dimensional equation for other G are overlaid as
markers, and RLHF's logarithmic pooling is drawn beside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from grpo_align.report.common import binary_problem, g_text
from grpo_align.report.model import JSON, Cell, FigureOut, ReportConfig, Table, Verdict, max_abs
from grpo_align.report.style import CLOSED_FORM_MARKER, color, group_key, group_label, new_figure
from grpo_align.theory import GRPO, binary_g2_policy, binary_limit_policy, binary_policy, rlhf_policy, stationary_policy

KEY = "binary"
TITLE = "Binary questions"
GROUP_SIZES = (2, 4, 8, 16, math.inf)
#: THEORY.md section 6, worked numbers at p0 = 0.3, beta = 0.5 (printed to 6 decimals there)
WORKED = {"G=2": 0.710977, "G=8": 0.853564, "G=inf": 0.9, "RLHF": 0.760004}
TOLERANCE = 1e-9
#: THEORY.md section 6 prints the worked numbers to 6 decimals
WORKED_ROUNDING = 5e-7
BETAS = (0.2, 0.5, 2.0)
P0_FIXED = (0.1, 0.3, 0.6)
CLAIM = (
    "For a binary question (reward 1 for the correct answer), GRPO's stationary probability p of the correct "
    "answer solves p (1 − P_correct(p)/β) = p₀: it rises with the group size G toward the G → ∞ limit and "
    "differs from RLHF's logarithmic pooling p/(1−p) = p₀/(1−p₀)·exp(1/β). Curves: the general solver; "
    "markers: the closed forms (G = 2, G → ∞) and the one-dimensional equation (other G)."
)


@dataclass(frozen=True)
class CurveP0:
    """Stationary p against p0 at one (beta, G): the solver and the explicit route."""

    beta: float
    group_size: str
    solver: np.ndarray
    closed_form: np.ndarray


@dataclass(frozen=True)
class CurveBeta:
    """Stationary p against beta at one G, (n_beta, len(P0_FIXED)): the solver and the explicit route."""

    group_size: str
    solver: np.ndarray
    closed_form: np.ndarray


@dataclass(frozen=True)
class BinaryData:
    """Everything the binary section measured."""

    p0: np.ndarray
    vs_p0: tuple[CurveP0, ...]
    rlhf_vs_p0: dict[str, np.ndarray]
    beta: np.ndarray
    vs_beta: tuple[CurveBeta, ...]
    rlhf_vs_beta: np.ndarray
    max_gap: float
    max_residual: float
    all_success: bool
    worked_gap: float
    tables: tuple[Table, ...]

    @property
    def n_points(self) -> int:
        """Solver-versus-closed-form comparisons behind ``max_gap``."""
        return len(self.vs_p0) * self.p0.size + len(self.vs_beta) * self.beta.size * len(P0_FIXED)

    def measured(self) -> dict[str, JSON]:
        return dict(
            max_abs_solver_minus_closed_form=self.max_gap,
            max_residual=self.max_residual,
            all_solves_succeeded=self.all_success,
            max_abs_gap_to_theory_md_worked_numbers=self.worked_gap,
        )

    def json(self) -> dict[str, JSON]:
        return dict(
            p0=self.p0,
            vs_p0=[vars(c) for c in self.vs_p0],
            rlhf_vs_p0=dict(self.rlhf_vs_p0),
            beta=self.beta,
            p0_fixed=list(P0_FIXED),
            vs_beta=[vars(c) for c in self.vs_beta],
            rlhf_vs_beta=self.rlhf_vs_beta,
        )


def closed_form(p0: float, beta: float, group_size: float) -> float:
    """The explicit route for a binary question: G = 2 and G -> inf closed forms, else the 1-D equation."""
    if group_size == 2:
        return binary_g2_policy(p0, beta)
    if group_size == math.inf:
        return binary_limit_policy(p0, beta)
    return binary_policy(p0, beta, int(group_size))


def solve_correct(p0: np.ndarray, beta: float, group_size: float) -> tuple[np.ndarray, bool, float]:
    """Stationary p(correct) from the general solver; (p, all succeeded, max residual)."""
    res = stationary_policy(binary_problem(p0), GRPO(group_size=group_size, beta=beta))
    return res.policy[:, 0], bool(np.all(res.success)), float(np.max(res.residual))


def compute(cfg: ReportConfig) -> BinaryData:
    """Solve the binary question over p0, beta and G and compare with the explicit routes."""
    n_p0 = 25 if cfg.quick else 49
    p0 = np.linspace(0.02, 0.95, n_p0)
    beta_grid = np.geomspace(0.05, 10.0, 17 if cfg.quick else 33)

    worst_gap, all_success, worst_residual = 0.0, True, 0.0
    curves = []  # p against p0
    for beta in BETAS:
        for g in GROUP_SIZES:
            cfg.status(f"beta={beta}, {group_label(g)}")
            p, ok, resid = solve_correct(p0, beta, g)
            cf = np.array([closed_form(a, beta, g) for a in p0])
            worst_gap = max(worst_gap, max_abs(p, cf))
            all_success &= ok
            worst_residual = max(worst_residual, resid)
            curves.append(CurveP0(beta=beta, group_size=g_text(g), solver=p, closed_form=cf))
    rlhf_vs_p0 = {str(beta): rlhf_policy(binary_problem(p0), beta)[:, 0] for beta in BETAS}

    vs_beta = []  # p against beta
    for g in GROUP_SIZES:
        cfg.status(f"beta scan, {group_label(g)}")
        solver, explicit = [], []
        for beta in beta_grid:
            p, ok, resid = solve_correct(np.array(P0_FIXED), float(beta), g)
            cf = np.array([closed_form(a, float(beta), g) for a in P0_FIXED])
            worst_gap = max(worst_gap, max_abs(p, cf))
            all_success &= ok
            worst_residual = max(worst_residual, resid)
            solver.append(p)
            explicit.append(cf)
        vs_beta.append(CurveBeta(group_size=g_text(g), solver=np.array(solver), closed_form=np.array(explicit)))
    rlhf_vs_beta = np.array([rlhf_policy(binary_problem(P0_FIXED), float(b))[:, 0] for b in beta_grid])

    # ---- worked numbers of THEORY.md section 6
    rows: list[list[Cell]] = []
    worked_gap = 0.0
    for g in GROUP_SIZES:
        p, _, _ = solve_correct(np.array([0.3]), 0.5, g)
        cf_p = closed_form(0.3, 0.5, g)
        printed = WORKED.get(group_key(g), math.nan)
        if not math.isnan(printed):
            worked_gap = max(worked_gap, abs(p[0] - printed))
        rows.append([group_label(g), p[0], cf_p, abs(p[0] - cf_p), printed])
    rl = float(rlhf_policy(binary_problem([0.3]), 0.5)[0, 0])
    worked_gap = max(worked_gap, abs(rl - WORKED["RLHF"]))
    rows.append(["RLHF", rl, math.nan, math.nan, WORKED["RLHF"]])
    table = Table(
        "worked-numbers",
        ["algorithm", "solver p", "closed form p", "|difference|", "THEORY.md §6"],
        rows,
        "p₀ = 0.3, β = 0.5, shift_scale (ddof 0), k3. The last column is printed to 6 decimals in THEORY.md.",
    )
    return BinaryData(
        p0=p0,
        vs_p0=tuple(curves),
        rlhf_vs_p0=rlhf_vs_p0,
        beta=beta_grid,
        vs_beta=tuple(vs_beta),
        rlhf_vs_beta=rlhf_vs_beta,
        max_gap=worst_gap,
        max_residual=worst_residual,
        all_success=all_success,
        worked_gap=float(worked_gap),
        tables=(table,),
    )


def verdict(data: BinaryData) -> Verdict:
    """Solver = explicit routes to TOLERANCE, every solve converged, worked numbers within rounding."""
    passed = (
        data.all_success
        and data.max_gap < TOLERANCE
        and data.max_residual < TOLERANCE
        and data.worked_gap <= WORKED_ROUNDING
    )
    return Verdict(
        passed,
        f"max |solver − closed form| = {data.max_gap:.1e} over {data.n_points} "
        f"points (tolerance {TOLERANCE:g}); every solve {'succeeded' if data.all_success else 'did NOT succeed'} "
        f"(max residual {data.max_residual:.1e}); worked numbers of THEORY.md §6 within {data.worked_gap:.1e} "
        f"(6-decimal rounding: 5e-7).",
    )


def _group(text: str) -> float:
    """The group size of a curve's table text ("8" or "inf")."""
    return math.inf if text == "inf" else int(text)


def render(data: BinaryData) -> list[FigureOut]:
    """p against p0 (a panel per beta) and p against beta (a panel per p0)."""
    p0, beta_grid = data.p0, data.beta
    marker_every = max(1, p0.size // 12)
    # ---- figure 1: p against p0, one panel per beta
    fig1, axes = new_figure(10.5, 3.6, ncols=len(BETAS), sharey=True)
    for ax, beta in zip(axes[0], BETAS, strict=False):
        ax.plot([0, 1], [0, 1], color=color("reference"), lw=1, ls=":", label="reference (p = p₀)")
        for c in data.vs_p0:
            if c.beta != beta:
                continue
            g = _group(c.group_size)
            col = color(group_key(g))
            ax.plot(p0, c.solver, color=col, label=group_label(g))
            ax.plot(p0[::marker_every], c.closed_form[::marker_every], color=col, **CLOSED_FORM_MARKER)
        ax.plot(p0, data.rlhf_vs_p0[str(beta)], color=color("rlhf"), ls="--", label="RLHF (log pooling)")
        ax.set_title(f"β = {beta}")
        ax.set_xlabel("reference probability p₀ of the correct answer")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    axes[0, 0].set_ylabel("stationary probability p")
    axes[0, -1].plot([], [], color="0.3", label="closed form", **CLOSED_FORM_MARKER)
    axes[0, -1].legend(loc="lower right", frameon=True)

    # ---- figure 2: p against beta, one panel per p0
    fig2, axes2 = new_figure(10.5, 3.6, ncols=len(P0_FIXED), sharey=True)
    every_b = max(1, len(beta_grid) // 8)
    for j, (ax, a) in enumerate(zip(axes2[0], P0_FIXED, strict=False)):
        ax.axhline(a, color=color("reference"), lw=1, ls=":", label="reference p₀")
        for cb in data.vs_beta:
            g = _group(cb.group_size)
            col = color(group_key(g))
            ax.plot(beta_grid, cb.solver[:, j], color=col, label=group_label(g))
            ax.plot(beta_grid[::every_b], cb.closed_form[::every_b, j], color=col, **CLOSED_FORM_MARKER)
        ax.plot(beta_grid, data.rlhf_vs_beta[:, j], color=color("rlhf"), ls="--", label="RLHF (log pooling)")
        ax.set_xscale("log")
        ax.set_title(f"p₀ = {a}")
        ax.set_xlabel("penalty weight β")
        ax.set_ylim(0, 1.02)
    axes2[0, 0].set_ylabel("stationary probability p")
    axes2[0, -1].plot([], [], color="0.3", label="closed form", **CLOSED_FORM_MARKER)
    axes2[0, -1].legend(loc="lower left", frameon=True)
    return [
        FigureOut("vs-p0", fig1, "Stationary probability of the correct answer against its reference probability."),
        FigureOut("vs-beta", fig2, "Stationary probability of the correct answer against the penalty weight β."),
    ]
