"""Problems: a reference policy and each output's reward distribution, per context.

A context (question) has K outputs, a reference policy ``ref`` over them and, for each
output o, a reward distribution F_o over finite levels v_1 < ... < v_L (THEORY.md section 1).
A batch holds C independent contexts padded to common K and L: padded outputs have
reference probability 0 (they never get mass), padded levels lie above the real ones and
carry probability 0 (they never occur).

For groups of two a context can instead be given by a pairwise win-probability matrix
W[o, o'] = Pr[o beats o'] (THEORY.md section 7); such a problem is only defined for G = 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grpo_align.errors import InputError

__all__ = ["Problem"]

SUM_TOLERANCE = 1e-9


def _as_float_array(name: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise InputError(name, "expected numbers (a list or array of floats)") from None
    if arr.size == 0:
        raise InputError(name, "expected a non-empty list of numbers")
    if not np.all(np.isfinite(arr)):
        raise InputError(name, "contains NaN or infinite values; expected finite numbers")
    return arr


def _is_ragged(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return False
    if not isinstance(value, (list, tuple)) or not value:
        return False
    if not all(isinstance(v, (list, tuple, np.ndarray)) for v in value):
        return False
    return len({len(v) for v in value}) > 1


def _rows(name: str, value: Any) -> np.ndarray:
    """``value`` as a (C, K) array: one row (K,) or a batch of rows (C, K), nothing deeper."""
    arr = _as_float_array(name, value)
    if arr.ndim not in (1, 2):
        raise InputError(
            name, f"expected a list (one context) or a list of lists (a batch), got lists nested {arr.ndim} deep"
        )
    return np.atleast_2d(arr)


def _shape(shape: tuple[int, ...], batched: bool) -> tuple[int, ...]:
    """A (C, K) shape as the user wrote it: without the context axis for one context."""
    return shape if batched else shape[1:]


def _pad_rows(name: str, rows: Sequence[Any], fill: float) -> np.ndarray:
    """Stack a ragged list of 1-D rows into a 2-D array, padding with ``fill``."""
    arrays = [_as_float_array(f"{name}[{i}]", r) for i, r in enumerate(rows)]
    for i, a in enumerate(arrays):
        if a.ndim != 1:
            raise InputError(f"{name}[{i}]", f"expected a 1-D list, got shape {a.shape}")
    width = max(a.size for a in arrays)
    out = np.full((len(arrays), width), fill)
    for i, a in enumerate(arrays):
        out[i, : a.size] = a
    return out


def _same_row_lengths(name: str, ref: Any, value: Any) -> None:
    """A ragged batch gives one value per output in every row (padding must not hide a mismatch)."""
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise InputError(name, "expected one row per context, like ref")
    if len(ref) != len(value):
        raise InputError(name, f"has {len(value)} rows, ref has {len(ref)}; expected one row per context")
    for i, (r, v) in enumerate(zip(ref, value, strict=True)):
        if np.size(r) != np.size(v):
            raise InputError(
                f"{name}[{i}]", f"has {np.size(v)} values for {np.size(r)} outputs; expected one per output"
            )


def _check_probabilities(name: str, p: np.ndarray, renormalize: bool) -> np.ndarray:
    """Rows of ``p`` (last axis) must be probability vectors."""
    if np.any(p < 0):
        raise InputError(name, "has negative entries; expected probabilities >= 0")
    sums = p.sum(axis=-1, keepdims=True)
    if np.any(sums <= 0):
        raise InputError(name, "a row sums to 0; expected a probability vector")
    if renormalize:
        return p / sums
    worst = float(np.max(np.abs(sums - 1.0)))
    if worst > SUM_TOLERANCE:
        raise InputError(
            name,
            f"does not sum to 1 (off by {worst:.3g}); fix the numbers or pass renormalize=True",
        )
    return p / sums


def _check_one_context(name: str, seqs: Any, n_real: int, n_out: int) -> tuple[tuple[Any, ...], ...]:
    """One context's token tuples: non-empty, hashable tokens, prefix-free (section 10)."""
    if isinstance(seqs, (str, bytes)) or not isinstance(seqs, (list, tuple)):
        raise InputError(name, "expected a list with one token tuple per output")
    if not n_real <= len(seqs) <= n_out:
        want = f"{n_out}" if n_real == n_out else f"{n_real} to {n_out}"
        raise InputError(name, f"expected one token tuple per output ({want}), got {len(seqs)}")
    out: list[tuple[Any, ...]] = []
    for i, s in enumerate(seqs):
        if isinstance(s, (str, bytes)) or not isinstance(s, (list, tuple)) or len(s) == 0:
            raise InputError(f"{name}[{i}]", "expected a non-empty tuple of tokens (a string is not a token tuple)")
        try:
            hash(tuple(s))
        except TypeError:
            raise InputError(f"{name}[{i}]", "tokens must be hashable (ints or strings)") from None
        out.append(tuple(s))
    ordered = sorted(range(len(out)), key=lambda i: (len(out[i]), repr(out[i])))
    prefixes = {out[i][:n]: i for i in ordered for n in range(1, len(out[i]))}
    for i, s in enumerate(out):
        if s in prefixes or out.index(s) != i:
            j = prefixes.get(s, out.index(s))
            # both outputs are named as fields (sequences[i], sequences[j]), so a reader that
            # numbers fields from 1 (io_toml) renumbers both
            relation = "repeats" if s == out[j] else "is a prefix of"
            raise InputError(
                f"{name}[{i}]", f"{s!r} {relation} {name}[{j}] {out[j]!r}; end every sequence with an end token"
            )
    return tuple(out)


