"""Explicit stationary policies (THEORY.md sections 5-8), each an independent route.

These do not call the general solver: they are the paper's closed forms and
one-dimensional equations, written from the formulas, so tests can hold the general
solver against them.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from scipy.optimize import brentq

from grpo_align.errors import ConvergenceError, InputError
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import _short

__all__ = [
    "binary_direct_kl_g2_policy",
    "binary_g2_policy",
    "binary_limit_policy",
    "binary_policy",
    "binary_preference",
    "binary_shift_policy",
    "nash_policy",
    "pairwise_policy",
    "rlhf_policy",
]


#: the largest finite G the binary sums take: P_correct is a sum over the O(sqrt(G)) counts
#: that carry the binomial's mass (about 10 ms per evaluation at the cap), and a larger G is
#: within O(1/G) of the limit ``math.inf`` (THEORY.md eq. 10.15)
MAX_BINARY_GROUP_SIZE = 10**7


def _real(value: Any) -> bool:
    """A real number that is not a bool (numpy scalars included)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_positive(name: str, value: Any) -> float:
    """A finite number > 0 (not a bool, not a string), as a float."""
    if not _real(value) or not (math.isfinite(value) and value > 0):
        raise InputError(name, f"expected a finite number > 0, got {_short(value)}")
    return float(value)


def _check_p0_beta(p0: float, beta: float) -> tuple[float, float]:
    if not _real(p0) or not (0 < p0 < 1):
        raise InputError("p0", f"expected a reference probability in (0, 1), got {_short(p0)}")
    return float(p0), _check_positive("beta", beta)


def _check_ddof(ddof: Any) -> int:
    """0 (population std) or 1 (sample std); bools and strings are refused, not read as 0."""
    if not _real(ddof) or ddof not in (0, 1):
        raise InputError("ddof", f"expected 0 (population std) or 1 (sample std), got {_short(ddof)}")
    return int(ddof)


def _check_group_size(group_size: Any, ddof: int = 0, cap: float = math.inf) -> float:
    """G: an integer >= 1 (>= 2 with the sample std, ddof 1) or ``math.inf`` (the limit).

    G = 1 with ddof 0 is defined: a group of one has advantage 0 (its reward is the group's
    mean, and shift_scale sets A = 0 when every reward is equal), so P_correct = 0 and
    p = p0. With ddof 1 the sample std of one reward divides by G - 1 = 0.
    """
    g = group_size
    if _real(g) and g == math.inf:
        return math.inf
    least = 2 if ddof == 1 else 1
    expected = f"expected an integer >= {least} or math.inf (the large-group limit)"
    # compared as numbers, never converted to float first: 10**400 must not overflow
    if not _real(g) or not (isinstance(g, numbers.Integral) or (math.isfinite(g) and g == int(g))):
        raise InputError("group_size", f"{expected}, got {_short(g)}")
    if g < least:
        why = "; the sample std (ddof 1) of one reward is undefined" if ddof == 1 and g == 1 else ""
        raise InputError("group_size", f"{expected}, got {_short(g)}{why}")
    if g > cap:
        raise InputError(
            "group_size",
            f"at most {int(cap):,} for the exact binary sum, got {_short(g)}; "
            "pass math.inf for the large-group limit (within O(1/G) of it)",
        )
    return int(g)


def _binomial_window(n: int, p: float) -> np.ndarray:
    """The counts k of Binom(n, p) that carry its mass, within 20 sd + 200 of the mean.

    Bernstein's inequality, P(|K - np| >= t) <= 2 exp(-t^2 / (2 (np(1-p) + t/3))), puts
    less than 2 exp(-200) of the mass outside (t = 20 sd + 200); for n <= 200 the window is
    every count 0..n, the sum as written.
    """
    mean = n * p
    spread = 20.0 * math.sqrt(n * p * (1.0 - p)) + 200.0
    lo = max(0, math.floor(mean - spread))
    hi = min(n, math.ceil(mean + spread))
    return np.arange(lo, hi + 1)


