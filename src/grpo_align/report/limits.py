"""Where the paper's statements stop holding (THEORY.md sections 6, 9 and 11).

1. Eq. 15 (the G -> infinity closed form) assumes deterministic rewards. With Bernoulli
   rewards (answer a passes with 0.8, b with 0.5), p0 = 0.3 and beta = 0.5 it still prints
   0.9, but the stationary p is 0.6073: the G -> infinity preference is (E_o r - mu_w)/sigma_w
   with the mixture's Bernoulli std, and the equation p (1 - P_a(p)/beta) = p0 is solved
   here by a dense scan and bisection, independently of the engine.
2. App. B.2 calls the two interior roots of the direct-KL limit "two values that maximise the
   objective": one is stable, the other unstable (a watershed, never reached by the dynamics).
3. The paper's outputs are atomic: one draw, one reward. Answers generated token by token are
   the subject of the section with key "sequences".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from grpo_align.report.common import binary_problem
from grpo_align.report.direct_kl import fold
from grpo_align.report.model import JSON, Cell, FigureOut, ReportConfig, Table, Verdict
from grpo_align.report.style import color, new_figure
from grpo_align.theory import GRPO, Problem, binary_limit_policy, stationary_policy

KEY = "limits"
TITLE = "Where the paper's statements stop holding"
SUCCESS = (0.8, 0.5)
P0, BETA = 0.3, 0.5
BETA_B2 = 2.0
TOLERANCE = 1e-9
#: the engine's p must differ from Eq. 15 by more than this for the statement to count as broken
MEANINGFUL = 0.05
SEQUENCES_KEY = "sequences"

CLAIM = (
    "Three limits of the paper's results. (1) Its Eq. 15 for large groups assumes deterministic rewards: with "
    "answers that pass a noisy verifier 80% and 50% of the time, p₀ = 0.3 and β = 0.5, Eq. 15 still gives 0.9 "
    "but the stationary probability is 0.6073. (2) App. B.2's two interior values are not both maxima: one "
    "stationary policy is stable, the other unstable. (3) The results are for atomic outputs; answers generated "
    f'token by token are treated in the section "{SEQUENCES_KEY}".'
)


@dataclass(frozen=True)
class LimitsData:
    """Everything the section measured."""

    eq15: float
    engine: float
    brute_force: float
    engine_by_g: dict[str, float]
    #: p of the two interior roots of App. B.2 at BETA_B2 and their stability from the engine
    b2_roots: tuple[float, ...]
    b2_stable: tuple[bool, ...]
    #: independent: sign of F'(p) at each root (positive = stable)
    b2_slope: tuple[float, ...]
    p_grid: np.ndarray
    residual_curve: np.ndarray
    all_success: bool
    tables: tuple[Table, ...]

    def measured(self) -> dict[str, JSON]:
        return dict(
            eq15=self.eq15,
            engine=self.engine,
            brute_force=self.brute_force,
            engine_by_group_size=dict(self.engine_by_g),
            b2_interior_roots=list(self.b2_roots),
            b2_stable=list(self.b2_stable),
            all_solves_succeeded=self.all_success,
        )

    def json(self) -> dict[str, JSON]:
        return dict(
            success=list(SUCCESS),
            p0=P0,
            beta=BETA,
            p_grid=self.p_grid,
            residual_curve=self.residual_curve,
            b2_beta=BETA_B2,
            b2_roots=list(self.b2_roots),
            b2_slope=list(self.b2_slope),
        )


def bernoulli_limit_residual(p: np.ndarray) -> np.ndarray:
    """p (1 - P_a(p)/beta) - p0 at G -> infinity with Bernoulli rewards (THEORY.md section 8), by hand.

    The reward under the policy is Bernoulli with mean mu = p s_a + (1 - p) s_b, so
    sigma^2 = mu (1 - mu) and P_a = (s_a - mu)/sigma.
    """
    p = np.asarray(p, float)
    mu = p * SUCCESS[0] + (1 - p) * SUCCESS[1]
    pa = (SUCCESS[0] - mu) / np.sqrt(mu * (1 - mu))
    return p * (1 - pa / BETA) - P0


def equation_slope(p: float, beta: float) -> float:
    """dF/dp of F(p) = logit p - logit p0 - 1/(beta sqrt(p(1-p))), by hand: > 0 at a stable root."""
    s = math.sqrt(p * (1 - p))
    return 1 / (p * (1 - p)) + (1 - 2 * p) / (2 * beta * s**3)


def brute_force() -> tuple[float, np.ndarray, np.ndarray]:
    """The root of ``bernoulli_limit_residual`` where every k3 denominator is positive: a scan, then bisection."""
    grid = np.linspace(1e-6, 1 - 1e-6, 200_001)
    f = bernoulli_limit_residual(grid)
    mu = grid * SUCCESS[0] + (1 - grid) * SUCCESS[1]
    valid = 1 - (SUCCESS[0] - mu) / np.sqrt(mu * (1 - mu)) / BETA > 0
    cross = np.nonzero(valid[:-1] & valid[1:] & (np.sign(f[:-1]) != np.sign(f[1:])))[0]
    if cross.size != 1:
        raise RuntimeError(f"expected one sign change of the Bernoulli limit equation, found {cross.size}")
    i = int(cross[0])
    root = brentq(lambda x: float(bernoulli_limit_residual(np.array(x))), grid[i], grid[i + 1], xtol=1e-15)
    show = np.linspace(0.3, 0.99, 300)
    return float(root), show, bernoulli_limit_residual(show)


def compute(cfg: ReportConfig) -> LimitsData:
    """Eq. 15 against the engine and brute force; App. B.2's roots and their stability."""
    ok = True
    cfg.status("Bernoulli rewards")
    problem = Problem.from_bernoulli(ref=[P0, 1 - P0], success=list(SUCCESS))
    by_g: dict[str, float] = {}
    for g in (2, 8, 64, math.inf):
        res = stationary_policy(problem, GRPO(group_size=g, beta=BETA))
        ok &= bool(res.success[0])
        by_g["inf" if g == math.inf else str(g)] = float(res.policy[0, 0])
    root, p_grid, curve = brute_force()

    cfg.status("App. B.2 roots")
    res = stationary_policy(binary_problem([P0]), GRPO(group_size=math.inf, beta=BETA_B2, penalty="kl"))
    ok &= bool(res.success[0])
    interior = sorted((r for r in res.roots[0] if not r.boundary), key=lambda r: r.policy[0])
    roots = tuple(float(r.policy[0]) for r in interior)
    stable = tuple(bool(r.stable) for r in interior)
    # F(p) = logit p - logit p0 - 1/(beta sqrt(p(1-p))); F' > 0 means stable (direct_kl module docstring)
    slopes = tuple(equation_slope(x, BETA_B2) for x in roots)
    beta_star, _ = fold(P0)
    rows: list[list[Cell]] = [
        ["Eq. 15 (deterministic rewards)", binary_limit_policy(P0, BETA)],
        ["engine, G → ∞, Bernoulli 0.8 / 0.5", by_g["inf"]],
        ["brute force (scan + bisection), G → ∞", root],
    ]
    rows += [[f"engine, G = {g}", v] for g, v in by_g.items() if g != "inf"]
    table = Table(
        "bernoulli",
        ["route", "stationary p(a)"],
        rows,
        f"p₀ = {P0:g}, β = {BETA:g}; answer a passes with {SUCCESS[0]:g}, b with {SUCCESS[1]:g}. Eq. 15 would need "
        "rewards that never vary for a given answer.",
    )
    b2 = Table(
        "b2-roots",
        ["p", "stable (engine)", "dF/dp (independent; > 0 is stable)"],
        [[x, "yes" if s else "no", d] for x, s, d in zip(roots, stable, slopes, strict=True)],
        f"Direct KL, G → ∞, p₀ = {P0:g}, β = {BETA_B2:g} (above the fold β* = {beta_star:.4f}); π = 1 is a third, "
        "stable, stationary policy.",
    )
    return LimitsData(
        eq15=float(binary_limit_policy(P0, BETA)),
        engine=by_g["inf"],
        brute_force=root,
        engine_by_g=by_g,
        b2_roots=roots,
        b2_stable=stable,
        b2_slope=slopes,
        p_grid=p_grid,
        residual_curve=curve,
        all_success=ok,
        tables=(table, b2),
    )