def _check_sequences(sequences: Any, ref: np.ndarray, batched: bool) -> tuple[tuple[tuple[Any, ...], ...], ...]:
    """Validate ``sequences`` against ``ref`` (C, K): one prefix-free tuple list per context."""
    n_ctx, n_out = ref.shape
    per_ctx = sequences if batched else [sequences]
    if isinstance(per_ctx, (str, bytes)) or not isinstance(per_ctx, (list, tuple)) or len(per_ctx) != n_ctx:
        raise InputError("sequences", f"expected one list of token tuples per context ({n_ctx})")
    out = []
    for c, seqs in enumerate(per_ctx):
        n_real = int(np.max(np.nonzero(ref[c] > 0)[0])) + 1
        name = f"sequences[{c}]" if batched else "sequences"
        out.append(_check_one_context(name, seqs, n_real, n_out))
    return tuple(out)


@dataclass(frozen=True, eq=False)
class Problem:
    """Reference policy and reward distributions for one context or a batch of contexts.

    Parameters
    ----------
    ref : array_like, shape (K,) or (C, K)
        Reference policy pi_ref over the K outputs of each context.
    levels : array_like, shape (L,) or (C, L)
        Reward levels v_1 < ... < v_L (distinct after sorting).
    dist : array_like, shape (K, L) or (C, K, L)
        dist[o, l] = Pr[reward of output o = levels[l]]; rows sum to 1.
    renormalize : bool
        Divide ``ref`` and the rows of ``dist`` by their sums instead of rejecting sums
        that are off by more than 1e-9.
    sequences : list of tuples, or (batched) a list of such lists, optional
        One token tuple per output (THEORY.md section 10): the outputs are token sequences
        of an autoregressive policy, one softmax per prefix. Prefix-free (no sequence is a
        prefix of another; each ends with its end token). ``ref`` stays over whole outputs;
        the per-prefix reference conditionals follow from it. None: every output is one
        atomic choice. A batched problem gives one list per context (padded outputs of a
        ragged batch need none).

    Notes
    -----
    Internally every problem is batched: ``ref`` is (C, K), ``levels`` (C, L), ``dist``
    (C, K, L); ``batched`` records whether results should keep the context axis.
    """

    ref: np.ndarray
    levels: np.ndarray
    dist: np.ndarray
    batched: bool = False
    win_prob: np.ndarray | None = field(default=None, repr=False)
    sequences: tuple[tuple[tuple[Any, ...], ...], ...] | None = field(default=None, repr=False)

    def __init__(
        self,
        ref: Any,
        levels: Any = None,
        dist: Any = None,
        *,
        renormalize: bool = False,
        sequences: Any = None,
        _win_prob: Any = None,
    ) -> None:
        if _is_ragged(ref):
            raise InputError(
                "ref",
                "rows of different lengths; use Problem.from_rewards/from_bernoulli for ragged batches",
            )
        ref_arr = _as_float_array("ref", ref)
        if ref_arr.ndim not in (1, 2):
            raise InputError("ref", f"expected shape (K,) or (C, K), got {ref_arr.shape}")
        batched = ref_arr.ndim == 2
        ref2 = np.atleast_2d(ref_arr)
        n_ctx, n_out = ref2.shape
        ref2 = _check_probabilities("ref", ref2, renormalize)

        if _win_prob is not None:
            if sequences is not None:
                raise InputError("sequences", "a pairwise-preference problem takes no sequences; use a reward problem")
            win = _as_float_array("win_prob", _win_prob)
            win3 = win if win.ndim == 3 else win[None]
            if win3.shape != (n_ctx, n_out, n_out):
                raise InputError(
                    "win_prob",
                    f"expected shape {(n_out, n_out) if not batched else (n_ctx, n_out, n_out)} to match ref, got {win.shape}",
                )
            if np.any(win3 < 0) or np.any(win3 > 1):
                raise InputError("win_prob", "entries must be probabilities in [0, 1]")
            off_diag = ~np.eye(n_out, dtype=bool)
            total = (win3 + np.swapaxes(win3, 1, 2))[:, off_diag]
            if np.any(total > 1 + SUM_TOLERANCE):
                raise InputError(
                    "win_prob",
                    "Pr[o beats o'] + Pr[o' beats o] exceeds 1 for some pair; expected win probabilities (ties allowed)",
                )
            object.__setattr__(self, "ref", ref2)
            object.__setattr__(self, "levels", np.zeros((n_ctx, 0)))
            object.__setattr__(self, "dist", np.zeros((n_ctx, n_out, 0)))
            object.__setattr__(self, "batched", batched)
            object.__setattr__(self, "win_prob", win3)
            return

        if levels is None or dist is None:
            raise InputError("levels/dist", "both are required (or use from_rewards/from_bernoulli)")
        lev = _as_float_array("levels", levels)
        if lev.ndim != (2 if batched else 1):
            raise InputError(
                "levels", f"expected shape {'(C, L)' if batched else '(L,)'} to match ref, got {lev.shape}"
            )
        lev2 = np.atleast_2d(lev)
        if lev2.shape[0] != n_ctx:
            raise InputError("levels", f"has {lev2.shape[0]} contexts, ref has {n_ctx}")
        d = _as_float_array("dist", dist)
        expected = (n_ctx, n_out, lev2.shape[1]) if batched else (n_out, lev2.shape[1])
        if d.shape != expected:
            raise InputError("dist", f"expected shape {expected} (outputs x levels), got {d.shape}")
        d3 = d if batched else d[None]
        d3 = _check_probabilities("dist", d3, renormalize)
        order = np.argsort(lev2, axis=1, kind="stable")
        lev2 = np.take_along_axis(lev2, order, axis=1)
        d3 = np.take_along_axis(d3, order[:, None, :], axis=2)
        if np.any(lev2[:, 1:] <= lev2[:, :-1]):  # compared, not subtracted: -1e308, 1e308 do not overflow
            raise InputError("levels", "contains repeated values; expected distinct reward levels")
        object.__setattr__(self, "ref", ref2)
        object.__setattr__(self, "levels", lev2)
        object.__setattr__(self, "dist", d3)
        object.__setattr__(self, "batched", batched)
        object.__setattr__(self, "win_prob", None)
        object.__setattr__(self, "sequences", None if sequences is None else _check_sequences(sequences, ref2, batched))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_rewards(cls, ref: Any, rewards: Any, *, renormalize: bool = False, sequences: Any = None) -> Problem:
        """Deterministic rewards: output o always gets ``rewards[o]``.

        A batch may be ragged (contexts with different numbers of outputs); shorter
        contexts are padded with outputs of reference probability 0. ``sequences``: one
        token tuple per output (see ``Problem``).
        """
        batched = _is_ragged(ref) or np.ndim(np.asarray(ref, dtype=object)) == 2
        if _is_ragged(ref) or _is_ragged(rewards):
            ref2 = _pad_rows("ref", ref, 0.0)
            rew2 = _pad_rows("rewards", rewards, np.nan)
            _same_row_lengths("rewards", ref, rewards)
        else:
            ref2 = _rows("ref", ref)
            rew2 = _rows("rewards", rewards)
        if rew2.shape != ref2.shape:
            raise InputError(
                "rewards",
                f"expected one reward per output, shape {_shape(ref2.shape, batched)}, "
                f"got {np.shape(rewards) if not _is_ragged(rewards) else 'rows of other lengths'}",
            )
        level_rows = [np.unique(r[np.isfinite(r)]) for r in rew2]
        n_levels = max(len(v) for v in level_rows)
        n_ctx, n_out = ref2.shape
        levels = np.empty((n_ctx, n_levels))
        dist = np.zeros((n_ctx, n_out, n_levels))
        for c, values in enumerate(level_rows):
            # padded levels sit above the real ones and are never drawn
            levels[c, : len(values)] = values
            levels[c, len(values) :] = values[-1] + 1.0 + np.arange(n_levels - len(values))
            row = rew2[c]
            real = np.isfinite(row)
            idx = np.searchsorted(values, row[real])
            dist[c, np.flatnonzero(real), idx] = 1.0
            dist[c, ~real, 0] = 1.0
        if not batched:
            return cls(ref2[0], levels[0], dist[0], renormalize=renormalize, sequences=sequences)
        return cls(ref2, levels, dist, renormalize=renormalize, sequences=sequences)

    @classmethod
    def from_bernoulli(cls, ref: Any, success: Any, *, renormalize: bool = False, sequences: Any = None) -> Problem:
        """Bernoulli rewards: output o gets 1 with probability ``success[o]``, else 0.

        ``sequences``: one token tuple per output (see ``Problem``)."""
        batched = _is_ragged(ref) or np.ndim(np.asarray(ref, dtype=object)) == 2
        if _is_ragged(ref) or _is_ragged(success):
            ref2 = _pad_rows("ref", ref, 0.0)
            succ2 = _pad_rows("success", success, 0.0)
            _same_row_lengths("success", ref, success)
        else:
            ref2 = _rows("ref", ref)
            succ2 = _rows("success", success)
        if succ2.shape != ref2.shape:
            raise InputError(
                "success",
                f"expected one probability per output, shape {_shape(ref2.shape, batched)}, "
                f"got {np.shape(success) if not _is_ragged(success) else 'rows of other lengths'}",
            )
        if np.any(succ2 < 0) or np.any(succ2 > 1):
            raise InputError("success", "expected success probabilities in [0, 1]")
        dist = np.stack([1.0 - succ2, succ2], axis=-1)
        levels = np.tile([0.0, 1.0], (ref2.shape[0], 1))
        if not batched:
            return cls(ref2[0], levels[0], dist[0], renormalize=renormalize, sequences=sequences)
        return cls(ref2, levels, dist, renormalize=renormalize, sequences=sequences)

    @classmethod
    def from_preference(cls, ref: Any, win_prob: Any, *, renormalize: bool = False) -> Problem:
        """Pairwise preferences for groups of two: ``win_prob[o, o'] = Pr[o beats o']``.

        Any matrix of win probabilities is accepted, transitive or not (rock-paper-scissors);
        ties have probability 1 - W[o,o'] - W[o',o]. Only algorithms with G = 2 apply.
        """
        return cls(ref, renormalize=renormalize, _win_prob=win_prob)

    # ------------------------------------------------------------------ properties
    @property
    def is_preference(self) -> bool:
        return self.win_prob is not None

    @property
    def has_sequences(self) -> bool:
        """True when the outputs are token sequences (THEORY.md section 10)."""
        return self.sequences is not None

    @property
    def sequences_are_atomic(self) -> bool:
        """True when the token sequences change nothing (docs/THEORY.md section 10.7): in
        every context each output has its own first token and all have the same length, so
        the only free logits are the first token's and every aggregation weights each output
        alike. Such a problem (one-token outputs among them) is the paper's atomic one."""
        if self.sequences is None:
            return True
        for seqs in self.sequences:
            if len({s[0] for s in seqs}) != len(seqs) or len({len(s) for s in seqs}) > 1:
                return False
        return True

    def lengths(self) -> np.ndarray:
        """Token length |o| of every output, (C, K); 1 for atomic outputs and padding."""
        out = np.ones(self.ref.shape)
        if self.sequences is not None:
            for c, seqs in enumerate(self.sequences):
                out[c, : len(seqs)] = [len(s) for s in seqs]
        return out

    @property
    def n_contexts(self) -> int:
        return int(self.ref.shape[0])

    @property
    def n_outputs(self) -> int:
        return int(self.ref.shape[1])

    @property
    def n_levels(self) -> int:
        return int(self.levels.shape[1])

    def margin_matrix(self) -> np.ndarray:
        """M[c, o, o'] = Pr[o beats o'] - Pr[o' beats o] (THEORY.md section 7), shape (C, K, K).

        For reward problems it is computed from the reward distributions (strictly
        higher reward wins, equal rewards tie).
        """
        if self.win_prob is not None:
            return self.win_prob - np.swapaxes(self.win_prob, 1, 2)
        cdf = np.cumsum(self.dist, axis=2)  # Pr[r <= v_l]
        below = cdf - self.dist  # Pr[r < v_l]
        # Pr[r_o > r_o'] = sum_l F_o(l) Pr[r_o' < v_l]
        beats = np.einsum("col,cpl->cop", self.dist, below)
        return beats - np.swapaxes(beats, 1, 2)

    def expected_reward(self) -> np.ndarray:
        """E[r(o)] per output, shape (C, K)."""
        if self.win_prob is not None:
            raise InputError("problem", "a preference problem has no rewards; use a reward problem")
        return np.einsum("col,cl->co", self.dist, self.levels)

    def reference_mixture(self) -> np.ndarray:
        """w_ref = sum_o pi_ref(o) F_o, the reward-level distribution under pi_ref, (C, L)."""
        return np.einsum("co,col->cl", self.ref, self.dist)

    def contexts(self, idx: np.ndarray) -> Problem:
        """The contexts ``idx`` (int array) of a reward problem as a batched problem, without
        re-validating them: they were validated when this problem was built (the solvers
        take sub-batches of 10^6 contexts, where validation would cost more than the solve)."""
        if self.win_prob is not None:
            raise InputError("problem", "contexts() takes a reward problem, not a pairwise-preference one")
        sub = object.__new__(Problem)
        for name, value in (("ref", self.ref[idx]), ("levels", self.levels[idx]), ("dist", self.dist[idx])):
            object.__setattr__(sub, name, value)
        object.__setattr__(sub, "batched", True)
        object.__setattr__(sub, "win_prob", None)
        seqs = None if self.sequences is None else tuple(self.sequences[int(c)] for c in np.asarray(idx).ravel())
        object.__setattr__(sub, "sequences", seqs)
        return sub

    def squeeze(self, arr: np.ndarray) -> np.ndarray:
        """Drop the context axis of a result for an unbatched problem."""
        return arr if self.batched else arr[0]

    def check_policy(self, policy: Any, name: str = "policy") -> np.ndarray:
        """Validate a policy and return it as (C, K).

        A policy is (C, K), with the context axis (as in every result), or (K,) for an
        unbatched problem.
        """
        pol = _as_float_array(name, policy)
        if pol.shape != self.ref.shape and (self.batched or pol.shape != self.ref.shape[1:]):
            expected = str(self.ref.shape) if self.batched else f"{self.ref.shape[1:]} or {self.ref.shape}"
            raise InputError(name, f"expected shape {expected}, got {pol.shape}")
        return _check_probabilities(name, np.atleast_2d(pol), renormalize=False)

    def like_policy(self, arr: np.ndarray, policy: Any) -> np.ndarray:
        """``arr`` (C, ...) in the shape convention of ``policy``: the context axis dropped
        only where ``policy`` was given without it (numpy semantics: the output follows the
        input)."""
        return arr if np.ndim(policy) == 2 else arr[0]

    def __repr__(self) -> str:
        kind = "preference" if self.is_preference else f"L={self.n_levels}"
        ctx = f"C={self.n_contexts}, " if self.batched else ""
        return f"Problem({ctx}K={self.n_outputs}, {kind})"
