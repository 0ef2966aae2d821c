"""Token sequences, aggregation and the penalty in the reward (THEORY.md section 10).

Every engine quantity is held against ``seq_brute`` (every group enumerated, the surrogate's
per-token gradient accumulated in per-prefix logits), written independently of the engine.
"""

from __future__ import annotations

import numpy as np
import pytest

import grpo_align as ga
import seq_brute as brute
from grpo_align.errors import InputError
from grpo_align.theory.sequence_gradient import expected_gradient_tree
from grpo_align.theory.sequences import prefix_conditionals

TREE = [(1, 2, 9), (1, 3, 4, 5, 9), (4, 9), (5, 6, 7, 9)]
FLAT = [(1, 9), (2, 3, 4, 5, 9), (6, 9), (7, 3, 4, 5, 9)]  # no shared branching prefix
PLACEMENTS = [
    ("k3", "loss"),
    ("k2", "loss"),
    ("k1", "loss"),
    ("kl", "loss"),
    ("k1", "reward"),
    ("k2", "reward"),
    ("k3", "reward"),
]
AGGS = ["sequence_mean", "group_token_mean", "constant"]


def _brute_grad(prob, algo, pi, seqs):
    return brute.gradient(
        seqs, prob.ref[0], list(prob.levels[0]), prob.dist[0], np.asarray(pi), algo.group_size, algo.beta,
        normalization=algo.normalization, ddof=algo.ddof, eps=algo.eps, penalty=algo.penalty,
        aggregation=algo.aggregation, penalty_in=algo.penalty_in,
    )  # fmt: skip


def _max_gap(a, b):
    assert a.keys() == b.keys()
    return max(abs(a[u][t] - b[u][t]) for u in a for t in a[u])


# ---------------------------------------------------------------------------- the gradient
@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("pen", PLACEMENTS)
@pytest.mark.parametrize("norm", ["shift_scale", "shift", "rloo"])
def test_expected_gradient_matches_brute_force(agg, pen, norm):
    succ = [0.9, 0.2, 0.4, 0.7]
    prob = ga.Problem.from_bernoulli([0.1, 0.2, 0.3, 0.4], succ, sequences=TREE)
    algo = ga.GRPO(group_size=3, beta=0.4, normalization=norm, penalty=pen[0], penalty_in=pen[1], aggregation=agg)
    pi = [0.25, 0.15, 0.35, 0.25]
    assert _max_gap(expected_gradient_tree(prob, algo, pi), _brute_grad(prob, algo, pi, TREE)) < 1e-14


@pytest.mark.parametrize("seed", range(4))
def test_expected_gradient_random_trees(seed):
    rng = np.random.default_rng(seed)
    # random prefix-free trees: random token paths ending in a unique end token
    k = int(rng.integers(3, 6))
    seqs = list({(*rng.integers(0, 3, size=int(rng.integers(0, 3))).tolist(), 10 + o) for o in range(k)})
    ref = rng.dirichlet(np.ones(len(seqs)))
    pi = rng.dirichlet(np.ones(len(seqs)))
    levels = [0.0, 0.5, 2.0]
    dist = rng.dirichlet(np.ones(3), size=len(seqs))
    prob = ga.Problem(ref, levels, dist, sequences=seqs)
    for agg in AGGS:
        for pen, place in (("k3", "loss"), ("kl", "loss"), ("k2", "reward")):
            algo = ga.GRPO(group_size=3, beta=0.3, ddof=1, eps=0.01, penalty=pen, penalty_in=place, aggregation=agg)
            assert _max_gap(expected_gradient_tree(prob, algo, pi), _brute_grad(prob, algo, pi, seqs)) < 1e-13


# ---------------------------------------------------------------------------- THEORY.md numbers
def test_group_token_mean_moves_the_paper_policy_without_shared_prefixes():
    prob = ga.Problem.from_rewards([0.1, 0.3, 0.4, 0.2], [1, 1, 0, 0], sequences=FLAT)
    paper = ga.stationary_policy(
        ga.Problem.from_rewards([0.1, 0.3, 0.4, 0.2], [1, 1, 0, 0]), ga.GRPO(group_size=3, beta=0.3)
    )
    got = {agg: ga.stationary_policy(prob, ga.GRPO(group_size=3, beta=0.3, aggregation=agg)) for agg in AGGS}
    assert round(got["group_token_mean"].policy[0, 0], 4) == 0.2336
    assert round(got["sequence_mean"].policy[0, 0], 4) == 0.2210
    # sequence_mean and constant: exactly the paper's policy (eq. 10.11)
    np.testing.assert_allclose(got["sequence_mean"].policy, paper.policy, atol=1e-10)
    np.testing.assert_allclose(got["constant"].policy, paper.policy, atol=1e-10)


