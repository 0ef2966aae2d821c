"""The stationarity residual and the penalty maps (THEORY.md sections 3 and 5).

Every candidate a solver returns is checked here from scratch: the residual is recomputed
from the policy alone, so a solver's internal bookkeeping never decides success.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from grpo_align.theory.penalties import PENALTIES
from grpo_align.theory.penalties import penalty as penalty_record
from grpo_align.theory.preference import preference_extended
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO

__all__ = [
    "penalty_coefficient",
    "preference_2d",
    "residual_given",
    "residual_tolerance",
    "rounding_floor",
    "stationarity_residual",
    "term_scale",
]


def penalty_coefficient(penalty: str, policy: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """phi(o): the penalty's gradient is sum_o phi(o) grad pi(o) (THEORY.md section 3).

    k3: 1 - pi_ref/pi; k2: log(pi/pi_ref); kl: log(pi/pi_ref) + 1; k1: 1;
    abs: sign(log(pi/pi_ref)) (0 at pi = pi_ref, the subgradient torch takes): the record's
    ``phi`` (``theory.penalties``). Entries with pi = 0 are 0 (outside the support).
    """
    rec = penalty_record(penalty)
    pos = policy > 0
    return np.where(pos, rec.phi(np.where(pos, policy, 1.0), ref), 0.0)


def stationarity_residual(problem: Problem, algo: GRPO, policy: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Max over the support of |P_G(o|pi) - beta phi(o) - c|, recomputed from scratch.

    c = sum_o pi(o)(P_G(o|pi) - beta phi(o)) (THEORY.md section 5). For abs the residual is
    the distance of P_G(o) - c to the set beta * sign(log pi/pi_ref), with c the best such
    constant; an output with pi(o) = 0 < pi_ref(o) (drained by the bounded pull) also counts,
    by how much P_G(o) - c exceeds -beta. For k2 and kl such an output counts only where the
    formula pi_ref exp((P - c)/beta) underflows for a finite P, or where P = -inf (a drained
    output on a face at G = inf, THEORY.md section 9); the residual is infinite otherwise;
    for k3 never.

    Parameters
    ----------
    problem : Problem
    algo : GRPO
    policy : array_like, (C, K), or (K,) for an unbatched problem

    Returns
    -------
    residual : ndarray, (C,)
    c : ndarray, (C,)
        The multiplier of the stationarity conditions.
    """
    pi = problem.check_policy(policy)
    return residual_given(problem, algo, pi, preference_2d(problem, algo, pi))


def preference_2d(problem: Problem, algo: GRPO, pi: np.ndarray) -> np.ndarray:
    """P_G(o | pi) as (C, K) for a policy given as (C, K) (THEORY.md section 4).

    Evaluated in extended precision from the problem's own levels
    (``preference_extended``): the check must not share the rounding of the
    double-precision P_G the solvers iterate on.
    """
    return preference_extended(problem, algo, pi)


