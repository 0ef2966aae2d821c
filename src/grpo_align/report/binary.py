"""Finding 1: binary questions (THEORY.md section 6).

The stationary probability of the correct answer, from the general solver
(``stationary_policy``), against its reference probability for several beta and group
sizes, and against beta for several reference probabilities; the paper's closed forms
(G = 2, G -> infinity) and the one-dimensional equation for other G are overlaid as
markers, and RLHF's logarithmic pooling is drawn beside them.
"""

from __future__ import annotations

import math

import numpy as np

from grpo_align.report.common import binary_problem, g_text
from grpo_align.report.model import FigureOut, ReportConfig, SectionResult, Table, Verdict, max_abs
from grpo_align.report.style import CLOSED_FORM_MARKER, color, group_key, group_label, new_figure
from grpo_align.theory import GRPO, binary_g2_policy, binary_limit_policy, binary_policy, rlhf_policy, stationary_policy

KEY = "binary"
TITLE = "Binary questions"
GROUP_SIZES = (2, 4, 8, 16, math.inf)
#: THEORY.md section 6, worked numbers at p0 = 0.3, beta = 0.5 (printed to 6 decimals there)
WORKED = {"G=2": 0.710977, "G=8": 0.853564, "G=inf": 0.9, "RLHF": 0.760004}
TOLERANCE = 1e-9


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


