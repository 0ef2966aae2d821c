"""The reference model's probability of a correct answer from sampled counts (Jeffreys prior).

With ``correct`` right answers out of ``n`` completions sampled from the reference policy
and the Jeffreys prior Beta(1/2, 1/2), the posterior of p0 is
Beta(correct + 1/2, n - correct + 1/2). Its mean (correct + 1/2) / (n + 1) is the point
estimate: never exactly 0 or 1, so every prompt keeps an interior reference policy, and
close to correct / n once n is large. The interval is the posterior's equal-tailed one.
"""

from __future__ import annotations

import numpy as np

__all__ = ["INTERVAL_LEVEL", "jeffreys_interval", "jeffreys_mean"]

#: probability mass of the reported interval
INTERVAL_LEVEL = 0.95


def jeffreys_mean(n: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Posterior mean of p0 under the Jeffreys prior: (correct + 1/2) / (n + 1)."""
    return (np.asarray(correct, dtype=float) + 0.5) / (np.asarray(n, dtype=float) + 1.0)


def jeffreys_interval(
    n: np.ndarray, correct: np.ndarray, level: float = INTERVAL_LEVEL
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed ``level`` interval of Beta(correct + 1/2, n - correct + 1/2).

    Returns (low, high): the (1 - level)/2 and (1 + level)/2 quantiles.
    """
    from scipy.stats import beta  # imported here: scipy.stats costs a second at start-up

    a = np.asarray(correct, dtype=float) + 0.5
    b = np.asarray(n, dtype=float) - np.asarray(correct, dtype=float) + 0.5
    tail = (1.0 - level) / 2.0
    return beta.ppf(tail, a, b), beta.ppf(1.0 - tail, a, b)
