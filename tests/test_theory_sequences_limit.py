"""The penalty in the reward as G -> inf (THEORY.md eqs. 10.13-10.14).

Three independent routes: ``seq_brute.gradient_limit`` (one member's draw enumerated, the
group statistics replaced by the population's, the per-token gradient accumulated in
per-prefix logits); the finite-G engine (itself held against every enumerated group in
``test_theory_sequences``) as G grows, at the rate eq. 10.15 predicts; and closed forms
(RLHF's policy for k1).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import grpo_align as ga
import seq_brute as brute
from grpo_align.theory.sequence_gradient import SequenceModel, expected_gradient_tree
from grpo_align.theory.stationary import tree as tree_solver

INF = math.inf
TREE = [(1, 2, 9), (1, 3, 4, 5, 9), (4, 9), (5, 6, 7, 9)]
SMALL = [(1, 2, 9), (1, 3, 4, 5, 9), (4, 9)]  # three outputs, a shared prefix
AGGS = ["sequence_mean", "group_token_mean", "constant"]


def _max_gap(a, b):
    assert a.keys() == b.keys()
    return max(abs(a[u][t] - b[u][t]) for u in a for t in a[u])


def _field(prob, algo, pi):
    model = SequenceModel(prob, algo)
    return model.gradient(model.tree.conditionals(np.asarray(pi, dtype=float)))


@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("pen", ["k1", "k2", "k3"])
@pytest.mark.parametrize("norm", ["shift_scale", "shift", "rloo", "raw"])
def test_limit_gradient_matches_brute_force(agg, pen, norm):
    prob = ga.Problem.from_bernoulli([0.1, 0.2, 0.3, 0.4], [0.9, 0.2, 0.4, 0.7], sequences=TREE)
    algo = ga.GRPO(group_size=INF, beta=0.4, normalization=norm, eps=0.01, penalty=pen, penalty_in="reward",
                   aggregation=agg)  # fmt: skip
    pi = [0.25, 0.15, 0.35, 0.25]
    want = brute.gradient_limit(TREE, prob.ref[0], list(prob.levels[0]), prob.dist[0], np.asarray(pi), 0.4,
                                normalization=norm, eps=0.01, penalty=pen, aggregation=agg)  # fmt: skip
    assert _max_gap(expected_gradient_tree(prob, algo, pi), want) < 1e-14


def _five_cells():
    # outputs 0 and 2 Bernoulli, output 1 always 0: five (output, level) cells keep the
    # exact enumeration small enough for G = 64
    dist = np.array([[0.2, 0.8], [1.0, 0.0], [0.7, 0.3]])
    return ga.Problem([0.2, 0.3, 0.5], [0.0, 1.0], dist, sequences=SMALL)


@pytest.mark.parametrize("agg", AGGS)
def test_std_scaling_converges_like_one_over_g(agg):
    """eq. 10.15: the finite-G field is the limit plus O(1/G) (the std's ratio bias)."""
    prob, pi = _five_cells(), [0.3, 0.25, 0.45]
    spec = dict(beta=0.4, penalty="k2", penalty_in="reward", aggregation=agg)
    lim = _field(prob, ga.GRPO(group_size=INF, **spec), pi)
    err = {g: np.max(np.abs(_field(prob, ga.GRPO(group_size=g, **spec), pi) - lim)) for g in (16, 32, 64)}
    # halving 1/G halves the error (the next term is O(1/G^2); all-tied groups O(0.8^G))
    assert 1.7 < err[16] / err[32] < 2.4
    assert 1.8 < err[32] / err[64] < 2.2
    # and Richardson's 2 g(2G) - g(G) removes the 1/G term
    g32 = _field(prob, ga.GRPO(group_size=32, **spec), pi)
    g64 = _field(prob, ga.GRPO(group_size=64, **spec), pi)
    assert np.max(np.abs(2 * g64 - g32 - lim)) < 0.2 * err[64]


def test_shift_group_token_mean_converges_like_one_over_g():
    """eq. 10.15: only the weight G / sum_j |o_j| fluctuates: O(1/G)."""
    prob, pi = _five_cells(), [0.3, 0.25, 0.45]
    spec = dict(beta=0.4, penalty="k3", penalty_in="reward", aggregation="group_token_mean", normalization="shift")
    lim = _field(prob, ga.GRPO(group_size=INF, **spec), pi)
    err = [np.max(np.abs(_field(prob, ga.GRPO(group_size=g, **spec), pi) / (1 - 1 / g) - lim)) for g in (16, 32, 64)]
    assert 1.85 < err[0] / err[1] < 2.15
    assert 1.9 < err[1] / err[2] < 2.1


@pytest.mark.parametrize("agg", ["sequence_mean", "constant"])
@pytest.mark.parametrize("norm", ["shift", "rloo"])
@pytest.mark.parametrize("g", [2, 3, 8])
def test_linear_normalisations_are_exact_at_every_g(agg, norm, g):
    """eq. 10.15: E[A_1 | o] = (1 - 1/G)(E r'(o) - mu) (shift) or E r'(o) - mu (rloo) and
    the weight is the member's own: the finite-G field is the limit's, scaled."""
    prob = ga.Problem.from_bernoulli([0.1, 0.2, 0.3, 0.4], [0.9, 0.2, 0.4, 0.7], sequences=TREE)
    spec = dict(beta=0.4, penalty="k2", penalty_in="reward", aggregation=agg, normalization=norm)
    pi = [0.25, 0.15, 0.35, 0.25]
    scale = 1 - 1 / g if norm == "shift" else 1.0
    finite = _field(prob, ga.GRPO(group_size=g, **spec), pi)
    assert np.max(np.abs(finite - scale * _field(prob, ga.GRPO(group_size=INF, **spec), pi))) < 1e-15


def _rlhf(ref, mean_reward, beta):
    p = np.asarray(ref) * np.exp(np.asarray(mean_reward) / beta)
    return p / p.sum()


@pytest.mark.parametrize("norm", ["shift_scale", "shift", "rloo", "raw"])
def test_k1_in_reward_at_infinite_g_is_rlhf(norm):
    """eq. 10.14: one-token outputs, k1: E r(o) - beta x(o) = const, RLHF on the expected
    rewards, for std scaling too (the field is the shift one over sigma)."""
    prob = ga.Problem.from_bernoulli([0.2, 0.3, 0.5], [0.8, 0.5, 0.1])
    res = ga.stationary_policy(prob, ga.GRPO(group_size=INF, beta=0.5, normalization=norm, penalty="k1",
                                             penalty_in="reward"))  # fmt: skip
    assert res.success[0] and res.status == ("interior",)
    assert np.max(np.abs(res.policy[0] - _rlhf([0.2, 0.3, 0.5], [0.8, 0.5, 0.1], 0.5))) < 1e-10
    assert all(r.stable for r in res.roots[0])


def test_finite_g_std_roots_approach_rlhf_like_one_over_g():
    """With std scaling and random rewards finite G is not RLHF (THEORY.md section 10.7),
    but its root tends to it at the O(1/G) rate of eq. 10.15 (interior roots by Newton from
    RLHF's policy; the full search at G = 8 confirms that root)."""
    prob = ga.Problem.from_bernoulli([0.2, 0.3, 0.5], [0.8, 0.5, 0.1])
    rlhf = _rlhf([0.2, 0.3, 0.5], [0.8, 0.5, 0.1], 0.5)
    err = {}
    for g in (8, 16, 32):
        algo = ga.GRPO(group_size=g, beta=0.5, penalty="k1", penalty_in="reward")
        root = tree_solver.refine_tree_root(prob, algo, rlhf)
        assert root is not None
        err[g] = np.max(np.abs(root - rlhf))
        if g == 8:
            full = ga.stationary_policy(prob, algo)
            assert np.max(np.abs(full.policy[0] - root)) < 1e-9
    assert 1.6 < err[8] / err[16] < 2.4
    assert 1.8 < err[16] / err[32] < 2.2


def test_deterministic_rewards_std_limit_is_a_sliding_rlhf():
    """eq. 10.14: at RLHF's pooling every modified reward ties, sigma = 0: a sliding
    equilibrium, as at every finite G (eq. 10.12)."""
    prob = ga.Problem.from_rewards([0.2, 0.3, 0.5], [1.0, 0.5, 0.0])
    res = ga.stationary_policy(prob, ga.GRPO(group_size=INF, beta=0.5, penalty="k1", penalty_in="reward"))
    assert res.status == ("sliding",)
    root = res.roots[0][0]
    assert root.kind == "sliding" and root.stable and root.ties is not None
    assert np.max(np.abs(res.policy[0] - _rlhf([0.2, 0.3, 0.5], [1.0, 0.5, 0.0], 0.5))) < 1e-10
    # with eps > 0 the same point is an ordinary root (A = 0 there, continuous field)
    res_eps = ga.stationary_policy(prob, ga.GRPO(group_size=INF, beta=0.5, eps=1e-3, penalty="k1",
                                                 penalty_in="reward"))  # fmt: skip
    assert res_eps.status == ("interior",)
    assert np.max(np.abs(res_eps.policy[0] - res.policy[0])) < 1e-10


def test_tree_limit_std_roots_are_the_shift_roots_scaled():
    """eq. 10.14 on a tree: same roots, eigenvalues over sigma, the brute-force limit field
    vanishing there."""
    prob = _five_cells()
    spec = dict(group_size=INF, beta=0.4, penalty="k2", penalty_in="reward", aggregation="group_token_mean")
    std = ga.stationary_policy(prob, ga.GRPO(**spec))
    shift = ga.stationary_policy(prob, ga.GRPO(normalization="shift", **spec))
    assert len(std.roots[0]) == len(shift.roots[0]) >= 1
    for a, b in zip(std.roots[0], shift.roots[0], strict=True):
        assert np.max(np.abs(a.policy - b.policy)) == 0 and a.stable == b.stable and a.kind == b.kind
        if a.kind == "interior":
            ratio = a.eigenvalues.real / b.eigenvalues.real
            assert np.ptp(ratio) < 1e-6 * np.max(np.abs(ratio)) and ratio[0] > 0
            want = brute.gradient_limit(SMALL, prob.ref[0], [0.0, 1.0], prob.dist[0], a.policy, 0.4, penalty="k2",
                                        aggregation="group_token_mean")  # fmt: skip
            assert max(abs(v) for ch in want.values() for v in ch.values()) < 1e-12


def test_tree_search_record_states_the_claim():
    """The tree solver says what it searched: faces, starts, and that it claims only the
    roots its starts reach (as the atomic L > 2 solver's ``search`` record does)."""
    prob = ga.Problem.from_bernoulli([0.1, 0.2, 0.3, 0.4], [0.9, 0.2, 0.4, 0.7], sequences=TREE)
    k3 = ga.stationary_policy(prob, ga.GRPO(group_size=3, beta=0.4))
    assert k3[0].search.method == "tree" and k3[0].search.faces == 1
    assert "may be missed" in k3.message[0] and "whole tree" in k3.message[0]
    k1 = ga.stationary_policy(prob, ga.GRPO(group_size=INF, beta=0.4, penalty="k1", penalty_in="reward"))
    assert k1[0].search.faces == 2**4 - 1  # every support of four outputs
    assert "every support (15 faces)" in k1.message[0]
    ab = ga.stationary_policy(prob, ga.GRPO(group_size=3, beta=0.4, penalty="abs"))
    assert ab[0].search.method == "forward-backward" and "others not searched" in ab.message[0]
