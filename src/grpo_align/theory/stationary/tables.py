"""Tabulated two-class maps and the brackets of their roots (THEORY.md sections 5 and 11).

The batch driver (``batch``) solves many two-class contexts at once through these pieces:
the level polynomial of P_G for two reward levels (``binary_levels``, by Horner in the
smaller mass), one table per context shape of each side of the stationary condition on a
grid dense toward both ends (``Shape``, ``cached_pieces``: its monotone pieces with the
sampled extrema zoomed into), the table interval of every target (``bracket``: an
interpolated index checked against the table, ``searchsorted`` for the misses), and a
vectorised Illinois iteration refining every bracket at once (``illinois``).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from grpo_align.theory.penalties import PENALTIES
from grpo_align.theory.preference import LevelPreference, level_advantage_table

__all__ = [
    "HORNER_MAX_G",
    "Shape",
    "binary_coefficients",
    "binary_levels",
    "bracket",
    "cached_pieces",
    "illinois",
    "power",
    "side_roots",
    "value_index",
]


def _grid() -> np.ndarray:
    """The smaller class mass x in (0, 1/2]: 64 points per decade from 1e-300, dense above 1e-3.

    Context-free, so a fine grid is cheap; it makes the brackets narrow (relative width
    about 4e-2 and 1e-4 above 1e-3), and the refinement short.
    """
    logs = 10.0 ** np.linspace(-300, -3, 297 * 64 + 1)
    lin = np.linspace(1e-3, 0.5, 2**14)
    return np.unique(np.concatenate([logs, lin]))


_GRID = _grid()


#: Largest G whose binomial weights C(G - 1, k) times the table stay far from overflow in
#: the polynomial evaluation of ``binary_levels``; larger G use the enumeration of ``LevelPreference``.
HORNER_MAX_G = 256


def binary_levels(w0: np.ndarray, w1: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """sum_k coef[k] w0^(n-k) w1^k (n = len(coef) - 1) for every entry, in the dtype of w0.

    THEORY.md section 4 for L = 2: the Binomial(G - 1, w1) expectation of a table column,
    with coef[k] = C(G - 1, k) table[k]. Horner in the ratio t <= 1 of the smaller to the
    larger of w0, w1 (the coefficients reversed when w1 is the larger), times the larger
    to the power n: no term overflows and both ends of the simplex keep their digits.
    ``coef`` may carry trailing axes (several columns at once).
    """
    first = w1 <= w0
    n_first = int(np.count_nonzero(first))
    if n_first == first.size:
        return _horner(w1, w0, coef)
    if n_first == 0:
        return _horner(w0, w1, coef[::-1])
    # mixed: split the entries once (not a choice per Horner step)
    out = np.empty(w0.shape + coef.shape[1:], dtype=np.result_type(w0, coef))
    a, b = np.nonzero(first)[0], np.nonzero(~first)[0]
    out[a] = _horner(w1[a], w0[a], coef)
    out[b] = _horner(w0[b], w1[b], coef[::-1])
    return out


def power(x: np.ndarray, n: int) -> np.ndarray:
    """x**n for a small integer n by repeated squaring (cheaper than ``np.power`` on floats)."""
    out = np.ones_like(x)
    base = x.copy()
    while n:
        if n & 1:
            out *= base
        n >>= 1
        if n:
            base *= base
    return out


def _horner(small: np.ndarray, big: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """sum_j coef[n - j] small^j big^(n-j) for small <= big entrywise: Horner in small/big."""
    n = coef.shape[0] - 1
    extra = (slice(None),) + (None,) * (coef.ndim - 1)
    t = (small / big)[extra]
    acc = np.empty(small.shape + coef.shape[1:], dtype=np.result_type(small, coef))
    acc[...] = coef[n]
    for j in range(n - 1, -1, -1):
        acc *= t
        acc += coef[j]
    acc *= power(big, n)[extra]
    return acc


def binary_coefficients(levels: np.ndarray, algo: Any, dtype: Any = float) -> np.ndarray:
    """C(G - 1, k) table[k, l], (G, 2): the weights of ``binary_levels`` (section 4)."""
    counts, log_coef, table = level_advantage_table(levels[None, :], algo, dtype)
    # counts[k] = (G - 1 - k, k): row k has k others at the high level
    order = np.argsort(counts[:, 1])
    return np.asarray(np.exp(log_coef[order])[:, None] * table[0][order])


class Shape:
    """D(m1, m2) = P_1 - P_2 for contexts sharing F_1, F_2 (rows over two levels) and levels."""

    def __init__(self, f1: np.ndarray, f2: np.ndarray, levels: np.ndarray, algo: Any) -> None:
        self.f1, self.f2 = f1, f2
        self.levels, self.algo = levels, algo
        self.dfl = f1 - f2
        self.h = LevelPreference(levels[None, :], algo)
        self.coef: np.ndarray | None = None
        if not algo.is_limit and algo.group_size <= HORNER_MAX_G:
            self.coef = binary_coefficients(levels, algo) @ self.dfl

    def d(self, m1: np.ndarray, m2: np.ndarray) -> np.ndarray:
        # both mixture entries as sums of non-negative terms: neither loses the small side
        w0 = m1 * self.f1[0] + m2 * self.f2[0]
        w1 = m1 * self.f1[1] + m2 * self.f2[1]
        if self.coef is not None:
            return binary_levels(w0, w1, self.coef)
        w = np.stack([w0, w1], axis=-1)
        h = self.h(w.reshape(1, -1, 2)).reshape(w.shape)
        return np.asarray(h[..., 0] * self.dfl[0] + h[..., 1] * self.dfl[1])

    def slope(self, x: np.ndarray, side: int) -> np.ndarray:
        """dD/dm1 at the roots x (the smaller mass on ``side``), m2 = 1 - m1.

        With a = F_1(high) - F_2(high), dw1/dm1 = a = -dw0/dm1, and the derivative of
        sum_k c_k w0^(n-k) w1^k is a sum_k ((k+1) c_{k+1} - (n-k) c_k) w0^(n-1-k) w1^k, a
        polynomial of the same kind; without the polynomial (G = inf, large G) by central
        differences with the step relative to the smaller mass.
        """
        m1, m2 = (x, 1.0 - x) if side == 0 else (1.0 - x, x)
        if self.coef is not None and self.coef.size > 1:
            c, n = self.coef, self.coef.size - 1
            k = np.arange(n)
            dcoef = (k + 1) * c[1:] - (n - k) * c[:-1]
            a = self.f1[1] - self.f2[1]
            w0 = m1 * self.f1[0] + m2 * self.f2[0]
            w1 = m1 * self.f1[1] + m2 * self.f2[1]
            return a * binary_levels(w0, w1, dcoef)
        step = _DIFF_STEP * x
        sgn = 1.0 if side == 0 else -1.0
        up, down = x + sgn * step, x - sgn * step
        d_up = self.d(up, 1.0 - up) if side == 0 else self.d(1.0 - up, up)
        d_down = self.d(down, 1.0 - down) if side == 0 else self.d(1.0 - down, down)
        return np.asarray((d_up - d_down) / (2 * step))


def _side_value(penalty: str, beta: float, side: int, x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The context-free left side on one side of m1 = 1/2 (x the smaller mass)."""
    m_small, m_big = x, 1.0 - x
    m1, m2 = (m_small, m_big) if side == 0 else (m_big, m_small)
    if PENALTIES[penalty].stationary_map == "reciprocal":  # k3
        # side 0: R1 = m1 (1 - m2 D/beta); side 1: R2 = m2 (1 + m1 D/beta)
        return m1 * (1.0 - m2 * d / beta) if side == 0 else m2 * (1.0 + m1 * d / beta)
    # one logarithm of the ratio (rounded once) rather than two
    return np.log(m_small / m_big) * (1.0 if side == 0 else -1.0) - d / beta