def residual_given(
    problem: Problem, algo: GRPO, pi: np.ndarray, pref: np.ndarray, check_drained: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``stationarity_residual`` with P_G(o | pi) already computed, (C, K) arrays.

    ``check_drained=False`` measures the support only: for a face policy whose drained
    outputs were certified separately (``boundary``: P_G -> -inf there).
    """
    support = pi > 0
    rec = PENALTIES[algo.penalty]
    if not rec.smooth:  # abs: set-valued conditions
        x = np.where(
            support & (problem.ref > 0),
            np.log(np.where(support, pi, 1.0) / np.where(problem.ref > 0, problem.ref, 1.0)),
            0.0,
        )
        up, down = support & (x > 1e-9), support & (x < -1e-9)
        # c candidates from the determined outputs; otherwise the middle of the P range
        determined = up | down
        cands = np.where(up, pref - algo.beta, np.where(down, pref + algo.beta, 0.0))
        n_det = determined.sum(axis=1)
        # (np.nanmean would warn on contexts where no output is determined)
        c = np.where(
            n_det == 0,
            0.5 * (np.max(np.where(support, pref, -np.inf), 1) + np.min(np.where(support, pref, np.inf), 1)),
            cands.sum(axis=1) / np.maximum(n_det, 1),
        )
        dev = pref - c[:, None]
        res = np.where(
            up, np.abs(dev - algo.beta), np.where(down, np.abs(dev + algo.beta), np.maximum(np.abs(dev) - algo.beta, 0))
        )
        # an output drained to 0 (the abs pull is bounded) stays there only if the pull back,
        # beta, does not beat its advantage: P(o) - c <= -beta
        drained = ~support & (problem.ref > 0)
        res = np.where(drained, np.maximum(dev + algo.beta, 0.0), res)
        return np.max(np.where(support | drained, res, 0.0), axis=1), c
    phi = penalty_coefficient(algo.penalty, pi, problem.ref)
    g = pref - algo.beta * phi
    # (P_G may be -inf off the support: G = inf at a point-mass mixture)
    c = np.sum(np.where(support, pi * np.where(support, g, 0.0), 0.0), axis=1)
    res = np.where(support, np.abs(np.where(support, g, 0.0) - c[:, None]), 0.0)
    starved = ~support & (problem.ref > 0)
    if check_drained and algo.regularised and rec.repels_boundary and np.any(starved):
        # pi(o) = 0 < pi_ref(o) is stationary only where the penalty's formula for its mass
        # (THEORY.md section 5) underflows: for k2/kl pi_ref exp((P - c)/beta) < tiny,
        # measured as the excess of P - c over beta log(tiny/pi_ref). P(o) = -inf (G = inf
        # at a point-mass mixture, every draw of o below it) is the KKT condition of a
        # drained output on a face (THEORY.md section 9): it holds. +inf or NaN never does.
        if rec.stationary_map == "reciprocal":
            # k3 masses are beta pi_ref / (beta - P + c): they never underflow for finite P
            excess = np.full_like(pref, np.inf)
        else:
            safe_ref = np.where(starved, problem.ref, 1.0)
            bound = algo.beta * np.log(np.finfo(float).tiny / safe_ref)
            with np.errstate(invalid="ignore"):
                excess = np.maximum(np.where(starved, pref, 0.0) - c[:, None] - bound, 0.0)
            excess = np.where(np.isfinite(pref), excess, np.where(pref == -np.inf, 0.0, np.inf))
        res = np.where(starved, excess, res)
    return np.max(res, axis=1), c


def term_scale(problem: Problem, algo: GRPO, pi: np.ndarray, pref: np.ndarray) -> np.ndarray:
    """max(1, |P_G(o)|, beta |phi(o)|) over the support, per context: the size of the terms
    whose cancellation the stationarity residual measures."""
    with np.errstate(all="ignore"):
        phi = penalty_coefficient(algo.penalty, pi, problem.ref)
    support = (pi > 0) & np.isfinite(pref)
    size = np.where(support, np.maximum(np.abs(pref), algo.beta * np.abs(phi)), 0.0)
    return np.maximum(1.0, np.max(size, axis=1))


def rounding_floor(problem: Problem, algo: GRPO, pi: np.ndarray) -> np.ndarray:
    """The residual that rounding of the policy alone produces, per context, (C,).

    A policy stored in doubles carries a relative error of order eps = 2^-52 in each
    pi(o); through the penalty that is an absolute error of beta eps pi_ref/pi in
    beta phi for k3 (phi = 1 - pi_ref/pi) and of beta eps for k2 and kl (phi = log pi/pi_ref).
    For large beta (1e8 and beyond) this exceeds 1e-9 times the terms: the stationary policy
    is pi_ref + O(1/beta), known to eps relative, and no double policy does better. The
    factor 64 covers the few roundings in P_G, phi and c.
    """
    rec = PENALTIES[algo.penalty]
    if not rec.repels_boundary or algo.beta == 0:
        return np.zeros(pi.shape[0])
    support = pi > 0
    if rec.stationary_map == "reciprocal":
        ratio = np.where(support, problem.ref / np.where(support, pi, 1.0), 0.0)
        size = np.maximum(1.0, np.max(ratio, axis=1))
    else:
        size = np.ones(pi.shape[0])
    return 64 * np.finfo(float).eps * algo.beta * size


def residual_tolerance(problem: Problem, algo: GRPO, pi: np.ndarray, pref: np.ndarray, relative: float) -> np.ndarray:
    """Residual accepted for policy ``pi``: ``relative`` times ``term_scale`` plus ``rounding_floor``."""
    return relative * term_scale(problem, algo, pi, pref) + rounding_floor(problem, algo, pi)
