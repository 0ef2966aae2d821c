"""The penalty in the reward (THEORY.md section 10, eqs. 10.7-10.9).

With ``penalty_in="reward"`` the trainer subtracts beta k(o) from each reward before the
group normalisation, k a function of the sequence log-ratio x(o) = log pi(o)/pi_ref(o)
(computed from the sampling policy, so it carries no gradient), and the loss has no
penalty term:

    r'(o) = r - beta k(x(o)),   k1 = x,   k2 = x^2 / 2,   k3 = exp(-x) + x - 1.     (10.7)

Each output o then has its own reward levels v_l - beta k(o): the cells (o, l) of the exact
expectation. With std scaling and eps = 0 the advantage jumps where the modified rewards of
a whole group tie, so the expected gradient is discontinuous on the tie set; a stationary
policy there is a sliding-mode (Filippov) equilibrium. ``TieStructure`` names such a set
and its blow-up coordinates (eq. 10.9).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from grpo_align.errors import InputError
from grpo_align.theory.penalties import PENALTIES

__all__ = ["SHRINK", "TieStructure", "candidate_ties", "find_ties", "sequence_penalty"]


def sequence_penalty(name: str, x: np.ndarray) -> np.ndarray:
    """k(x) of eq. 10.7 for the sequence log-ratio x (k1, k2 or k3): the record's ``value``
    (``theory.penalties``)."""
    rec = PENALTIES.get(name) if isinstance(name, str) else None
    if rec is None or not rec.in_reward:
        raise InputError("penalty", f"{name!r} cannot be put in the reward; expected k1, k2 or k3")
    return rec.value(x)


@dataclass(frozen=True)
class TieStructure:
    """Outputs whose modified rewards are held tied (THEORY.md eq. 10.9).

    Attributes
    ----------
    component : ndarray of int, (K,)
        Tie component of each output (-1: in none). Within a component the penalties are
        held at k(o) - k(root) = offset(o), so that chosen cells (o, l) have equal modified
        rewards.
    offset : ndarray, (K,)
        k(o) - k(root of its component), fixed by level differences over beta.
    cell_class : ndarray of int, (M,)
        Tie class of each cell (-1: in none): cells of a class have equal modified rewards
        on the tie set.
    """

    component: np.ndarray
    offset: np.ndarray
    cell_class: np.ndarray

    @property
    def n_constraints(self) -> int:
        """Number of tie equations: (component size - 1) summed over components."""
        comps = self.component[self.component >= 0]
        return int(comps.size - np.unique(comps).size)

    def roots(self) -> np.ndarray:
        """The first output of each component (its penalty is the reference), in order."""
        comps = self.component
        return np.array([int(np.nonzero(comps == k)[0][0]) for k in np.unique(comps[comps >= 0])], dtype=np.int64)

    def members(self) -> np.ndarray:
        """Outputs in a component other than its root: one tie equation and one blow-up
        coordinate each."""
        roots = set(self.roots().tolist())
        return np.array([o for o in np.nonzero(self.component >= 0)[0].tolist() if o not in roots], dtype=np.int64)


#: A gap between modified rewards that shrinks below this fraction of its size at the previous
#: (ten times larger) eps of the regularisation path is closing like eps: a tie (eq. 10.9).
SHRINK = 0.3


def find_ties(
    values: np.ndarray,
    cell_output: np.ndarray,
    cell_level: np.ndarray,
    levels: np.ndarray,
    beta: float,
    tol: float,
    previous: np.ndarray | None = None,
) -> TieStructure | None:
    """The tie structure of cells whose modified rewards lie within ``tol`` of each other,
    or whose gap is closing along the regularisation path.

    Parameters
    ----------
    values : ndarray, (M,)
        Modified rewards v_l - beta k(o) of the cells (active outputs only).
    cell_output, cell_level : ndarray of int, (M,)
    levels : ndarray, (L,)
    beta : float
    tol : float
    previous : ndarray, (M,), optional
        The same cells' modified rewards at the previous eps of the path (ten times
        larger). A gap that shrank below ``SHRINK`` times its previous size also counts
        as a tie: on the path a tied gap is beta |eta| eps (eq. 10.9), with |eta| growing
        with beta, so no fixed multiple of eps separates it from a true gap, while the
        ratio of successive gaps tends to 1/10 for a tie and to 1 for a true gap.

    Returns
    -------
    TieStructure or None
        None when no two cells of different outputs are that close. Two outputs are linked
        when some cells of theirs nearly tie; their penalty offset is then a level
        difference over beta, so every cell pair of a component that nearly ties is tied.
    """
    n_out = int(cell_output.max()) + 1 if cell_output.size else 0
    parent = list(range(n_out))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    linked = np.zeros(n_out, bool)
    gap = np.abs(values[:, None] - values[None, :])
    close = gap <= tol
    if previous is not None:
        close |= gap <= SHRINK * np.abs(previous[:, None] - previous[None, :])
    for a, b in zip(*np.nonzero(np.triu(close, 1)), strict=True):
        oa, ob = int(cell_output[a]), int(cell_output[b])
        if oa != ob:
            parent[find(oa)] = find(ob)
            linked[oa] = linked[ob] = True
    if not np.any(linked):
        return None
    component = np.full(n_out, -1, dtype=np.int64)
    labels: dict[int, int] = {}
    for o in range(n_out):
        if linked[o]:
            component[o] = labels.setdefault(find(o), len(labels))
    # k(o) = (v_l - r') / beta per cell: offsets from the root's penalty, snapped to the
    # level difference the near-tie implies
    k_cell = (levels[cell_level] - values) / beta
    k_out = np.zeros(n_out)
    for o in range(n_out):
        k_out[o] = k_cell[cell_output == o][0] if np.any(cell_output == o) else 0.0
    offset = np.zeros(n_out)
    diffs = (levels[:, None] - levels[None, :]).ravel() / beta
    for k in range(len(labels)):
        members = np.nonzero(component == k)[0]
        root = members[0]
        for o in members[1:]:
            raw = k_out[o] - k_out[root]
            offset[o] = diffs[np.argmin(np.abs(diffs - raw))]
    return _structure(component, offset, cell_output, cell_level, levels, beta)


def _structure(
    component: np.ndarray,
    offset: np.ndarray,
    cell_output: np.ndarray,
    cell_level: np.ndarray,
    levels: np.ndarray,
    beta: float,
) -> TieStructure:
    """The tie classes of the cells given the components and penalty offsets."""
    # cells tie when v_l - beta (k_root + offset) agree: compare v_l - beta offset
    key = levels[cell_level] - beta * offset[cell_output]
    cell_class = np.full(cell_output.shape, -1, dtype=np.int64)
    n_class = 0
    for k in range(int(component.max(initial=-1)) + 1):
        in_comp = component[cell_output] == k
        idx = np.nonzero(in_comp)[0]
        seen: list[tuple[float, list[int]]] = []
        for m in idx.tolist():
            for ref_key, group in seen:
                if abs(key[m] - ref_key) <= 1e-9 * max(1.0, abs(ref_key)):
                    group.append(m)
                    break
            else:
                seen.append((float(key[m]), [m]))
        for _, group in seen:
            if len({int(cell_output[m]) for m in group}) >= 2:
                cell_class[group] = n_class
                n_class += 1
    return TieStructure(component=component, offset=offset, cell_class=cell_class)


#: Largest number of live outputs whose tie structures ``candidate_ties`` enumerates.
MAX_TIE_OUTPUTS = 4


def _partitions(items: list[int]) -> Iterator[list[list[int]]]:
    """Every set partition of ``items``."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest):
        yield [[first], *part]
        for i in range(len(part)):
            yield [*part[:i], [first, *part[i]], *part[i + 1 :]]


