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
exactly when its right side lies in the piece's range: ``searchsorted`` brackets it and
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

from grpo_align.theory.preference import LevelPreference, level_advantage_table
from grpo_align.theory.problem import Problem
from grpo_align.theory.stationary.boundary import has_boundary_roots
from grpo_align.theory.stationary.reduction import Reduced
from grpo_align.theory.stationary.residual import preference_2d, residual_given, residual_tolerance
from grpo_align.theory.stationary.result import RESIDUAL_TOLERANCE, StationaryResult, StationaryRoot

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
    n = coef.shape[0] - 1
    first = w1 <= w0
    big = np.where(first, w0, w1)
    t = np.where(first, w1, w0) / big
    extra = (slice(None),) + (None,) * (coef.ndim - 1)
    first_e, t_e = first[extra], t[extra]
    acc = np.where(first_e, coef[n], coef[0])
    for j in range(n - 1, -1, -1):
        acc = acc * t_e + np.where(first_e, coef[j], coef[n - j])
    return np.asarray(acc * (big**n)[extra])


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


def _side_value(penalty: str, beta: float, side: int, x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The context-free left side on one side of m1 = 1/2 (x the smaller mass)."""
    m_small, m_big = x, 1.0 - x
    m1, m2 = (m_small, m_big) if side == 0 else (m_big, m_small)
    if penalty == "k3":
        # side 0: R1 = m1 (1 - m2 D/beta); side 1: R2 = m2 (1 + m1 D/beta)
        return m1 * (1.0 - m2 * d / beta) if side == 0 else m2 * (1.0 + m1 * d / beta)
    return np.log(m1) - np.log(m2) - d / beta


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


def _pieces(x: np.ndarray, v: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split (x, v) at the sign changes of dv into monotone pieces (shared end points)."""
    dv = np.sign(np.diff(v))
    # a flat step continues the current direction
    for i in range(1, dv.size):
        if dv[i] == 0:
            dv[i] = dv[i - 1]
    turns = np.nonzero(dv[1:] * dv[:-1] < 0)[0] + 1
    bounds = [0, *turns.tolist(), x.size - 1]
    return [(x[a : b + 1], v[a : b + 1]) for a, b in itertools.pairwise(bounds)]


def _side_roots(
    shape: _Shape, penalty: str, beta: float, side: int, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """All roots x (the smaller mass) on one side for contexts with right sides ``target``.

    Returns (context index, x, iterations) over every root found.
    """
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
    ok = np.isfinite(v)
    x, v = x[ok], v[ok]
    ctx_all: list[np.ndarray] = []
    lo_all: list[np.ndarray] = []
    hi_all: list[np.ndarray] = []
    flo_all: list[np.ndarray] = []
    fhi_all: list[np.ndarray] = []
    for px, pv in _pieces(x, v):
        if px.size < 2:
            continue
        inc = pv[-1] >= pv[0]
        vv = pv if inc else pv[::-1]
        xx = px if inc else px[::-1]
        inside = (target >= vv[0]) & (target <= vv[-1])
        ctx = np.nonzero(inside)[0]
        k = np.clip(np.searchsorted(vv, target[ctx], side="right") - 1, 0, vv.size - 2)
        ctx_all.append(ctx)
        lo_all.append(xx[k])
        hi_all.append(xx[k + 1])
        flo_all.append(vv[k] - target[ctx])
        fhi_all.append(vv[k + 1] - target[ctx])
    if not ctx_all:
        return np.zeros(0, np.int64), np.zeros(0), 0
    ctx = np.concatenate(ctx_all)
    lo, hi = np.concatenate(lo_all), np.concatenate(hi_all)
    f_lo, f_hi = np.concatenate(flo_all), np.concatenate(fhi_all)
    roots, nit = _illinois(lambda p, idx: _eval(shape, penalty, beta, side, p) - target[ctx[idx]], lo, hi, f_lo, f_hi)
    return ctx, roots, nit


def _illinois(f: Any, lo: np.ndarray, hi: np.ndarray, f_lo: np.ndarray, f_hi: np.ndarray) -> tuple[np.ndarray, int]:
    """Roots of f(x, rows) in the brackets [lo, hi] (values f_lo, f_hi there), all at once
    (regula falsi, Illinois). The ends may come in either order."""
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
        done = (fu == 0) | (np.abs(hi - lo) <= 4e-16 * np.abs(u)) | ~np.isfinite(fu)
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
        or algo.penalty not in ("k3", "k2", "kl")
        or not algo.regularised
        or has_boundary_roots(red)
    ):
        return None
    n_ctx = problem.n_contexts
    active = red.ref_mass > 0
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
            members = two_idx[which == s]
            shape = _Shape(shapes[s, 0:2], shapes[s, 2:4], shapes[s, 4:6], algo)
            for side in (0, 1):
                if algo.penalty == "k3":
                    target = (r1 if side == 0 else r2)[members]
                else:
                    target = np.log(r1[members]) - np.log(r2[members])
                c_loc, x, it = _side_roots(shape, algo.penalty, algo.beta, side, target)
                nit = max(nit, it)
                ctx_parts.append(members[c_loc])
                m1_parts.append(x if side == 0 else 1.0 - x)
                m2_parts.append(1.0 - x if side == 0 else x)
                # dD/dm1 by central differences, the step relative to the smaller mass
                step = 1e-6 * x
                sgn = 1.0 if side == 0 else -1.0
                up, down = x + sgn * step, x - sgn * step
                d_up = shape.d(up, 1.0 - up) if side == 0 else shape.d(1.0 - up, up)
                d_down = shape.d(down, 1.0 - down) if side == 0 else shape.d(1.0 - down, down)
                dd_parts.append((d_up - d_down) / (2 * step))
                shape_parts.append(np.full(x.size, s))
    one = np.nonzero(~two)[0]
    ctx_parts.append(one)
    m1_parts.append(np.where(active[one, j1[one]], 1.0, 0.0))
    m2_parts.append(np.zeros(one.size))
    dd_parts.append(np.zeros(one.size))
    shape_parts.append(np.full(one.size, -1))
    ctx_r = np.concatenate(ctx_parts)
    m1_r, m2_r = np.concatenate(m1_parts), np.concatenate(m2_parts)
    dd_r, shape_r = np.concatenate(dd_parts), np.concatenate(shape_parts)
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
    levels by the polynomial of ``_binary_levels`` in longdouble, one table per shape;
    G = inf, large G and one-class contexts go through ``preference_2d`` itself.
    """
    pref = np.empty(pi.shape)
    general = np.ones(pi.shape[0], bool)
    if not algo.is_limit and algo.group_size <= _HORNER_MAX_G:
        ld = np.longdouble
        for s in range(shapes.shape[0]):
            rows = np.nonzero(shape_r == s)[0]
            general[rows] = False
            coef = _binary_coefficients(shapes[s, 4:6].astype(float), algo, ld)
            dist = problem.dist[rows].astype(ld)
            p = pi[rows].astype(ld)
            w0 = np.sum(p * dist[..., 0], axis=1)
            w1 = np.sum(p * dist[..., 1], axis=1)
            h = _binary_levels(w0, w1, coef)  # (n, 2)
            pref[rows] = np.asarray(dist[..., 0] * h[:, None, 0] + dist[..., 1] * h[:, None, 1], dtype=float)
    rest = np.nonzero(general)[0]
    if rest.size:
        pref[rest] = preference_2d(_take(problem, rest), algo, pi[rest])
    return pref


def _assemble(
    red: Reduced,
    ctx_r: np.ndarray,
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
    problem, algo = red.problem, red.algo
    n_ctx = problem.n_contexts
    counts = np.bincount(ctx_r, minlength=n_ctx)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(ctx_r.size) - start[ctx_r]
    n_r = ctx_r.size
    masses = np.zeros((n_r, red.n_classes))
    masses[np.arange(n_r), j1[ctx_r]] = m1_r
    # a one-class context has j2 == j1: its mass is already 1 (m2 = 0)
    masses[np.arange(n_r), j2[ctx_r]] += m2_r
    pi = np.take_along_axis(masses, red.class_of[ctx_r], axis=1) * red.within[ctx_r]
    mix = m1_r[:, None] * f1[ctx_r] + m2_r[:, None] * f2[ctx_r]
    sub = _take(problem, ctx_r)
    pref = _extended_preference(sub, algo, pi, shape_r, shapes)
    res, mult = residual_given(sub, algo, pi, pref)
    tol = residual_tolerance(sub, algo, pi, pref, RESIDUAL_TOLERANCE)
    good = res <= tol

    # stability (stability.stability's criterion on the scalar eigenvalue of two classes)
    eig = np.zeros(n_r)
    stable = np.ones(n_r, bool)
    two_r = two[ctx_r]
    if np.any(two_r):
        t = np.nonzero(two_r)[0]
        c, a1, a2 = ctx_r[t], m1_r[t], m2_r[t]
        dd, small = dd_r[t], np.minimum(a1, a2)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            r1, r2 = red.ref_mass[c, j1[c]], red.ref_mass[c, j2[c]]
            dphi = r2 / a2**2 + r1 / a1**2 if algo.penalty == "k3" else 1.0 / a1 + 1.0 / a2
            lam = 2.0 * (a1 * a2) ** 2 * (dd - algo.beta * dphi)
        scale = np.maximum(1.0, np.abs(lam)) * np.minimum(1.0, small)
        eig[t] = lam
        stable[t] = lam < -1e-7 * scale
        finite = np.isfinite(lam)
        stable[t] &= finite
        eig[t] = np.where(finite, lam, np.nan)
        has_eig = np.ones(n_r, bool)
        has_eig[t] = finite
    else:
        has_eig = np.ones(n_r, bool)
        t = np.zeros(0, np.int64)

    # the chosen root per context: stable, then any; nearest the reference mixture
    ref_point = problem.reference_mixture()[ctx_r]
    dist_ref = np.max(np.abs(mix - ref_point), axis=1)
    stable_known = np.where(has_eig, stable, True)  # stable is None counts as "not False"
    rank = np.where(good & stable_known, 0, np.where(good, 1, 2))
    order = np.lexsort((dist_ref, rank, ctx_r))
    first = np.zeros(n_r, bool)
    first[order[np.concatenate([[0], np.cumsum(counts)[:-1]])[counts > 0]]] = True
    chosen_idx = np.full(n_ctx, -1)
    chosen_idx[ctx_r[first]] = np.nonzero(first)[0]
    n_good = np.bincount(ctx_r, weights=good, minlength=n_ctx).astype(np.int64)
    n_stable = np.bincount(ctx_r, weights=good & has_eig & stable, minlength=n_ctx).astype(np.int64)
    success = n_good > 0

    policy = problem.ref.copy()
    residual = np.full(n_ctx, np.inf)
    have = chosen_idx >= 0
    # a failed context reports its smallest residual (the rank puts good roots first)
    best = np.full(n_ctx, -1)
    if n_r:
        by_res = np.lexsort((res, ctx_r))
        first_res = np.zeros(n_r, bool)
        first_res[by_res[np.concatenate([[0], np.cumsum(counts)[:-1]])[counts > 0]]] = True
        best[ctx_r[first_res]] = np.nonzero(first_res)[0]
    pick = np.where(success, chosen_idx, best)
    ok_pick = pick >= 0
    policy[ok_pick] = pi[pick[ok_pick]]
    residual[ok_pick] = res[pick[ok_pick]]
    del have

    status = np.where(success, "interior", "failed")
    messages = np.empty(n_ctx, dtype=object)
    messages[success & (n_good == 1)] = "converged: unique stationary policy found"
    multi = np.nonzero(success & (n_good > 1))[0]
    for n_g, n_s in {(int(n_good[c]), int(n_stable[c])) for c in multi.tolist()}:
        sel = multi[(n_good[multi] == n_g) & (n_stable[multi] == n_s)]
        messages[sel] = (
            f"converged: {n_g} stationary policies found ({n_s} stable); policy is the stable one nearest the reference"
        )
    for ci in np.nonzero(~success)[0].tolist():
        k_best = int(best[ci])
        messages[ci] = (
            f"no stationary policy found to tolerance {RESIDUAL_TOLERANCE:g} (relative to the size of the terms)"
            + (f" (best residual {res[k_best]:.2e})" if k_best >= 0 else "")
            + "; the expected dynamics may cycle or the solver did not converge"
            + ("; for G = inf they may also run to the boundary, where P_G diverges" if algo.is_limit else "")
        )

    starts = np.concatenate([[0], np.cumsum(counts)])
    on_face = np.any((pi == 0) & (sub.ref > 0), axis=1)

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
                    pi[i], mix[i], float(mult[i]), float(res[i]), st, eigs_opt, float(tol[i]), boundary=bool(on_face[i])
                )
            )
        return tuple(out)

    del slot
    return StationaryResult(
        policy=policy,
        success=success,
        status=tuple(status.tolist()),
        residual=residual,
        nit=nit,
        message=tuple(messages.tolist()),
        # a tuple as everywhere else for small batches; built on demand for large ones, where
        # making 10^6 root objects would cost more than the solve
        roots=tuple(build(i) for i in range(n_ctx)) if n_ctx <= LAZY_FROM else LazyRoots(build, counts),  # type: ignore[arg-type]
        algo=algo,
        problem=problem,
        method="scan",
    )
