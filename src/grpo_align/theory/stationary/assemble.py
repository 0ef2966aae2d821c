"""From checked candidate roots to a result: one choice rule, one status, one wording.

Every solver (``scan``'s batch path, ``newton``, ``proximal``, ``replicator`` and the tree
solver of THEORY.md section 10) returns candidate roots, each already checked from scratch
(its residual against its tolerance) and rated (its stability, THEORY.md section 9). This
module turns those roots into the per-context fields of a ``StationaryResult``:

- ``choose_roots``: which accepted root is reported (``ROOT_CHOICE_RULE``);
- ``outcome``: the status (``STATUSES``) and the message of each context.

Both work on flat arrays of roots (one row per root, sorted by context), so a batch of 10^6
contexts is assembled with array operations and a message is built once per distinct
wording; ``assemble_roots`` is the entry for solvers that hold their roots as objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grpo_align.theory.penalties import PENALTIES
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO
from grpo_align.theory.stationary.result import (
    RESIDUAL_TOLERANCE,
    ROOT_KINDS,
    RootSearch,
    StationaryResult,
    StationaryRoot,
)

__all__ = ["ROOT_CHOICE_RULE", "RootChoice", "assemble_roots", "choose_roots", "chosen_fields", "outcome"]

#: The rule ``choose_roots`` applies, as the summaries of ``predict`` and the docs state it.
ROOT_CHOICE_RULE = (
    "the one the expected flow reaches from pi_ref where the solver knows it (two reward classes: a "
    "one-dimensional flow, with the penalty in the loss or the reward), then the stable one (stability not known to fail) before an unstable one, "
    "an interior or sliding one before "
    "one on a face of the simplex, then the policy nearest pi_ref (max norm over outputs), then the one whose "
    "reward-level mixture is nearest the reference's"
)

_INTERIOR, _BOUNDARY, _SLIDING, _LIMIT = (ROOT_KINDS.index(k) for k in ("interior", "boundary", "sliding", "limit"))


@dataclass(frozen=True)
class RootChoice:
    """Per context, which root is reported and what was found (``choose_roots``).

    Attributes
    ----------
    chosen : ndarray of int, (C,)
        Index (into the flat roots) of the reported accepted root; -1 where none was accepted.
    best : ndarray of int, (C,)
        Index of the root with the smallest residual (what a failed context reports); -1
        for a context without roots.
    n_accepted, n_stable, n_boundary, n_sliding : ndarray of int, (C,)
        Accepted roots, and among them the stable ones, those on a face, the sliding ones.
    """

    chosen: np.ndarray
    best: np.ndarray
    n_accepted: np.ndarray
    n_stable: np.ndarray
    n_boundary: np.ndarray
    n_sliding: np.ndarray

    @property
    def success(self) -> np.ndarray:
        """(C,) bool: some root was accepted."""
        return self.n_accepted > 0

    @property
    def picked(self) -> np.ndarray:
        """(C,) int: the chosen root, else the best candidate of a failed context (-1: none)."""
        return np.where(self.chosen >= 0, self.chosen, self.best)


def _first_per_context(keys: tuple[np.ndarray, ...], context: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per context, the index of its root that sorts first by ``keys`` (last key primary, as
    ``np.lexsort``, which is stable: equal keys keep the order found); -1 without roots."""
    out = np.full(counts.size, -1)
    if context.size:
        order = np.lexsort((*keys, context))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        has = counts > 0
        out[has] = order[starts[has]]
    return out


def choose_roots(
    context: np.ndarray,
    accepted: np.ndarray,
    stable: np.ndarray,
    kind: np.ndarray,
    mixture_distance: np.ndarray,
    policy_distance: np.ndarray,
    residual: np.ndarray,
    n_contexts: int,
    reached: np.ndarray | None = None,
) -> RootChoice:
    """The reported root of every context by ``ROOT_CHOICE_RULE``.

    Parameters
    ----------
    context : ndarray of int, (R,)
        The context of each root, non-decreasing.
    accepted : ndarray of bool, (R,)
        Residual within the root's tolerance.
    stable : ndarray of int, (R,)
        1 stable, 0 unstable, -1 not computed.
    kind : ndarray of int, (R,)
        Index into ``ROOT_KINDS``.
    mixture_distance, policy_distance : ndarray, (R,)
        Max-norm distances of the root's reduced point (its reward-level mixture, the policy
        for a pairwise-preference problem) to the reference's, and of its policy to pi_ref.
    residual : ndarray, (R,)
    n_contexts : int
    reached : ndarray of bool, (R,), optional
        The root the expected flow from pi_ref reaches, where the solver knows it (at most
        one per context); it is reported when accepted.
    """
    counts = np.bincount(context, minlength=n_contexts)
    on_face = kind == _BOUNDARY
    known_unstable = stable == 0
    n_accepted = counts if bool(np.all(accepted)) else np.bincount(context, weights=accepted, minlength=n_contexts)
    n_accepted = n_accepted.astype(np.int64)
    n_stable = np.bincount(context, weights=accepted & (stable == 1), minlength=n_contexts).astype(np.int64)
    n_boundary = np.bincount(context, weights=accepted & on_face, minlength=n_contexts).astype(np.int64)
    n_sliding = np.bincount(context, weights=accepted & (kind == _SLIDING), minlength=n_contexts).astype(np.int64)
    if context.size == n_contexts and bool(np.all(counts == 1)):
        # one root per context, in context order (the batch path's usual case): nothing to sort
        rows = np.arange(n_contexts)
        return RootChoice(np.where(accepted, rows, -1), rows, n_accepted, n_stable, n_boundary, n_sliding)
    rank = np.where(accepted, 2 * known_unstable + on_face, 4)
    if reached is not None:
        rank = np.where(accepted & reached, -1, rank)
    chosen = _first_per_context((mixture_distance, policy_distance, rank), context, counts)
    chosen = np.where(n_accepted > 0, chosen, -1)
    best = _first_per_context((residual,), context, counts)
    return RootChoice(chosen, best, n_accepted, n_stable, n_boundary, n_sliding)


