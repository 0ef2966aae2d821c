"""Result types of ``stationary_policy`` (THEORY.md sections 5 and 9).

A ``StationaryResult`` always carries the context axis: ``policy`` is (C, K) and every
per-context field has length C, also for an unbatched ``Problem`` (C = 1). ``res[c]`` is the
``StationaryContext`` of context c, with that axis dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

from grpo_align.files import to_jsonable
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO

__all__ = [
    "RESIDUAL_TOLERANCE",
    "ROOT_KINDS",
    "STATUSES",
    "RootKind",
    "RootSearch",
    "StationaryContext",
    "StationaryResult",
    "StationaryRoot",
]

#: The values of ``StationaryResult.status`` (see its docstring).
STATUSES: tuple[str, ...] = ("interior", "boundary", "sliding", "limit", "failed")

#: What a root is (``StationaryRoot.kind``); a context's status is its chosen root's kind.
RootKind = Literal["interior", "boundary", "sliding", "limit"]
ROOT_KINDS: tuple[RootKind, ...] = ("interior", "boundary", "sliding", "limit")

#: A root is accepted when the stationarity residual (max over the support of
#: |P_G(o) - beta phi(o) - c|) is below this times the size of the terms.
RESIDUAL_TOLERANCE = 1e-9


def _fmt(arr: np.ndarray) -> str:
    return np.array2string(np.asarray(arr), precision=6, threshold=8)


@dataclass(frozen=True)
class RootSearch:
    """How far the root search of one context went (THEORY.md section 11).

    Attributes
    ----------
    method : str
        "continuation+newton" (L > 2), "scan" (L <= 2), "newton", or for tree policies
        "tree" (damped Newton per face) or "forward-backward" (abs).
    beta_start : float
        Where the branch was started (its root is unique there); NaN without continuation.
    beta_end : float
        The smallest beta the branch reached.
    path_length : float
        Arclength followed in (w, log beta), log beta weighted by 0.25.
    steps : int
        Accepted continuation steps.
    turning_points : int
        Folds passed (beta turning back), each where two roots are born or die in a pair.
    branch_roots : int
        Crossings of the target beta on the branch (roots found by continuation).
    newton_starts : int
        Damped-Newton starts added (pi_ref, its map image, points near class distributions).
    ended : str
        Why the branch was left: "below target" (beta < target / 8), "boundary" (a level's
        mass reached 0), "stalled" (the step size collapsed) or "step limit"; "" without a
        branch (the tree solver).
    faces : int
        Tree solver: supports searched (faces of the simplex, the whole tree included).
    claim : str
        Tree solver ("tree" or "forward-backward"): what was searched and what is claimed
        (``describe`` returns it); "" otherwise.
    """

    method: str
    beta_start: float
    beta_end: float
    path_length: float
    steps: int
    turning_points: int
    branch_roots: int
    newton_starts: int
    ended: str
    faces: int = 0
    claim: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values (``grpo_align.files.to_jsonable``: NaN as None)."""
        return {f.name: to_jsonable(getattr(self, f.name)) for f in fields(self)}

    def describe(self) -> str:
        """One clause for the result's message: what was searched and what is claimed."""
        if self.claim:
            return self.claim  # tree policies (THEORY.md section 10)
        if self.method != "continuation+newton":
            return f"{self.method}, {self.newton_starts} starts"
        reach = (
            f"followed from beta {self.beta_start:.3g} to {self.beta_end:.3g}"
            f" ({self.steps} steps, {self.turning_points} turning points, ended: {self.ended})"
        )
        claim = (
            "all roots on the branch connected to large beta"
            if self.ended == "below target"
            else "the roots on the part of the large-beta branch followed"
        )
        return f"{claim} ({reach}), plus damped Newton from {self.newton_starts} starts; isolas may be missed"


