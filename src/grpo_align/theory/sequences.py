"""Token sequences as a prefix tree: one softmax per prefix (THEORY.md section 10).

An output o is a token sequence; an autoregressive policy is a tree of per-prefix
conditionals pi(t | u), and pi(o) is the product of the conditionals along o's path. Only
*branching* prefixes (two or more next tokens among the outputs) carry a softmax: a prefix
with one continuation has pi(t | u) = 1 under every policy, so its token has ratio 1 and
zero gradient. The tree is built over the outputs with pi_ref(o) > 0 (the others never get
mass).

Edges e = (u, t) of branching prefixes are numbered 0..E-1; ``through[e, o]`` says whether
output o passes through e. Conditionals follow from a policy over whole outputs wherever
the prefix has mass: pi(t | u) = pi(ut) / pi(u) (eq. 10.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from grpo_align.errors import InputError

__all__ = ["Tree", "prefix_conditionals"]


class Tree:
    """The branching prefixes of one context's outputs (THEORY.md section 10).

    Parameters
    ----------
    sequences : sequence of tuples
        One token tuple per output (prefix-free, as ``Problem`` validates).
    ref : ndarray, (K,)
        pi_ref over whole outputs (padded outputs beyond ``len(sequences)`` have 0).

    Attributes
    ----------
    n_outputs : int
        K (including outputs with pi_ref = 0, which sit outside the tree).
    active : ndarray of bool, (K,)
        Outputs in the tree (pi_ref(o) > 0).
    lengths : ndarray, (K,)
        |o| in tokens (1 for outputs without a sequence).
    prefixes : list of tuple
        The branching prefixes u, parents before children.
    edge_node, edge_token : per edge, its prefix index and next token.
    node_edges : list of ndarray
        The edges of each prefix.
    through : ndarray of bool, (E, K)
    depth : ndarray of int, (E,)
        Length of the edge's prefix.
    ref_cond : ndarray, (E,)
        pi_ref(t | u) (eq. 10.1 applied to pi_ref).
    """

    def __init__(self, sequences: Sequence[tuple[Any, ...]], ref: np.ndarray) -> None:
        ref = np.asarray(ref, dtype=float)
        self.n_outputs = int(ref.shape[0])
        self.sequences = tuple(tuple(s) for s in sequences)
        self.lengths = np.ones(self.n_outputs)
        self.lengths[: len(self.sequences)] = [len(s) for s in self.sequences]
        self.active = np.zeros(self.n_outputs, bool)
        self.active[: len(self.sequences)] = ref[: len(self.sequences)] > 0
        if np.any(ref[len(self.sequences) :] > 0):
            raise InputError("sequences", "every output with pi_ref > 0 needs a token tuple")
        # next tokens of every prefix among the active outputs, in order of first appearance
        nexts: dict[tuple[Any, ...], dict[Any, list[int]]] = {}
        for o in np.nonzero(self.active)[0].tolist():
            s = self.sequences[o]
            for j in range(len(s)):
                nexts.setdefault(s[:j], {}).setdefault(s[j], []).append(o)
        self.prefixes = sorted((u for u, ch in nexts.items() if len(ch) >= 2), key=len)
        edge_node: list[int] = []
        edge_token: list[Any] = []
        node_edges: list[np.ndarray] = []
        rows: list[np.ndarray] = []
        for n, u in enumerate(self.prefixes):
            first = len(edge_node)
            for t, outs in nexts[u].items():
                edge_node.append(n)
                edge_token.append(t)
                row = np.zeros(self.n_outputs, bool)
                row[outs] = True
                rows.append(row)
            node_edges.append(np.arange(first, len(edge_node)))
        self.edge_node = np.asarray(edge_node, dtype=np.int64)
        self.edge_token = edge_token
        self.node_edges = node_edges
        self.through = np.asarray(rows, dtype=bool).reshape(len(rows), self.n_outputs)
        self.depth = np.array([len(self.prefixes[n]) for n in edge_node], dtype=np.int64)
        mass = self.through.astype(float) @ ref  # pi_ref of each edge's prefix + token
        node_mass = np.array([mass[e].sum() for e in node_edges])
        self.ref_cond = mass / node_mass[self.edge_node] if len(edge_node) else np.zeros(0)
        # below[e, o, e']: e' lies on o's path strictly below e's prefix (o through e)
        self.below = (
            self.through[:, :, None]
            & self.through.T[None, :, :]
            & (self.depth[None, None, :] > self.depth[:, None, None])
        )
        self.node_of_edge_parent = self._parents()

    def _parents(self) -> np.ndarray:
        """For each prefix, the edge leading into it (-1 for a root-level prefix)."""
        out = np.full(len(self.prefixes), -1, dtype=np.int64)
        for n, u in enumerate(self.prefixes):
            best = -1
            for e in range(len(self.edge_node)):
                v = self.prefixes[self.edge_node[e]] + (self.edge_token[e],)
                if len(v) <= len(u) and u[: len(v)] == v and (best < 0 or self.depth[e] > self.depth[best]):
                    best = e
            out[n] = best
        return out

    @property
    def n_edges(self) -> int:
        return int(self.edge_node.size)

    def policy(self, cond: np.ndarray) -> np.ndarray:
        """pi(o) = product of the conditionals on o's path, (K,) from per-edge ``cond`` (E,)."""
        pi = np.prod(np.where(self.through, cond[:, None], 1.0), axis=0)
        return np.where(self.active, pi, 0.0)

    def conditionals(self, policy: np.ndarray) -> np.ndarray:
        """Per-edge pi(t | u) from a policy over whole outputs (eq. 10.1), (E,).

        Where the prefix has no mass the conditional is undetermined; pi_ref(t | u) is
        returned there.
        """
        mass = self.through.astype(float) @ np.where(self.active, policy, 0.0)
        cond = self.ref_cond.copy()
        for edges in self.node_edges:
            total = mass[edges].sum()
            if total > 0:
                cond[edges] = mass[edges] / total
        return cond

    def below_product(self, cond: np.ndarray) -> np.ndarray:
        """pi(o | o passes through e) = product of the conditionals below e, (E, K)."""
        return np.prod(np.where(self.below, cond[None, None, :], 1.0), axis=2) * self.through

    def log_ratio(self, cond: np.ndarray) -> np.ndarray:
        """Sequence log-ratio x(o) = log pi(o)/pi_ref(o) = sum of the edges' log-ratios, (K,)."""
        with np.errstate(divide="ignore"):
            x_edge = np.log(cond) - np.log(self.ref_cond)
        return np.where(self.through, x_edge[:, None], 0.0).sum(axis=0)

    def reachable(self, cond: np.ndarray) -> np.ndarray:
        """Whether each prefix has mass under the conditionals ``cond``, (n_prefixes,)."""
        out = np.ones(len(self.prefixes), bool)
        for n in range(len(self.prefixes)):
            e = self.node_of_edge_parent[n]
            while e >= 0:
                if cond[e] <= 0:
                    out[n] = False
                    break
                e = self.node_of_edge_parent[self.edge_node[e]]
        return out

    def as_dict(self, cond: np.ndarray) -> dict[tuple[Any, ...], dict[Any, float]]:
        """{prefix: {next token: pi(t | u)}} for every branching prefix."""
        return {
            u: {self.edge_token[e]: float(cond[e]) for e in self.node_edges[n]} for n, u in enumerate(self.prefixes)
        }