def candidate_ties(
    cell_output: np.ndarray, cell_level: np.ndarray, levels: np.ndarray, beta: float, cells: np.ndarray, n_out: int
) -> Iterator[TieStructure]:
    """Every tie structure (eq. 10.9) among the outputs of ``cells`` (indices into the cell
    arrays), over all cells and ``n_out`` outputs; none when more than ``MAX_TIE_OUTPUTS`` outputs are live.

    Each partition of the live outputs into components (blocks of one are untied) and,
    for each non-root member o of a component, an offset k(o) - k(root) = (v_l - v_l')
    / beta that ties a cell (o, l) with a cell (root, l') (eq. 10.7).
    """
    outs = sorted({int(o) for o in cell_output[cells].tolist()})
    if not outs or len(outs) > MAX_TIE_OUTPUTS:
        return
    lv = {o: sorted({int(m) for m in cell_level[cells][cell_output[cells] == o].tolist()}) for o in outs}
    for part in _partitions(outs):
        blocks = [b for b in part if len(b) >= 2]
        if not blocks:
            continue
        pairs = [(b[0], o) for b in blocks for o in b[1:]]
        choices = [sorted({float(levels[m] - levels[r]) / beta for m in lv[o] for r in lv[root]}) for root, o in pairs]
        for offs in itertools.product(*choices):
            component = np.full(n_out, -1, dtype=np.int64)
            for k, b in enumerate(blocks):
                component[b] = k
            offset = np.zeros(n_out)
            for (_, o), d in zip(pairs, offs, strict=True):
                offset[o] = d
            ties = _structure(component, offset, cell_output, cell_level, levels, beta)
            off_cells = np.ones(cell_output.size, bool)
            off_cells[cells] = False
            ties.cell_class[off_cells] = -1
            yield ties
