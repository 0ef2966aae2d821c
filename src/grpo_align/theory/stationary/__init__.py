"""Stationary policies of GRPO and its variants (THEORY.md sections 5 and 9).

A stationary policy pi = pi_old = pi_theta zeroes the expected gradient of the tabular
softmax policy:

    P_G(o | pi) - beta phi(o) = c   for every o with pi(o) > 0.

k3:        pi(o) = pi_ref(o) / (1 - (P_G(o|pi) - c)/beta), every denominator positive;
k2 / kl:   pi(o) proportional to pi_ref(o) exp(P_G(o|pi)/beta);
abs:       P_G(o|pi) - c in beta * sign(log pi(o)/pi_ref(o)) (a set at pi(o) = pi_ref(o));
k1 or beta = 0: no interior solution, mass flows to the best reward class.

Layout: ``reduction`` maps a problem to its reward classes (section 5); the solvers
``scan`` (two levels: every root bracketed), ``newton`` (more levels, or a
pairwise-preference problem), ``proximal`` (abs) and ``replicator`` (no regularisation)
return candidates; every candidate is checked from scratch by ``residual`` and rated by
``stability`` (section 9); ``result`` holds the result types.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from grpo_align.errors import InputError
from grpo_align.theory.penalties import PENALTIES
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO
from grpo_align.theory.stationary.assemble import ROOT_CHOICE_RULE, assemble_roots
from grpo_align.theory.stationary.batch import batch_binary
from grpo_align.theory.stationary.boundary import has_boundary_roots, vertex_candidates
from grpo_align.theory.stationary.continuation import continuation_mixtures
from grpo_align.theory.stationary.newton import N_FIXED_STARTS, newton_candidates
from grpo_align.theory.stationary.proximal import proximal_candidates
from grpo_align.theory.stationary.reduction import Reduced, reward_classes
from grpo_align.theory.stationary.replicator import replicator_limit
from grpo_align.theory.stationary.residual import (
    penalty_coefficient,
    preference_2d,
    residual_given,
    residual_tolerance,
    stationarity_residual,
)
from grpo_align.theory.stationary.result import (
    RESIDUAL_TOLERANCE,
    ROOT_KINDS,
    STATUSES,
    RootKind,
    RootSearch,
    StationaryContext,
    StationaryResult,
    StationaryRoot,
)
from grpo_align.theory.stationary.reward_tie import reward_tie_policy
from grpo_align.theory.stationary.scan import masses_of_mixtures, scan_candidates
from grpo_align.theory.stationary.stability import stability
from grpo_align.theory.stationary.tree import (
    SequenceRoot,
    SequenceStationaryResult,
    needs_tree_solver,
    tree_stationary_policy,
)
from grpo_align.theory.stationary.work import MAX_SECONDS, WorkLimitError, check_work, estimate_work

__all__ = [
    "METHODS",
    "RESIDUAL_TOLERANCE",
    "ROOT_CHOICE_RULE",
    "ROOT_KINDS",
    "STATUSES",
    "RootKind",
    "RootSearch",
    "SequenceRoot",
    "SequenceStationaryResult",
    "StationaryContext",
    "StationaryResult",
    "StationaryRoot",
    "WorkLimitError",
    "applicable_methods",
    "estimate_work",
    "penalty_coefficient",
    "reward_classes",
    "stationarity_residual",
    "stationary_policy",
]

#: The solvers ``stationary_policy`` can be asked for by name.
METHODS: tuple[str, ...] = ("scan", "newton", "proximal", "replicator", "tree")

#: What each method needs, for the error message of an inapplicable one.
_NEEDS = {
    "scan": (
        "a reward problem with at most two reward levels and a k3, k2 or kl penalty with beta > 0, or the "
        "penalty in the reward with every output's reward deterministic"
    ),
    "newton": "a k3, k2 or kl penalty with beta > 0",
    "proximal": "the abs penalty with beta > 0",
    "replicator": "no regularisation (beta = 0 or the k1 penalty)",
    "tree": "token sequences or penalty_in='reward' (THEORY.md section 10)",
}


def applicable_methods(problem: Problem, algo: GRPO) -> tuple[str, ...]:
    """The methods of ``METHODS`` that solve ``problem`` under ``algo``, the default first.

    Token sequences or the penalty in the reward (THEORY.md section 10) are solved by
    "tree" alone. Otherwise: without regularisation (beta = 0 or k1) only "replicator" applies (THEORY.md section
    9: no interior stationary policy); with abs only "proximal"; with k3, k2 or kl "newton"
    always and "scan" for a reward problem with at most two levels (then the default,
    since it brackets every root).

    Examples
    --------
    >>> prob = Problem.from_rewards(ref=[0.2, 0.3, 0.5], rewards=[1.0, 0.5, 0.0])
    >>> applicable_methods(prob, GRPO(group_size=2, beta=0.5))
    ('newton',)
    >>> applicable_methods(prob, GRPO(group_size=2, beta=0.0))
    ('replicator',)
    """
    _validate(problem, algo)
    if needs_tree_solver(problem, algo):
        return ("tree",)
    # sequences that change nothing (one-token outputs, say) are solved atomically; "tree"
    # solves them as a tree, the independent route the tests compare with
    tree = ("tree",) if problem.has_sequences or algo.penalty_in == "reward" else ()
    if algo.penalty_in == "reward":  # two deterministic reward classes (reward_tie)
        return ("scan", *tree)
    if not algo.regularised:
        return ("replicator", *tree)
    if not PENALTIES[algo.penalty].smooth:  # abs: set-valued conditions (eq. 10.16)
        return ("proximal", *tree)
    if not problem.is_preference and problem.n_levels <= 2:
        return ("scan", "newton", *tree)
    return ("newton", *tree)


def stationary_policy(
    problem: Problem, algo: GRPO, method: str | None = None, *, max_seconds: float | None = MAX_SECONDS
) -> StationaryResult:
    """The stationary policies of GRPO variant ``algo`` on ``problem`` (THEORY.md section 5).

    Every penalty is solved in the reduced space (the reward-level mixture w, or the
    policy itself for a pairwise-preference problem). With two reward levels every root is
    found by a scan; each root is reported with its stability (``roots``), and ``policy``
    is the one ``ROOT_CHOICE_RULE`` picks (stable first, interior first, nearest pi_ref). Without regularisation (beta = 0 or
    k1) there is no interior stationary policy: ``status`` is "limit" and ``policy`` is the
    vertex the expected dynamics reach from pi_ref. ``success`` is False, with a message,
    whenever the stationarity residual recomputed from the returned policy exceeds 1e-9
    times the size of the terms.

    Parameters
    ----------
    problem : Problem
    algo : GRPO
    method : {None, "scan", "newton", "proximal", "replicator", "tree"}
        None takes the first of ``applicable_methods(problem, algo)``; a named method that
        does not apply raises ``InputError``.
    max_seconds : float or None
        A solve whose estimated cost per context exceeds this (``work.estimate_work``: the
        count vectors of many reward levels, a large finite G, a large tree) is refused
        up front with ``WorkLimitError`` naming the field to change; None lifts the limit.
        Its working memory is bounded regardless (``work.MAX_MEMORY_BYTES``).

    Returns
    -------
    StationaryResult
        Fields carry the context axis (``policy`` is (C, K), C = 1 for an unbatched
        problem); ``res[c]`` is context c.

    Examples
    --------
    >>> prob = Problem.from_rewards(ref=[0.2, 0.3, 0.5], rewards=[1.0, 0.5, 0.0])
    >>> res = stationary_policy(prob, GRPO(group_size=2, beta=0.5))
    >>> res.policy.shape
    (1, 3)
    >>> res[0].policy.round(6)
    array([0.653113, 0.155904, 0.190983])
    """
    methods = applicable_methods(problem, algo)  # validates problem and algo
    if method is None:
        method = methods[0]
    elif method not in METHODS:
        raise InputError("method", f"expected one of {', '.join(map(repr, METHODS))} or None, got {method!r}")
    elif method not in methods:
        raise InputError(
            "method",
            f"{method!r} needs {_NEEDS[method]}; for this problem and algo use {' or '.join(map(repr, methods))}",
        )
    check_work(problem, algo, max_seconds, method)
    if method == "tree":
        # token sequences or the penalty in the reward: THEORY.md section 10
        return tree_stationary_policy(problem, algo)
    # Candidates can pass through inf/NaN on the way: for G = inf P_G diverges at a point-mass
    # mixture (a deviant member's advantage grows like sqrt(G)), and for beta tiny against the
    # rewards (1e-270) the k3 denominators 1 - (P - c)/beta round to 0. Every candidate is
    # checked from scratch (finite, residual), so the warnings carry no news.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _solve(problem, algo, method)


def _validate(problem: Problem, algo: GRPO) -> None:
    if not isinstance(problem, Problem):
        raise InputError("problem", "expected a grpo_align.Problem")
    if not isinstance(algo, GRPO):
        raise InputError("algo", "expected a grpo_align.GRPO")
    if problem.is_preference:
        if algo.group_size != 2:
            raise InputError("group_size", "a pairwise-preference problem defines P_G for G = 2 only")
        _ = algo.pairwise_scale  # raises for normalisations without the pairwise form


def _limit_result(red: Reduced) -> StationaryResult:
    """Without regularisation: the vertex the replicator flow reaches (section 9)."""
    problem, algo = red.problem, red.algo
    limit, converged = replicator_limit(red)
    policy = red.policy(limit)
    limit_mix = red.point(limit)
    roots = [
        # not converged: no limit to report, so not an accepted root
        (StationaryRoot(policy[c], limit_mix[c], math.nan, 0.0 if ok else math.inf, bool(ok), kind="limit"),)
        for c, ok in enumerate(converged)
    ]
    result: StationaryResult = assemble_roots(
        problem, algo, roots, method="replicator", nit=0, limit_faces=np.sum(limit > 0, axis=1)
    )
    return result


def _candidates(red: Reduced, method: str) -> tuple[list[list[np.ndarray]], int]:
    """Class-mass candidates per context from the solver ``method``."""
    if method == "proximal":
        return proximal_candidates(red)
    if method == "scan":
        return scan_candidates(red)
    if np.all(np.sum(red.ref_mass > 0, axis=1) == 1):
        # every context has one reward class: pi_ref is the only candidate
        return [[red.ref_mass[c]] for c in range(red.ref_mass.shape[0])], 0
    return newton_candidates(red)


def _branch_and_newton(red: Reduced) -> tuple[list[list[np.ndarray]], int, list[RootSearch]]:
    """L > 2: the roots on the large-beta branch (continuation) merged with Newton's (section 11)."""
    found, nit = newton_candidates(red)
    mixtures, searches = continuation_mixtures(red)
    branch = masses_of_mixtures(red, mixtures)
    n_starts = N_FIXED_STARTS + min(red.n_classes, 8)
    for c in range(len(found)):
        for m in branch[c]:
            if all(np.max(np.abs(m - r)) > 1e-8 for r in found[c]):
                found[c].append(m)
        searches[c] = dataclasses.replace(searches[c], newton_starts=n_starts)
    return found, nit, searches


