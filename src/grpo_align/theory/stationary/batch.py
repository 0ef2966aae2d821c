"""Two reward classes per context, many contexts at once (THEORY.md sections 5, 9 and 11).

When every context has at most two active reward classes (a binary question: a correct
and a wrong class, rewards 1/0 or Bernoulli) and two reward levels, the stationary
conditions in the class mass m1 of the better class (m2 = 1 - m1, D = P_1 - P_2 =
sum_l (F_1(l) - F_2(l)) h_l(w), w = m1 F_1 + m2 F_2) are, with R the class reference masses:

    k3:     R1 = m1 (1 - m2 D / beta),   equivalently   R2 = m2 (1 + m1 D / beta),
    k2/kl:  log(m1 / m2) - D / beta = log(R1 / R2).

The left sides do not depend on the context except through (F_1, F_2, levels), its
"shape"; contexts of one shape share them. So each shape's left side is tabulated once on
a grid dense toward both ends (down to masses of 1e-300), its sampled extrema are zoomed
into (the folds of section 11), and within each monotone piece a context has a root
exactly when its right side lies in the piece's range: ``_bracket`` finds its table interval
(an interpolated index of the piece's values, checked, ``searchsorted`` for the misses) and
a vectorised Illinois iteration refines all brackets at once. Each root is carried as the
pair (m1, m2) with the smaller mass as the unknown, so a root next to a vertex (G = inf,
p0 -> 1: m2 ~ beta^2 (1 - p0)^2) keeps its relative precision, which the residual check
needs (its terms grow like pi_ref / pi).

Every root is then checked by the same residual code as the general path, and rated by
the same stability criterion (the Jacobian of the class-logit field, here the scalar
2 (m1 m2)^2 d(g1 - g2)/dm1). Problems this does not cover return None and take the
general path: more than two active classes in a context, more than ``MAX_SHAPES``
shapes, the abs penalty or no regularisation, and the faces of G = inf with direct KL.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np

from grpo_align.theory.penalties import PENALTIES
from grpo_align.theory.preference import LevelPreference, level_advantage_table
from grpo_align.theory.problem import Problem
from grpo_align.theory.stationary.assemble import choose_roots, outcome
from grpo_align.theory.stationary.boundary import has_boundary_roots
from grpo_align.theory.stationary.reduction import Reduced, TwoClassSplit
from grpo_align.theory.stationary.residual import preference_2d, residual_given, residual_tolerance
from grpo_align.theory.stationary.result import RESIDUAL_TOLERANCE, ROOT_KINDS, StationaryResult, StationaryRoot

__all__ = ["MAX_SHAPES", "batch_binary"]

#: Batches with more contexts get their ``roots`` as a ``LazyRoots`` (built when read).
LAZY_FROM = 4096

#: Most distinct (F_1, F_2, levels) shapes solved by tabulation; more take the general path.
MAX_SHAPES = 32


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
#: the polynomial evaluation of ``_binary_levels``; larger G use the enumeration of ``LevelPreference``.
_HORNER_MAX_G = 256


def _binary_levels(w0: np.ndarray, w1: np.ndarray, coef: np.ndarray) -> np.ndarray:
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


def _power(x: np.ndarray, n: int) -> np.ndarray:
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
    acc *= _power(big, n)[extra]
    return acc


def _binary_coefficients(levels: np.ndarray, algo: Any, dtype: Any = float) -> np.ndarray:
    """C(G - 1, k) table[k, l], (G, 2): the weights of ``_binary_levels`` (section 4)."""
    counts, log_coef, table = level_advantage_table(levels[None, :], algo, dtype)
    # counts[k] = (G - 1 - k, k): row k has k others at the high level
    order = np.argsort(counts[:, 1])
    return np.asarray(np.exp(log_coef[order])[:, None] * table[0][order])


class _Shape:
    """D(m1, m2) = P_1 - P_2 for contexts sharing F_1, F_2 (rows over two levels) and levels."""

    def __init__(self, f1: np.ndarray, f2: np.ndarray, levels: np.ndarray, algo: Any) -> None:
        self.f1, self.f2 = f1, f2
        self.levels, self.algo = levels, algo
        self.dfl = f1 - f2
        self.h = LevelPreference(levels[None, :], algo)
        self.coef: np.ndarray | None = None
        if not algo.is_limit and algo.group_size <= _HORNER_MAX_G:
            self.coef = _binary_coefficients(levels, algo) @ self.dfl

    def d(self, m1: np.ndarray, m2: np.ndarray) -> np.ndarray:
        # both mixture entries as sums of non-negative terms: neither loses the small side
        w0 = m1 * self.f1[0] + m2 * self.f2[0]
        w1 = m1 * self.f1[1] + m2 * self.f2[1]
        if self.coef is not None:
            return _binary_levels(w0, w1, self.coef)
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
            return a * _binary_levels(w0, w1, dcoef)
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


def _eval(shape: _Shape, penalty: str, beta: float, side: int, x: np.ndarray) -> np.ndarray:
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


def _side_table(shape: _Shape, penalty: str, beta: float, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _cached_table(shape: _Shape, penalty: str, beta: float, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_side_table``, remembered by (shape, GRPO, side): the table is context-free."""
    key = (shape.f1.tobytes(), shape.f2.tobytes(), shape.levels.tobytes(), shape.algo, penalty, beta, side)
    table = _TABLE_CACHE.get(key)
    if table is None:
        table = _side_table(shape, penalty, beta, side)
        if len(_TABLE_CACHE) >= _TABLE_CACHE_SIZE:
            _TABLE_CACHE.pop(next(iter(_TABLE_CACHE)))
        _TABLE_CACHE[key] = table
    return table