def build(cfg: ReportConfig) -> SectionResult:
    n_p0 = 25 if cfg.quick else 49
    p0 = np.linspace(0.02, 0.95, n_p0)
    betas = (0.2, 0.5, 2.0)
    p0_fixed = (0.1, 0.3, 0.6)
    beta_grid = np.geomspace(0.05, 10.0, 17 if cfg.quick else 33)
    marker_every = max(1, n_p0 // 12)

    worst_gap, all_success, worst_residual = 0.0, True, 0.0
    curves = []  # p against p0
    for beta in betas:
        for g in GROUP_SIZES:
            cfg.status(f"beta={beta}, {group_label(g)}")
            p, ok, resid = solve_correct(p0, beta, g)
            cf = np.array([closed_form(a, beta, g) for a in p0])
            worst_gap = max(worst_gap, max_abs(p, cf))
            all_success &= ok
            worst_residual = max(worst_residual, resid)
            curves.append(dict(beta=beta, group_size=g_text(g), solver=p, closed_form=cf))
    rlhf_vs_p0 = {str(beta): rlhf_policy(binary_problem(p0), beta)[:, 0] for beta in betas}

    vs_beta = []  # p against beta
    for g in GROUP_SIZES:
        cfg.status(f"beta scan, {group_label(g)}")
        rows = []
        for beta in beta_grid:
            p, ok, resid = solve_correct(np.array(p0_fixed), float(beta), g)
            cf = np.array([closed_form(a, float(beta), g) for a in p0_fixed])
            worst_gap = max(worst_gap, max_abs(p, cf))
            all_success &= ok
            worst_residual = max(worst_residual, resid)
            rows.append((p, cf))
        vs_beta.append(
            dict(
                group_size=g_text(g), solver=np.array([r[0] for r in rows]), closed_form=np.array([r[1] for r in rows])
            )
        )
    rlhf_vs_beta = np.array([rlhf_policy(binary_problem(p0_fixed), float(b))[:, 0] for b in beta_grid])

    # ---- figure 1: p against p0, one panel per beta
    fig1, axes = new_figure(10.5, 3.6, ncols=len(betas), sharey=True)
    for ax, beta in zip(axes[0], betas, strict=False):
        ax.plot([0, 1], [0, 1], color=color("reference"), lw=1, ls=":", label="reference (p = p₀)")
        for c in curves:
            if c["beta"] != beta:
                continue
            g = math.inf if c["group_size"] == "inf" else int(c["group_size"])
            col = color(group_key(g))
            ax.plot(p0, c["solver"], color=col, label=group_label(g))
            ax.plot(p0[::marker_every], c["closed_form"][::marker_every], color=col, **CLOSED_FORM_MARKER)
        ax.plot(p0, rlhf_vs_p0[str(beta)], color=color("rlhf"), ls="--", label="RLHF (log pooling)")
        ax.set_title(f"β = {beta}")
        ax.set_xlabel("reference probability p₀ of the correct answer")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    axes[0, 0].set_ylabel("stationary probability p")
    axes[0, -1].plot([], [], color="0.3", label="closed form", **CLOSED_FORM_MARKER)
    axes[0, -1].legend(loc="lower right", frameon=True)

    # ---- figure 2: p against beta, one panel per p0
    fig2, axes2 = new_figure(10.5, 3.6, ncols=len(p0_fixed), sharey=True)
    every_b = max(1, len(beta_grid) // 8)
    for j, (ax, a) in enumerate(zip(axes2[0], p0_fixed, strict=False)):
        ax.axhline(a, color=color("reference"), lw=1, ls=":", label="reference p₀")
        for c in vs_beta:
            g = math.inf if c["group_size"] == "inf" else int(c["group_size"])
            col = color(group_key(g))
            ax.plot(beta_grid, c["solver"][:, j], color=col, label=group_label(g))
            ax.plot(beta_grid[::every_b], c["closed_form"][::every_b, j], color=col, **CLOSED_FORM_MARKER)
        ax.plot(beta_grid, rlhf_vs_beta[:, j], color=color("rlhf"), ls="--", label="RLHF (log pooling)")
        ax.set_xscale("log")
        ax.set_title(f"p₀ = {a}")
        ax.set_xlabel("penalty weight β")
        ax.set_ylim(0, 1.02)
    axes2[0, 0].set_ylabel("stationary probability p")
    axes2[0, -1].plot([], [], color="0.3", label="closed form", **CLOSED_FORM_MARKER)
    axes2[0, -1].legend(loc="lower left", frameon=True)

    # ---- worked numbers of THEORY.md section 6
    rows = []
    worked_gap = 0.0
    for g in GROUP_SIZES:
        p, _, _ = solve_correct(np.array([0.3]), 0.5, g)
        cf = closed_form(0.3, 0.5, g)
        printed = WORKED.get(group_key(g), math.nan)
        if not math.isnan(printed):
            worked_gap = max(worked_gap, abs(p[0] - printed))
        rows.append([group_label(g), p[0], cf, abs(p[0] - cf), printed])
    rl = float(rlhf_policy(binary_problem([0.3]), 0.5)[0, 0])
    worked_gap = max(worked_gap, abs(rl - WORKED["RLHF"]))
    rows.append(["RLHF", rl, math.nan, math.nan, WORKED["RLHF"]])
    table = Table(
        "worked-numbers",
        ["algorithm", "solver p", "closed form p", "|difference|", "THEORY.md §6"],
        rows,
        "p₀ = 0.3, β = 0.5, shift_scale (ddof 0), k3. The last column is printed to 6 decimals in THEORY.md.",
    )

    passed = all_success and worst_gap < TOLERANCE and worst_residual < TOLERANCE and worked_gap <= 5e-7
    verdict = Verdict(
        passed,
        f"max |solver − closed form| = {worst_gap:.1e} over {len(curves) * n_p0 + len(GROUP_SIZES) * len(beta_grid) * 3} "
        f"points (tolerance {TOLERANCE:g}); every solve {'succeeded' if all_success else 'did NOT succeed'} "
        f"(max residual {worst_residual:.1e}); worked numbers of THEORY.md §6 within {worked_gap:.1e} (6-decimal rounding: 5e-7).",
    )
    return SectionResult(
        key=KEY,
        number=1,
        title=TITLE,
        claim=(
            "For a binary question (reward 1 for the correct answer), GRPO's stationary probability p of the correct "
            "answer solves p (1 − P_correct(p)/β) = p₀: it rises with the group size G toward the G → ∞ limit and "
            "differs from RLHF's logarithmic pooling p/(1−p) = p₀/(1−p₀)·e^{1/β}. Curves: the general solver; "
            "markers: the closed forms (G = 2, G → ∞) and the one-dimensional equation (other G)."
        ),
        verdict=verdict,
        figures=[
            FigureOut("vs-p0", fig1, "Stationary probability of the correct answer against its reference probability."),
            FigureOut("vs-beta", fig2, "Stationary probability of the correct answer against the penalty weight β."),
        ],
        tables=[table],
        measured=dict(
            max_abs_solver_minus_closed_form=worst_gap,
            max_residual=worst_residual,
            all_solves_succeeded=all_success,
            max_abs_gap_to_theory_md_worked_numbers=worked_gap,
        ),
        data=dict(
            p0=p0,
            vs_p0=curves,
            rlhf_vs_p0=rlhf_vs_p0,
            beta=beta_grid,
            p0_fixed=list(p0_fixed),
            vs_beta=vs_beta,
            rlhf_vs_beta=rlhf_vs_beta,
        ),
    )