def test_shared_prefixes_separate_the_three_aggregations():
    prob = ga.Problem.from_rewards([0.1, 0.2, 0.3, 0.4], [1, 0, 0, 1], sequences=TREE)
    last = []
    for agg in AGGS:
        res = ga.stationary_policy(prob, ga.GRPO(group_size=3, beta=0.4, aggregation=agg))
        assert res.status == ("interior",) and res.success[0]
        last.append(round(res.policy[0, 3], 4))
        # the brute-force gradient vanishes at the root
        grad = _brute_grad(prob, res.algo, res.policy[0], TREE)
        assert max(abs(v) for ch in grad.values() for v in ch.values()) < 1e-12
        assert res.conditionals(0)[(1,)].keys() == {2, 3}
    assert last == [0.6320, 0.6591, 0.6754]


def test_linear_normalisation_with_k1_in_reward_is_rlhf_on_expected_rewards():
    prob = ga.Problem.from_bernoulli([0.2, 0.3, 0.5], [0.8, 0.5, 0.1])
    for norm in ("shift", "rloo"):
        res = ga.stationary_policy(
            prob, ga.GRPO(group_size=2, beta=0.5, normalization=norm, penalty="k1", penalty_in="reward")
        )
        np.testing.assert_allclose(res.policy[0].round(4), [0.4099, 0.3374, 0.2527])
        np.testing.assert_allclose(res.policy[0], ga.rlhf_policy(prob, 0.5), atol=1e-10)


@pytest.mark.parametrize("g", [2, 3, 5])
def test_deterministic_rewards_k1_in_reward_with_std_is_rlhf_sliding(g):
    prob = ga.Problem.from_rewards([0.2, 0.3, 0.5], [1.0, 0.5, 0.0])
    res = ga.stationary_policy(prob, ga.GRPO(group_size=g, beta=0.5, penalty="k1", penalty_in="reward"))
    assert res.status == ("sliding",)
    np.testing.assert_allclose(res.policy[0], ga.rlhf_policy(prob, 0.5), atol=1e-10)
    # every modified reward ties there (eq. 10.12), and the brute-force field on either
    # side of the tie set points back to it (a sliding mode): more mass on output 0 lowers
    # its modified reward, and the gradient then takes mass away from it
    pi = res.policy[0]
    mod = np.array([1.0, 0.5, 0.0]) - 0.5 * np.log(pi / prob.ref[0])
    assert np.ptp(mod) < 1e-12
    for sign in (1.0, -1.0):
        moved = pi + sign * 1e-6 * np.array([1.0, -0.5, -0.5])
        grad = _brute_grad(prob, res.algo, moved, [(0,), (1,), (2,)])[()]
        assert sign * grad[0] < 0


def test_k2_in_reward_reaches_a_face():
    prob = ga.Problem.from_bernoulli([0.192, 0.426, 0.382], [0.972, 0.389, 0.787])
    algo = ga.GRPO(group_size=2, beta=0.7, normalization="shift", penalty="k2", penalty_in="reward")
    res = ga.stationary_policy(prob, algo)
    assert res.status == ("boundary",)
    pi = res.policy[0]
    assert pi[1] == 0.0
    # THEORY.md section 10 prints .4385/0/.5615; the face condition E r'(1) = E r'(3)
    # (shift, G = 2) puts the root at .4375/0/.5625 (see docs/THEORY.md section 10.6)
    np.testing.assert_allclose(pi, [0.4385, 0.0, 0.5615], atol=1.5e-3)
    ref, succ = prob.ref[0], np.array([0.972, 0.389, 0.787])
    mod = succ - 0.7 * 0.5 * np.log(np.where(pi > 0, pi, 1) / ref) ** 2
    assert abs(mod[0] - mod[2]) < 1e-12
    # brute force at the root, output 1 given a sliver of mass: tangent gradient ~ 0,
    # output 1 pushed out
    sliver = pi + np.array([0.0, 1e-12, -1e-12])
    grad = _brute_grad(prob, algo, sliver, [(0,), (1,), (2,)])[()]
    assert abs(grad[0]) < 1e-10 and abs(grad[2]) < 1e-10 and grad[1] < 0


# ---------------------------------------------------------------------------- reductions
@pytest.mark.parametrize("agg", AGGS)
def test_equal_lengths_reduce_to_the_paper(agg):
    # one-token answers and a batch: every aggregation is the paper's
    prob = ga.Problem.from_bernoulli([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], [[0.9, 0.4, 0.2], [0.1, 0.5, 0.7]])
    algo = ga.GRPO(group_size=4, beta=0.3, aggregation=agg)
    atomic = ga.stationary_policy(prob, algo)
    seqs = [[("a", "x"), ("b", "x"), ("c", "x")], [(1, 0), (2, 0), (3, 0)]]
    as_seq = ga.stationary_policy(
        ga.Problem.from_bernoulli(prob.ref, [[0.9, 0.4, 0.2], [0.1, 0.5, 0.7]], sequences=seqs), algo
    )
    np.testing.assert_allclose(as_seq.policy, atomic.policy, atol=1e-10)