def chosen_fields(
    choice: RootChoice, policy: np.ndarray, residual: np.ndarray, ref: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per context, the picked root's policy (C, K) and residual (C,) from the flat roots'
    ``policy`` (R, K) and ``residual`` (R,); pi_ref and inf for a context without roots."""
    picked = choice.picked
    ok = picked >= 0
    out_policy = ref.copy()
    out_residual = np.full(ref.shape[0], np.inf)
    out_policy[ok] = policy[picked[ok]]
    out_residual[ok] = residual[picked[ok]]
    return out_policy, out_residual


def _limit_message(algo: GRPO, n_face: int, converged: bool) -> str:
    """Without regularisation (THEORY.md section 9): where the expected dynamics go."""
    why = "beta = 0" if algo.beta == 0 else "the k1 penalty has zero expected gradient"
    if not converged:
        return f"no interior stationary policy ({why}) and the expected dynamics reach no face where the classes tie"
    if n_face == 1:
        return (
            f"no interior stationary policy ({why}); GRPO drives all mass to the reward class "
            "that wins under P_G; policy is that limit (reference ratios inside the class)"
        )
    return (
        f"no interior stationary policy ({why}); GRPO drives all mass to a face of {n_face} "
        "reward classes that tie exactly under P_G; policy is that limit (reference ratios inside the face)"
    )


def _failure_message(algo: GRPO, best_residual: float | None) -> str:
    return (
        f"no stationary policy found to tolerance {RESIDUAL_TOLERANCE:g} (relative to the size of the terms)"
        + (f" (best residual {best_residual:.2e})" if best_residual is not None else "")
        + "; the expected dynamics may cycle or the solver did not converge"
        + ("; for G = inf they may also run to the boundary, where P_G diverges" if algo.is_limit else "")
    )


def _success_message(
    algo: GRPO, n: int, n_stable: int, n_boundary: int, n_sliding: int, kind: int, exhaustive_one: bool
) -> str:
    smooth = PENALTIES[algo.penalty].smooth
    if n == 1 and exhaustive_one:
        head = "converged: unique stationary policy found"
    else:
        counts = f"{n_stable} stable" if smooth else "stability not computed"
        counts += f", {n_boundary} on the boundary" if n_boundary else ""
        counts += f", {n_sliding} sliding" if n_sliding else ""
        head = f"converged: {n} stationary polic{'y' if n == 1 else 'ies'} found ({counts})"
    if n > 1:
        head += "; policy chosen stable first, interior first, nearest pi_ref"
    if kind == _BOUNDARY:
        head += (
            "; on a face of the simplex: the KKT conditions hold there (every drained output is pushed out; "
            "THEORY.md section 9 and eq. 10.10)"
        )
    elif kind == _SLIDING:
        head += "; a sliding-mode (Filippov) equilibrium where the modified rewards tie (THEORY.md eq. 10.9)"
    if not smooth:
        head += (
            "; abs: any redistribution inside a reward class that keeps each output on the same side "
            "of pi_ref is stationary too"
        )
    return head


def outcome(
    choice: RootChoice,
    kind: np.ndarray,
    residual: np.ndarray,
    algo: GRPO,
    *,
    claims: Sequence[str] | None = None,
    exhaustive_one: bool = True,
    limit_faces: np.ndarray | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Status (one of ``STATUSES``) and message of every context.

    ``kind`` and ``residual`` are the flat roots' (``choose_roots``'s inputs). ``claims``:
    per context, what the search covered (appended to its message); ``exhaustive_one``: a
    single root found is the unique one (the search brackets every root), else it is
    counted; ``limit_faces``: for "limit" roots, the number of reward classes the limit
    keeps. Contexts with the same wording share one string object, so 10^6 contexts cost
    a fill of references, not 10^6 strings; a failed context (its own best residual) gets
    its own.
    """
    n_ctx = choice.chosen.size
    success = choice.success
    chosen_kind = np.where(success, kind[np.maximum(choice.chosen, 0)] if kind.size else _INTERIOR, -1)
    claim_text: list[str] = [""]
    claim_code = np.zeros(n_ctx, np.int64)
    if claims is not None:
        distinct, inverse = np.unique(np.asarray(claims, dtype=str), return_inverse=True)
        claim_text, claim_code = [str(t) for t in distinct], inverse.ravel()
    face = np.zeros(n_ctx, np.int64) if limit_faces is None else np.asarray(limit_faces, np.int64)
    keys = np.stack(
        [choice.n_accepted, choice.n_stable, choice.n_boundary, choice.n_sliding, chosen_kind, claim_code, face], axis=1
    )
    ok = np.nonzero(success)[0]
    groups, inverse = np.unique(keys[ok], axis=0, return_inverse=True)
    inverse = inverse.ravel()
    wordings: list[tuple[str, str]] = []
    for n, n_st, n_b, n_sl, k, code, n_face in groups.tolist():
        if k == _LIMIT:
            status, text = "limit", _limit_message(algo, int(n_face), True)
        else:
            status = ROOT_KINDS[k]
            text = _success_message(algo, n, n_st, n_b, n_sl, k, exhaustive_one)
        wordings.append((status, text + claim_text[code]))
    if ok.size == n_ctx and len(wordings) == 1:
        # the usual case of a large batch: one shared string each, by tuple repetition
        return (wordings[0][0],) * n_ctx, (wordings[0][1],) * n_ctx
    status_arr = np.full(n_ctx, "failed", dtype=object)
    message_arr = np.full(n_ctx, "", dtype=object)
    for g, (st, text) in enumerate(wordings):
        sel = ok[inverse == g]
        status_arr[sel] = st
        message_arr[sel] = text
    for c in np.nonzero(~success)[0].tolist():
        b = int(choice.best[c])
        if b >= 0 and kind[b] == _LIMIT:
            message_arr[c] = _limit_message(algo, 0, False)
        else:
            message_arr[c] = _failure_message(algo, float(residual[b]) if b >= 0 else None) + claim_text[claim_code[c]]
    return tuple(status_arr.tolist()), tuple(message_arr.tolist())


def assemble_roots(
    problem: Problem,
    algo: GRPO,
    roots: Sequence[Sequence[StationaryRoot]],
    *,
    method: str,
    nit: int,
    search: tuple[RootSearch, ...] = (),
    claims: Sequence[str] | None = None,
    exhaustive_one: bool = True,
    limit_faces: np.ndarray | None = None,
    result_type: type[StationaryResult] = StationaryResult,
) -> Any:
    """The result of checked roots held as objects, per context (atomic and tree solvers).

    A context without an accepted root reports its smallest-residual candidate (pi_ref if it
    has none) with ``success`` False; see ``outcome`` for the other arguments.
    """
    n_ctx = problem.n_contexts
    flat = [r for ctx in roots for r in ctx]
    context = np.repeat(np.arange(n_ctx), [len(ctx) for ctx in roots]).astype(np.int64)
    ref_point = problem.reference_mixture() if not problem.is_preference else problem.ref
    accepted = np.array([r.residual <= r.tolerance for r in flat], dtype=bool)
    stable = np.array([-1 if r.stable is None else int(r.stable) for r in flat], dtype=np.int64)
    kind = np.array([ROOT_KINDS.index(r.kind) for r in flat], dtype=np.int64)
    residual = np.array([r.residual for r in flat], dtype=float)
    mix_d = np.array([float(np.max(np.abs(r.mixture - ref_point[c]))) for r, c in zip(flat, context, strict=True)])
    pol_d = np.array([float(np.max(np.abs(r.policy - problem.ref[c]))) for r, c in zip(flat, context, strict=True)])
    choice = choose_roots(context, accepted, stable, kind, mix_d, pol_d, residual, n_ctx)
    status, messages = outcome(
        choice, kind, residual, algo, claims=claims, exhaustive_one=exhaustive_one, limit_faces=limit_faces
    )
    policy = problem.ref.copy()
    res = np.full(n_ctx, np.inf)
    picked = choice.picked
    for c in np.nonzero(picked >= 0)[0].tolist():
        policy[c] = flat[picked[c]].policy
        res[c] = flat[picked[c]].residual
    return result_type(
        policy=policy,
        success=choice.success,
        status=status,
        residual=res,
        nit=nit,
        message=messages,
        roots=tuple(tuple(ctx) for ctx in roots),
        algo=algo,
        problem=problem,
        method=method,
        search=search,
    )