def _add_boundary_roots(red: Reduced, roots: list[list[StationaryRoot]]) -> None:
    """Face policies certified by KKT (``boundary``), checked on their support from scratch."""
    problem, algo = red.problem, red.algo
    per_ctx = vertex_candidates(red)
    for slot in range(max((len(v) for v in per_ctx), default=0)):
        has = np.array([len(v) > slot for v in per_ctx])
        masses = np.stack([per_ctx[c][slot][0] if has[c] else red.ref_mass[c] for c in range(len(per_ctx))])
        pi = red.policy(masses)
        on = pi > 0
        pref = np.where(on, preference_2d(problem, algo, pi), 0.0)
        res, mult = residual_given(problem, algo, pi, pref, check_drained=False)
        tol = residual_tolerance(problem, algo, pi, pref, RESIDUAL_TOLERANCE)
        stab = stability(red, masses)
        mix = red.point(masses)
        for c in np.nonzero(has)[0].tolist():
            if any(np.array_equal(r.policy, pi[c]) for r in roots[c]):
                continue  # a solver found this face already
            roots[c].append(
                StationaryRoot(
                    pi[c], mix[c], float(mult[c]), float(res[c]), stab[c][1], stab[c][0], float(tol[c]), kind="boundary"
                )
            )


def _solve(problem: Problem, algo: GRPO, method: str) -> StationaryResult:
    if algo.penalty_in == "reward":
        return reward_tie_policy(problem, algo)
    red = Reduced(problem, algo)
    if method == "replicator":
        return _limit_result(red)
    if method == "scan":
        fast = batch_binary(red)  # at most two classes per context: all contexts at once
        if fast is not None:
            return fast
    n_ctx = problem.n_contexts
    completeness: list[str] = []
    search: tuple[RootSearch, ...] = ()
    one_class = bool(np.all(np.sum(red.ref_mass > 0, axis=1) == 1))
    if method == "newton" and red.is_reward and problem.n_levels > 2 and not one_class:
        candidates, nit, searches = _branch_and_newton(red)
        search = tuple(searches)
        completeness = [f" (L > 2: {s.describe()})" for s in searches]
    else:
        candidates, nit = _candidates(red, method)
    single = np.sum(red.ref_mass > 0, axis=1) == 1
    for c in np.nonzero(single)[0].tolist():
        # one reward class: P_G is the same for every output, so pi_ref is the only
        # stationary policy (and a point-mass mixture would make G = inf diverge)
        candidates[c] = [red.ref_mass[c]]

    # every candidate is checked from scratch; roots are handled in slots across contexts
    roots: list[list[StationaryRoot]] = [[] for _ in range(n_ctx)]
    n_slots = max((len(c) for c in candidates), default=0)
    for slot in range(n_slots):
        # a candidate with non-finite entries (P_G diverging at a point-mass mixture for
        # G = inf) is no root; it must not reach the residual check as a "policy"
        has = np.array(
            [len(candidates[c]) > slot and bool(np.all(np.isfinite(candidates[c][slot]))) for c in range(n_ctx)]
        )
        masses = np.stack([candidates[c][slot] if has[c] else red.ref_mass[c] for c in range(n_ctx)])
        pi = red.policy(masses)
        pref = preference_2d(problem, algo, pi)
        res, mult = residual_given(problem, algo, pi, pref)
        tol = residual_tolerance(problem, algo, pi, pref, RESIDUAL_TOLERANCE)
        stab = stability(red, masses) if PENALTIES[algo.penalty].smooth else [(None, None)] * n_ctx
        mix = red.point(masses)
        # a candidate that drains an output with pi_ref > 0 can only pass the check through
        # the KKT condition of a face (P_G = -inf there): it is a boundary root
        on_face = np.any((pi == 0) & (problem.ref > 0), axis=1) & PENALTIES[algo.penalty].smooth
        for c in np.nonzero(has)[0].tolist():
            roots[c].append(
                StationaryRoot(
                    pi[c],
                    mix[c],
                    float(mult[c]),
                    float(res[c]),
                    stab[c][1],
                    stab[c][0],
                    float(tol[c]),
                    kind="boundary" if on_face[c] else "interior",
                )
            )

    if has_boundary_roots(red):
        _add_boundary_roots(red, roots)

    result: StationaryResult = assemble_roots(
        problem, algo, roots, method=method, nit=nit, search=search, claims=completeness or None
    )
    return result