def verdict(data: LimitsData) -> Verdict:
    """Engine = brute force, both away from Eq. 15; B.2's two interior roots: one stable, one not, as F' says."""
    agree = abs(data.engine - data.brute_force) < TOLERANCE
    broken = abs(data.engine - data.eq15) > MEANINGFUL
    two = len(data.b2_roots) == 2
    one_each = two and sorted(data.b2_stable) == [False, True]
    slopes_agree = two and all((d > 0) == s for d, s in zip(data.b2_slope, data.b2_stable, strict=True))
    passed = data.all_success and agree and broken and one_each and slopes_agree
    roots = " and ".join(
        f"{x:.4f} ({'stable' if s else 'unstable'})" for x, s in zip(data.b2_roots, data.b2_stable, strict=True)
    )
    return Verdict(
        passed,
        f"With Bernoulli rewards the engine gives p = {data.engine:.4f} and a brute-force solution of the same "
        f"equation {data.brute_force:.4f} (difference {abs(data.engine - data.brute_force):.1e}); Eq. 15 gives "
        f"{data.eq15:.4f}, off by {abs(data.engine - data.eq15):.3f}. App. B.2 at β = {BETA_B2:g}: the interior "
        f"stationary points are {roots or 'missing'}; the slope test agrees: {'yes' if slopes_agree else 'no'}.",
    )


def render(data: LimitsData) -> list[FigureOut]:
    """The Bernoulli equation with its root and Eq. 15's answer."""
    fig, axes = new_figure(7.0, 3.6)
    ax = axes[0, 0]
    ax.plot(data.p_grid, data.residual_curve, color=color("G=inf"), label="p(1 − P_a(p)/β) − p₀, Bernoulli rewards")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axvline(data.brute_force, color=color("G=inf"), ls="--", lw=1, label=f"stationary p = {data.brute_force:.4f}")
    ax.axvline(data.eq15, color=color("rlhf"), ls=":", lw=1.2, label=f"Eq. 15 (deterministic) = {data.eq15:.4f}")
    ax.set_xlabel("probability p of answer a")
    ax.set_ylabel("left side minus right side")
    ax.set_title(f"G → ∞, p₀ = {P0:g}, β = {BETA:g}, answers pass 80% / 50%")
    ax.legend(fontsize=7.5)
    return [
        FigureOut(
            "bernoulli",
            fig,
            "The stationarity equation at G → ∞ with noisy rewards crosses 0 at 0.6073, far from the 0.9 that "
            "Eq. 15 (deterministic rewards) gives.",
        )
    ]
