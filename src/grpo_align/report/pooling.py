"""Finding 2: GRPO's aggregation is not logarithmic pooling (THEORY.md section 5).

RLHF's optimum pi(o) proportional to pi_ref(o) exp(r(o)/beta) makes log(pi/pi_ref) an
affine function of the reward. GRPO's stationary policy pi(o) = pi_ref(o)/(1 - (P_G(o|pi) -
c)/beta) depends on the reward only through the preference P_G, so on a many-output
problem log(pi/pi_ref) against the reward is a curve, not a line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from grpo_align.report.common import fmt_small, g_text, line_fit, r_squared
from grpo_align.report.model import JSON, Cell, FigureOut, ReportConfig, Table, Verdict
from grpo_align.report.style import color, group_key, group_label, new_figure
from grpo_align.theory import GRPO, Problem, preference, rlhf_policy, stationary_policy

KEY = "pooling"
TITLE = "Aggregation is not logarithmic pooling"
BETA = 0.5
GROUP_SIZES = (2, 4, 8, math.inf)
#: RLHF's points lie on a line up to rounding; GRPO's must miss a line by far more than that
LINEAR_TOL = 1e-9
NONLINEAR_MIN = 1e-4
#: the fixed-point formula holds to rounding
FORMULA_TOL = 1e-9
N_LEVELS = 6
CLAIM = (
    "RLHF aggregates by logarithmic pooling: log(π/π_ref) = r/β − const, a straight line in the reward. "
    "GRPO's stationary policy depends on the reward only through its preference model P_G(o|π) and bends "
    "it through 1/(1 − (P_G − P̄)/β): on a problem with many outputs, log(π/π_ref) against the reward is "
    "not a line for any group size."
)


@dataclass(frozen=True)
class Series:
    """One algorithm's stationary policy; ``preference`` is None for RLHF."""

    policy: np.ndarray
    log_ratio: np.ndarray
    r_squared: float
    preference: np.ndarray | None = None


@dataclass(frozen=True)
class PoolingData:
    """Everything the pooling section measured."""

    reward: np.ndarray
    ref: np.ndarray
    series: dict[str, Series]
    rlhf_one_minus_r2: float
    rlhf_slope: float
    grpo_min_one_minus_r2: float
    max_formula_gap: float
    all_success: bool
    tables: tuple[Table, ...]
    #: horizontal jitter of the GRPO points in the figure (drawn with the section's generator)
    jitter: np.ndarray = field(repr=False)

    def measured(self) -> dict[str, JSON]:
        return dict(
            rlhf_one_minus_r2=self.rlhf_one_minus_r2,
            rlhf_slope=self.rlhf_slope,
            grpo_min_one_minus_r2=self.grpo_min_one_minus_r2,
            max_abs_fixed_point_formula_gap=self.max_formula_gap,
            all_solves_succeeded=self.all_success,
        )

    def json(self) -> dict[str, JSON]:
        series: dict[str, JSON] = {
            k: {f: v for f, v in vars(s).items() if v is not None} for k, s in self.series.items()
        }
        return dict(
            beta=BETA,
            reward=self.reward,
            ref=self.ref,
            series=series,
            group_sizes=[g_text(g) for g in GROUP_SIZES],
        )


def make_problem(rng: np.random.Generator, n_outputs: int, n_levels: int) -> Problem:
    """Many outputs with deterministic rewards on ``n_levels`` evenly spaced levels in [0, 1]."""
    levels = np.linspace(0.0, 1.0, n_levels)
    # every level used at least once, the rest at random
    rewards = np.concatenate([levels, levels[rng.integers(0, n_levels, n_outputs - n_levels)]])
    ref = rng.dirichlet(np.full(n_outputs, 2.0))
    return Problem.from_rewards(ref=ref, rewards=rewards)


def compute(cfg: ReportConfig) -> PoolingData:
    """GRPO's and RLHF's stationary policies on one many-output problem, and their fits to a line."""
    rng = cfg.rng(KEY)
    n_outputs = 40 if cfg.quick else 80
    problem = make_problem(rng, n_outputs, n_levels=N_LEVELS)
    ref = problem.ref[0]
    reward = problem.expected_reward()[0]

    series = {}
    rows: list[list[Cell]] = []
    worst_linear_grpo = math.inf
    worst_formula = 0.0
    all_success = True
    for g in GROUP_SIZES:
        cfg.status(group_label(g))
        algo = GRPO(group_size=g, beta=BETA)
        res = stationary_policy(problem, algo)[0]  # the one context
        all_success &= bool(res.success)
        pi = res.policy
        log_ratio = np.log(pi / ref)
        pref = preference(problem, algo, pi)
        pbar = float(np.sum(pi * pref))
        # the k3 fixed point written from P_G: pi/pi_ref = 1/(1 - (P - Pbar)/beta)
        predicted_log_ratio = -np.log1p(-(pref - pbar) / BETA)
        worst_formula = max(worst_formula, float(np.max(np.abs(log_ratio - predicted_log_ratio))))
        r2 = r_squared(reward, log_ratio)
        worst_linear_grpo = min(worst_linear_grpo, 1 - r2)
        slope, _ = line_fit(reward, log_ratio)
        series[group_key(g)] = Series(policy=pi, log_ratio=log_ratio, preference=pref, r_squared=r2)
        rows.append([f"GRPO {group_label(g)}", r2, 1 - r2, slope, float(np.max(log_ratio) - np.min(log_ratio))])
    rlhf = rlhf_policy(problem, BETA)
    rlhf_log = np.log(rlhf / ref)
    r2_rlhf = r_squared(reward, rlhf_log)
    slope_rlhf, _ = line_fit(reward, rlhf_log)
    series["rlhf"] = Series(policy=rlhf, log_ratio=rlhf_log, r_squared=r2_rlhf)
    rows.append(["RLHF", r2_rlhf, fmt_small(1 - r2_rlhf), slope_rlhf, float(np.max(rlhf_log) - np.min(rlhf_log))])
    jitter = (rng.random(n_outputs) - 0.5) * 0.012  # separates outputs that share a reward level
    table = Table(
        "linearity",
        ["algorithm", "R² of log(π/π_ref) on r", "1 − R²", "fitted slope", "range of log(π/π_ref)"],
        rows,
        f"β = {BETA}; shift_scale (ddof 0), k3. RLHF's slope must be 1/β = {1 / BETA:g}.",
    )
    return PoolingData(
        reward=reward,
        ref=ref,
        series=series,
        rlhf_one_minus_r2=1 - r2_rlhf,
        rlhf_slope=slope_rlhf,
        grpo_min_one_minus_r2=worst_linear_grpo,
        max_formula_gap=worst_formula,
        all_success=all_success,
        tables=(table,),
        jitter=jitter,
    )