def binary_preference(p: float, group_size: float) -> tuple[float, float]:
    """(P_correct(p), P_wrong(p)) for a binary question, shift_scale with ddof 0.

    THEORY.md section 6: P_correct = sum_k Binom(k; G-1, p) sqrt((G-1-k)/(k+1)),
    P_wrong = -sum_k Binom(k; G-1, p) sqrt(k/(G-k)), k = number of other correct answers.
    The sum runs over the counts that carry the binomial's mass (O(sqrt(G)) of them), so
    G up to ``MAX_BINARY_GROUP_SIZE`` costs milliseconds. G = math.inf is the limit
    (section 6): P_correct = sqrt((1-p)/p), P_wrong = -sqrt(p/(1-p)).
    """
    from scipy.stats import binom  # imported here: scipy.stats costs a second at start-up

    if not _real(p) or not (0 <= p <= 1):
        raise InputError("p", f"expected a probability in [0, 1], got {_short(p)}")
    p = float(p)
    g = _check_group_size(group_size, cap=MAX_BINARY_GROUP_SIZE)
    if g == math.inf:
        correct = math.inf if p == 0 else math.sqrt((1 - p) / p)
        wrong = -math.inf if p == 1 else -math.sqrt(p / (1 - p))
        return correct, wrong
    n = int(g)
    k = _binomial_window(n - 1, p)
    pmf = binom.pmf(k, n - 1, p)
    return float(np.sum(pmf * np.sqrt((n - 1 - k) / (k + 1)))), float(-np.sum(pmf * np.sqrt(k / (n - k))))


def binary_policy(p0: float, beta: float, group_size: float, ddof: int = 0) -> float:
    """Stationary p for a binary question, shift_scale, k3: p (1 - P_correct(p)/beta) = p0.

    THEORY.md section 6. The left side increases in p where 1 - P_correct(p)/beta > 0, so
    the root is unique; ddof = 1 is ddof = 0 with beta * sqrt(G/(G-1)).

    ``group_size`` is an integer G >= 2 up to ``MAX_BINARY_GROUP_SIZE`` (G = 1 with ddof 0
    is defined: a group of one has advantage 0, so p = p0), or ``math.inf``: the limit
    ``binary_limit_policy``, where ddof drops out (sqrt(G/(G-1)) -> 1).
    """
    p0, beta = _check_p0_beta(p0, beta)
    ddof = _check_ddof(ddof)
    g = _check_group_size(group_size, ddof, cap=MAX_BINARY_GROUP_SIZE)
    if g == math.inf:
        return binary_limit_policy(p0, beta)
    if g == 1:
        return p0
    if ddof == 1:
        beta = beta * math.sqrt(g / (g - 1))
    n = int(g)

    def excess(p: float) -> float:
        return p * (1.0 - binary_preference(p, n)[0] / beta) - p0

    # the valid region starts where the denominator turns positive: P_correct(p) < beta
    lo = 0.0
    if binary_preference(0.0, n)[0] >= beta:
        lo = brentq(lambda p: binary_preference(p, n)[0] - beta, 0.0, 1.0, xtol=1e-15)
        # brentq's lo may land just above the true edge, where a tiny p0 (1e-300) leaves
        # excess(lo) >= 0 and no bracket: step below the edge, where excess < 0
        step = 1e-15
        while lo > 0 and excess(lo) >= 0:
            lo = max(0.0, lo - step)
            step *= 2
    # xtol relative to p (rtol), not absolute: a root near 1e-13 needs digits below 1e-15
    return float(brentq(excess, lo, 1.0, xtol=1e-300, rtol=1e-15))


def _margin_scale(gamma: Any, ddof: Any) -> float:
    """s gamma of the G = 2 forms: the confidence margin times 1 (ddof 0) or 1/sqrt(2) (ddof 1)."""
    if not _real(gamma) or not (0 < gamma <= 1):
        raise InputError("gamma", f"expected a confidence margin in (0, 1], got {_short(gamma)}")
    s = 1.0 if _check_ddof(ddof) == 0 else 1.0 / math.sqrt(2.0)
    return s * float(gamma)


def binary_g2_policy(p0: float, beta: float, gamma: float = 1.0, ddof: int = 0) -> float:
    """G = 2, k3: p = ((1 - b) + sqrt((1 - b)^2 + 4 b p0)) / 2 with b = beta / (s gamma).

    THEORY.md section 6; gamma = Pr[a beats b] - Pr[b beats a] is the confidence margin of
    two answers with random rewards (gamma = 1 for a binary question), s = 1 for ddof 0 and
    1/sqrt(2) for ddof 1.
    """
    p0, beta = _check_p0_beta(p0, beta)
    b = beta / _margin_scale(gamma, ddof)
    if math.isinf(b):  # beta near the float maximum: p = p0 + O(1/b), p0 in doubles
        return p0
    return _positive_root(1.0, b - 1.0, b * p0)


def _positive_root(a: float, b: float, c: float) -> float:
    """The positive root of a p^2 + b p - c = 0 (a, c > 0), without cancellation.

    (-b + sqrt(b^2 + 4ac)) / (2a) loses every digit when b > 0 and 4ac << b^2 (large beta,
    small p0: p ~ 1e-13 came out 2e-4 off); the conjugate form 2c / (b + sqrt(...)) does not.
    sqrt(b^2 + 4ac) is hypot(b, 2 sqrt(a) sqrt(c)), and 2c / (b + disc) is c / (b/2 + disc/2):
    neither squares nor sums overflow for b up to the float maximum.
    """
    disc = math.hypot(b, 2 * math.sqrt(a) * math.sqrt(c))
    return c / (0.5 * b + 0.5 * disc) if b > 0 else (0.5 * -b + 0.5 * disc) / a


