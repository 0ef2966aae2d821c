"""What a solve will cost, estimated before it starts, and the refusal of hopeless ones.

The exact engine's work grows without bound in some sizes: the count vectors of P_G for L
reward levels at group size G (C(G + L - 2, L - 1) of them, THEORY.md section 4), the
binomial tables of two levels at a large finite G, the dense Jacobians of many levels at
G = inf, the finite-difference Newton of the tree solver (section 10) in the number of free
per-prefix logits. ``estimate_work`` predicts the seconds one context costs from these
sizes alone (a formula fitted to measured solves on one core, see
``benchmarks/bench_work.py``; a deterministic function of the problem, so whether a solve
is refused never depends on the machine) and ``check_work`` refuses, before any table is
built, a solve whose estimate exceeds the limit, naming the field to change and the
largest size that fits.

The estimates are rough: within about 2x of what the benchmark measures for many levels
at a finite G, two levels at a large G and the tree solver; at G = inf the cost depends on
how fast the solve converges and the estimate is an upper bound up to about 8x too high.
They bound work that would otherwise run for hours or exhaust memory; they are not a
schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from grpo_align.errors import InputError
from grpo_align.theory.penalties import PENALTIES
from grpo_align.theory.preference import _n_count_vectors
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO

__all__ = ["MAX_MEMORY_BYTES", "MAX_SECONDS", "WorkEstimate", "WorkLimitError", "check_work", "estimate_work"]

#: Default limit on the estimated seconds of one context's solve.
MAX_SECONDS = 60.0

#: Largest estimated working memory of one solve call (tables of P_G, the tree's arrays).
MAX_MEMORY_BYTES = 4 * 2**30

# Cost model (seconds on one core; benchmarks/bench_work.py prints estimate / measured).
#: two levels, G above the polynomial evaluation: 24 evaluations of a 35,392-point table,
#: each point a G-term binomial expectation
_BINARY_TABLE_POINTS = 24 * 35_392
#: count-vector terms per second of the exact P_G (BLAS matrix products)
_TERMS_PER_SECOND = 3.7e9
#: count-vector probabilities per second (one exp each, per point and count vector)
_EXPS_PER_SECOND = 1e8
#: the fixed part of one L > 2 solve (continuation set-up, stability, checks)
_LEVELS_FIXED_SECONDS = 0.3
#: two-level binomial terms per second (an exp and a multiply-add each)
_BINARY_TERMS_PER_SECOND = 2e8
#: evaluations of P_G (each at about L points) in one L > 2 solve: continuation and Newton
_EVALUATIONS = 600
#: G = inf, L > 2: seconds = _LIMIT_COEF * L ** _LIMIT_POWER for one context
_LIMIT_COEF, _LIMIT_POWER = 0.02, 1.33
#: tree solver: seconds per evaluation of the gradient field, fixed part and per E^2 K
_TREE_EVAL_FIXED, _TREE_EVAL_PER = 1.5e-4, 2e-9
#: tree solver: Newton iterations per start and starts per face
_TREE_ITERATIONS, _TREE_STARTS = 60, 8


class WorkLimitError(InputError):
    """A solve refused up front: its estimated cost exceeds the limit."""


@dataclass(frozen=True)
class WorkEstimate:
    """The estimated cost of solving one problem.

    Attributes
    ----------
    seconds : float
        Estimated seconds of the costliest context (one core).
    memory_bytes : float
        Estimated working memory of the whole call.
    field : str
        The input that drives the cost (what to change to make it smaller).
    what : str
        The cost in words, for the message.
    advice : str
        What to change, with the largest size within the default limit where one exists.
    """

    seconds: float
    memory_bytes: float
    field: str
    what: str
    advice: str


def _count_vectors(group_size: int, n_levels: int) -> int:
    """C(G + L - 2, L - 1): the count vectors of the other G - 1 members (section 4)."""
    return _n_count_vectors(group_size - 1, n_levels)


def _levels_seconds(group_size: int, n_levels: int) -> float:
    """One context's seconds for L > 2 levels at finite G: at each of about L points per
    evaluation, N probabilities (an exp each) and an N x L product."""
    # in logarithms: N overflows a float long before the search over L stops
    log_n = math.lgamma(group_size + n_levels - 1) - math.lgamma(n_levels) - math.lgamma(group_size)
    per_term = n_levels / _TERMS_PER_SECOND + 1.0 / _EXPS_PER_SECOND
    log_s = log_n + math.log(n_levels) + math.log(_EVALUATIONS * per_term)
    return _LEVELS_FIXED_SECONDS + (math.exp(log_s) if log_s < 700 else math.inf)


def _limit_seconds(n_levels: int) -> float:
    """One context's seconds for L > 2 levels at G = inf (dense L x L differences, Newton)."""
    return _LIMIT_COEF * n_levels**_LIMIT_POWER