#: Pieces of the side tables with their value indexes (``_value_index``), kept like the tables.
_PIECE_CACHE: dict[tuple[Any, ...], list[tuple[int, int, bool, np.ndarray, np.ndarray]]] = {}


def _cached_pieces(
    shape: _Shape, penalty: str, beta: float, side: int
) -> list[tuple[int, int, bool, np.ndarray, np.ndarray]]:
    """The monotone pieces [a, b] of a side table: (a, b, increasing, values in increasing
    order, their ``_value_index``), remembered by (shape, GRPO, side) like the table."""
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
            pieces.append((a, b, inc, vv, _value_index(vv)))
        if len(_PIECE_CACHE) >= _TABLE_CACHE_SIZE:
            _PIECE_CACHE.pop(next(iter(_PIECE_CACHE)))
        _PIECE_CACHE[key] = pieces
    return pieces


def _value_index(vv: np.ndarray) -> np.ndarray:
    """The fractional table position of each node of a uniform grid over [vv[0], vv[-1]]
    (8 nodes per table entry): the inverse of the increasing table ``vv`` sampled on a
    uniform grid of its values, for ``_bracket``'s interpolated first guess."""
    nodes = 8 * vv.size
    with np.errstate(invalid="ignore", over="ignore"):  # a span beyond the double range: unused
        grid = np.linspace(vv[0], vv[-1], nodes + 1)
    return np.asarray(np.interp(grid, vv, np.arange(vv.size, dtype=float)))


def _bracket(vv: np.ndarray, index: np.ndarray, t: np.ndarray) -> np.ndarray:
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


