"""Finding 5: large groups approach the G -> infinity limit (THEORY.md section 8).

For G -> infinity, shift_scale gives h_l(w) -> (v_l - mu_w)/sigma_w. The distance of the
stationary policy at group size G to the limit is drawn against G on log-log axes; a
delta-method expansion of h_l (the mean and std of G - 1 draws about their limits) gives
P_G = P_inf + O(1/G), so the distance should fall with slope -1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from grpo_align.report.common import binary_problem, line_fit
from grpo_align.report.model import JSON, Cell, FigureOut, ReportConfig, Table, Verdict
from grpo_align.report.style import new_figure
from grpo_align.theory import GRPO, Problem, binary_limit_policy, stationary_policy

KEY = "large-groups"
TITLE = "Large groups"
EXPECTED_SLOPE = -1.0
SLOPE_TOLERANCE = 0.15
#: the slope is fitted over the top quarter of the G range, [G_max/4, G_max]: the O(1/G^2)
#: terms still bend the curve at small G (more so for small p0 and beta), and the local
#: slope approaches -1 monotonically from below
FIT_RANGE = 4.0
#: the G -> infinity solver against the binary closed form
LIMIT_TOL = 1e-9
CLAIM = (
    "As the group grows, the normalised advantage tends to (r − μ)/σ under the policy's own reward "
    "distribution and the stationary policy tends to the G → ∞ limit of THEORY.md §8 (for a binary question "
    "the closed form of §6); the distance falls like 1/G."
)


@dataclass(frozen=True)
class Series:
    """One problem: the distance to the G -> infinity limit against G and its log-log fit."""

    label: str
    beta: float
    group_sizes: list[int]
    distance: np.ndarray
    limit_policy: np.ndarray
    policies: np.ndarray
    slope: float
    intercept: float


@dataclass(frozen=True)
class LargeGroupsData:
    """Everything the large-groups section measured."""

    series: tuple[Series, ...]
    limit_gap: float
    all_success: bool
    tables: tuple[Table, ...]

    def measured(self) -> dict[str, JSON]:
        return dict(
            slopes=[s.slope for s in self.series],
            final_distances=[float(s.distance[-1]) for s in self.series],
            limit_vs_closed_form=self.limit_gap,
            all_solves_succeeded=self.all_success,
        )

    def json(self) -> dict[str, JSON]:
        return dict(series=[dict(vars(s)) for s in self.series], fit_range=FIT_RANGE)


def problems() -> list[tuple[str, Problem, float, float | None]]:
    """(label, problem, beta, p0 if binary) of the problems drawn."""
    three = Problem.from_rewards(ref=[0.2, 0.3, 0.5], rewards=[1.0, 0.5, 0.0])
    bern = Problem.from_bernoulli(ref=[0.25, 0.25, 0.5], success=[0.8, 0.5, 0.2])
    return [
        ("binary, p₀ = 0.3, β = 0.5", binary_problem([0.3]), 0.5, 0.3),
        ("binary, p₀ = 0.1, β = 0.25", binary_problem([0.1]), 0.25, 0.1),
        ("3 outputs, rewards (1, ½, 0), β = 0.5", three, 0.5, None),
        ("3 outputs, Bernoulli (0.8, 0.5, 0.2), β = 0.5", bern, 0.5, None),
    ]


PROBLEM_COLORS = ("#0072b2", "#56b4e9", "#d55e00", "#009e73")


def compute(cfg: ReportConfig) -> LargeGroupsData:
    """Stationary policies over growing G on four problems, their distance to the limit and its slope."""
    g_max_binary = 1024
    g_max_levels = 128 if cfg.quick else 256
    series = []
    rows: list[list[Cell]] = []
    all_success = True
    limit_gap = 0.0
    for label, prob, beta, p0 in problems():
        cfg.status(label)
        g_max = g_max_binary if prob.n_levels == 2 else g_max_levels
        sizes = sorted({round(g) for g in np.geomspace(2, g_max, 15 if cfg.quick else 25)})
        lim = stationary_policy(prob, GRPO(group_size=math.inf, beta=beta))
        all_success &= bool(np.all(lim.success))
        pi_inf = lim.policy[0]  # the one context
        if p0 is not None:
            limit_gap = max(limit_gap, float(abs(pi_inf[0] - binary_limit_policy(p0, beta))))
        at_g = []
        for g in sizes:
            res = stationary_policy(prob, GRPO(group_size=g, beta=beta))
            all_success &= bool(np.all(res.success))
            at_g.append(res.policy[0])
        policies = np.array(at_g)  # (sizes, K)
        dist = np.max(np.abs(policies - pi_inf), axis=1)
        sizes_a = np.array(sizes, float)
        tail = sizes_a >= sizes_a[-1] / FIT_RANGE
        slope, intercept = line_fit(np.log(sizes_a[tail]), np.log(dist[tail]))
        series.append(
            Series(
                label=label,
                beta=beta,
                group_sizes=sizes,
                distance=dist,
                limit_policy=pi_inf,
                policies=policies,
                slope=slope,
                intercept=intercept,
            )
        )
        rows.append([label, int(sizes[-1]), float(dist[0]), float(dist[-1]), slope])

    table = Table(
        "slopes",
        ["problem", "largest G", "distance at G = 2", "distance at largest G", "log-log slope on [G_max/4, G_max]"],
        rows,
        f"Expected slope {EXPECTED_SLOPE:g} (P_G = P_∞ + O(1/G)); tolerance ±{SLOPE_TOLERANCE:g}.",
    )
    return LargeGroupsData(series=tuple(series), limit_gap=limit_gap, all_success=all_success, tables=(table,))


def verdict(data: LargeGroupsData) -> Verdict:
    """Every slope within SLOPE_TOLERANCE of -1, the limit solver on the closed form."""
    slopes_ok = all(abs(s.slope - EXPECTED_SLOPE) <= SLOPE_TOLERANCE for s in data.series)
    passed = data.all_success and slopes_ok and data.limit_gap < LIMIT_TOL
    slopes_text = ", ".join(f"{s.slope:.3f}" for s in data.series)
    finals_text = ", ".join(f"{s.distance[-1]:.1e}" for s in data.series)
    return Verdict(
        passed,
        f"fitted log-log slopes {slopes_text} (expected {EXPECTED_SLOPE:g} ± "
        f"{SLOPE_TOLERANCE:g}); distances at the largest G {finals_text}; "
        f"G → ∞ solver vs closed form {data.limit_gap:.1e}; every solve succeeded: {data.all_success}.",
    )


def render(data: LargeGroupsData) -> list[FigureOut]:
    """Distance to the limit against G (log-log), and the binary p approaching its closed-form limit."""
    series = data.series
    fig, axes = new_figure(10.5, 4.0, ncols=2, gridspec_kw=dict(width_ratios=[1.3, 1]))
    ax = axes[0, 0]
    for s, col in zip(series, PROBLEM_COLORS, strict=False):
        g = np.array(s.group_sizes, float)
        ax.loglog(g, s.distance, "o-", color=col, ms=3.5, label=f"{s.label}: slope {s.slope:.2f}")
        tail = g >= g[-1] / FIT_RANGE
        ax.loglog(g[tail], np.exp(s.intercept) * g[tail] ** s.slope, color=col, ls="--", lw=1)
    g_ref = np.array([8, 1024.0])
    ax.loglog(g_ref, 0.5 / g_ref, color="0.5", ls=":", lw=1.2, label="∝ 1/G")
    ax.set_xlabel("group size G")
    ax.set_ylabel("max_o |π_G(o) − π_∞(o)|")
    ax.set_title("distance to the G → ∞ limit (dashed: fits over [G_max/4, G_max])")
    ax.legend(fontsize=7.5, loc="lower left")

    ax = axes[0, 1]
    s0 = series[0]
    g = np.array(s0.group_sizes, float)
    ax.semilogx(g, s0.policies[:, 0], "o-", color=PROBLEM_COLORS[0], ms=3.5, label="stationary p at G")
    ax.axhline(
        binary_limit_policy(0.3, 0.5),
        color="#d55e00",
        lw=1.5,
        label=f"G → ∞ closed form: {binary_limit_policy(0.3, 0.5):.6g}",
    )
    ax.axhline(0.3, color="0.55", ls=":", lw=1, label="reference p₀ = 0.3")
    ax.set_xlabel("group size G")
    ax.set_ylabel("stationary probability p")
    ax.set_title("binary, p₀ = 0.3, β = 0.5")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_ylim(0.25, 0.95)

    return [
        FigureOut(
            "convergence",
            fig,
            "Left: distance to the limit against G (log-log) with fitted slopes. "
            "Right: the stationary probability of the correct answer approaching the closed-form limit.",
        )
    ]