def binary_direct_kl_g2_policy(p0: float, beta: float, gamma: float = 1.0, ddof: int = 0) -> float:
    """G = 2, direct KL (k2 or exact): p/(1-p) = p0/(1-p0) exp(s gamma / beta) (section 6).

    Computed as p = p0 / (p0 + (1 - p0) exp(-s gamma / beta)): the exponent is negative, so
    nothing overflows at small beta (p -> 1 where exp underflows).
    """
    p0, beta = _check_p0_beta(p0, beta)
    return p0 / (p0 + (1.0 - p0) * math.exp(-_margin_scale(gamma, ddof) / beta))


def binary_limit_policy(p0: float, beta: float) -> float:
    """G -> infinity, shift_scale, k3 (section 6):

    p = (2 p0 beta^2 + 1 + sqrt(1 + 4 p0 (1 - p0) beta^2)) / (2 (beta^2 + 1)).

    Every term is positive, so p has a relative error of a few ulps; where p > 1/2 it is
    returned as 1 - q with the complement written without cancellation,
    1 - p = (1 - p0) beta^2 (2 (1 - p0) + x/(1 + s)) / ((beta^2 + 1)(1 + s)),
    x = 4 p0 (1 - p0) beta^2, s = sqrt(1 + x), so p never rounds above 1. For beta > 1 both
    are divided by beta^2 (nothing overflows up to the float maximum, where p -> p0); for
    beta <= 1, beta^2 may underflow to 0, which gives the limit p -> 1.
    """
    p0, beta = _check_p0_beta(p0, beta)
    if beta <= 1:
        b2 = beta * beta
        x = 4 * p0 * (1 - p0) * b2
        s = math.sqrt(1 + x)
        p = (2 * p0 * b2 + 1 + s) / (2 * (b2 + 1))
        q = (1 - p0) * b2 * (2 * (1 - p0) + x / (1 + s)) / ((b2 + 1) * (1 + s))
    else:  # the same over beta^2: inv = 1/beta, t = s/beta
        inv = 1.0 / beta
        i2 = inv * inv
        y = 4 * p0 * (1 - p0)
        t = math.sqrt(i2 + y)
        p = (2 * p0 + i2 + inv * t) / (2 * (1 + i2))
        q = (1 - p0) * (2 * (1 - p0) * inv + y / (inv + t)) / ((1 + i2) * (inv + t))
    return 1.0 - q if q < 0.5 else p


def binary_shift_policy(p0: float, beta: float, group_size: float) -> float:
    """shift normalisation (no scale), k3: P_correct = a (1 - p), a = (G-1)/G (section 6).

    p (1 - a (1 - p)/beta) = p0 is the quadratic (a/beta) p^2 + (1 - a/beta) p - p0 = 0;
    its positive root. G = math.inf gives a = 1; G = 1 gives a = 0 (a group of one has
    advantage 0) and p = p0. Where a/beta > 1 the quadratic is divided by a/beta first, so
    a small beta does not overflow.
    """
    p0, beta = _check_p0_beta(p0, beta)
    g = _check_group_size(group_size)
    a = 1.0 if g == math.inf else (g - 1) / g
    q = a / beta
    if q <= 1:
        return _positive_root(q, 1 - q, p0)
    r = beta / a
    return _positive_root(1.0, r - 1.0, p0 * r)


def _margin(win_prob: np.ndarray) -> np.ndarray:
    return win_prob - win_prob.T


def pairwise_policy(
    ref: Any, win_prob: Any, beta: float, scale: float = 1.0, tol: float = 1e-14, max_iter: int = 200_000
) -> np.ndarray:
    """GRPO at G = 2 with k3 for a preference matrix: pi = pi_ref / (1 - (s (M pi) - c)/beta).

    THEORY.md section 7. The map pi -> s M pi is monotone (M antisymmetric) and the reverse
    KL is strictly convex, so the equilibrium is unique; it is found here by the
    extragradient method on the variational inequality in the log-domain form
    (mirror-prox), independent of the general solver.

    Raises
    ------
    ConvergenceError
        When the iteration has not moved less than ``tol`` after ``max_iter`` steps.
    """
    return _mirror_prox(ref, win_prob, beta, scale, "k3", tol, max_iter)