def prefix_conditionals(problem: Any, policy: Any, context: int = 0) -> dict[tuple[Any, ...], dict[Any, float]]:
    """Per-prefix conditionals pi(t | u) of a policy over whole outputs (THEORY.md eq. 10.1).

    Parameters
    ----------
    problem : Problem
        With ``sequences``.
    policy : array_like, (K,) or (C, K)
    context : int

    Returns
    -------
    dict
        {branching prefix: {next token: probability}}; a prefix without mass under
        ``policy`` gets the reference conditionals.

    Examples
    --------
    >>> from grpo_align.theory.problem import Problem
    >>> prob = Problem.from_rewards([0.2, 0.3, 0.5], [1, 0, 0], sequences=[("a", "x"), ("a", "y"), ("b",)])
    >>> prefix_conditionals(prob, [0.2, 0.3, 0.5])
    {(): {'a': 0.5, 'b': 0.5}, ('a',): {'x': 0.4, 'y': 0.6}}
    """
    if problem.sequences is None:
        raise InputError("problem", "has no sequences; per-prefix conditionals need Problem(..., sequences=...)")
    pol = problem.check_policy(policy)
    if not 0 <= context < problem.n_contexts:
        raise InputError("context", f"expected 0 <= context < {problem.n_contexts}, got {context}")
    tree = Tree(problem.sequences[context], problem.ref[context])
    return tree.as_dict(tree.conditionals(pol[context]))