def _binary_seconds(group_size: int) -> float:
    """Two levels at a finite G beyond the polynomial form: the context-free table."""
    from grpo_align.theory.stationary.tables import HORNER_MAX_G  # the table's threshold

    if group_size <= HORNER_MAX_G:
        return 0.0
    return _BINARY_TABLE_POINTS * group_size / _BINARY_TERMS_PER_SECOND


def _largest(fits: Callable[[int], bool], start: int, stop: int) -> int | None:
    """The largest n in [start, stop] with fits(n) (fits monotone decreasing), or None."""
    if not fits(start):
        return None
    lo, hi = start, stop
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _tree_sizes(problem: Problem) -> list[tuple[int, int, int, int]]:
    """Per context (K active outputs, E edges, P free logits, branching prefixes)."""
    out = []
    seqs_all = problem.sequences
    for c in range(problem.n_contexts):
        active = np.nonzero(problem.ref[c] > 0)[0].tolist()
        seqs = seqs_all[c] if seqs_all is not None else tuple((o,) for o in range(problem.n_outputs))
        nexts: dict[tuple[object, ...], set[object]] = {}
        for o in active:
            s = seqs[o]
            for j in range(len(s)):
                nexts.setdefault(tuple(s[:j]), set()).add(s[j])
        branching = [len(ch) for ch in nexts.values() if len(ch) >= 2]
        edges = sum(branching)
        out.append((len(active), edges, edges - len(branching), len(branching)))
    return out


def _tree_faces(n_active: int, algo: GRPO) -> int:
    """The supports the tree solver searches (``tree._faces``)."""
    if algo.penalty_in == "loss" and algo.beta > 0 and PENALTIES[algo.penalty].repels_boundary:
        return 1
    from grpo_align.theory.stationary.tree import MAX_FACE_OUTPUTS

    return 2**n_active - 1 if n_active <= MAX_FACE_OUTPUTS else n_active + 1


def _tree_estimate(problem: Problem, algo: GRPO) -> WorkEstimate:
    sizes = _tree_sizes(problem)
    group_factor = 1.0
    if not algo.is_limit and problem.n_levels > 2:
        group_factor += (
            min(1e300, float(_count_vectors(int(algo.group_size), problem.n_levels))) * problem.n_levels / 5e3
        )
    sliding = algo.penalty_in == "reward" and algo.normalization == "shift_scale" and algo.eps == 0
    path = 6 if sliding and not algo.is_limit else 1

    def seconds(n_active: int, edges: int, free: int) -> float:
        per_eval = (_TREE_EVAL_FIXED + _TREE_EVAL_PER * edges**2 * n_active) * group_factor
        evals = _tree_faces(n_active, algo) * _TREE_STARTS * _TREE_ITERATIONS * (2 * free + 1) * path
        return per_eval * evals

    worst = max(sizes, key=lambda s: seconds(s[0], s[1], s[2]))
    n_active, edges, free, _ = worst
    # Tree.below: an (E, K, E) boolean array per context, and float arrays of its shape
    memory = max(float(e) ** 2 * k for k, e, _, _ in sizes) * 17
    largest = _largest(lambda k: seconds(k, k, k - 1) <= MAX_SECONDS, 2, 10**6)
    return WorkEstimate(
        seconds=seconds(n_active, edges, free),
        memory_bytes=memory,
        field="sequences" if problem.has_sequences else "ref",
        what=(
            f"the tree solver's Newton in {free} free per-prefix logits ({n_active} outputs, "
            f"{edges} branches) is about {seconds(n_active, edges, free):.3g} s per context"
        ),
        advice=(
            "give fewer outputs per context"
            + (f" (about {largest} first-token-distinct outputs fit)" if largest else "")
            + (
                "; sequences of one length with distinct first tokens (or none) use the faster atomic solver"
                if problem.has_sequences
                else ""
            )
        ),
    )