def test_k2_moves_with_sequence_mean_even_without_shared_prefixes():
    # eq. 10.11: the constant c is -beta KL for k2, not 0, so 1/|o| moves the end point
    prob = ga.Problem.from_rewards([0.1, 0.3, 0.4, 0.2], [1, 1, 0, 0], sequences=FLAT)
    atomic = ga.stationary_policy(
        ga.Problem.from_rewards([0.1, 0.3, 0.4, 0.2], [1, 1, 0, 0]), ga.GRPO(group_size=3, beta=0.3, penalty="k2")
    )
    seq = ga.stationary_policy(prob, ga.GRPO(group_size=3, beta=0.3, penalty="k2"))
    const = ga.stationary_policy(prob, ga.GRPO(group_size=3, beta=0.3, penalty="k2", aggregation="constant"))
    np.testing.assert_allclose(const.policy, atomic.policy, atol=1e-10)
    assert np.max(np.abs(seq.policy - atomic.policy)) > 1e-3


# ---------------------------------------------------------------------------- input
def test_sequences_validation():
    # both outputs named as fields, by their Python index (io_toml renumbers both from 1)
    with pytest.raises(InputError, match=r"^sequences\[0\]: \(1,\) is a prefix of sequences\[1\] \(1, 2\)"):
        ga.Problem.from_rewards([0.5, 0.5], [1, 0], sequences=[(1,), (1, 2)])
    with pytest.raises(InputError, match=r"^sequences\[1\]: \(1, 2\) repeats sequences\[0\]"):
        ga.Problem.from_rewards([0.5, 0.5], [1, 0], sequences=[(1, 2), (1, 2)])
    with pytest.raises(InputError, match="one token tuple per output"):
        ga.Problem.from_rewards([0.5, 0.5], [1, 0], sequences=[(1, 2)])
    with pytest.raises(InputError, match="string"):
        ga.Problem.from_rewards([0.5, 0.5], [1, 0], sequences=["ab", "c"])
    with pytest.raises(InputError, match="aggregation"):
        ga.GRPO(aggregation="token_mean")
    with pytest.raises(InputError, match="penalty"):
        ga.GRPO(penalty="kl", penalty_in="reward")


def test_prefix_conditionals_follow_from_the_policy():
    prob = ga.Problem.from_rewards([0.1, 0.2, 0.3, 0.4], [1, 0, 0, 1], sequences=TREE)
    cond = prefix_conditionals(prob, [0.1, 0.2, 0.3, 0.4])
    assert cond[()] == pytest.approx({1: 0.3, 4: 0.3, 5: 0.4})
    assert cond[(1,)] == pytest.approx({2: 1 / 3, 3: 2 / 3})


def test_rloo_preset_is_rlhf_in_the_reward():
    algo = ga.GRPO.preset("rloo")
    assert (algo.penalty, algo.penalty_in) == ("k1", "reward")
    prob = ga.Problem.from_bernoulli([0.2, 0.3, 0.5], [0.8, 0.5, 0.1])
    np.testing.assert_allclose(
        ga.stationary_policy(prob, algo.replace(beta=0.5)).policy[0], ga.rlhf_policy(prob, 0.5), atol=1e-10
    )