@dataclass(frozen=True)
class StationaryRoot:
    """One stationary policy of one context (THEORY.md section 9).

    Attributes
    ----------
    policy : ndarray, (K,)
        The stationary policy.
    mixture : ndarray, (L,) or (K,)
        Its reward-level mixture w = sum_o pi(o) F_o (the policy itself for a
        pairwise-preference problem).
    multiplier : float
        The constant c of the stationarity conditions P_G(o) - beta phi(o) = c (NaN for a
        limit without regularisation).
    residual : float
        max over the support of |P_G(o|pi) - beta phi(o) - c|.
    stable : bool or None
        None where stability was not computed (abs penalty, or more than 64 reward
        classes).
    eigenvalues : ndarray or None
        Those of the Jacobian of the expected softmax-logit gradient at the root, on the
        classes' logits (the softmax's null direction removed): negative real parts mean
        that gradient ascent with a small step converges to it.
    tolerance : float
        Residual accepted for this root: ``RESIDUAL_TOLERANCE`` times the size of the terms
        (1, |P_G| and beta |phi| on the support), since rounding in phi = 1 - pi_ref/pi
        grows with pi_ref/pi, plus the residual that rounding the policy to doubles alone
        causes (64 eps beta max(1, pi_ref/pi) for k3, 64 eps beta for k2 and kl), which
        dominates for beta >= 1e7.
    kind : {"interior", "boundary", "sliding", "limit"}
        "interior": every output with pi_ref > 0 has mass; "boundary": a policy on a face of
        the simplex (some output with pi_ref > 0 has mass 0), certified by the KKT
        conditions (THEORY.md section 9 and eq. 10.10): ``residual`` is then measured on the
        support, and every drained output is pushed out; "sliding": a Filippov equilibrium
        on a set where modified rewards tie (tree problems, eq. 10.9); "limit": no
        regularisation, the vertex or face the expected dynamics reach from pi_ref.
    """

    policy: np.ndarray
    mixture: np.ndarray
    multiplier: float
    residual: float
    stable: bool | None
    eigenvalues: np.ndarray | None = field(default=None, repr=False)
    tolerance: float = field(default=RESIDUAL_TOLERANCE, repr=False)
    kind: RootKind = "interior"

    @property
    def boundary(self) -> bool:
        """Whether the root lies on a face of the simplex (``kind == "boundary"``)."""
        return self.kind == "boundary"

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values (``grpo_align.files.to_jsonable``): the policy, its
        mixture and multiplier, residual and tolerance, stability, eigenvalues (complex ones
        as ``{"real", "imag"}``, None where not computed) and its ``kind``."""
        return {f.name: to_jsonable(getattr(self, f.name)) for f in fields(self)}

    def __repr__(self) -> str:
        kind = "" if self.kind == "interior" else f", kind={self.kind!r}"
        return f"StationaryRoot(policy={_fmt(self.policy)}, stable={self.stable}{kind}, residual={self.residual:.1e})"


@dataclass(frozen=True)
class StationaryContext:
    """One context of a ``StationaryResult`` (``res[c]``), the context axis dropped.

    Attributes
    ----------
    policy : ndarray, (K,)
    success : bool
    status : str
        One of ``STATUSES``: "interior", "boundary", "sliding", "limit" or "failed".
    residual : float
    message : str
    roots : tuple of StationaryRoot
    search : RootSearch or None
        How far the root search went (more than two reward levels), else None.
    """

    policy: np.ndarray
    success: bool
    status: str
    residual: float
    message: str
    roots: tuple[StationaryRoot, ...]
    search: RootSearch | None = None

    def __repr__(self) -> str:
        return (
            f"StationaryContext(success={self.success}, status={self.status!r}, policy={_fmt(self.policy)}, "
            f"roots={len(self.roots)}, residual={self.residual:.1e}, message={self.message!r})"
        )


@dataclass(frozen=True)
class StationaryResult:
    """Result of ``stationary_policy`` (fields follow scipy.optimize.OptimizeResult).

    Every field carries the context axis (C = 1 for an unbatched problem); ``res[c]`` is
    the ``StationaryContext`` of context c, ``len(res)`` the number of contexts, and
    iterating yields the contexts.

    Attributes
    ----------
    policy : ndarray, (C, K)
        The stationary policy per context (where several exist, the one
        ``assemble.ROOT_CHOICE_RULE`` picks: stable first, interior first, nearest pi_ref), or the limit policy where no interior one exists
        (``status[c] == "limit"``).
    success : ndarray of bool, (C,)
        True when ``policy[c]`` satisfies the stationarity conditions to
        ``RESIDUAL_TOLERANCE`` times the size of the terms (``StationaryRoot.tolerance``),
        or is the reported limit.
    status : tuple of str, length C
        Per context, one of ``STATUSES``:

        - "interior": ``policy[c]`` is a stationary policy with every pi_ref > 0 output
          in its support (the stationarity conditions hold to the tolerance);
        - "boundary": ``policy[c]`` is a stationary policy on a face of the simplex
          (outputs with pi_ref > 0 drained to 0), certified by the KKT conditions
          (THEORY.md section 9: direct KL at G = inf running to a vertex); ``success`` is
          True;
        - "sliding": (tree problems, THEORY.md eq. 10.9) a Filippov equilibrium on a set
          where the modified rewards of several outputs tie (the penalty in the reward with
          std scaling and eps = 0); ``success`` is True;
        - "limit": no regularisation (beta = 0 or k1), so no stationary policy with a
          pull toward pi_ref exists; ``policy[c]`` is where the expected dynamics go from
          pi_ref: a vertex, or a face whose classes tie exactly (reference ratios
          inside); ``success`` is True;
        - "failed": nothing satisfied the conditions (``success`` False, the message says
          why; ``policy[c]`` is the best candidate or pi_ref).
    residual : ndarray, (C,)
        max over the support of |P_G(o|pi) - beta phi(o) - c| (THEORY.md section 5) of
        ``policy[c]``.
    nit : int
        Iterations of the outer solver (largest over contexts).
    message : tuple of str, length C
    roots : tuple of tuples of StationaryRoot, length C
        Every stationary policy found per context, each with its stability.
    algo : GRPO
    problem : Problem
    method : str
        The solver that produced the candidates: "scan", "newton", "proximal" or
        "replicator".
    search : tuple of RootSearch, length C, or ()
        How far the root search went per context (reward problems with more than two
        levels: continuation in beta plus Newton starts, THEORY.md section 11); empty for
        the other solvers.
    """

    policy: np.ndarray
    success: np.ndarray
    status: tuple[str, ...]
    residual: np.ndarray
    nit: int
    message: tuple[str, ...]
    roots: tuple[tuple[StationaryRoot, ...], ...]
    algo: GRPO = field(repr=False)
    problem: Problem = field(repr=False)
    method: str
    search: tuple[RootSearch, ...] = ()

    def __len__(self) -> int:
        return int(self.policy.shape[0])

    def to_dict(self, inputs: bool = True) -> dict[str, Any]:
        """Every field as plain JSON values, in field order (``grpo_align.files.to_jsonable``
        conventions: arrays as nested lists with the context axis kept, NaN as None, the
        infinities as "inf"): ``policy``, ``success``, ``status``, ``residual``, ``nit``,
        ``message``, ``roots`` (per context a list of ``StationaryRoot.to_dict``), ``method``
        and ``search`` (per context ``RootSearch.to_dict``, or an empty list); with
        ``inputs`` also ``algo`` (the GRPO fields) and ``problem`` (its fields as given to
        the solver), which a caller writing them in its own shape leaves out."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("algo", "problem") and not inputs:
                continue
            value = getattr(self, f.name)
            if f.name == "roots":
                out["roots"] = [[r.to_dict() for r in ctx] for ctx in value]
            elif f.name == "search":
                out["search"] = [s.to_dict() for s in value]
            else:
                out[f.name] = to_jsonable(value)
        return out

    def root_counts(self) -> np.ndarray:
        """Number of roots per context, (C,) int, without building root objects that a
        large batch builds only when read (its ``roots`` then carries ``counts``)."""
        counts = getattr(self.roots, "counts", None)
        if counts is not None:
            return np.asarray(counts, dtype=np.int64)
        return np.array([len(r) for r in self.roots], dtype=np.int64)

    def __getitem__(self, c: int) -> StationaryContext:
        n = len(self)
        if not isinstance(c, (int, np.integer)) or isinstance(c, bool):
            raise TypeError(f"a StationaryResult is indexed by a context number, got {type(c).__name__}")
        if not -n <= c < n:
            raise IndexError(f"context {c} out of range for {n} contexts")
        c = int(c) % n
        return StationaryContext(
            policy=self.policy[c],
            success=bool(self.success[c]),
            status=self.status[c],
            residual=float(self.residual[c]),
            message=self.message[c],
            roots=self.roots[c],
            search=self.search[c] if self.search else None,
        )

    def __iter__(self) -> Iterator[StationaryContext]:
        return (self[c] for c in range(len(self)))

    def __repr__(self) -> str:
        n_ctx = len(self)
        # counted, not built: a large batch's roots are built only when read (LazyRoots)
        n_roots = int(np.sum(self.root_counts()))
        roots = f"{n_roots}" if n_ctx == 1 else f"{n_roots} over {n_ctx} contexts"
        res = float(np.max(self.residual)) if self.residual.size else 0.0
        msg = self.message[0] if self.message else ""
        return (
            f"StationaryResult(success={bool(np.all(self.success))}, method={self.method!r}, "
            f"policy={_fmt(self.policy)}, roots={roots}, residual={res:.1e}, nit={self.nit}, message={msg!r})"
        )