def _side_roots(
    shape: _Shape, penalty: str, beta: float, side: int, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """All roots x (the smaller mass) on one side for contexts with right sides ``target``.

    Each root is bracketed on the table (``_bracket``), started at the inverse cubic
    Hermite interpolant of the table (error of order h^4 for the table's relative spacing h)
    and given one Newton step with the exact left side and the interpolant's slope; a root
    whose Newton correction is not negligible (next to a fold, where the inverse is not
    smooth) is refined by Illinois in its bracket. Returns (context index, x, iterations)
    over every root found.
    """
    x, v, slope = _cached_table(shape, penalty, beta, side)
    ctx_all: list[np.ndarray] = []
    k_all: list[np.ndarray] = []
    for a, b, inc, vv, index in _cached_pieces(shape, penalty, beta, side):
        lo_v, hi_v = vv[0], vv[-1]
        ctx = np.nonzero((target >= lo_v) & (target <= hi_v))[0]
        k = _bracket(vv, index, target[ctx])
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
        fixed, it = _illinois(
            lambda p, idx: _eval(shape, penalty, beta, side, p) - sub_t[idx],
            xa[bad],
            xb[bad],
            va[bad] - sub_t,
            vb[bad] - sub_t,
        )
        root[bad] = fixed
        nit += it
    return ctx, root, nit


def _illinois(
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


class LazyRoots(Sequence[tuple[StationaryRoot, ...]]):
    """The roots of every context, built into ``StationaryRoot`` objects only when read.

    ``counts`` (C,) is the number of roots per context without building any.
    """

    def __init__(self, build: Any, counts: np.ndarray) -> None:
        self._build = build
        self.counts = counts
        self._cache: dict[int, tuple[StationaryRoot, ...]] = {}

    def __len__(self) -> int:
        return int(self.counts.size)

    @overload
    def __getitem__(self, c: int) -> tuple[StationaryRoot, ...]: ...
    @overload
    def __getitem__(self, c: slice) -> Sequence[tuple[StationaryRoot, ...]]: ...
    def __getitem__(self, c: int | slice) -> Any:
        if isinstance(c, slice):
            return tuple(self[i] for i in range(*c.indices(len(self))))
        n = len(self)
        if not -n <= c < n:
            raise IndexError(f"context {c} out of range for {n} contexts")
        c = int(c) % n
        if c not in self._cache:
            self._cache[c] = self._build(c)
        return self._cache[c]

    def __iter__(self) -> Iterator[tuple[StationaryRoot, ...]]:
        return (self[c] for c in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Sequence)
            and len(other) == len(self)
            and all(a == b for a, b in zip(self, other, strict=False))
        )

    __hash__ = None  # type: ignore[assignment]


def _take(problem: Problem, idx: np.ndarray) -> Problem:
    """The contexts ``idx`` of a reward problem, without re-validating them."""
    sub = object.__new__(Problem)
    for name, value in (("ref", problem.ref[idx]), ("levels", problem.levels[idx]), ("dist", problem.dist[idx])):
        object.__setattr__(sub, name, value)
    object.__setattr__(sub, "batched", True)
    object.__setattr__(sub, "win_prob", None)
    return sub


def batch_binary(red: Reduced) -> StationaryResult | None:
    """All stationary policies of a problem whose contexts have at most two active reward
    classes and two levels, solved for all contexts at once (module docstring); None where
    the problem is not of that kind (the caller takes the general path)."""
    problem, algo = red.problem, red.algo
    if (
        not red.is_reward
        or problem.n_levels != 2
        or PENALTIES[algo.penalty].stationary_map is None
        or not algo.regularised
        or has_boundary_roots(red)
    ):
        return None
    n_ctx = problem.n_contexts
    active = red.ref_mass > 0
    shared = _shared_classes(red, active)
    if shared is not None:
        return _solve_roots(red, *shared)
    n_act = active.sum(axis=1)
    if np.any(n_act > 2):
        return None
    dist = red.dist
    high = np.where(active, dist[..., 1], -np.inf)
    # the better class (larger probability of the high level) is class 1
    j1 = np.argmax(high, axis=1)
    not_j1 = np.arange(red.n_classes)[None, :] != j1[:, None]
    j2 = np.where(n_act == 2, np.argmax(np.where(active & not_j1, 1.0, 0.0), axis=1), j1)
    two = n_act == 2
    rows = np.arange(n_ctx)
    f1, f2 = dist[rows, j1], dist[rows, j2]
    if np.any(two & (f1[:, 1] <= f2[:, 1])):
        return None
    key = np.concatenate([f1, f2, problem.levels], axis=1)
    key_two = key[two]
    if key_two.shape[0] and np.all(key_two == key_two[:1]):
        shapes, which = key_two[:1], np.zeros(key_two.shape[0], np.int64)
    elif key_two.shape[0]:
        shapes, which = np.unique(key_two, axis=0, return_inverse=True)
        which = which.ravel()
        if shapes.shape[0] > MAX_SHAPES:
            return None
    else:
        shapes, which = key_two[:0], np.zeros(0, np.int64)
    r1, r2 = red.ref_mass[rows, j1], red.ref_mass[rows, j2]
    return _solve_roots(red, j1, j2, f1, f2, two, shapes, which, r1, r2)


def _shared_classes(red: Reduced, active: np.ndarray) -> tuple[Any, ...] | None:
    """The arguments of ``_solve_roots`` without per-context indexing, when every context
    has the same two classes (a partition shared by reference, ``class_partition``), both
    active, and the same levels: one shape, class columns as views. None otherwise."""
    problem = red.problem
    n_ctx = problem.n_contexts
    if red.dist.strides[0] != 0 or red.n_classes != 2 or n_ctx < 2 or not bool(np.all(active)):
        return None
    levels = problem.levels
    if levels.strides[0] != 0 and not bool(np.all(levels == levels[:1])):
        return None
    row = red.dist[0]
    a, b = (0, 1) if row[0, 1] >= row[1, 1] else (1, 0)
    if row[a, 1] <= row[b, 1]:
        return None  # equal high-level probabilities: not two classes of this kind
    j1, j2 = np.full(n_ctx, a), np.full(n_ctx, b)
    f1, f2 = np.broadcast_to(row[a], (n_ctx, 2)), np.broadcast_to(row[b], (n_ctx, 2))
    shapes = np.concatenate([row[a], row[b], levels[0]])[None, :]
    two = np.ones(n_ctx, bool)
    which = np.zeros(n_ctx, np.int64)
    return j1, j2, f1, f2, two, shapes, which, red.ref_mass[:, a], red.ref_mass[:, b]


def _solve_roots(
    red: Reduced,
    j1: np.ndarray,
    j2: np.ndarray,
    f1: np.ndarray,
    f2: np.ndarray,
    two: np.ndarray,
    shapes: np.ndarray,
    which: np.ndarray,
    r1: np.ndarray,
    r2: np.ndarray,
) -> StationaryResult:
    """The roots of every context (class 1 the better, ``j1``/``j2`` its class slots), checked
    and assembled (``_assemble``)."""
    problem, algo = red.problem, red.algo
    reciprocal = PENALTIES[algo.penalty].stationary_map == "reciprocal"  # k3
    n_ctx = problem.n_contexts

    # roots: (context, m1, m2)
    ctx_parts: list[np.ndarray] = []
    m1_parts: list[np.ndarray] = []
    m2_parts: list[np.ndarray] = []
    dd_parts: list[np.ndarray] = []
    shape_parts: list[np.ndarray] = []
    nit = 0
    two_idx = np.nonzero(two)[0]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for s in range(shapes.shape[0]):
            members = two_idx if shapes.shape[0] == 1 else two_idx[which == s]
            every = members.size == n_ctx  # no indexing where every context takes part
            r1_s, r2_s = (r1, r2) if every else (r1[members], r2[members])
            shape = _Shape(shapes[s, 0:2], shapes[s, 2:4], shapes[s, 4:6], algo)
            log_ratio = None if reciprocal else np.log(r1_s / r2_s)
            for side in (0, 1):
                target = (r1_s if side == 0 else r2_s) if log_ratio is None else log_ratio
                c_loc, x, it = _side_roots(shape, algo.penalty, algo.beta, side, target)
                nit = max(nit, it)
                ctx_parts.append(c_loc if every else members[c_loc])
                m1_parts.append(x if side == 0 else 1.0 - x)
                m2_parts.append(1.0 - x if side == 0 else x)
                dd_parts.append(shape.slope(x, side))
                shape_parts.append(np.full(x.size, s))
    one = np.nonzero(~two)[0]
    if one.size:
        ctx_parts.append(one)
        m1_parts.append(np.where(red.ref_mass[one, j1[one]] > 0, 1.0, 0.0))
        m2_parts.append(np.zeros(one.size))
        dd_parts.append(np.zeros(one.size))
        shape_parts.append(np.full(one.size, -1))
    ctx_r = np.concatenate(ctx_parts)
    m1_r, m2_r = np.concatenate(m1_parts), np.concatenate(m2_parts)
    dd_r, shape_r = np.concatenate(dd_parts), np.concatenate(shape_parts)
    counts = np.bincount(ctx_r, minlength=n_ctx)
    if ctx_r.size == n_ctx and not np.any(counts != 1):
        # one root per context (the usual case): order by context with one scatter
        order = np.empty(n_ctx, np.int64)
        order[ctx_r] = np.arange(n_ctx)
        return _assemble(
            red, None, m1_r[order], m2_r[order], dd_r[order], shape_r[order], shapes, j1, j2, f1, f2, two, nit
        )
    # order roots by context, then by the mixture's high-level mass (as the general path)
    u = m1_r * f1[ctx_r, 1] + m2_r * f2[ctx_r, 1]
    order = np.lexsort((u, ctx_r))
    ctx_r, m1_r, m2_r, u = ctx_r[order], m1_r[order], m2_r[order], u[order]
    dd_r, shape_r = dd_r[order], shape_r[order]
    # drop duplicates (a root on the seam m1 = 1/2 or a piece end found twice)
    dup = np.zeros(ctx_r.size, bool)
    dup[1:] = (ctx_r[1:] == ctx_r[:-1]) & (np.abs(u[1:] - u[:-1]) <= 1e-10)
    keep = ~dup
    ctx_r, m1_r, m2_r = ctx_r[keep], m1_r[keep], m2_r[keep]
    dd_r, shape_r = dd_r[keep], shape_r[keep]
    return _assemble(red, ctx_r, m1_r, m2_r, dd_r, shape_r, shapes, j1, j2, f1, f2, two, nit)


def _extended_preference(
    problem: Problem, algo: Any, pi: np.ndarray, shape_r: np.ndarray, shapes: np.ndarray
) -> np.ndarray:
    """P_G(o | pi) (n, K) for the roots, in extended precision from the problem's own levels.

    The independent route of the residual check (``residual.preference_2d``), for two
    levels by the polynomial of ``_binary_levels`` in longdouble at the mixture of the
    policy's outputs, one table per shape;
    G = inf, large G and one-class contexts go through ``preference_2d`` itself.
    """
    pref = np.empty(pi.shape)
    general = np.ones(pi.shape[0], bool)
    if not algo.is_limit and algo.group_size <= _HORNER_MAX_G:
        ld = np.longdouble
        for s in range(shapes.shape[0]):
            rows = np.nonzero(shape_r == s)[0]
            general[rows] = False
            every = rows.size == pi.shape[0]
            coef = _binary_coefficients(shapes[s, 4:6].astype(float), algo, ld)
            dist = problem.dist if every else problem.dist[rows]
            p = pi if every else pi[rows]
            # the mixture w = sum_o pi(o) F_o from the outputs (sums of non-negative terms,
            # pairwise: relative error O(eps log K)); the polynomial, where rounding
            # accumulates, in longdouble
            w = np.einsum("ck,ckl->cl", p, dist).astype(ld)
            h = _binary_levels(w[:, 0], w[:, 1], coef).astype(float)  # (n, 2)
            pref[rows] = np.einsum("ckl,cl->ck", dist, h)
    rest = np.nonzero(general)[0]
    if rest.size:
        pref[rest] = preference_2d(_take(problem, rest), algo, pi[rest])
    return pref


def _assemble(
    red: Reduced,
    ctx_r: np.ndarray | None,
    m1_r: np.ndarray,
    m2_r: np.ndarray,
    dd_r: np.ndarray,
    shape_r: np.ndarray,
    shapes: np.ndarray,
    j1: np.ndarray,
    j2: np.ndarray,
    f1: np.ndarray,
    f2: np.ndarray,
    two: np.ndarray,
    nit: int,
) -> StationaryResult:
    """Check every root (residual in extended precision, stability), choose one per context
    and build the result. ``ctx_r`` None: exactly one root per context, in context order."""
    problem, algo = red.problem, red.algo
    reciprocal = PENALTIES[algo.penalty].stationary_map == "reciprocal"  # k3
    n_ctx = problem.n_contexts
    single = ctx_r is None
    if ctx_r is None:
        ctx_r = np.arange(n_ctx)
        counts = np.ones(n_ctx, np.int64)

        def take(a: np.ndarray) -> np.ndarray:
            return a

        sub = problem
    else:
        counts = np.bincount(ctx_r, minlength=n_ctx)
        idx = ctx_r

        def take(a: np.ndarray) -> np.ndarray:
            return a[idx]

        sub = _take(problem, ctx_r)
    n_r = ctx_r.size
    rows = np.arange(n_r)
    checked = None
    if single and f1.strides[0] == 0:
        # one shared partition of two active classes (``_shared_classes``): columns, no scatter
        masses = np.empty((n_r, 2))
        masses[:, int(j1[0])] = m1_r
        masses[:, int(j2[0])] = m2_r
        pi = red.policy(masses)
        checked = _shared_check(problem, algo, pi, shapes[0, 4:6])
    else:
        masses = np.zeros((n_r, red.n_classes))
        masses[rows, take(j1)] = m1_r
        # a one-class context has j2 == j1: its mass is already 1 (m2 = 0)
        masses[rows, take(j2)] += m2_r
        one_two = single and n_ctx == 1 and red.n_classes == 2 and bool(two[0])
        fast = _two_class_route(red, masses, shapes[0, 4:6]) if one_two and red.split is not None else None
        if fast is not None:
            pi, checked = fast
        else:
            pi = (
                red.policy(masses)
                if single
                else np.take_along_axis(masses, take(red.class_of), axis=1) * take(red.within)
            )
            if one_two and problem.n_outputs > 8:
                checked = _one_context_check(problem, algo, pi, red.class_of, red.dist[0], shapes[0, 4:6])
    # the roots' mixtures: built here when choosing among several roots, else per root on demand
    mix = None if single else m1_r[:, None] * take(f1) + m2_r[:, None] * take(f2)
    if checked is not None:
        res, mult, tol = checked
    else:
        pref = _extended_preference(sub, algo, pi, shape_r, shapes)
        res, mult = residual_given(sub, algo, pi, pref)
        tol = residual_tolerance(sub, algo, pi, pref, RESIDUAL_TOLERANCE)
    good = res <= tol

    # stability (stability.stability's criterion on the scalar eigenvalue of two classes)
    eig = np.zeros(n_r)
    stable = np.ones(n_r, bool)
    has_eig = np.ones(n_r, bool)
    two_r = take(two)
    every = bool(np.all(two_r))
    t = rows if every else np.nonzero(two_r)[0]
    if t.size:
        if every:  # no copies through an index of every root
            c, a1, a2, dd = ctx_r, m1_r, m2_r, dd_r
        else:
            c, a1, a2, dd = ctx_r[t], m1_r[t], m2_r[t], dd_r[t]
        small = np.minimum(a1, a2)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if single and f1.strides[0] == 0:  # the shared path: class columns
                r1, r2 = red.ref_mass[:, int(j1[0])], red.ref_mass[:, int(j2[0])]
            else:
                r1, r2 = red.ref_mass[c, j1[c]], red.ref_mass[c, j2[c]]
            # d(phi_2 - phi_1)/d m: k3 phi = 1 - R/m, k2 and kl phi = log(m/R) (+ 1)
            dphi = r2 / a2**2 + r1 / a1**2 if reciprocal else 1.0 / a1 + 1.0 / a2
            lam = 2.0 * (a1 * a2) ** 2 * (dd - algo.beta * dphi)
        scale = np.maximum(1.0, np.abs(lam)) * np.minimum(1.0, small)
        finite = np.isfinite(lam)
        if every:
            stable, has_eig = (lam < -1e-7 * scale) & finite, finite
            eig = np.where(finite, lam, np.nan)
        else:
            stable[t] = (lam < -1e-7 * scale) & finite
            eig[t] = np.where(finite, lam, np.nan)
            has_eig[t] = finite

    # (the shared check ran only on policies with every output in the support)
    on_face = np.zeros(n_r, bool) if checked is not None else np.any((pi == 0) & (sub.ref > 0), axis=1)
    kind = np.where(on_face, ROOT_KINDS.index("boundary"), ROOT_KINDS.index("interior"))
    stable_code = np.where(has_eig, stable.astype(np.int64), -1)
    if single:
        mix_d = pol_d = np.zeros(n_r)
    else:
        assert mix is not None
        mix_d = np.max(np.abs(mix - take(problem.reference_mixture())), axis=1)
        pol_d = np.max(np.abs(pi - sub.ref), axis=1)
    choice = choose_roots(ctx_r, good, stable_code, kind, mix_d, pol_d, res, n_ctx)
    if single:
        policy, residual = pi, res
    else:
        pick = choice.picked
        ok_pick = pick >= 0
        policy = problem.ref.copy()
        residual = np.full(n_ctx, np.inf)
        policy[ok_pick] = pi[pick[ok_pick]]
        residual[ok_pick] = res[pick[ok_pick]]
    status, messages = outcome(choice, kind, res, algo)
    starts = np.concatenate([[0], np.cumsum(counts)])

    def build(c: int) -> tuple[StationaryRoot, ...]:
        out = []
        for i in range(int(starts[c]), int(starts[c + 1])):
            eigs = np.array([eig[i]], dtype=complex) if two_r[i] else np.zeros(0)
            st: bool | None = bool(stable[i])
            if two_r[i] and not has_eig[i]:
                st, eigs_opt = None, None
            else:
                eigs_opt = eigs
            out.append(
                StationaryRoot(
                    pi[i],
                    mix[i] if mix is not None else m1_r[i] * f1[i] + m2_r[i] * f2[i],
                    float(mult[i]),
                    float(res[i]),
                    st,
                    eigs_opt,
                    float(tol[i]),
                    kind="boundary" if on_face[i] else "interior",
                )
            )
        return tuple(out)

    return StationaryResult(
        policy=policy,
        success=choice.success,
        status=status,
        residual=residual,
        nit=nit,
        message=messages,
        # a tuple as everywhere else for small batches; built on demand for large ones, where
        # making 10^6 root objects would cost more than the solve
        roots=tuple(build(i) for i in range(n_ctx)) if n_ctx <= LAZY_FROM else LazyRoots(build, counts),  # type: ignore[arg-type]
        algo=algo,
        problem=problem,
        method="scan",
    )


#: Largest G - 1 for which ``_shared_check`` evaluates P_G in doubles in y = w1 - w0: the
#: power-basis coefficients stay of the size of the table (their absolute sum was 3.9 for
#: G = 16), so the evaluation keeps about 1e-15 of the term scale.
_SHARED_MAX_DEGREE = 15


def _shared_check(
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
    coef = _binary_coefficients(levels.astype(float), algo, ld) @ dist0.T.astype(ld)  # (G, K)
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


def _one_context_check(
    problem: Problem, algo: Any, pi: np.ndarray, class_of: np.ndarray, class_dist: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``_shared_check`` for one context with many outputs in two classes, (1, K) arrays.

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
    coef = _binary_coefficients(levels.astype(float), algo, ld) @ class_dist.T.astype(ld)  # (G, J)
    t = np.array([w[1]], ld) / ld(w[0])
    scale = _power(np.array([w[0]], ld), n_deg)
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
#: ``_two_class_check`` takes the class sums of pi from the class masses and the extremes
#: (a policy built as f_j pi_ref has a spread of 1-2 eps: two roundings).
_SPREAD_FOR_BOUNDS = 8 * float(np.finfo(float).eps)


def _two_class_route(
    red: Reduced, masses: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """The policy of class masses ``masses`` (1, 2) and its residual check, for one context
    whose partition is a ``TwoClassSplit`` (k3); None where this route does not apply (the
    caller builds pi with ``Reduced.policy`` and checks it by ``_one_context_check``).

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
    checked = _two_class_check(red.problem, red.algo, pi, split, red.dist[0], levels, out=scratch)
    if checked is None:
        return None
    return pi[None, :], checked


def _two_class_check(
    problem: Problem,
    algo: Any,
    pi: np.ndarray,
    split: TwoClassSplit,
    class_dist: np.ndarray,
    levels: np.ndarray,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``_one_context_check`` (k3) for a policy ``pi`` (K,) >= 0 of one context split in two
    classes (``split``, class rows ``class_dist`` (2, 2)): residual, multiplier and
    tolerance as (1,) arrays, or None (an output with pi = 0 or pi_ref = 0, a mixture near
    a vertex, another penalty). ``out``: a (K,) scratch array to use (overwritten).

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
    level table, as ``_one_context_check``. Nothing here reads the solve's masses, roots
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
    if float(np.max(r_hi / r_lo)) <= 1.0 + _SPREAD_FOR_BOUNDS:
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
    coef = _binary_coefficients(levels.astype(float), algo, ld) @ class_dist.T.astype(ld)  # (G, 2)
    t = np.array([w[1]], ld) / ld(w[0])
    scale = _power(np.array([w[0]], ld), n_deg)
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
