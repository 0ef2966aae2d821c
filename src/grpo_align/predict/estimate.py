"""The reference model's probability of a correct answer from sampled counts (Jeffreys prior).

With ``correct`` right answers out of ``n`` completions sampled from the reference policy
and the Jeffreys prior Beta(1/2, 1/2), the posterior of p0 is
Beta(correct + 1/2, n - correct + 1/2). Its mean (correct + 1/2) / (n + 1) is the point
estimate: never exactly 0 or 1, so every prompt keeps an interior reference policy, and
close to correct / n once n is large. The interval is the posterior's equal-tailed one.

Counts are whole numbers 0 <= correct <= n <= 2**53 (``MAX_COUNT``); anything else is an
``InputError`` naming the field. Beyond 2**53 consecutive integers have no exact float and
the Beta quantiles lose their order (n 1e20, correct 3e19 gave p0_low above the mean).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grpo_align.errors import InputError

__all__ = ["INTERVAL_LEVEL", "MAX_COUNT", "jeffreys_interval", "jeffreys_mean"]

#: probability mass of the reported interval
INTERVAL_LEVEL = 0.95

#: the largest count taken: 2**53, beyond which not every integer is a float
MAX_COUNT = 2**53


def _at(arr: np.ndarray, bad: np.ndarray, name: str) -> tuple[str, Any]:
    """The field (``name`` or ``name[i]`` for an array, Python's index) and value of the first bad entry."""
    if arr.ndim == 0:
        return name, arr.item()
    i = np.unravel_index(int(np.argmax(bad)), arr.shape)
    index = ", ".join(str(int(j)) for j in i)
    return f"{name}[{index}]", arr[i].item()


def _counts(name: str, value: Any) -> np.ndarray:
    """Whole numbers in [0, 2**53] as a float array; bools, text, NaN, fractions refused."""
    expected = f"expected a whole number of completions, 0 to 2**53 ({MAX_COUNT})"
    arr = np.asarray(value)
    if arr.dtype == object:  # Python ints beyond int64, or mixed values
        items = arr.reshape(-1).tolist()
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise InputError(name, f"{expected}, got {item!r}")
            if isinstance(item, int) and not 0 <= item <= MAX_COUNT:
                shown = f"an integer of {len(str(abs(item)))} digits" if abs(item) >= 10**20 else str(item)
                raise InputError(name, f"{expected}, got {shown}")
        arr = np.asarray(items, dtype=float).reshape(arr.shape)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(name, f"{expected}, got values of type {arr.dtype}")
    if np.issubdtype(arr.dtype, np.integer):
        bad = (arr < 0) | (arr > MAX_COUNT)
    else:
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(arr) | (arr < 0) | (arr > MAX_COUNT) | (arr != np.floor(arr))
    if np.any(bad):
        field, shown = _at(arr, bad, name)
        raise InputError(field, f"{expected}, got {shown!r}")
    return arr.astype(float)


def _check(n: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated (n, correct) as float arrays of one shape, 0 <= correct <= n <= 2**53."""
    n_arr = _counts("n", n)
    c_arr = _counts("correct", correct)
    try:
        n_arr, c_arr = np.broadcast_arrays(n_arr, c_arr)
    except ValueError:
        raise InputError(
            "correct", f"has shape {c_arr.shape} for n of shape {n_arr.shape}; expected one count per n"
        ) from None
    over = c_arr > n_arr
    if np.any(over):
        field, c = _at(c_arr, over, "correct")
        _, total = _at(n_arr, over, "n")
        raise InputError(field, f"{c:g} > n = {total:g}; expected 0 <= correct <= n")
    return n_arr, c_arr


def jeffreys_mean(n: Any, correct: Any) -> np.ndarray:
    """Posterior mean of p0 under the Jeffreys prior: (correct + 1/2) / (n + 1).

    ``n`` and ``correct`` are whole numbers (arrays broadcast), 0 <= correct <= n <= 2**53;
    n = 0 gives the prior's mean 1/2.
    """
    n_arr, c_arr = _check(n, correct)
    return (c_arr + 0.5) / (n_arr + 1.0)


def jeffreys_interval(n: Any, correct: Any, level: float = INTERVAL_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed ``level`` interval of Beta(correct + 1/2, n - correct + 1/2).

    Returns (low, high): the (1 - level)/2 and (1 + level)/2 quantiles. For level >= 0.37
    (the default 0.95 included) low <= ``jeffreys_mean`` <= high: a Beta(a, b) with
    a, b >= 1/2 has between 0.317 and 0.683 of its mass below its mean (the extremes are
    the Gamma(1/2) limit, P(chi2_1 < 1) = 0.6827); tested over counts up to 2**53.
    """
    from scipy.stats import beta  # imported here: scipy.stats costs a second at start-up

    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise InputError("level", f"expected a probability in (0, 1), got {level!r}")
    n_arr, c_arr = _check(n, correct)
    a = c_arr + 0.5
    b = n_arr - c_arr + 0.5
    tail = (1.0 - level) / 2.0
    return beta.ppf(tail, a, b), beta.ppf(1.0 - tail, a, b)
