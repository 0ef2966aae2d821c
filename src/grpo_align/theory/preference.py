"""The reward preference model P_G(o | pi) (THEORY.md section 4).

P_G(o | pi) = E[A_1 | o_1 = o], the expected normalised advantage of an output when the
other G - 1 members of its group are drawn from pi. It depends on pi only through the
mixture reward-level distribution w = sum_o pi(o) F_o:

    P_G(o | pi) = sum_l F_o(l) h_l(w),
    h_l(w) = E[A_1 | r_1 = v_l, level counts of the others ~ Multinomial(G - 1, w)].

h is computed exactly by enumerating the C(G + L - 2, L - 1) count vectors (G of them for
binary rewards), as one matrix product per batch of contexts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.special import gammaln

from grpo_align.errors import InputError
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO

__all__ = [
    "MAX_COUNT_VECTORS",
    "MonteCarloPreference",
    "group_advantages",
    "level_advantage_table",
    "level_preference",
    "preference",
    "preference_extended",
    "preference_limit",
    "preference_monte_carlo",
]

#: Largest enumeration of count vectors accepted (C(G+L-2, L-1)); beyond it use Monte Carlo.
MAX_COUNT_VECTORS = 2_000_000


def group_advantages(rewards: Any, algo: GRPO) -> np.ndarray:
    """Advantages A_i = N(r)_i of groups of rewards along the last axis (THEORY.md section 2).

    shift_scale: (r_i - mean) / (std + eps), std with ``algo.ddof``, and A = 0 for a group
    whose rewards are all equal; shift: r_i - mean; rloo: r_i - mean of the other G - 1;
    raw: r_i. This is the one definition the trainers use too.
    """
    r = np.asarray(rewards, dtype=float)
    g = r.shape[-1]
    if g < 2:
        raise InputError("rewards", "a group needs at least 2 rewards")
    mean = r.mean(axis=-1, keepdims=True)
    centred = r - mean
    if algo.normalization == "raw":
        return r.copy()
    if algo.normalization == "shift":
        return centred
    if algo.normalization == "rloo":
        return centred * (g / (g - 1))
    std = r.std(axis=-1, ddof=algo.ddof, keepdims=True)
    all_equal = np.all(r == r[..., :1], axis=-1, keepdims=True)
    denom = np.where(all_equal, 1.0, std + algo.eps)
    return np.where(all_equal, 0.0, centred / denom)


@lru_cache(maxsize=64)
def _count_vectors(n: int, n_levels: int) -> np.ndarray:
    """All vectors of ``n_levels`` non-negative integers summing to n, shape (N, L)."""
    if n_levels == 1:
        return np.array([[n]], dtype=np.int64)
    if n_levels == 2:
        k = np.arange(n + 1, dtype=np.int64)
        return np.stack([n - k, k], axis=1)
    parts = [
        np.concatenate([np.full((len(rest), 1), first, dtype=np.int64), rest], axis=1)
        for first in range(n, -1, -1)
        for rest in [_count_vectors(n - first, n_levels - 1)]
    ]
    return np.concatenate(parts, axis=0)


def _n_count_vectors(n: int, n_levels: int) -> int:
    return math.comb(n + n_levels - 1, n_levels - 1)


#: Smallest ratio of a gap between two reward levels to their range that shift_scale can
#: resolve: the squared scaled gaps enter the group variance and must not underflow.
MIN_LEVEL_GAP = 1e-150


def scaled_level_differences(levels: np.ndarray, dtype: Any = float) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise level differences in well-scaled units (THEORY.md section 4, "coordinates").

    Returns ``diff`` (C, L, L) with diff[c, l, m] = (v_l - v_m) / range_c and ``span`` (C,)
    = range_c = max_l v_l - min_l v_l (1 where a context has one level). The levels are
    first multiplied by a power of two that brings the largest |v| near 1 (exact), so
    neither the differences nor their squares overflow; each difference is then a single
    rounding of the exact one, whatever the offset b or the scale a of the levels. Every
    advantage is a function of these differences (and of ``span`` where the
    normalisation is not scale invariant), so a problem and its affine image
    a v + b (a > 0) give the same table to rounding.
    """
    lev = np.asarray(levels, dtype=dtype)
    big = np.max(np.abs(lev), axis=-1, keepdims=True)
    _, expo = np.frexp(np.where(big > 0, big, 1.0).astype(float))
    k = np.ldexp(np.ones_like(lev[..., :1]), -expo)  # a power of two: exact scaling
    scaled = lev * k
    diff_k = scaled[..., :, None] - scaled[..., None, :]
    span_k = np.max(scaled, axis=-1) - np.min(scaled, axis=-1)
    span_k = np.where(span_k > 0, span_k, np.ones_like(span_k))
    with np.errstate(over="ignore"):
        span = span_k / k[..., 0]
    return diff_k / span_k[..., None, None], span


