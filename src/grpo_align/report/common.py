"""Small helpers shared by the report sections."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from grpo_align.theory import Problem

__all__ = ["binary_problem", "fmt", "fmt_small", "g_text", "line_fit", "r_squared"]


def binary_problem(p0: Iterable[float]) -> Problem:
    """A batch of binary questions: output 0 correct (reward 1) with reference prob p0[c]."""
    p = np.asarray(list(p0), dtype=float)
    return Problem.from_rewards(ref=np.stack([p, 1 - p], axis=1), rewards=np.tile([1.0, 0.0], (p.size, 1)))


def g_text(group_size: float) -> str:
    """Group size as table text: 8 or "inf"."""
    return "inf" if group_size == math.inf else str(int(group_size))


def fmt(x: Any, digits: int = 6) -> str:
    """A number for a table: fixed decimals for O(1) values, scientific for small or large ones."""
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        v = float(x)
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        if v == 0:
            return "0"
        if 1e-3 <= abs(v) < 1e4:
            return f"{v:.{digits}f}".rstrip("0").rstrip(".") if digits > 0 else f"{v:.0f}"
        return f"{v:.2e}"
    return str(x)


#: below this a difference is rounding: printed as "< 1e-15", never as a (possibly negative) number
ROUNDING_FLOOR = 1e-15


def fmt_small(x: float) -> str:
    """A non-negative quantity that rounding can push below 0 (1 - R², a gap): "< 1e-15" under the floor."""
    return f"< {ROUNDING_FLOOR:g}" if x < ROUNDING_FLOOR else f"{x:.1e}"


def line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of y against x."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(slope), float(intercept)


def r_squared(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Coefficient of determination of the (weighted) least-squares line of y on x."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    xm, ym = np.average(x, weights=w), np.average(y, weights=w)
    sxx = np.sum(w * (x - xm) ** 2)
    syy = np.sum(w * (y - ym) ** 2)
    sxy = np.sum(w * (x - xm) * (y - ym))
    if syy == 0:
        return 1.0
    return float(sxy**2 / (sxx * syy))