def verdict(data: PoolingData) -> Verdict:
    """RLHF on a line of slope 1/beta, GRPO off any line, and on the k3 fixed-point curve."""
    rlhf_linear = data.rlhf_one_minus_r2 < LINEAR_TOL and abs(data.rlhf_slope - 1 / BETA) < LINEAR_TOL
    grpo_curved = data.grpo_min_one_minus_r2 > NONLINEAR_MIN
    passed = data.all_success and rlhf_linear and grpo_curved and data.max_formula_gap < FORMULA_TOL
    return Verdict(
        passed,
        f"RLHF: 1 − R² = {fmt_small(data.rlhf_one_minus_r2)} (limit {LINEAR_TOL:g}) and slope {data.rlhf_slope:.12g} = 1/β; "
        f"GRPO: smallest 1 − R² over G = {data.grpo_min_one_minus_r2:.3f} (> {NONLINEAR_MIN:g}: not a line); "
        f"log π/π_ref = −log(1 − (P_G − P̄)/β) to {data.max_formula_gap:.1e}.",
    )


def render(data: PoolingData) -> list[FigureOut]:
    """log(pi/pi_ref) against the reward and against the preference P_G."""
    reward, series = data.reward, data.series
    rlhf = series["rlhf"]
    fig, axes = new_figure(10.5, 3.9, ncols=2)
    ax = axes[0, 0]
    r_line = np.linspace(0, 1, 50)
    s, b = line_fit(reward, rlhf.log_ratio)
    ax.plot(r_line, s * r_line + b, color=color("rlhf"), ls="--", lw=1.2)
    ax.plot(reward, rlhf.log_ratio, "s", color=color("rlhf"), ms=4, label=f"RLHF (R² = {rlhf.r_squared:.12f})")
    for g in GROUP_SIZES:
        d = series[group_key(g)]
        order = np.argsort(reward)
        ax.plot(reward[order], d.log_ratio[order], color=color(group_key(g)), lw=1.0, alpha=0.7)
        ax.plot(
            reward + data.jitter,
            d.log_ratio,
            "o",
            color=color(group_key(g)),
            ms=3.5,
            label=f"GRPO {group_label(g)} (R² = {d.r_squared:.3f})",
        )
    ax.set_xlabel("reward r(o)")
    ax.set_ylabel("log π(o)/π_ref(o)")
    ax.set_title(f"{reward.size} outputs, {N_LEVELS} reward levels, β = {BETA}")
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[0, 1]
    prefs = {}
    for g in GROUP_SIZES:
        d = series[group_key(g)]
        assert d.preference is not None  # every GRPO series carries its preference
        prefs[g] = d.preference
        pbar = float(np.sum(d.policy * d.preference))
        ax.plot(
            d.preference - pbar, d.log_ratio, "o", color=color(group_key(g)), ms=3.5, label=f"GRPO {group_label(g)}"
        )
    lowest = min(float(np.min(p)) for p in prefs.values()) - 0.3
    p_line = np.linspace(lowest, BETA * 0.97, 300)
    ok = p_line < BETA
    ax.plot(
        p_line[ok],
        -np.log1p(-p_line[ok] / BETA),
        color="0.25",
        lw=1.1,
        ls="--",
        label="−log(1 − (P − P̄)/β)  (k3 fixed point)",
    )
    ax.set_xlabel("preference P_G(o|π) − P̄")
    ax.set_ylabel("log π(o)/π_ref(o)")
    ax.set_title("GRPO pools the preference P_G, through −log(1 − x/β)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlim(lowest, BETA)
    return [
        FigureOut(
            "log-ratio",
            fig,
            "Left: log(π/π_ref) against the reward (GRPO points jittered "
            "horizontally by ±0.006 to separate outputs with equal rewards). Right: the same "
            "against the preference P_G, on the k3 fixed-point curve.",
        )
    ]