def _check_level_gaps(diff: np.ndarray, algo: GRPO) -> None:
    """shift_scale divides by the group std: the squared gaps must stay normal numbers."""
    if algo.normalization != "shift_scale" or diff.shape[-1] < 2:
        return
    gaps = np.abs(diff)
    gaps = np.where(gaps > 0, gaps, np.inf)
    smallest = float(np.min(gaps)) if gaps.size else np.inf
    if smallest < MIN_LEVEL_GAP:
        raise InputError(
            "levels",
            f"two reward levels differ by {smallest:.1e} of the range of the levels, below "
            f"{MIN_LEVEL_GAP:g}: too close to distinguish in the group standard deviation; "
            "merge them into one level or spread them out",
        )


def level_advantage_table(
    levels: np.ndarray, algo: GRPO, dtype: Any = float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Advantage of the first member for every (others' count vector, own level).

    Returns ``counts`` (N, L), ``log_coef`` (N,) the log multinomial coefficients of
    Multinomial(G - 1, .), and ``table`` (C, N, L) with table[c, n, l] = A_1 when
    r_1 = levels[c, l] and the other G - 1 rewards have level counts counts[n]
    (THEORY.md section 4). ``dtype`` np.longdouble gives the extended-precision table
    of the independent residual check.

    The table is built from pairwise level differences (``scaled_level_differences``),
    never from the levels themselves: r_1 - mean = (1/G) sum_m n_m (v_l - v_m) and the
    sum of squared deviations is (1/G) sum_{i<j} (r_i - r_j)^2, a sum of non-negative
    terms. So an offset b (levels 1e15 + [0, 0.5, 1]) cancels exactly and no scale a
    (1e-160 or 1e300) underflows or overflows: shift_scale with eps = 0 is computed
    invariantly under r -> a r + b, shift and rloo invariantly under r -> r + b.
    """
    g = int(algo.group_size)
    n_levels = levels.shape[1]
    n_vec = _n_count_vectors(g - 1, n_levels)
    if n_vec > MAX_COUNT_VECTORS:
        raise InputError(
            "group_size",
            f"exact P_G needs {n_vec:,} count vectors for G={g}, L={n_levels}; "
            "use fewer levels, a smaller G, or preference_monte_carlo",
        )
    counts = _count_vectors(g - 1, n_levels)
    if np.dtype(dtype) == np.dtype(float):
        log_coef = gammaln(g) - gammaln(counts + 1.0).sum(axis=1)
    else:
        log_fact = np.concatenate([np.zeros(1, dtype=dtype), np.cumsum(np.log(np.arange(1, g, dtype=dtype)))])
        log_coef = log_fact[g - 1] - log_fact[counts].sum(axis=1)
    if algo.normalization == "raw":
        own = np.asarray(levels, dtype=dtype)[:, None, :]
        return counts, log_coef, np.broadcast_to(own, (levels.shape[0], len(counts), n_levels)).copy()
    diff, span = scaled_level_differences(levels, dtype)
    _check_level_gaps(diff, algo)
    n = counts.astype(dtype)
    # (C, N, L): sum_m n_m (v_l - v_m) / G in units of the span
    centred = np.einsum("clm,nm->cnl", diff, n) / g
    if algo.normalization in ("shift", "rloo"):
        if not np.all(np.isfinite(span)):
            raise InputError("levels", "the range of the reward levels overflows a float; rescale the rewards")
        factor = 1.0 if algo.normalization == "shift" else g / (g - 1)
        return counts, log_coef, centred * (span[:, None, None] * factor)
    # G * ssd = sum_{i<j} (r_i - r_j)^2 = n^T Q n / 2 + (Q n)_l with Q = diff^2, t = n + e_l
    q = diff**2
    qn = np.einsum("clm,nm->cnl", q, n)
    nqn = np.einsum("nl,cnl->cn", n, qn)
    ssd = (0.5 * nqn[:, :, None] + qn) / g
    std = np.sqrt(ssd / (g - algo.ddof))
    eye = np.eye(n_levels, dtype=np.int64)
    # all G rewards equal: the others all sit on the own level
    all_equal = np.all(counts[:, None, :] == (g - 1) * eye[None, :, :], axis=-1)[None]
    if algo.eps > 0:
        if not np.all(np.isfinite(span)):
            raise InputError("levels", "the range of the reward levels overflows a float; rescale the rewards")
        denom = std + algo.eps / span[:, None, None]
    else:
        denom = std
    table = np.where(all_equal, 0.0, centred / np.where(all_equal, 1.0, denom))
    return counts, log_coef, table.astype(dtype)


def _limit_level_preference(levels: np.ndarray, w: np.ndarray, algo: GRPO) -> np.ndarray:
    """h_l(w) for G -> infinity (THEORY.md section 8): (v_l - mu_w)/(sigma_w + eps) etc.

    ``levels`` (C, L) and ``w`` (C, ..., L). From pairwise level differences, as
    ``level_advantage_table``: v_l - mu_w = sum_m w_m (v_l - v_m) and
    sigma_w^2 = (1/2) sum_{l,m} w_l w_m (v_l - v_m)^2.
    """
    if algo.normalization == "raw":
        extra = (1,) * (w.ndim - 2)
        return np.broadcast_to(levels.reshape(levels.shape[:1] + extra + levels.shape[1:]), w.shape).copy()
    diff, span = scaled_level_differences(levels, w.dtype)
    _check_level_gaps(diff, algo)
    return _limit_from_differences(diff, span, w, algo)


def _limit_from_differences(diff: np.ndarray, span: np.ndarray, w: np.ndarray, algo: GRPO) -> np.ndarray:
    """``_limit_level_preference`` with the scaled differences (C, L, L) and span (C,) given."""
    extra = (1,) * (w.ndim - 2)
    d = diff.reshape(diff.shape[:1] + extra + diff.shape[1:])
    sp = span.reshape(span.shape[:1] + extra + (1,))
    centred = (d @ w[..., None])[..., 0]
    if algo.normalization in ("shift", "rloo"):
        return centred * sp
    var = 0.5 * np.sum(w * ((d**2) @ w[..., None])[..., 0], axis=-1, keepdims=True)
    sigma = np.sqrt(np.maximum(var, 0.0))
    denom = sigma + algo.eps / sp
    with np.errstate(divide="ignore", invalid="ignore"):
        h = centred / denom
    # a point-mass w: every other member equals the own level unless it differs, where the
    # single deviating member's advantage grows like sqrt(G)
    return np.where((centred == 0) & (denom == 0), 0.0, h)


class LevelPreference:
    """h(w) for a batch of contexts, with the enumeration table built once.

    Contexts sharing the same level vector share one table.
    """

    def __init__(self, levels: np.ndarray, algo: GRPO, dtype: Any = float) -> None:
        self.algo = algo
        self.levels = levels
        self.dtype = dtype
        if algo.is_limit:
            if algo.normalization != "raw":
                self.diff, self.span = scaled_level_differences(levels, dtype)
                _check_level_gaps(self.diff, algo)
            return
        first = levels[:1]
        if np.all(levels == first):
            self.counts, self.log_coef, self.table = level_advantage_table(first, algo, dtype)
            self.shared = True
        else:
            self.counts, self.log_coef, self.table = level_advantage_table(levels, algo, dtype)
            self.shared = False
        self.counts_f = self.counts.astype(dtype)
        # the table row of each context: None for the table's own order (``take`` indexes
        # rather than copies the per-context tables, which are large for many levels)
        self.rows: np.ndarray | None = None

    def take(self, idx: np.ndarray) -> LevelPreference:
        """The same h for the contexts ``idx`` (repeats allowed), sharing the tables."""
        sub = LevelPreference.__new__(LevelPreference)
        sub.__dict__.update(self.__dict__)
        sub.levels = self.levels[idx]
        if self.algo.is_limit and self.algo.normalization != "raw":
            sub.diff, sub.span = self.diff[idx], self.span[idx]
        if not self.algo.is_limit and not self.shared:
            sub.rows = np.asarray(idx) if self.rows is None else self.rows[idx]
        return sub

    def __call__(self, w: np.ndarray) -> np.ndarray:
        """h(w), shape (C, ..., L) for w of shape (C, ..., L)."""
        w = np.asarray(w, dtype=self.dtype)
        if self.algo.is_limit:
            if self.algo.normalization == "raw":
                return _limit_level_preference(self.levels, w, self.algo)
            return _limit_from_differences(self.diff, self.span, w, self.algo)
        n_vec, n_lev = self.counts_f.shape
        flat = w.reshape(w.shape[0], -1, n_lev)
        # contexts in blocks whose (contexts, points, N) count-vector probabilities stay
        # near 2^18 entries (cache-sized, and bounded memory for many levels)
        block = max(1, (1 << 18) // max(1, flat.shape[1] * n_vec))
        if flat.shape[0] * flat.shape[1] * n_vec <= (1 << 20) or (not self.shared and flat.shape[0] <= block):
            return self._h(flat, self.rows).reshape(w.shape)
        out = np.empty(flat.shape, dtype=np.result_type(flat, self.table))
        if self.shared:
            # one table: blocks of points across contexts (G = 10^5 at 60,000 points would
            # otherwise hold a 48 GB probability matrix)
            points = flat.reshape(1, -1, n_lev)
            step = max(1, (1 << 18) // n_vec)
            flat_out = out.reshape(-1, n_lev)
            for i in range(0, points.shape[1], step):
                flat_out[i : i + step] = self._h(points[:, i : i + step], None)[0]
            return out.reshape(w.shape)
        for i in range(0, flat.shape[0], block):
            out[i : i + block] = self._h(
                flat[i : i + block], None if self.rows is None else self.rows[i : i + block], i
            )
        return out.reshape(w.shape)

    def _h(self, w: np.ndarray, rows: np.ndarray | None, start: int = 0) -> np.ndarray:
        """h for (n, M, L) mixtures of n consecutive contexts from ``start`` (table rows
        ``rows``, or the table's own from ``start``)."""
        log_w = np.where(w > 0, np.log(np.where(w > 0, w, 1.0)), -1e300)
        # (n, M, N): Multinomial(G - 1, w) probability of each count vector
        pmf = np.exp(self.log_coef + log_w @ self.counts_f.T)
        if self.shared:
            return np.asarray(pmf @ self.table[0])
        # a batched matrix product per context (several times faster than the einsum loop)
        table = self.table[start : start + w.shape[0]] if rows is None else self.table[rows]
        return np.asarray(pmf @ table)


def level_preference(levels: Any, w: Any, algo: GRPO) -> np.ndarray:
    """h_l(w) of THEORY.md section 4 (or section 8 for G = inf), shape (C, L)."""
    lev = np.atleast_2d(np.asarray(levels, dtype=float))
    ww = np.atleast_2d(np.asarray(w, dtype=float))
    return LevelPreference(lev, algo)(ww)


def _check_reward_problem(problem: Problem, what: str) -> None:
    if problem.is_preference:
        raise InputError("problem", f"{what} needs reward distributions; a preference problem only has P_2 = s M pi")


def preference(problem: Problem, algo: GRPO, policy: Any) -> np.ndarray:
    """Exact P_G(o | policy) for every output (THEORY.md section 4), shaped like ``policy``:
    (C, K), or (K,) for a policy given as (K,).

    For a preference problem (G = 2 only), P_2(o | pi) = s (M pi)(o) (section 7).
    """
    pi = problem.check_policy(policy)
    if problem.is_preference:
        scale = algo.pairwise_scale
        return problem.like_policy(scale * np.einsum("cop,cp->co", problem.margin_matrix(), pi), policy)
    w = np.einsum("co,col->cl", pi, problem.dist)
    h = LevelPreference(problem.levels, algo)(w)
    return problem.like_policy(expect_levels(problem.dist, h, algo), policy)


def preference_extended(problem: Problem, algo: GRPO, policy: np.ndarray) -> np.ndarray:
    """P_G(o | policy) (C, K) evaluated in extended precision (numpy's longdouble).

    The independent route of the solvers' residual check: the table, the multinomial
    probabilities and their products are recomputed from the problem's own levels in
    longdouble (64-bit significand on x86, 113 bits on aarch64), so rounding in the
    double-precision P_G the solver iterated on cannot hide in the check. Where longdouble
    is double (MSVC, Apple silicon) it is a second evaluation in double precision.
    """
    pi = np.asarray(policy, dtype=np.longdouble)
    if problem.is_preference:
        return np.asarray(algo.pairwise_scale * np.einsum("cop,cp->co", problem.margin_matrix(), pi), dtype=float)
    dist = problem.dist.astype(np.longdouble)
    w = np.einsum("co,col->cl", pi, dist)
    w = np.clip(w, 0, None)
    h = LevelPreference(problem.levels, algo, np.longdouble)(w)
    return np.asarray(expect_levels(dist, h, algo), dtype=float)


def expect_levels(dist: np.ndarray, h: np.ndarray, algo: GRPO) -> np.ndarray:
    """sum_l F_o(l) h_l, (C, K) from dist (C, K, L) and h (C, L).

    For G = inf at a point-mass w, h is +-inf on the levels w never draws; an output that
    never draws them either must get 0 there, not 0 * inf = NaN.
    """
    if algo.is_limit and not np.all(np.isfinite(h)):
        with np.errstate(invalid="ignore"):
            return np.where(dist > 0, dist * h[:, None, :], 0.0).sum(axis=-1)
    return np.einsum("col,cl->co", dist, h)


def preference_limit(problem: Problem, algo: GRPO, policy: Any) -> np.ndarray:
    """P_inf(o | policy), the G -> infinity limit of P_G (THEORY.md section 8)."""
    _check_reward_problem(problem, "preference_limit")
    return preference(problem, algo.replace(group_size=math.inf), policy)


@dataclass(frozen=True)
class MonteCarloPreference:
    """Monte Carlo estimate of P_G(o | pi): ``mean`` and its standard error ``stderr``."""

    mean: np.ndarray
    stderr: np.ndarray
    samples: int

    def __repr__(self) -> str:
        return f"MonteCarloPreference(samples={self.samples}, mean={np.array2string(self.mean, precision=4)}, max stderr={float(np.max(self.stderr)):.2e})"


def preference_monte_carlo(
    problem: Problem, algo: GRPO, policy: Any, samples: int = 10_000, seed: int = 0
) -> MonteCarloPreference:
    """Monte Carlo P_G(o | pi): sample whole groups and average the first member's advantage.

    For each context and output o, ``samples`` groups (o, o_2..o_G) are drawn with o_j ~ pi
    and rewards from F; the first member's advantage is ``group_advantages``. An
    independent route to ``preference`` that also serves rewards with many levels.
    """
    _check_reward_problem(problem, "preference_monte_carlo")
    if algo.is_limit:
        raise InputError("group_size", "Monte Carlo needs a finite group size")
    if not isinstance(samples, int) or samples < 2:
        raise InputError("samples", "expected an integer >= 2")
    pi = problem.check_policy(policy)
    rng = np.random.default_rng(seed)
    g = int(algo.group_size)
    n_ctx, n_out = pi.shape
    means = np.empty((n_ctx, n_out))
    errs = np.empty((n_ctx, n_out))
    cdf_levels = np.cumsum(problem.dist, axis=2)
    for c in range(n_ctx):
        levels = problem.levels[c]
        others = rng.choice(n_out, size=(n_out, samples, g - 1), p=pi[c])
        u = rng.random((n_out, samples, g - 1))
        other_level = (u[..., None] > cdf_levels[c][others]).sum(axis=-1)
        u_own = rng.random((n_out, samples))
        own_level = (u_own[..., None] > cdf_levels[c][:, None, :]).sum(axis=-1)
        other_level = np.minimum(other_level, problem.n_levels - 1)
        own_level = np.minimum(own_level, problem.n_levels - 1)
        rewards = np.concatenate([levels[own_level][..., None], levels[other_level]], axis=-1)
        adv = group_advantages(rewards, algo)[..., 0]  # (K, S)
        means[c] = adv.mean(axis=1)
        errs[c] = adv.std(axis=1, ddof=1) / math.sqrt(samples)
    return MonteCarloPreference(problem.like_policy(means, policy), problem.like_policy(errs, policy), samples)
