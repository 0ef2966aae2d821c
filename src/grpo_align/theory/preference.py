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


def level_advantage_table(levels: np.ndarray, algo: GRPO) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Advantage of the first member for every (others' count vector, own level).

    Returns ``counts`` (N, L), ``log_coef`` (N,) the log multinomial coefficients of
    Multinomial(G - 1, .), and ``table`` (C, N, L) with table[c, n, l] = A_1 when
    r_1 = levels[c, l] and the other G - 1 rewards have level counts counts[n]
    (THEORY.md section 4).
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
    log_coef = gammaln(g) - gammaln(counts + 1.0).sum(axis=1)
    v = levels[:, None, None, :]  # (C, 1, 1, L): level values
    own = levels[:, None, :]  # (C, 1, L): own level
    n = counts[None, :, None, :].astype(float)  # (1, N, 1, L)
    mean = (own + (n * v).sum(axis=-1)) / g  # (C, N, L)
    centred = own - mean
    if algo.normalization == "raw":
        return counts, log_coef, np.broadcast_to(own, mean.shape).copy()
    if algo.normalization == "shift":
        return counts, log_coef, centred
    if algo.normalization == "rloo":
        return counts, log_coef, centred * (g / (g - 1))
    # sum of squared deviations, computed about the mean to avoid cancellation
    ssd = centred**2 + (n * (v - mean[..., None]) ** 2).sum(axis=-1)
    std = np.sqrt(ssd / (g - algo.ddof))
    eye = np.eye(n_levels, dtype=np.int64)
    # all G rewards equal: the others all sit on the own level
    all_equal = np.all(counts[:, None, :] == (g - 1) * eye[None, :, :], axis=-1)[None]
    table = np.where(all_equal, 0.0, centred / np.where(all_equal, 1.0, std + algo.eps))
    return counts, log_coef, table


def _limit_level_preference(levels: np.ndarray, w: np.ndarray, algo: GRPO) -> np.ndarray:
    """h_l(w) for G -> infinity (THEORY.md section 8): (v_l - mu_w)/(sigma_w + eps) etc."""
    mu = (w * levels).sum(axis=1, keepdims=True)
    if algo.normalization == "raw":
        return np.broadcast_to(levels, w.shape).copy()
    if algo.normalization in ("shift", "rloo"):
        return levels - mu
    sigma = np.sqrt(np.maximum((w * (levels - mu) ** 2).sum(axis=1, keepdims=True), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        h = (levels - mu) / (sigma + algo.eps)
    # a point-mass w: every other member equals the own level unless it differs, where the
    # single deviating member's advantage grows like sqrt(G)
    return np.where(np.isclose(levels, mu) & (sigma + algo.eps == 0), 0.0, h)


class LevelPreference:
    """h(w) for a batch of contexts, with the enumeration table built once.

    Contexts sharing the same level vector share one table.
    """

    def __init__(self, levels: np.ndarray, algo: GRPO) -> None:
        self.algo = algo
        self.levels = levels
        if algo.is_limit:
            return
        first = levels[:1]
        if np.all(levels == first):
            self.counts, self.log_coef, self.table = level_advantage_table(first, algo)
            self.shared = True
        else:
            self.counts, self.log_coef, self.table = level_advantage_table(levels, algo)
            self.shared = False
        self.counts_f = self.counts.astype(float)

    def take(self, idx: np.ndarray) -> LevelPreference:
        """The same h for the contexts ``idx`` (repeats allowed), sharing the tables."""
        sub = LevelPreference.__new__(LevelPreference)
        sub.__dict__.update(self.__dict__)
        sub.levels = self.levels[idx]
        if not self.algo.is_limit and not self.shared:
            sub.table = self.table[idx]
        return sub

    def __call__(self, w: np.ndarray) -> np.ndarray:
        """h(w), shape (C, ..., L) for w of shape (C, ..., L)."""
        if self.algo.is_limit:
            extra = (1,) * (w.ndim - 2)
            levels = self.levels.reshape(self.levels.shape[:1] + extra + self.levels.shape[1:])
            flat = _limit_level_preference(
                np.broadcast_to(levels, w.shape).reshape(-1, w.shape[-1]), w.reshape(-1, w.shape[-1]), self.algo
            )
            return flat.reshape(w.shape)
        log_w = np.where(w > 0, np.log(np.where(w > 0, w, 1.0)), -1e300)
        # (C, ..., N): Multinomial(G - 1, w) probability of each count vector
        pmf = np.exp(self.log_coef + log_w @ self.counts_f.T)
        if self.shared:
            return pmf @ self.table[0]
        return np.einsum("c...n,cnl->c...l", pmf, self.table)


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
