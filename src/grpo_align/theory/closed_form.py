"""Explicit stationary policies (THEORY.md sections 5-8), each an independent route.

These do not call the general solver: they are the paper's closed forms and
one-dimensional equations, written from the formulas, so tests can hold the general
solver against them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import brentq

from grpo_align.errors import ConvergenceError, InputError
from grpo_align.theory.problem import Problem

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


def _check_p0_beta(p0: float, beta: float) -> None:
    if not (0 < p0 < 1):
        raise InputError("p0", f"expected a reference probability in (0, 1), got {p0}")
    if not (beta > 0 and math.isfinite(beta)):
        raise InputError("beta", f"expected beta > 0, got {beta}")


def binary_preference(p: float, group_size: int) -> tuple[float, float]:
    """(P_correct(p), P_wrong(p)) for a binary question, shift_scale with ddof 0.

    THEORY.md section 6: P_correct = sum_k Binom(k; G-1, p) sqrt((G-1-k)/(k+1)),
    P_wrong = -sum_k Binom(k; G-1, p) sqrt(k/(G-k)), k = number of other correct answers.
    """
    from scipy.stats import binom  # imported here: scipy.stats costs a second at start-up

    g = int(group_size)
    k = np.arange(g)
    pmf = binom.pmf(k, g - 1, p)
    return float(np.sum(pmf * np.sqrt((g - 1 - k) / (k + 1)))), float(-np.sum(pmf * np.sqrt(k / (g - k))))


def binary_policy(p0: float, beta: float, group_size: int, ddof: int = 0) -> float:
    """Stationary p for a binary question, shift_scale, k3: p (1 - P_correct(p)/beta) = p0.

    THEORY.md section 6. The left side increases in p where 1 - P_correct(p)/beta > 0, so
    the root is unique; ddof = 1 is ddof = 0 with beta * sqrt(G/(G-1)).
    """
    _check_p0_beta(p0, beta)
    g = int(group_size)
    if ddof == 1:
        beta = beta * math.sqrt(g / (g - 1))

    def excess(p: float) -> float:
        return p * (1.0 - binary_preference(p, g)[0] / beta) - p0

    # the valid region starts where the denominator turns positive: P_correct(p) < beta
    lo = 0.0
    if binary_preference(0.0, g)[0] >= beta:
        lo = brentq(lambda p: binary_preference(p, g)[0] - beta, 0.0, 1.0, xtol=1e-15)
    # xtol relative to p (rtol), not absolute: a root near 1e-13 needs digits below 1e-15
    return float(brentq(excess, lo, 1.0, xtol=1e-300, rtol=1e-15))


def binary_g2_policy(p0: float, beta: float, gamma: float = 1.0, ddof: int = 0) -> float:
    """G = 2, k3: p = ((1 - b) + sqrt((1 - b)^2 + 4 b p0)) / 2 with b = beta / (s gamma).

    THEORY.md section 6; gamma = Pr[a beats b] - Pr[b beats a] is the confidence margin of
    two answers with random rewards (gamma = 1 for a binary question), s = 1 for ddof 0 and
    1/sqrt(2) for ddof 1.
    """
    _check_p0_beta(p0, beta)
    if not (0 < gamma <= 1):
        raise InputError("gamma", f"expected a confidence margin in (0, 1], got {gamma}")
    s = 1.0 if ddof == 0 else 1.0 / math.sqrt(2.0)
    b = beta / (s * gamma)
    return _positive_root(1.0, b - 1.0, b * p0)


def _positive_root(a: float, b: float, c: float) -> float:
    """The positive root of a p^2 + b p - c = 0 (a, c > 0), without cancellation.

    (-b + sqrt(b^2 + 4ac)) / (2a) loses every digit when b > 0 and 4ac << b^2 (large beta,
    small p0: p ~ 1e-13 came out 2e-4 off); the conjugate form 2c / (b + sqrt(...)) does not.
    """
    disc = math.sqrt(b * b + 4 * a * c)
    return 2 * c / (b + disc) if b > 0 else (-b + disc) / (2 * a)


def binary_direct_kl_g2_policy(p0: float, beta: float, gamma: float = 1.0, ddof: int = 0) -> float:
    """G = 2, direct KL (k2 or exact): p/(1-p) = p0/(1-p0) exp(s gamma / beta) (section 6)."""
    _check_p0_beta(p0, beta)
    s = 1.0 if ddof == 0 else 1.0 / math.sqrt(2.0)
    odds = p0 / (1 - p0) * math.exp(s * gamma / beta)
    return odds / (1 + odds)


def binary_limit_policy(p0: float, beta: float) -> float:
    """G -> infinity, shift_scale, k3 (section 6):

    p = (2 p0 beta^2 + 1 + sqrt(1 + 4 p0 (1 - p0) beta^2)) / (2 (beta^2 + 1)).
    """
    _check_p0_beta(p0, beta)
    return (2 * p0 * beta**2 + 1 + math.sqrt(1 + 4 * p0 * (1 - p0) * beta**2)) / (2 * (beta**2 + 1))


def binary_shift_policy(p0: float, beta: float, group_size: float) -> float:
    """shift normalisation (no scale), k3: P_correct = a (1 - p), a = (G-1)/G (section 6).

    p (1 - a (1 - p)/beta) = p0 is the quadratic (a/beta) p^2 + (1 - a/beta) p - p0 = 0;
    its positive root. G = math.inf gives a = 1.
    """
    _check_p0_beta(p0, beta)
    a = 1.0 if group_size == math.inf else (group_size - 1) / group_size
    q = a / beta
    return _positive_root(q, 1 - q, p0)


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
    return _mirror_prox(ref, win_prob, 2 * tau, 1.0, "k2", tol, max_iter)


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
    margin = _margin(prob.win_prob[0]) * scale
    if not (beta > 0):
        raise InputError("beta", "expected a positive regularisation weight")
    if not (isinstance(max_iter, int) and max_iter >= 1):
        raise InputError("max_iter", f"expected an integer >= 1, got {max_iter!r}")
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
    """RLHF's optimum: logarithmic pooling pi(o) prop. to pi_ref(o) exp(E r(o) / beta) (section 5)."""
    if not isinstance(problem, Problem):
        raise InputError("problem", "expected a grpo_align.Problem")
    if not (isinstance(beta, (int, float)) and beta > 0 and math.isfinite(beta)):
        raise InputError("beta", f"expected beta > 0, got {beta!r}")
    reward = problem.expected_reward()
    logits = np.where(problem.ref > 0, np.log(np.where(problem.ref > 0, problem.ref, 1.0)) + reward / beta, -np.inf)
    pi = np.exp(logits - logits.max(axis=1, keepdims=True))
    return problem.squeeze(pi / pi.sum(axis=1, keepdims=True))
