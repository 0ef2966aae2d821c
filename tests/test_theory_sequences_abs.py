"""The abs penalty on tree policies (THEORY.md section 10.10, eq. 10.16).

The field with psi = sign(x) per token is held against ``seq_brute``; the forward-backward
solver against the atomic ``proximal`` solver (separate code: one prefix, class masses)
where the tree reduces to atomic outputs, and its root against the set-valued conditions
recomputed by hand from the brute-force field's parts.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import grpo_align as ga
import seq_brute as brute
from grpo_align.theory.sequence_gradient import expected_gradient_tree

TREE = [(1, 2, 9), (1, 3, 4, 5, 9), (4, 9), (5, 6, 7, 9)]
FLAT = [(1, 9), (2, 3, 4, 5, 9), (6, 9), (7, 3, 4, 5, 9)]  # no shared branching prefix
REF, SUCC = [0.1, 0.2, 0.3, 0.4], [0.9, 0.2, 0.4, 0.7]


@pytest.mark.parametrize("agg", ["sequence_mean", "group_token_mean", "constant"])
def test_abs_gradient_matches_brute_force(agg):
    prob = ga.Problem.from_bernoulli(REF, SUCC, sequences=TREE)
    algo = ga.GRPO(group_size=3, beta=0.4, penalty="abs", aggregation=agg)
    for pi in ([0.25, 0.15, 0.35, 0.25], [0.05, 0.3, 0.2, 0.45]):
        want = brute.gradient(TREE, np.array(REF), [0.0, 1.0], prob.dist[0], np.array(pi), 3, 0.4, penalty="abs",
                              aggregation=agg)  # fmt: skip
        got = expected_gradient_tree(prob, algo, pi)
        assert max(abs(got[u][t] - want[u][t]) for u in got for t in got[u]) < 1e-14


@pytest.mark.parametrize("beta", [0.05, 0.2, 0.6, 1.0])
@pytest.mark.parametrize("g", [2, 3])
def test_abs_without_shared_prefixes_is_the_atomic_policy(beta, g):
    # constant weights and one branching prefix: (10.16) is the atomic abs condition
    atomic = ga.stationary_policy(ga.Problem.from_bernoulli(REF, SUCC), ga.GRPO(group_size=g, beta=beta, penalty="abs"))
    tree = ga.stationary_policy(ga.Problem.from_bernoulli(REF, SUCC, sequences=FLAT),
                                ga.GRPO(group_size=g, beta=beta, penalty="abs", aggregation="constant"))  # fmt: skip
    assert tree.success[0] and atomic.success[0]
    assert np.max(np.abs(tree.policy - atomic.policy)) < 1e-9
    assert tree.roots[0][0].stable is None


@pytest.mark.parametrize("agg", ["sequence_mean", "group_token_mean"])
def test_abs_tree_root_satisfies_the_set_valued_conditions(agg):
    """(10.16) from brute-force parts at an interior root where the shared prefix moved
    (sequence_mean: .1083/.1917/.3/.4) and at pi_ref (group_token_mean): Abar - c_A from the
    brute-force gradient without penalty, Bbar(ut) = E[b(o) | ut] with b(o) = G E[w_1 | o]
    from every group enumerated."""
    prob = ga.Problem.from_bernoulli(REF, SUCC, sequences=TREE)
    res = ga.stationary_policy(prob, ga.GRPO(group_size=3, beta=0.5, penalty="abs", aggregation=agg))
    assert res.success[0] and res.status == ("interior",), res.message
    pi = res.policy[0]
    cond = brute.conditionals(TREE, pi)
    rcond = brute.conditionals(TREE, np.array(REF))
    g_a = brute.gradient(TREE, np.array(REF), [0.0, 1.0], prob.dist[0], pi, 3, 0.0, aggregation=agg)
    b_o = _b_of_outputs(pi, agg)
    moved = False
    for u in g_a:  # branching prefixes
        mass = {t: sum(p for s, p in zip(TREE, pi, strict=True) if s[: len(u) + 1] == (*u, t)) for t in cond[u]}
        pu = sum(mass.values())
        a = {t: g_a[u][t] / (pu * cond[u][t]) for t in cond[u]}  # Abar(ut) - c_A
        b = {t: sum(p * b_o[o] for o, (s, p) in enumerate(zip(TREE, pi, strict=True)) if s[: len(u) + 1] == (*u, t))
             / mass[t] for t in cond[u]}  # fmt: skip
        x = {t: np.log(cond[u][t] / rcond[u][t]) for t in cond[u]}
        fixed = [a[t] - 0.5 * b[t] * np.sign(x[t]) for t in cond[u] if abs(x[t]) > 1e-9]
        moved |= bool(fixed)
        c = float(np.mean(fixed)) if fixed else None
        if fixed:
            assert max(abs(v - c) for v in fixed) < 1e-9
        lower = max(a[t] - 0.5 * b[t] for t in cond[u] if abs(x[t]) <= 1e-9) if c is None else c
        upper = min(a[t] + 0.5 * b[t] for t in cond[u] if abs(x[t]) <= 1e-9) if c is None else c
        for t in cond[u]:
            if abs(x[t]) <= 1e-9:
                assert a[t] - 0.5 * b[t] - 1e-9 <= upper and lower <= a[t] + 0.5 * b[t] + 1e-9
    assert moved == (agg == "sequence_mean")


def _b_of_outputs(pi, agg, g=3):
    """b(o) = G E[w_1 | o_1 = o] (eq. 10.3), every group of outputs enumerated."""
    out = np.zeros(len(TREE))
    lens = [len(s) for s in TREE]
    for o in range(len(TREE)):
        for rest in itertools.product(range(len(TREE)), repeat=g - 1):
            p = float(np.prod([pi[j] for j in rest]))
            total = lens[o] + sum(lens[j] for j in rest)
            w = {"sequence_mean": 1 / (g * lens[o]), "group_token_mean": 1 / total, "constant": 1 / g}[agg]
            out[o] += p * g * w
    return out