def nash_policy(ref: Any, win_prob: Any, tau: float, tol: float = 1e-14, max_iter: int = 200_000) -> np.ndarray:
    """Regularised Nash equilibrium of NLHF (Munos et al. 2023): pi prop. to pi_ref exp((P pi)/tau).

    P[o, o'] = Pr[o beats o'] + ties/2 (Munos's preference, P + P^T = 1), so
    (P pi)(o) = ((M pi)(o) + 1)/2 and the constant drops out: GRPO at G = 2 with a direct-KL
    penalty and weight beta is this equilibrium with tau = beta / (2 s) (section 7).

    Raises
    ------
    ConvergenceError
        When the iteration has not moved less than ``tol`` after ``max_iter`` steps.
    """
    return _mirror_prox(ref, win_prob, 2 * _check_positive("tau", tau), 1.0, "k2", tol, max_iter)


def _mirror_prox(
    ref: Any, win_prob: Any, beta: float, scale: float, penalty: str, tol: float, max_iter: int
) -> np.ndarray:
    """Extragradient (mirror-prox) for the G = 2 equilibrium of THEORY.md section 7.

    Iterates until successive policies differ by less than ``tol`` in every entry; raises
    ``ConvergenceError`` after ``max_iter`` iterations otherwise.
    """
    prob = Problem.from_preference(ref, win_prob)  # validates
    if prob.win_prob is None:  # pragma: no cover - from_preference always sets it
        raise InputError("win_prob", "expected a pairwise win-probability matrix")
    ref_v = prob.ref[0]
    beta = _check_positive("beta", beta)
    margin = _margin(prob.win_prob[0]) * _check_positive("scale", scale)
    tol = _check_positive("tol", tol)
    if isinstance(max_iter, bool) or not (isinstance(max_iter, numbers.Integral) and max_iter >= 1):
        raise InputError("max_iter", f"expected an integer >= 1, got {_short(max_iter)}")
    support = ref_v > 0

    def operator(pi: np.ndarray) -> np.ndarray:
        # gradient of the regularised payoff in pi: s (M pi) - beta phi
        phi = (1 - ref_v / pi) if penalty == "k3" else np.log(pi / ref_v)
        return np.where(support, margin @ pi - beta * phi, 0.0)

    def step(pi: np.ndarray, grad: np.ndarray, eta: float) -> np.ndarray:
        logits = np.where(support, np.log(np.where(support, pi, 1.0)) + eta * grad, -np.inf)
        out = np.exp(logits - logits.max())
        return out / out.sum()

    pi = ref_v.copy()
    eta = 0.5 / (np.max(np.abs(margin)) + beta * 4 + 1e-12)
    change = math.inf
    for _ in range(max_iter):
        half = step(pi, operator(pi), eta)
        new = step(pi, operator(half), eta)
        change = float(np.max(np.abs(new - pi)))
        if change < tol:
            return new
        pi = new
    raise ConvergenceError(
        f"mirror-prox did not converge in {max_iter} iterations (last change {change:.2e} > tol {tol:g})"
    )


def rlhf_policy(problem: Problem, beta: float) -> np.ndarray:
    """RLHF's optimum: logarithmic pooling pi(o) prop. to pi_ref(o) exp(E r(o) / beta) (section 5).

    Computed in log space from each output's reward gap to the best reward the reference
    can sample, (E r(o) - r_max) / beta <= 0, so exp never overflows. The rewards are
    scaled by a power of two (exact) before the gap is taken and the gap is divided by beta
    before it is scaled back, so rewards of +-1e308 (whose difference overflows) give the
    limit policy, not NaN.
    """
    if not isinstance(problem, Problem):
        raise InputError("problem", "expected a grpo_align.Problem")
    beta = _check_positive("beta", beta)
    reward = problem.expected_reward()
    support = problem.ref > 0
    # per context: 2**-e scales the largest |E r| on the support into [1/2, 1)
    top = np.max(np.where(support, np.abs(reward), 0.0), axis=1, keepdims=True)
    e = np.frexp(top)[1]
    scaled = np.ldexp(reward, -e)
    gap = scaled - np.max(np.where(support, scaled, -np.inf), axis=1, keepdims=True)  # in [-2, 0]
    with np.errstate(over="ignore", under="ignore"):
        step = np.ldexp(gap, e) / beta  # -inf where the gap itself overflows
        step = np.where(np.isfinite(step), step, np.ldexp(gap / beta, e))
        log_ref = np.log(np.where(support, problem.ref, 1.0))
        logits = np.where(support, log_ref + step, -np.inf)
        pi = np.exp(logits - logits.max(axis=1, keepdims=True))
    return problem.squeeze(pi / pi.sum(axis=1, keepdims=True))
