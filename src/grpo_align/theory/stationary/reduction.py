"""Reduction of a problem to its reward classes (THEORY.md section 5).

Outputs with the same reward distribution form a class; P_G is the same on a class, so a
stationary policy keeps reference ratios inside each class, and P_G depends on pi only
through the mixture w = sum_o pi(o) F_o. Given w (or, for a pairwise-preference problem,
the class masses themselves), the class masses follow from the penalty's formula with the
scalar c chosen so that they sum to 1; a stationary policy is a fixed point of that map.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from grpo_align.errors import InputError
from grpo_align.theory.penalties import PENALTIES
from grpo_align.theory.preference import LevelPreference
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO

__all__ = ["PEEL_MAX", "Reduced", "TwoClassSplit", "class_partition", "penalty_masses", "reward_classes"]


def penalty_masses(name: str) -> Callable[[np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray]]:
    """The solver of the penalty's stationary map for frozen P (THEORY.md section 5):
    ``_k3_masses`` for the reciprocal map (k3), ``_kl_masses`` for the exponential one
    (k2, kl; the record's ``stationary_map``). Each takes (pref, ref_mass, beta) and returns
    the class masses and the multiplier c."""
    return _k3_masses if PENALTIES[name].stationary_map == "reciprocal" else _kl_masses


def _k3_masses(pref: np.ndarray, ref_mass: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Class masses m_j = R_j / (1 - (P_j - c)/beta) with c such that sum_j m_j = 1.

    THEORY.md section 5 (k3). f(c) = sum_j R_j beta / (beta - P_j + c) - 1 is convex and
    decreasing for c > max_j P_j - beta (all denominators positive); Newton from a point
    where f >= 0 increases monotonically to the unique root, so the result is always a
    probability vector with positive denominators. Shapes (..., J).

    Two classes are solved in closed form (``_k3_two``), more by Newton (``_k3_newton``)
    with the classes as columns (J is small, the rows many): a sum over J is J
    elementwise passes, not a reduction over a short last axis; an inactive class
    (R_j = 0) gets q_j = -inf, so its denominator is +inf and its terms 0 with no mask.
    Rows go in blocks of ``_K3_BLOCK`` (the work arrays stay in cache).
    """
    shape = np.broadcast_shapes(pref.shape, ref_mass.shape)
    n_cls = shape[-1]
    pref2 = np.broadcast_to(pref, shape).reshape(-1, n_cls)
    ref2 = np.broadcast_to(ref_mass, shape).reshape(-1, n_cls)
    n_rows = pref2.shape[0]
    if n_rows <= _K3_BLOCK:
        masses, x = _k3_rows(pref2, ref2, beta)
    else:
        # blocks of rows: the work arrays stay in cache (about twice as fast at 10^7 rows)
        masses, x = np.empty((n_rows, n_cls)), np.empty(n_rows)
        for i in range(0, n_rows, _K3_BLOCK):
            masses[i : i + _K3_BLOCK], x[i : i + _K3_BLOCK] = _k3_rows(
                pref2[i : i + _K3_BLOCK], ref2[i : i + _K3_BLOCK], beta
            )
    return masses.reshape(shape), (beta * x).reshape(shape[:-1])


#: Rows per block of ``_k3_rows``.
_K3_BLOCK = 1 << 14


def _k3_two(pref2: np.ndarray, ref2: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_k3_rows`` for two classes in closed form; the third value marks the rows it solved.

    With d_j = 1 - (P_j - c)/beta the condition R_1/d_1 + R_2/d_2 = 1 and d_2 = d_1 + delta,
    delta = (P_1 - P_2)/beta >= 0 (class 1 the one with the larger P), is the quadratic
    d_1^2 + (delta - S) d_1 - R_1 delta = 0, S = R_1 + R_2, whose positive root is taken in
    the form without cancellation: ((S - delta) + r) / 2 for S >= delta, else
    2 R_1 delta / ((delta - S) + r), r = sqrt((S - delta)^2 + 4 R_1 delta). Both
    denominators are then positive, as Newton's unique root has them. Rows with an inactive
    class, or where the root is not finite (delta beyond 1e150: beta tiny against P), are
    left to Newton.
    """
    p1, p2 = pref2[:, 0], pref2[:, 1]
    r1, r2 = ref2[:, 0], ref2[:, 1]
    swap = p2 > p1  # class "1" of the formula is the one with the larger P
    hi_p, lo_p = np.where(swap, p2, p1), np.where(swap, p1, p2)
    hi_r, lo_r = np.where(swap, r2, r1), np.where(swap, r1, r2)
    delta = (hi_p - lo_p) / beta
    total = hi_r + lo_r
    diff = total - delta
    root = np.sqrt(diff * diff + 4.0 * hi_r * delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_hi = np.where(diff >= 0, 0.5 * (diff + root), 2.0 * hi_r * delta / (root - diff))
    ok = (r1 > 0) & (r2 > 0) & np.isfinite(d_hi) & (d_hi > 0) & (delta < 1e150)
    m_hi, m_lo = hi_r / d_hi, lo_r / (d_hi + delta)
    norm = m_hi + m_lo
    m_hi /= norm
    m_lo /= norm
    masses = np.stack([np.where(swap, m_lo, m_hi), np.where(swap, m_hi, m_lo)], axis=1)
    # x = c / beta = d_hi - 1 + P_hi / beta
    return masses, d_hi - 1.0 + hi_p / beta, ok


def _k3_rows(pref2: np.ndarray, ref2: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """``_k3_masses`` for (n, J) rows: the masses (n, J) and x = c / beta (n,)."""
    n_cls = pref2.shape[1]
    if n_cls == 2:
        masses, x, ok = _k3_two(pref2, ref2, beta)
        if bool(np.all(ok)):
            return masses, x
        rest = np.nonzero(~ok)[0]
        if rest.size < ok.size:
            masses[rest], x[rest] = _k3_newton(pref2[rest], ref2[rest], beta)
            return masses, x
    return _k3_newton(pref2, ref2, beta)


def _k3_newton(pref2: np.ndarray, ref2: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """``_k3_rows`` by Newton from the left (any number of classes)."""
    n_cls = pref2.shape[1]
    # (J, n): one contiguous row per class
    pref_t = pref2.T
    ref_t = np.ascontiguousarray(ref2.T)
    active = ref_t > 0
    # in units of beta (x = c / beta, q = P / beta): nothing overflows for beta up to the
    # largest double, and for beta >> |P| the masses tend to R, as they must
    q = np.where(active, pref_t / beta, -np.inf)
    q_max = np.max(q, axis=0)
    top_mass = np.sum(np.where(q >= q_max, ref_t, 0.0), axis=0)
    # at x0 the top class alone contributes exactly 1, so f(x0) >= 0
    x = q_max - 1.0 + top_mass
    # 1 - q per class, so that a denominator is one addition per Newton step
    one_minus_q = 1.0 - q
    # iterate only on the rows not yet converged (most converge in a few steps); the
    # columns are gathered again only when the set has shrunk by half
    todo = np.arange(x.size)
    om, rr, xx = one_minus_q, ref_t, x.copy()
    finished = np.zeros(x.size, bool)
    for _ in range(200):
        f = np.full(xx.shape, -1.0)
        fprime = np.zeros(xx.shape)
        min_denom = np.full(xx.shape, np.inf)
        for j in range(n_cls):
            denom = om[j] + xx
            np.minimum(min_denom, denom, out=min_denom)
            term = rr[j] / denom
            f += term
            term /= denom
            fprime -= term
        step = -f / fprime
        xx += step
        # Newton converges quadratically: a row is done once its step is small against
        # the nearest pole (the smallest denominator sets the masses' sensitivity to c)
        # or at the rounding level of x, below which the noisy sum cannot go
        # (a finished row stays in the gathered set until the next gather: its further
        # steps are at the rounding level of x)
        finished |= np.abs(step) <= np.maximum(1e-12 * min_denom, 4 * np.spacing(np.abs(xx)))
        n_left = todo.size - int(np.count_nonzero(finished))
        if n_left == 0 or 2 * n_left <= todo.size:
            x[todo] = xx
            if n_left == 0:
                break
            todo = todo[~finished]
            om, rr, xx = one_minus_q[:, todo], ref_t[:, todo], x[todo]
            finished = np.zeros(todo.size, bool)
    else:
        x[todo] = xx
    masses = ref_t / (one_minus_q + x)
    masses /= np.sum(masses, axis=0)
    return masses.T, x


def _kl_masses(pref: np.ndarray, ref_mass: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """m_j proportional to R_j exp(P_j / beta) (THEORY.md section 5, k2 and exact KL)."""
    active = ref_mass > 0
    p_max = np.max(np.where(active, pref, -np.inf), axis=-1, keepdims=True)
    weights = np.where(active, ref_mass * np.exp((np.where(active, pref, p_max) - p_max) / beta), 0.0)
    z = weights.sum(axis=-1, keepdims=True)
    # c = beta * log(sum_j R_j exp(P_j/beta)) makes P_j - beta log(m_j/R_j) = c
    return weights / z, (p_max + beta * np.log(z))[..., 0]


class Reduced:
    """A problem in class space (THEORY.md section 5): class reference masses R (C, J) and
    P_j as a function of the class masses m.

    For a reward problem the classes are the outputs with identical reward distributions
    and P_j = F_j . h(w) with w = sum_j m_j F_j; for a pairwise-preference problem every
    output is its own class and P = s M m (section 7).
    """

    problem: Problem
    algo: GRPO
    beta: float
    split: TwoClassSplit | None
    ref_mass: np.ndarray
    class_dist: np.ndarray | None
    margin: np.ndarray | None
    level_pref: LevelPreference | None
    _ref: np.ndarray
    _within: np.ndarray | None
    _class_of: np.ndarray | None

    def __init__(self, problem: Problem, algo: GRPO) -> None:
        self.problem = problem
        self.algo = algo
        self.beta = algo.beta
        self.split = None
        if problem.is_preference:
            n_ctx, n_out = problem.ref.shape
            self._class_of = np.broadcast_to(np.arange(n_out), (n_ctx, n_out))
            self.ref_mass = problem.ref.copy()
            self.margin = problem.margin_matrix() * algo.pairwise_scale
            self.class_dist = None
            self.level_pref = None
        else:
            found = _two_class_split(problem.dist, problem.ref) if problem.n_contexts == 1 else None
            if found is not None:
                # one context, two classes: the integer class array only when read
                self.split, self.ref_mass, self.class_dist = found
                self._class_of = None
            else:
                self._class_of, self.ref_mass, self.class_dist = class_partition(problem)
            self.margin = None
            self.level_pref = LevelPreference(problem.levels, algo)
        # the reference rows of these contexts (``take`` indexes them with the classes)
        self._ref = problem.ref
        self._within = None

    @property
    def class_of(self) -> np.ndarray:
        """Class index of every output, (C, K) (``class_partition``'s numbering)."""
        if self._class_of is None:
            assert self.split is not None
            self._class_of = self.split.mask.astype(np.int64)[None, :]
        return self._class_of

    @property
    def within(self) -> np.ndarray:
        """pi_ref(o) / R_class(o), (C, K): each output's share of its class (0 in an empty
        class); computed when first read (``policy`` does not need it)."""
        if self._within is None:
            if self.class_of.strides[0] == 0 or self.class_of.shape[0] == 1:
                # one partition shared by every context, or one context: index the class row
                cls_ref = self.ref_mass[:, self.class_of[0]]
            else:
                cls_ref = np.take_along_axis(self.ref_mass, self.class_of, axis=1)
            if bool(np.all(self.ref_mass > 0)):  # no empty class: no output needs the guard
                self._within = self._ref / cls_ref
            else:
                self._within = np.where(cls_ref > 0, self._ref / np.where(cls_ref > 0, cls_ref, 1.0), 0.0)
        return self._within

    @property
    def n_classes(self) -> int:
        return int(self.ref_mass.shape[1])

    @property
    def is_reward(self) -> bool:
        """True for a reward problem (classes with distributions), False for preferences."""
        return self.class_dist is not None

    @property
    def dist(self) -> np.ndarray:
        """Class reward distributions F_j, (C, J, L); a reward problem only."""
        if self.class_dist is None:
            raise TypeError("a pairwise-preference problem has no reward distributions")
        return self.class_dist

    def _level_pref(self) -> LevelPreference:
        if self.level_pref is None:
            raise TypeError("a pairwise-preference problem has no reward levels")
        return self.level_pref

    def mixture(self, masses: np.ndarray) -> np.ndarray:
        """w = sum_j m_j F_j, (C, ..., L) for masses (C, ..., J)."""
        return np.einsum("c...j,cjl->c...l", masses, self.dist)

    def class_preference_from_mixture(self, w: np.ndarray) -> np.ndarray:
        """P_j = F_j . h(w), (C, ..., J) (THEORY.md section 4)."""
        h = self._level_pref()(w)
        class_dist = self.dist
        if self.algo.is_limit and not np.all(np.isfinite(h)):
            # G = inf at a point-mass w: 0 * inf must count as 0 (see preference.expect_levels)
            extra = (1,) * (w.ndim - 2)
            dist = class_dist.reshape(class_dist.shape[:1] + extra + class_dist.shape[1:])
            with np.errstate(invalid="ignore"):
                return np.where(dist > 0, dist * h[..., None, :], 0.0).sum(axis=-1)
        return np.einsum("cjl,c...l->c...j", class_dist, h)

    def class_preference(self, masses: np.ndarray) -> np.ndarray:
        """P_G of every class when the classes carry ``masses``, (C, ..., J)."""
        if self.margin is not None:
            return np.einsum("cjk,c...k->c...j", self.margin, masses)
        return self.class_preference_from_mixture(self.mixture(masses))

    def masses_given(self, pref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class masses and multiplier c solving the penalty's stationarity for frozen P.

        THEORY.md section 5: k3 m_j = R_j / (1 - (P_j - c)/beta); k2 and kl
        m_j proportional to R_j exp(P_j / beta).
        """
        extra = pref.ndim - 2
        ref_mass = self.ref_mass.reshape(self.ref_mass.shape[:1] + (1,) * extra + self.ref_mass.shape[1:])
        return penalty_masses(self.algo.penalty)(pref, ref_mass, self.beta)

    def take(self, idx: np.ndarray) -> Reduced:
        """The contexts ``idx`` (repeats allowed), as a new reduction (``problem`` is kept whole)."""
        sub = Reduced.__new__(Reduced)
        sub.__dict__.update(self.__dict__)
        sub._class_of = self.class_of[idx]
        sub.split = None
        sub.ref_mass = self.ref_mass[idx]
        sub._ref = self._ref[idx]
        sub._within = None if self._within is None else self._within[idx]
        if self.margin is not None:  # a pairwise-preference problem
            sub.margin = self.margin[idx]
        else:
            sub.class_dist = self.dist[idx]
            sub.level_pref = self._level_pref().take(idx)
        return sub

    def policy(self, masses: np.ndarray) -> np.ndarray:
        """Spread class masses over outputs in reference ratios, (C, K) from (C, J).

        pi(o) = (m_j / R_j) pi_ref(o) for o in class j: the (C, J) factors, then one gather
        and one product over the outputs (0 for an empty class, whose outputs have
        pi_ref = 0).
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = masses / self.ref_mass if masses.shape == self.ref_mass.shape else None
        if factor is not None and not bool(np.all(self.ref_mass > 0)):
            factor = np.where(self.ref_mass > 0, factor, 0.0)
        if factor is None or not bool(np.all(np.isfinite(factor))):
            # (a class mass over a subnormal R_j overflows the factor: m_j times the shares)
            return np.take_along_axis(masses, self.class_of, axis=1) * self.within
        shared = self.class_of.strides[0] == 0 or self.class_of.shape[0] == 1
        if shared and factor.shape[0] == 1:
            # one context (many outputs): a 1-D take and an in-place product, no 2-D fancy index
            out = np.take(factor[0], self.class_of[0])
            out *= self._ref[0]
            return out[None, :]
        if shared:
            return factor[:, self.class_of[0]] * self._ref
        return np.take_along_axis(factor, self.class_of, axis=1) * self._ref

    def reference_point(self) -> np.ndarray:
        """The reduced variable at pi_ref: the reference mixture, or pi_ref for preferences."""
        return self.problem.reference_mixture() if self.is_reward else self.problem.ref

    def point(self, masses: np.ndarray) -> np.ndarray:
        """The reduced variable of class masses: the mixture, or the masses for preferences."""
        return self.mixture(masses) if self.is_reward else masses


#: Most classes per context found by peeling (``_peel_classes``); more, or a peel that
#: removes only a small share of the outputs, takes the sort by a hash.
PEEL_MAX = 64


def _peel_classes(dist: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Classes by exact row comparison, one class per pass over the outputs.

    Per context, the first output not yet classed gives the next class's distribution and
    every output with exactly that row joins it: a few passes over (C, K, L) when contexts
    have few classes (deterministic or shared Bernoulli rewards). Returns (class_of in
    order of discovery, (C, J, L) class rows, zero rows for absent slots), or None when
    contexts have many classes (then the sort is cheaper).
    """
    n_ctx, n_out, n_levels = dist.shape
    if n_ctx == 1:
        two = _two_classes(dist[0])
        if two is not None:
            return two
    rows = np.arange(n_ctx)
    class_of = np.zeros((n_ctx, n_out), np.int64)
    rest = np.ones((n_ctx, n_out), bool)
    reps: list[np.ndarray] = []
    left = n_ctx * n_out
    for j in range(PEEL_MAX):
        first = np.argmax(rest, axis=1)
        live = rest[rows, first]
        if not np.any(live):
            break
        rep = np.where(live[:, None], dist[rows, first], np.nan)  # NaN matches nothing
        same = dist[..., 0] == rep[:, None, 0]
        for level in range(1, n_levels):
            same &= dist[..., level] == rep[:, None, level]
        if j:
            class_of[same] = j
        rest &= ~same
        reps.append(np.where(live[:, None], rep, 0.0))
        now = int(np.count_nonzero(rest))
        if left - now < max(1, left // 32) and now:
            return None  # a class that takes only a small share: many classes, sort instead
        left = now
    else:
        if np.any(rest):
            return None
    return class_of, np.stack(reps, axis=1)


def _same_row(dist: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Outputs whose reward row equals ``row`` exactly, (K,) from (K, L)."""
    if dist.shape[1] == 2 and dist.dtype == np.float64 and dist.flags.c_contiguous:
        # each two-level row as one complex number: one comparison per row over the
        # contiguous pairs (complex == is == on both parts, so -0.0 == 0.0 as for floats)
        return np.asarray(dist.view(np.complex128)[:, 0] == complex(row[0], row[1]))
    same = dist[:, 0] == row[0]
    for level in range(1, dist.shape[1]):
        same &= dist[:, level] == row[level]
    return same


def _two_classes(dist: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``_peel_classes`` for one context (rows ``dist``, (K, L)) with at most two classes:
    the rows equal to the first output's, then the rows equal to the first other one's; a
    few comparisons over the outputs and no scatter. None when there are more classes."""
    first = dist[0]
    same = _same_row(dist, first)
    if bool(np.all(same)):
        return np.zeros((1, dist.shape[0]), np.int64), first[None, None, :].copy()
    second = dist[int(np.argmin(same))]
    other = _same_row(dist, second)
    if not bool(np.all(same | other)):
        return None
    return other.astype(np.int64)[None, :], np.stack([first, second])[None]


class TwoClassSplit(NamedTuple):
    """One context whose outputs fall in two reward classes (``_two_class_split``).

    ``mask`` (K,) marks the outputs of class 1 (``class_partition``'s numbering);
    ``signed_ref`` (K,) is pi_ref on class 0 and -pi_ref on class 1 (a policy in reference
    ratios and the residual check's per-class extremes take one elementwise pass each
    from it, with no select by the mask); ``ref_total`` is sum_o pi_ref(o) and
    ``class_ref`` (2,) the class masses R_0, R_1.
    """

    mask: np.ndarray
    signed_ref: np.ndarray
    ref_total: float
    class_ref: np.ndarray


#: Outputs per block of ``_rows_equal``: numpy's inner loop runs over 2 * _ROW_BLOCK
#: contiguous doubles against one tiled copy of the row (64 KiB, in cache).
_ROW_BLOCK = 4096

#: Fewest outputs for ``_two_class_split`` (below, the peel of ``_partition`` is as cheap).
_SPLIT_MIN = 2 * _ROW_BLOCK


def _rows_equal(dist: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Outputs whose two-level reward row equals ``row`` exactly (float ==, so -0.0 == 0.0),
    (K,) bool from C-contiguous float64 rows (K, 2).

    The rows are compared entry by entry against the row tiled over a block (contiguous,
    vectorised; twice as fast as the complex view's == and three times the two strided
    column comparisons), and a row matches when both of its entry bytes are True: the
    pair read as one uint16 equals 0x0101.
    """
    n_out = dist.shape[0]
    n_blocked = n_out - n_out % _ROW_BLOCK
    out = np.empty(n_out, bool)
    if n_blocked:
        entries = dist[:n_blocked].reshape(-1, 2 * _ROW_BLOCK) == np.tile(row, _ROW_BLOCK)
        np.equal(entries.reshape(-1).view(np.uint16), 0x0101, out=out[:n_blocked])
    if n_blocked < n_out:
        tail = dist[n_blocked:]
        out[n_blocked:] = (tail[:, 0] == row[0]) & (tail[:, 1] == row[1])
    return out


def _two_class_split(dist: np.ndarray, ref: np.ndarray) -> tuple[TwoClassSplit, np.ndarray, np.ndarray] | None:
    """The partition of one context (``dist`` (1, K, 2), ``ref`` (1, K)) with exactly two
    classes, without an integer class array: (split, ref_mass (1, 2), class_dist (1, 2, 2)),
    the same classes, numbering and rows as ``class_partition``; None for any other context.

    Two exact comparisons (every output's row against the first output's, then against the
    first other one's); the counts of the two matches add up to K exactly when no third row
    occurs (the two matches are disjoint: the rows differ). The class masses are
    R_0, R_1 = (S +- D) / 2 from S = sum pi_ref and D = sum of the signed reference, both
    pairwise sums: absolute error a few eps S, so a class below S / 16 (whose relative
    error that would inflate) is summed over its own outputs (pairwise too) and the other
    is S minus it.
    """
    if dist.shape[0] != 1 or dist.shape[2] != 2 or dist.shape[1] < _SPLIT_MIN or dist.dtype != np.float64:
        return None
    rows = dist[0]
    if not rows.flags.c_contiguous:
        return None
    n_out = rows.shape[0]
    first = rows[0].copy()
    same = _rows_equal(rows, first)
    n_same = int(np.count_nonzero(same))
    if n_same == n_out:
        return None  # one class: the peel's route
    second = rows[int(np.argmin(same))].copy()
    other = _rows_equal(rows, second)
    if n_same + int(np.count_nonzero(other)) != n_out:
        return None  # a third row (or NaN): the peel and the sort
    # numbered in the order of ``_partition``'s hash of the rows, computed as it does
    reps = np.stack([first, second])
    if int(np.argsort(reps[None] @ _hash_weights(2), axis=1, kind="stable")[0, 0]) == 1:
        class_rows, mask = reps[::-1].copy(), same
    else:
        class_rows, mask = reps, other
    # +1 on class 0, -1 on class 1, in int8 (the product casts it per block)
    sign = mask.view(np.int8) * np.int8(-2)
    sign += np.int8(1)
    signed_ref = ref[0] * sign
    total = float(np.sum(ref[0]))
    diff = float(np.sum(signed_ref))
    ref_mass = np.array([0.5 * (total + diff), 0.5 * (total - diff)])
    small = int(np.argmin(ref_mass))
    if not float(ref_mass[small]) >= total / 16:
        # the small class over its own outputs (pi_ref times 0 or 1, exact, then a pairwise
        # sum), the large one as the rest of S
        ref_mass[small] = float(np.sum(ref[0] * (mask if small else ~mask)))
        ref_mass[1 - small] = total - ref_mass[small]
    ref_mass.flags.writeable = False
    return TwoClassSplit(mask, signed_ref, total, ref_mass), ref_mass[None, :], class_rows[None]


def class_partition(problem: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group outputs with identical reward distributions, as the solvers use them (section 5).

    Returns
    -------
    class_of : ndarray of int, (C, K)
    ref_mass : ndarray, (C, J)
        Class reference masses R_j.
    class_dist : ndarray, (C, J, L)
        Class reward distributions F_j.

    Classes are numbered in the order of a hash of their distribution (a fixed random
    projection). Few classes per context are found by exact row comparison
    (``_peel_classes``); many by sorting the hash, then checked exactly: a hash collision
    falls back to one class per output (slower, still exact).
    """
    return _partition(problem.dist, problem.ref)


_HASH_WEIGHTS: dict[int, np.ndarray] = {}


def _hash_weights(n_levels: int) -> np.ndarray:
    """The fixed random projection that numbers the classes (``class_partition``)."""
    if n_levels not in _HASH_WEIGHTS:
        weights = np.random.default_rng(20250225).random(n_levels)
        weights.flags.writeable = False
        _HASH_WEIGHTS[n_levels] = weights
    return _HASH_WEIGHTS[n_levels]


def _partition(dist: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``class_partition`` of reward rows ``dist`` (C, K, L) and reference ``ref`` (C, K)."""
    n_ctx, n_out, n_levels = dist.shape
    if n_ctx > 1 and dist.strides[0] != 0 and bool(np.all(dist == dist[:1])):
        # every context has the same reward rows (0/1 rewards of a batch of prompts): the
        # partition of the first, shared by reference (stride 0) rather than repeated
        class_of0, _, class_dist0 = _partition(dist[:1], ref[:1])
        n_classes = class_dist0.shape[1]
        onehot = (class_of0[0][:, None] == np.arange(n_classes)[None, :]).astype(float)
        return (
            np.broadcast_to(class_of0, (n_ctx, n_out)),
            np.einsum("ck,kj->cj", ref, onehot),  # (c_einsum: no BLAS threads)
            np.broadcast_to(class_dist0, (n_ctx, n_classes, n_levels)),
        )
    weights = _hash_weights(n_levels)
    peeled = _peel_classes(dist)
    if peeled is not None:
        found, reps = peeled
        # renumber by the hash of each class's row (absent slots last), as the sort does
        absent = ~np.any(reps != 0, axis=2)
        absent[:, 0] = False
        rank_of = np.argsort(np.where(absent, np.inf, reps @ weights), axis=1, kind="stable")
        new_id = np.empty_like(rank_of)
        np.put_along_axis(new_id, rank_of, np.arange(rank_of.shape[1])[None, :], axis=1)
        if np.array_equal(new_id, np.arange(new_id.shape[1])[None, :].repeat(n_ctx, 0)):
            class_of = found
        elif n_ctx == 1:  # a 1-D table lookup, not take_along_axis's broadcast fancy index
            class_of = np.take(new_id[0], found[0])[None, :]
        else:
            class_of = np.take_along_axis(new_id, found, axis=1)
        class_dist = np.take_along_axis(reps, rank_of[..., None], axis=1)
        n_classes = class_dist.shape[1]
        flat = class_of.ravel() if n_ctx == 1 else (np.arange(n_ctx)[:, None] * n_classes + class_of).ravel()
        ref_mass = np.bincount(flat, weights=ref.ravel(), minlength=n_ctx * n_classes)
        return class_of, ref_mass.reshape(n_ctx, n_classes), class_dist
    key = dist @ weights
    order = np.argsort(key, axis=1, kind="stable")
    sorted_key = np.take_along_axis(key, order, axis=1)
    new_class = np.concatenate([np.zeros((n_ctx, 1), bool), np.diff(sorted_key, axis=1) != 0], axis=1)
    class_sorted = np.cumsum(new_class, axis=1)
    class_of = np.empty_like(class_sorted)
    np.put_along_axis(class_of, order, class_sorted, axis=1)
    n_classes = int(class_sorted[:, -1].max()) + 1
    flat = (np.arange(n_ctx)[:, None] * n_classes + class_of).ravel()
    ref_mass = np.bincount(flat, weights=ref.ravel(), minlength=n_ctx * n_classes).reshape(n_ctx, n_classes)
    class_dist = np.zeros((n_ctx, n_classes, n_levels))
    class_dist[np.arange(n_ctx)[:, None], class_of] = dist
    exact = np.array_equal(np.take_along_axis(class_dist, class_of[..., None], axis=1), dist)
    if not exact:
        return np.broadcast_to(np.arange(n_out), (n_ctx, n_out)).copy(), ref.copy(), dist.copy()
    # a padded class slot (a context with fewer classes) has no members: give it mass 0
    return class_of, ref_mass, class_dist


def reward_classes(problem: Problem) -> np.ndarray:
    """Class index of every output, (C, K): outputs with identical reward distributions.

    THEORY.md section 5: P_G is the same on a class, and the stationary conditions fix only
    the class masses for abs, k1 and beta = 0, so those are what to compare. Within a
    context, classes are numbered 0, 1, ... in lexicographic order of their reward
    distributions (rows of ``problem.dist``); a pairwise-preference problem has one class
    per output.

    Examples
    --------
    >>> prob = Problem.from_rewards(ref=[0.2, 0.3, 0.5], rewards=[1.0, 0.0, 1.0])
    >>> reward_classes(prob)
    array([[0, 1, 0]])
    """
    if not isinstance(problem, Problem):
        raise InputError("problem", "expected a grpo_align.Problem")
    if problem.is_preference:
        return np.broadcast_to(np.arange(problem.n_outputs), problem.ref.shape).copy()
    class_of, ref_mass, class_dist = class_partition(problem)
    if ref_mass.shape == problem.ref.shape and np.array_equal(class_of, np.arange(problem.n_outputs)[None]):
        # one class per output, possibly class_partition's fallback after a hash collision
        out = np.empty(problem.ref.shape, dtype=np.int64)
        for c in range(problem.n_contexts):
            out[c] = np.unique(problem.dist[c], axis=0, return_inverse=True)[1].ravel()
        return out
    # renumber each context's classes in lexicographic order of their distributions; a
    # padded class slot (no members) sorts last
    padded = np.ones(ref_mass.shape, dtype=bool)
    np.put_along_axis(padded, class_of, False, axis=1)
    keys = [class_dist[..., level] for level in range(class_dist.shape[-1] - 1, -1, -1)] + [padded]
    order = np.lexsort(np.stack(keys), axis=-1)  # (C, J): class ids by rank
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[1])[None].repeat(order.shape[0], 0), axis=1)
    return np.take_along_axis(rank, class_of, axis=1).astype(np.int64)