def _eval(shape: Shape, penalty: str, beta: float, side: int, x: np.ndarray) -> np.ndarray:
    m1, m2 = (x, 1.0 - x) if side == 0 else (1.0 - x, x)
    return _side_value(penalty, beta, side, x, shape.d(m1, m2))


def _zoom_extremum(f: Any, lo: float, hi: float, is_max: bool) -> float:
    """Locate an extremum of a context-free f inside [lo, hi]: 33 points, eight times."""
    best = 0.5 * (lo + hi)
    for _ in range(8):
        pts = np.linspace(lo, hi, 33)
        vals = f(pts)
        k = int(np.argmax(vals) if is_max else np.argmin(vals))
        best = float(pts[k])
        lo, hi = float(pts[max(k - 1, 0)]), float(pts[min(k + 1, 32)])
    return best


def _pieces(v: np.ndarray) -> list[tuple[int, int]]:
    """Split v at the sign changes of dv into monotone pieces [a, b] (shared end points)."""
    dv = np.sign(np.diff(v))
    # a flat step continues the current direction
    for i in np.nonzero(dv == 0)[0].tolist():
        if i > 0:
            dv[i] = dv[i - 1]
    turns = np.nonzero(dv[1:] * dv[:-1] < 0)[0] + 1
    bounds = [0, *turns.tolist(), v.size - 1]
    return list(itertools.pairwise(bounds))


