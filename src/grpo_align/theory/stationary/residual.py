"""The stationarity residual and the penalty maps (THEORY.md sections 3 and 5).

Every candidate a solver returns is checked here from scratch: the residual is recomputed
from the policy alone, so a solver's internal bookkeeping never decides success.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from grpo_align.theory.penalties import PENALTIES
from grpo_align.theory.penalties import penalty as penalty_record
from grpo_align.theory.preference import preference_extended
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO
from grpo_align.theory.stationary.reduction import Reduced, TwoClassSplit
from grpo_align.theory.stationary.result import RESIDUAL_TOLERANCE
from grpo_align.theory.stationary.tables import binary_coefficients, power

__all__ = [
    "SPREAD_FOR_BOUNDS",
    "one_context_check",
    "penalty_coefficient",
    "preference_2d",
    "residual_given",
    "residual_tolerance",
    "rounding_floor",
    "shared_check",
    "stationarity_residual",
    "term_scale",
    "two_class_check",
    "two_class_route",
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


# ------------------------------------------------------------------ fast routes (two classes)
# The same residual, multiplier and tolerance as ``residual_given`` and
# ``residual_tolerance``, recomputed from the policy alone, for the shapes the batch driver
# meets at scale (10^6 contexts, or one context of 10^6 outputs): one shared reward row per
# output, one context of two classes, a ``TwoClassSplit``. tests/test_theory_batch.py checks
# each against the generic route on random and solved policies.

#: Largest G - 1 for which ``shared_check`` evaluates P_G in doubles in y = w1 - w0: the
#: power-basis coefficients stay of the size of the table (their absolute sum was 3.9 for
#: G = 16), so the evaluation keeps about 1e-15 of the term scale.
_SHARED_MAX_DEGREE = 15


def shared_check(
    problem: Problem, algo: Any, pi: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Residual, multiplier and tolerance of every context when all contexts share one
    reward row per output (``problem.dist[c] == problem.dist[0]``) and ``levels``;
    None where this route does not apply (the caller takes the generic one).

    The same quantities as ``residual.residual_given`` and ``residual.residual_tolerance``
    (THEORY.md section 5), recomputed from the policy alone and independent of the solve's
    rounding: the mixture w = sum_o pi(o) F_o from the outputs, and P_G(o) = F_o . h(w)
    (section 4) as one polynomial per output in y = w1 - w0 (on the simplex w0 = (1 - y) / 2,
    w1 = (1 + y) / 2), by Horner in doubles: a different variable, basis and rounding from
    the solve's, which evaluates the class difference D by Horner in the smaller-to-larger
    ratio of the class masses. Outputs are handled column by column (K is small), so no
    (C, K) temporaries are built beyond pi's.
    """
    n_deg = algo.group_size - 1
    dist0 = problem.dist[0]
    n_out = dist0.shape[0]
    rec = PENALTIES[algo.penalty]
    if algo.is_limit or n_deg > _SHARED_MAX_DEGREE or n_out > 8 or rec.stationary_map is None:
        return None
    reciprocal = rec.stationary_map == "reciprocal"
    cols = [pi[:, k] for k in range(n_out)]
    w0 = np.zeros(pi.shape[0])
    w1 = np.zeros(pi.shape[0])
    for k in range(n_out):
        if dist0[k, 0]:
            w0 += cols[k] * dist0[k, 0]
        if dist0[k, 1]:
            w1 += cols[k] * dist0[k, 1]
    if not (bool(np.all(w0 >= 1e-290)) and all(bool(np.all(col > 0)) for col in cols)):
        return None  # a point near a vertex or an output off the support: the generic route
    ld = np.longdouble
    coef = binary_coefficients(levels.astype(float), algo, ld) @ dist0.T.astype(ld)  # (G, K)
    y = w1 - w0
    beta = algo.beta
    ref = problem.ref
    prefs = _shared_preference(y, _y_basis(coef))
    g_cols, size, ratio_max = [], np.ones(pi.shape[0]), np.ones(pi.shape[0])
    for k in range(n_out):
        pref = prefs[k]
        # phi = a - u (the record's phi in u form, a = phi_offset): u = pi_ref/pi for k3,
        # log(pi_ref/pi) for k2 and kl
        if reciprocal:
            ratio = ref[:, k] / cols[k]
            phi = rec.phi_offset - ratio
            np.maximum(ratio_max, ratio, out=ratio_max)
        else:
            phi = np.log(cols[k] / ref[:, k]) + rec.phi_offset
        bphi = beta * phi
        np.maximum(size, np.abs(pref), out=size)
        np.maximum(size, np.abs(bphi), out=size)
        g_cols.append(pref - bphi)
    c = cols[0] * g_cols[0]
    for k in range(1, n_out):
        c += cols[k] * g_cols[k]
    res = np.abs(g_cols[0] - c)
    for k in range(1, n_out):
        np.maximum(res, np.abs(g_cols[k] - c), out=res)
    eps = np.finfo(float).eps
    tol = RESIDUAL_TOLERANCE * size + 64 * eps * beta * (ratio_max if reciprocal else 1.0)
    if not bool(np.all(np.isfinite(res))):
        return None
    return res, c, tol