def test_random_rewards_std_k1_in_reward_is_a_filippov_equilibrium_not_rlhf():
    prob = ga.Problem.from_bernoulli([0.2, 0.3, 0.5], [0.8, 0.5, 0.1])
    algo = ga.GRPO(group_size=2, beta=0.5, penalty="k1", penalty_in="reward")
    res = ga.stationary_policy(prob, algo)
    assert res.status == ("sliding",)
    pi = res.policy[0]
    assert np.max(np.abs(pi - ga.rlhf_policy(prob, 0.5))) > 0.05  # neither RLHF ...
    x = np.log(pi / prob.ref[0])
    # ... but on a tie corner: (0, success) ~ (1, success), (0, fail) ~ (1, fail) and
    # (0, success) ~ (2, fail), i.e. x0 = x1 and x2 = x0 - 1/beta
    assert abs(x[0] - x[1]) < 1e-12 and abs(x[2] - x[0] + 2.0) < 1e-12
    assert res.roots[0][0].ties is not None
    # Filippov: 0 lies in the convex hull of the brute-force fields of the regions around
    # the corner (sampled on a small circle in the two tie coordinates)
    from scipy.optimize import linprog

    fields = []
    for ang in np.linspace(0, 2 * np.pi, 16, endpoint=False):
        d1, d2 = 1e-7 * np.cos(ang), 1e-7 * np.sin(ang)  # offsets of x0 - x1 and x2 - x0
        z = np.log(pi) + np.array([d1, 0.0, d1 + d2])
        moved = np.exp(z) / np.exp(z).sum()
        g = _brute_grad(prob, algo, moved, [(0,), (1,), (2,)])[()]
        fields.append([g[0], g[1]])
    f = np.array(fields).T  # (2, 16)
    lp = linprog(np.zeros(16), A_eq=np.vstack([f, np.ones(16)]), b_eq=[0, 0, 1], bounds=(0, None))
    assert lp.status == 0
    assert np.max(np.abs(f @ lp.x)) < 1e-9
    # control: RLHF's policy is no such point (the same test fails there)
    rl = ga.rlhf_policy(prob, 0.5)
    g = _brute_grad(prob, algo, rl, [(0,), (1,), (2,)])[()]
    assert max(abs(g[0]), abs(g[1])) > 1e-3


# ---------------------------------------------------------------------------- sliding corners
BERN_REF, BERN_SUCCESS = [0.2, 0.3, 0.5], [0.8, 0.5, 0.1]


def _hull_residual(pi, beta, radius=1e-7, n_dir=24):
    """Distance of 0 from the hull of the brute-force fields at pi + radius (cos a, 0, sin a)
    in the logits (a Filippov equilibrium has 0 in it). The directions avoid the angles that
    lie on the tie surfaces through a corner (multiples of 45 degrees), where the rewards tie
    only up to rounding."""
    from scipy.optimize import linprog

    dist = [[1 - s, s] for s in BERN_SUCCESS]
    fields = []
    for a in (np.arange(n_dir) + 0.5) * 2 * np.pi / n_dir:
        z = np.log(pi) + radius * np.array([np.cos(a), 0.0, np.sin(a)])
        p = np.exp(z - z.max())
        g = brute.gradient(
            [(0,), (1,), (2,)], BERN_REF, [0.0, 1.0], dist, list(p / p.sum()), 2, beta,
            penalty="k1", penalty_in="reward",
        )[()]  # fmt: skip
        fields.append([g[0], g[1]])  # the three entries sum to 0
    f = np.array(fields).T
    m = f.shape[1]
    lp = linprog(
        np.r_[np.zeros(m), 1.0],
        A_ub=np.block([[f, -np.ones((2, 1))], [-f, -np.ones((2, 1))]]),
        b_ub=np.zeros(4),
        A_eq=np.r_[np.ones(m), 0.0][None],
        b_eq=[1.0],
        bounds=[(0, None)] * (m + 1),
    )
    return lp.x[-1] if lp.status == 0 else np.inf


def _corner(beta, tied_with_2):
    """x_2 = x_0 - 1/beta, and x_1 = x_0 (below beta* ~ 4.49) or x_1 = x_2 (above): the ties
    fix the policy (eq. 10.7)."""
    w = np.array(BERN_REF) * np.exp(-np.array([0.0, tied_with_2, 1.0]) / beta)
    return w / w.sum()


@pytest.mark.parametrize("beta", [*np.linspace(1.0, 5.0, 17).tolist(), 1.7, 4.47, 4.48, 4.49])
def test_std_k1_in_reward_g2_sliding_corner_over_beta(beta):
    # the solve must find the tie corner wherever one is a Filippov equilibrium: the
    # regularised path's tie gaps grow like beta |eta| eps, and near the switch of corners
    # (beta* ~ 4.49) |eta| -> inf
    prob = ga.Problem.from_bernoulli(BERN_REF, BERN_SUCCESS)
    res = ga.stationary_policy(prob, ga.GRPO(group_size=2, beta=beta, penalty="k1", penalty_in="reward"))
    assert res.status == ("sliding",)
    pi = res.policy[0]
    # fields within radius 1e-7 of a Filippov point are within ~1e-7 of its sector limits
    assert _hull_residual(pi, beta) < 1e-6
    gaps = [np.max(np.abs(pi - _corner(beta, t))) for t in (0.0, 1.0)]
    assert min(gaps) < 1e-9


@pytest.mark.parametrize(("beta", "tied_with_2"), [(1.0, 1.0), (2.0, 1.0), (5.0, 0.0)])
def test_hull_residual_rejects_the_wrong_corner(beta, tied_with_2):
    # the control: the other corner is not an equilibrium there, and the test says so
    assert _hull_residual(_corner(beta, tied_with_2), beta) > 1e-5