#: Relative step of the central differences for the table's slopes and for dD/dm1.
_DIFF_STEP = 1e-6


#: A second Newton correction below this (relative to the smaller mass) ends the
#: refinement: the error after it is this times the slope's relative error.
_NEWTON_DONE = 1e-11


def _side_table(shape: Shape, penalty: str, beta: float, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The left side v(x) on one side, tabulated on ``_GRID`` with every sampled fold zoomed
    into and put on the grid, and its slope dv/dx (central differences); finite entries only."""
    x = _GRID
    v = _eval(shape, penalty, beta, side, x)
    # refine every sampled interior extremum (a fold) and put it on the grid
    dv = np.diff(v)
    ext = np.nonzero(dv[:-1] * dv[1:] < 0)[0] + 1
    extra = [
        _zoom_extremum(
            lambda p: _eval(shape, penalty, beta, side, p), float(x[i - 1]), float(x[i + 1]), bool(dv[i - 1] > 0)
        )
        for i in ext.tolist()
    ]
    if extra:
        x = np.unique(np.concatenate([x, extra]))
        v = _eval(shape, penalty, beta, side, x)
    step = _DIFF_STEP * x
    slope = (_eval(shape, penalty, beta, side, x + step) - _eval(shape, penalty, beta, side, x - step)) / (2 * step)
    ok = np.isfinite(v)
    return x[ok], v[ok], slope[ok]


#: Side tables kept for reuse (a stream of batches with one GRPO: predict's chunks).
_TABLE_CACHE: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


_TABLE_CACHE_SIZE = 32


def _cached_table(shape: Shape, penalty: str, beta: float, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_side_table``, remembered by (shape, GRPO, side): the table is context-free."""
    key = (shape.f1.tobytes(), shape.f2.tobytes(), shape.levels.tobytes(), shape.algo, penalty, beta, side)
    table = _TABLE_CACHE.get(key)
    if table is None:
        table = _side_table(shape, penalty, beta, side)
        if len(_TABLE_CACHE) >= _TABLE_CACHE_SIZE:
            _TABLE_CACHE.pop(next(iter(_TABLE_CACHE)))
        _TABLE_CACHE[key] = table
    return table


#: Pieces of the side tables with their value indexes (``value_index``), kept like the tables.
_PIECE_CACHE: dict[tuple[Any, ...], list[tuple[int, int, bool, np.ndarray, np.ndarray]]] = {}


def cached_pieces(
    shape: Shape, penalty: str, beta: float, side: int
) -> list[tuple[int, int, bool, np.ndarray, np.ndarray]]:
    """The monotone pieces [a, b] of a side table: (a, b, increasing, values in increasing
    order, their ``value_index``), remembered by (shape, GRPO, side) like the table."""
    key = (shape.f1.tobytes(), shape.f2.tobytes(), shape.levels.tobytes(), shape.algo, penalty, beta, side)
    pieces = _PIECE_CACHE.get(key)
    if pieces is None:
        _, v, _ = _cached_table(shape, penalty, beta, side)
        pieces = []
        for a, b in _pieces(v):
            if b <= a:
                continue
            inc = bool(v[b] >= v[a])
            vv = v[a : b + 1] if inc else v[a : b + 1][::-1]
            pieces.append((a, b, inc, vv, value_index(vv)))
        if len(_PIECE_CACHE) >= _TABLE_CACHE_SIZE:
            _PIECE_CACHE.pop(next(iter(_PIECE_CACHE)))
        _PIECE_CACHE[key] = pieces
    return pieces


def value_index(vv: np.ndarray) -> np.ndarray:
    """The fractional table position of each node of a uniform grid over [vv[0], vv[-1]]
    (8 nodes per table entry): the inverse of the increasing table ``vv`` sampled on a
    uniform grid of its values, for ``bracket``'s interpolated first guess."""
    nodes = 8 * vv.size
    with np.errstate(invalid="ignore", over="ignore"):  # a span beyond the double range: unused
        grid = np.linspace(vv[0], vv[-1], nodes + 1)
    return np.asarray(np.interp(grid, vv, np.arange(vv.size, dtype=float)))


def bracket(vv: np.ndarray, index: np.ndarray, t: np.ndarray) -> np.ndarray:
    """k with vv[k] <= t < vv[k + 1] (k = vv.size - 2 at the top end) for t in [vv[0], vv[-1]]:
    ``clip(searchsorted(vv, t, "right") - 1, 0, vv.size - 2)``, without the binary search.

    The first guess interpolates the position on ``index`` (a uniform grid of the values);
    where the table is smooth on the grid's scale it lands in the right interval, which is
    checked against the table itself; the other targets (next to a fold, where several
    entries share a grid cell) take ``searchsorted``. Exact either way.
    """
    top = vv.size - 2
    nodes = index.size - 1
    span = float(vv[-1]) - float(vv[0])  # (Python floats: inf past the range, no warning)
    if t.size == 0 or not (np.isfinite(span) and span > 0) or top < 1:
        return np.clip(np.searchsorted(vv, t, side="right") - 1, 0, max(top, 0))
    u = t - vv[0]
    u *= nodes / span
    cell = np.minimum(u.astype(np.int64), nodes - 1)
    u -= cell
    lo = index[cell]
    guess = index[cell + 1]
    guess -= lo
    guess *= u
    guess += lo
    k = np.minimum(guess.astype(np.int64), top)
    ok = vv[k] <= t
    ok &= (t < vv[k + 1]) | (k == top)
    bad = np.nonzero(~ok)[0]
    if bad.size:
        k[bad] = np.clip(np.searchsorted(vv, t[bad], side="right") - 1, 0, top)
    return k


def _hermite_inverse(
    t: np.ndarray, x0: np.ndarray, x1: np.ndarray, v0: np.ndarray, v1: np.ndarray, s0: np.ndarray, s1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """x with v(x) = t on a table interval (x0, v0 slope s0) .. (x1, v1 slope s1), monotone.

    The cubic Hermite interpolant of the inverse x(v): with u = (t - v0) / (v1 - v0) in [0, 1]
    and the end slopes in units of the secant, m = (v1 - v0) / ((x1 - x0) dv/dx), clipped to
    [0, 3] so that the cubic stays monotone inside the bracket (Fritsch and Carlson; a fold
    at an end has dv/dx = 0 there). Returns x and dv/dx of the interpolant at x, for a
    Newton step.
    """
    dv, dx = v1 - v0, x1 - x0
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.clip((t - v0) / dv, 0.0, 1.0)
        sec = dv / dx
        m0 = np.clip(sec / s0, 0.0, 3.0)
        m1 = np.clip(sec / s1, 0.0, 3.0)
    m0 = np.where(np.isfinite(m0), m0, 1.0)
    m1 = np.where(np.isfinite(m1), m1, 1.0)
    u2 = u * u
    u3 = u2 * u
    h = (3.0 * u2 - 2.0 * u3) + m0 * (u3 - 2.0 * u2 + u) + m1 * (u3 - u2)
    dh = (6.0 * u - 6.0 * u2) + m0 * (3.0 * u2 - 4.0 * u + 1.0) + m1 * (3.0 * u2 - 2.0 * u)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = sec / dh
    return x0 + dx * h, slope


def side_roots(
    shape: Shape, penalty: str, beta: float, side: int, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """All roots x (the smaller mass) on one side for contexts with right sides ``target``.

    Each root is bracketed on the table (``bracket``), started at the inverse cubic
    Hermite interpolant of the table (error of order h^4 for the table's relative spacing h)
    and given one Newton step with the exact left side and the interpolant's slope; a root
    whose Newton correction is not negligible (next to a fold, where the inverse is not
    smooth) is refined by Illinois in its bracket. Returns (context index, x, iterations)
    over every root found.
    """
    x, v, slope = _cached_table(shape, penalty, beta, side)
    ctx_all: list[np.ndarray] = []
    k_all: list[np.ndarray] = []
    for a, b, inc, vv, index in cached_pieces(shape, penalty, beta, side):
        lo_v, hi_v = vv[0], vv[-1]
        ctx = np.nonzero((target >= lo_v) & (target <= hi_v))[0]
        k = bracket(vv, index, target[ctx])
        # back to table indices of the interval's lower-x end
        k_all.append(a + k if inc else b - 1 - k)
        ctx_all.append(ctx)
    if not ctx_all:
        return np.zeros(0, np.int64), np.zeros(0), 0
    ctx = np.concatenate(ctx_all) if len(ctx_all) > 1 else ctx_all[0]
    k = np.concatenate(k_all) if len(k_all) > 1 else k_all[0]
    t = target[ctx]
    xa, xb, va, vb = x[k], x[k + 1], v[k], v[k + 1]
    start, est_slope = _hermite_inverse(t, xa, xb, va, vb, slope[k], slope[k + 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        # two Newton steps with the exact left side and the interpolant's slope: each
        # multiplies the error by the slope's relative error (order h^3)
        mid = start - (_eval(shape, penalty, beta, side, start) - t) / est_slope
        root = mid - (_eval(shape, penalty, beta, side, mid) - t) / est_slope
    lo, hi = np.minimum(xa, xb), np.maximum(xa, xb)
    good = (np.abs(root - mid) <= _NEWTON_DONE * mid) & (root >= lo) & (root <= hi)
    nit = 2
    bad = np.nonzero(~good)[0]
    if bad.size:
        sub_t = t[bad]
        fixed, it = illinois(
            lambda p, idx: _eval(shape, penalty, beta, side, p) - sub_t[idx],
            xa[bad],
            xb[bad],
            va[bad] - sub_t,
            vb[bad] - sub_t,
        )
        root[bad] = fixed
        nit += it
    return ctx, root, nit


def illinois(
    f: Any, lo: np.ndarray, hi: np.ndarray, f_lo: np.ndarray, f_hi: np.ndarray, atol: float = 0.0
) -> tuple[np.ndarray, int]:
    """Roots of f(x, rows) in the brackets [lo, hi] (values f_lo, f_hi there), all at once
    (regula falsi, Illinois), to 4e-16 relative plus ``atol``. The ends may come in either
    order."""
    rows = np.arange(lo.size)
    root = np.where(f_lo == 0, lo, np.where(f_hi == 0, hi, 0.5 * (lo + hi)))
    todo = rows[(f_lo != 0) & (f_hi != 0) & (np.sign(f_lo) != np.sign(f_hi))]
    lo, hi, f_lo, f_hi = lo[todo], hi[todo], f_lo[todo], f_hi[todo]
    side = np.zeros(todo.size)
    nit = 0
    for it in range(1, 200):
        if todo.size == 0:
            break
        nit = it
        u = np.clip((lo * f_hi - hi * f_lo) / (f_hi - f_lo), np.minimum(lo, hi), np.maximum(lo, hi))
        u = np.where(np.isfinite(u), u, 0.5 * (lo + hi))
        fu = f(u, todo)
        left = np.sign(fu) == np.sign(f_lo)
        f_hi = np.where(left & (side == 1), f_hi * 0.5, f_hi)
        f_lo = np.where(~left & (side == -1), f_lo * 0.5, f_lo)
        lo, f_lo = np.where(left, u, lo), np.where(left, fu, f_lo)
        hi, f_hi = np.where(left, hi, u), np.where(left, f_hi, fu)
        side = np.where(left, 1, -1)
        # relative to the smaller mass: a root near a vertex keeps its digits
        done = (fu == 0) | (np.abs(hi - lo) <= 4e-16 * np.abs(u) + atol) | ~np.isfinite(fu)
        root[todo[done]] = np.where(fu[done] == 0, u[done], 0.5 * (lo[done] + hi[done]))
        keep = ~done
        todo, lo, hi, f_lo, f_hi, side = todo[keep], lo[keep], hi[keep], f_lo[keep], f_hi[keep], side[keep]
    root[todo] = 0.5 * (lo + hi)
    return root, nit