def _y_basis(coef: np.ndarray) -> np.ndarray:
    """Power-basis coefficients in y = w1 - w0 of sum_k coef[k] w0^(n-k) w1^k on the simplex.

    With w0 = (1 - y) / 2 and w1 = (1 + y) / 2 each term is coef[k] ((1 - y) / 2)^(n-k)
    ((1 + y) / 2)^k; the expansion's entries are integers over 2^n (exact in doubles for
    the degrees used here), contracted with ``coef`` in its dtype (longdouble here).
    """
    n = coef.shape[0] - 1
    expand = np.zeros((n + 1, n + 1))
    for k in range(n + 1):
        term = np.array([1.0])
        for _ in range(n - k):
            term = np.convolve(term, [0.5, -0.5])
        for _ in range(k):
            term = np.convolve(term, [0.5, 0.5])
        expand[k] = term
    return np.asarray(expand.T.astype(coef.dtype) @ coef)


def _horner_y(y: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """sum_j coef[j] y^j by Horner in doubles (the coefficients rounded to doubles once)."""
    coef = np.asarray(coef, dtype=float)
    n = coef.shape[0] - 1
    acc = np.full(y.shape, coef[n])
    for j in range(n - 1, -1, -1):
        acc *= y
        acc += coef[j]
    return acc


def _horner_t(t: np.ndarray, coef: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """scale * sum_j coef[j] t^j by Horner, in the dtype of t, as doubles."""
    n = coef.shape[0] - 1
    acc = np.full(t.shape, coef[n], dtype=t.dtype)
    for j in range(n - 1, -1, -1):
        acc *= t
        acc += coef[j]
    acc *= scale
    return np.asarray(acc, dtype=float)


def _shared_preference(y: np.ndarray, coef: np.ndarray) -> list[np.ndarray]:
    """P_G(o) per output o (columns of ``coef``, power-basis polynomials in y = w1 - w0).

    With two outputs the residual depends on P_G only through P_0 - P_1 (g_0 - c =
    pi_1 (g_0 - g_1) when pi_0 + pi_1 = 1), so the difference is its own polynomial (no
    cancellation of two evaluations) and P_0 = P_1 + difference.
    """
    if coef.shape[1] != 2:
        return [_horner_y(y, coef[:, k]) for k in range(coef.shape[1])]
    diff = _horner_y(y, coef[:, 0] - coef[:, 1])
    p1 = _horner_y(y, coef[:, 1])
    return [p1 + diff, p1]


def one_context_check(
    problem: Problem, algo: Any, pi: np.ndarray, class_of: np.ndarray, class_dist: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``shared_check`` for one context with many outputs in two classes, (1, K) arrays.

    The same quantities as ``residual.residual_given`` and ``residual.residual_tolerance``,
    from the policy alone: the mixture w = sum_o pi(o) F_o summed over the outputs, the two
    class values P_j = F_j . h(w) in longdouble (scalars: outputs of one class share them,
    THEORY.md section 5), then the ratio pi_ref / pi per output, whose extremes per class
    bound the stationarity terms (beta phi is monotone in it); the term scale takes
    max |P_j| over the classes and max beta |phi| over the outputs. None where this route
    does not apply.
    """
    n_deg = algo.group_size - 1
    rec = PENALTIES[algo.penalty]
    if algo.is_limit or n_deg > _SHARED_MAX_DEGREE or rec.stationary_map is None:
        return None
    reciprocal = rec.stationary_map == "reciprocal"
    p, ref, cls = pi[0], problem.ref[0], class_of[0]
    if not float(np.min(p)) > 0:
        return None  # a drained output: the generic route
    # (c_einsum sums of products: no temporary; BLAS dot competes for threads on a shared machine)
    dist = problem.dist[0]
    w = np.array([float(np.einsum("k,k->", p, dist[:, level])) for level in range(dist.shape[1])])
    if not (w[0] >= 1e-290 and w[1] >= 0):
        return None
    ld = np.longdouble
    coef = binary_coefficients(levels.astype(float), algo, ld) @ class_dist.T.astype(ld)  # (G, J)
    t = np.array([w[1]], ld) / ld(w[0])
    scale = power(np.array([w[0]], ld), n_deg)
    p_class = np.array([_horner_t(t, coef[:, j], scale)[0] for j in range(coef.shape[1])])
    beta = algo.beta
    # beta phi as a + b * u per output, u = r (k3) or log r (k2, kl) with r = pi_ref / pi:
    # k3 phi = 1 - r, kl phi = 1 - log r, k2 phi = -log r
    u = ref / p
    shift = rec.phi_offset
    total = float(np.sum(p))
    if reciprocal:
        spent = total - float(np.sum(ref))  # sum pi (1 - r) = sum pi - sum pi_ref
    else:
        np.log(u, out=u)
        spent = shift * total - float(np.einsum("k,k->", p, u))
    u_lo, u_hi = float(np.min(u)), float(np.max(u))
    # the multiplier c = sum_o pi(o) (P_cls(o) - beta phi(o)); einsum: no (K,) temporary
    g = np.take(p_class, cls)
    c = float(np.einsum("k,k->", p, g)) - beta * spent
    # g(o) - c = P_cls(o) - c - beta shift + beta u(o), in place
    g -= c + beta * shift
    u *= beta
    g += u
    res = max(abs(float(np.max(g))), abs(float(np.min(g))))
    # max |beta phi| over the outputs: at the smallest or the largest u (phi is monotone in u)
    size = max(1.0, float(np.max(np.abs(p_class))), beta * abs(shift - u_lo), beta * abs(shift - u_hi))
    floor = 64 * np.finfo(float).eps * beta * (max(1.0, u_hi) if reciprocal else 1.0)
    if not np.isfinite(res):
        return None
    return np.array([res]), np.array([c]), np.array([RESIDUAL_TOLERANCE * size + floor])


#: Largest relative spread r_hi / r_lo - 1 of pi_ref / pi within a class for which
#: ``two_class_check`` takes the class sums of pi from the class masses and the extremes
#: (a policy built as f_j pi_ref has a spread of 1-2 eps: two roundings).
SPREAD_FOR_BOUNDS = 8 * float(np.finfo(float).eps)


def two_class_route(
    red: Reduced, masses: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """The policy of class masses ``masses`` (1, 2) and its residual check, for one context
    whose partition is a ``TwoClassSplit`` (k3); None where this route does not apply (the
    caller builds pi with ``Reduced.policy`` and checks it by ``one_context_check``).

    pi(o) = f_j pi_ref(o) with f_j = m_j / R_j, rounded as ``Reduced.policy`` rounds it, from
    the signed reference s(o) = +-pi_ref(o) without a select by class: s f_0 is f_0 pi_ref on
    class 0 and negative on class 1, s (-f_1) the reverse, so their maximum is pi (three
    elementwise passes). A zero pi_ref gives a signed zero here; the check then meets 0/0
    and returns None, and the caller rebuilds pi.
    """
    split = red.split
    if split is None or PENALTIES[red.algo.penalty].stationary_map != "reciprocal":
        return None
    ref_mass = red.ref_mass[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        f0, f1 = float(masses[0, 0] / ref_mass[0]), float(masses[0, 1] / ref_mass[1])
    if not (ref_mass[0] > 0 and ref_mass[1] > 0 and np.isfinite(f0) and np.isfinite(f1)):
        return None
    pi = split.signed_ref * f0
    scratch = np.multiply(split.signed_ref, -f1)
    np.maximum(pi, scratch, out=pi)
    # (the check's ratio array reuses the scratch: one fresh (K,) array fewer)
    checked = two_class_check(red.problem, red.algo, pi, split, red.dist[0], levels, out=scratch)
    if checked is None:
        return None
    return pi[None, :], checked


def two_class_check(
    problem: Problem,
    algo: Any,
    pi: np.ndarray,
    split: TwoClassSplit,
    class_dist: np.ndarray,
    levels: np.ndarray,
    out: np.ndarray | None = None,
    spread_for_bounds: float = SPREAD_FOR_BOUNDS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``one_context_check`` (k3) for a policy ``pi`` (K,) >= 0 of one context split in two
    classes (``split``, class rows ``class_dist`` (2, 2)): residual, multiplier and
    tolerance as (1,) arrays, or None (an output with pi = 0 or pi_ref = 0, a mixture near
    a vertex, another penalty). ``out``: a (K,) scratch array to use (overwritten).
    ``spread_for_bounds``: the relative spread of pi_ref / pi within each class up to which
    the class sums come from the bounds (a negative value: always the sums over outputs).

    The same quantities as ``residual.residual_given`` and ``residual.residual_tolerance``
    (THEORY.md section 5), from the policy alone. The residual is the maximum over outputs
    of |P_G(o) - c - beta phi(o)| with phi = 1 - r, r = pi_ref / pi. On a class P_G is one
    number (section 5) and the term is affine in r(o), so its maximum over the class sits
    at the class's smallest or largest r: the four class extremes of r give exactly the
    per-output maximum, not a bound, and an output moved off the class's reference ratio
    moves an extreme. They come from one signed array, s / pi = +r on class 0 and -r on
    class 1 (max and min: the largest r of each class), and its reciprocal (the smallest
    r of each, to two roundings: beta r eps, far below the tolerance's rounding floor).
    The mixture w = sum_o pi(o) F_o and c = sum_o pi(o) (P_G(o) - beta phi(o)) =
    sum_j P_j sum_{o in j} pi(o) - beta (sum pi - sum pi_ref) use the class sums of pi
    (sums over the outputs, grouped by the exact partition; or, when r is constant on each
    class to 8 eps, enclosed by R_j / r_hi and R_j / r_lo); P_j in longdouble from the
    level table, as ``one_context_check``. Nothing here reads the solve's masses, roots
    or factors.
    """
    n_deg = algo.group_size - 1
    if algo.is_limit or n_deg > _SHARED_MAX_DEGREE or PENALTIES[algo.penalty].stationary_map != "reciprocal":
        return None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.divide(split.signed_ref, pi, out=out)
        top0, bottom1 = float(np.max(ratio)), float(np.min(ratio))
        np.reciprocal(ratio, out=ratio)
        inv0, inv1 = float(np.max(ratio)), float(np.min(ratio))
    extremes = np.array([top0, bottom1, inv0, inv1])
    # (a NaN, 0/0 at pi_ref = 0, propagates through max and min)
    if not (bool(np.all(np.isfinite(extremes))) and top0 > 0 and inv0 > 0 and bottom1 < 0 and inv1 < 0):
        return None
    r_lo = np.array([1.0 / inv0, -1.0 / inv1])  # smallest r per class
    r_hi = np.array([top0, -bottom1])  # largest r per class
    if float(np.max(r_hi / r_lo)) <= 1.0 + spread_for_bounds:
        # sum_{o in j} pi(o) = sum_{o in j} pi_ref(o) / r(o) lies between R_j / r_hi and
        # R_j / r_lo: with the class ratios this close (a policy in reference ratios), the
        # middle is the class sum to 4 eps relative (plus R_j's own rounding, a pairwise
        # sum's few eps, as the sum over the outputs has): no pass over pi. That moves c by
        # at most about 4 eps (max |P_j| + beta), within the tolerance's rounding floor
        # (64 eps beta) and 1e-6 of its relative part (1e-9 of the term scale).
        cls_pi = 0.5 * (split.class_ref / r_hi + split.class_ref / r_lo)
        total = float(np.sum(cls_pi))
    else:
        total = float(np.sum(pi))
        # (c_einsum: the bool mask cast per block, no temporary; no BLAS threads)
        in_one = float(np.einsum("k,k->", pi, split.mask))
        cls_pi = np.array([total - in_one, in_one])
    w = cls_pi @ class_dist
    if not (w[0] >= 1e-290 and w[1] >= 0):
        return None
    ld = np.longdouble
    coef = binary_coefficients(levels.astype(float), algo, ld) @ class_dist.T.astype(ld)  # (G, 2)
    t = np.array([w[1]], ld) / ld(w[0])
    scale = power(np.array([w[0]], ld), n_deg)
    p_class = np.array([_horner_t(t, coef[:, j], scale)[0] for j in range(2)])
    beta = algo.beta
    c = float(cls_pi @ p_class) - beta * (total - split.ref_total)
    # P_j - c - beta phi = (P_j - c - beta) + beta r at the class extremes of r
    offset = p_class - c - beta
    res = float(np.max(np.abs(np.concatenate([offset + beta * r_lo, offset + beta * r_hi]))))
    u_lo, u_hi = float(np.min(r_lo)), float(np.max(r_hi))
    size = max(1.0, float(np.max(np.abs(p_class))), beta * abs(1.0 - u_lo), beta * abs(1.0 - u_hi))
    floor = 64 * np.finfo(float).eps * beta * max(1.0, u_hi)
    if not np.isfinite(res):
        return None
    return np.array([res]), np.array([c]), np.array([RESIDUAL_TOLERANCE * size + floor])