def estimate_work(problem: Problem, algo: GRPO, method: str | None = None) -> WorkEstimate:
    """The estimated cost of ``stationary_policy(problem, algo, method)`` (see the module
    docstring)."""
    from grpo_align.theory.stationary.tree import needs_tree_solver

    if method == "tree" or needs_tree_solver(problem, algo):
        return _tree_estimate(problem, algo)
    n_ctx = problem.n_contexts
    if problem.is_preference or not algo.regularised:
        return WorkEstimate(0.0, 0.0, "ref", "", "")
    n_levels = problem.n_levels
    if n_levels <= 2:
        if algo.is_limit:
            return WorkEstimate(0.0, 0.0, "group_size", "", "")
        g = int(algo.group_size)
        seconds = _binary_seconds(g)
        largest = _largest(lambda gg: _binary_seconds(gg) <= MAX_SECONDS, 2, 2**40)
        return WorkEstimate(
            seconds=seconds,
            # probabilities of count vectors are formed in blocks of about 2^20 entries
            # (``LevelPreference``); the table of each distinct pair of classes
            memory_bytes=8.0 * (2**20 * 4 + 3 * 35_392),
            field="group_size",
            what=(
                f"the exact P_G of two reward levels at group_size={g} sums {g:,} binomial terms "
                f"at each of {_BINARY_TABLE_POINTS:,} table points, about {seconds:.3g} s"
            ),
            advice=(
                f"use group_size <= {largest:,} or group_size=math.inf (the large-group limit, THEORY.md section 8)"
            ),
        )
    shared = bool(np.all(problem.levels == problem.levels[:1]))
    if algo.is_limit:
        seconds = _limit_seconds(n_levels)
        largest = _largest(lambda ll: _limit_seconds(ll) <= MAX_SECONDS, 3, 10**7)
        return WorkEstimate(
            seconds=seconds,
            memory_bytes=8.0 * n_levels**2 * (1 if shared else n_ctx) * 4,
            field="levels",
            what=f"{n_levels} reward levels at group_size=inf are about {seconds:.3g} s per context",
            advice=f"round the rewards to at most {largest} distinct levels",
        )
    g = int(algo.group_size)
    seconds = _levels_seconds(g, n_levels)
    n_vec = _count_vectors(g, n_levels)
    n_vec_f = float(n_vec) if n_vec < 2**1000 else math.inf
    largest = _largest(lambda ll: _levels_seconds(g, ll) <= MAX_SECONDS, 3, 10**6)
    smaller_g = _largest(lambda gg: _levels_seconds(gg, n_levels) <= MAX_SECONDS, 2, g)
    return WorkEstimate(
        seconds=seconds,
        # the advantage table (N, L) per distinct level row, about six arrays of its size
        # while it is built, and the (points, N) probabilities
        memory_bytes=8.0 * n_vec_f * n_levels * (6 * (1 if shared else n_ctx) + 1),
        field="levels",
        what=(
            f"the exact P_G of {n_levels} reward levels at group_size={g} enumerates "
            f"C(G + L - 2, L - 1) = {n_vec:,} count vectors, about {seconds:.3g} s per context"
        ),
        advice=(
            ("round the rewards to at most " + f"{largest} distinct levels" if largest else "round the rewards")
            + (f", use group_size <= {smaller_g}" if smaller_g else "")
            + ", or group_size=math.inf"
        ),
    )


def _size(n_bytes: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes:.0f} bytes"


def check_work(
    problem: Problem, algo: GRPO, max_seconds: float | None = MAX_SECONDS, method: str | None = None
) -> WorkEstimate:
    """``estimate_work``, raising ``WorkLimitError`` where it exceeds a limit.

    ``max_seconds`` None lifts the time limit (the memory limit stays: beyond it the solve
    would fail with numpy's MemoryError or be killed). The message is one line: the cost,
    the limit, what to change.
    """
    est = estimate_work(problem, algo, method)
    if max_seconds is not None and est.seconds > max_seconds:
        raise WorkLimitError(
            est.field,
            f"{est.what} (limit {max_seconds:g} s; max_seconds=None lifts it); {est.advice}",
        )
    if est.memory_bytes > MAX_MEMORY_BYTES:
        raise WorkLimitError(
            est.field,
            f"{est.what}, with about {_size(est.memory_bytes)} of working memory (limit "
            f"{_size(MAX_MEMORY_BYTES)}); solve fewer contexts at once, or {est.advice}",
        )
    return est
