"""The tabular trainer on tree policies and with the penalty in the reward (THEORY.md section 10).

Sampled GRPO on one softmax per branching prefix (``TreePolicy``), per-token ratios and
penalties, the three aggregations and ``penalty_in="reward"``, all on the one shared loss,
lands on ``ga.stationary_policy`` within the tolerance of ``test_training_verify``
(5 batch-means standard errors + 2 tail variances for constant-step SGD's offset), and each
run is far from a nearby wrong prediction (another aggregation or placement), so the test
can fail. The cases are those of THEORY.md section 10.7, where the aggregations differ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import grpo_align as ga
import seq_brute as brute
from grpo_align.training.tabular import TreePolicy
from test_training_verify import assert_lands, run

TREE = [(1, 2, 9), (1, 3, 4, 5, 9), (4, 9), (5, 6, 7, 9)]
# a second context with another tree (different depth and branching) checks the padding
OTHER = [("a", "$"), ("b", "c", "$"), ("b", "d", "e", "$"), ("f", "$")]
FLAT = [("a", "$"), ("b", "x", "x", "x", "$"), ("c", "$"), ("d", "x", "x", "x", "$")]  # no shared prefix
AGGS = ["sequence_mean", "group_token_mean", "constant"]


def test_tree_policy_matches_brute_force_conditionals():
    prob = ga.Problem.from_rewards([[0.1, 0.2, 0.3, 0.4], [0.3, 0.2, 0.1, 0.4]], [[1, 0, 0, 1]] * 2, sequences=[TREE, OTHER])  # fmt: skip
    init = np.array([[0.25, 0.15, 0.35, 0.25], [0.1, 0.3, 0.2, 0.4]])
    pol = TreePolicy(prob, init)
    np.testing.assert_allclose(pol.probs(), init, rtol=1e-12)
    # per-token log-probabilities are those of the conditionals (eq. 10.1), by the brute force's own route
    every = torch.arange(4).expand(2, -1)
    tok = pol.token_logps(every).reshape(2, 4, -1).detach().numpy()
    ref = pol.token_ref(every).reshape(2, 4, -1).numpy()
    mask = pol.token_mask(every).reshape(2, 4, -1).numpy()
    for c, seqs in enumerate([TREE, OTHER]):
        cond = brute.conditionals(seqs, init[c])
        rcond = brute.conditionals(seqs, prob.ref[c])
        for o, s in enumerate(seqs):
            assert mask[c, o].sum() == len(s)
            want = [np.log(cond[s[:j]][s[j]]) for j in range(len(s))]
            want_ref = [np.log(rcond[s[:j]][s[j]]) for j in range(len(s))]
            np.testing.assert_allclose(tok[c, o, : len(s)], want, atol=1e-12)
            np.testing.assert_allclose(ref[c, o, : len(s)], want_ref, atol=1e-12)
    # only branching prefixes carry logits: () and (1,) in TREE, () and ("b",) in OTHER
    assert [len(t.prefixes) for t in pol.trees] == [2, 2]


@pytest.mark.parametrize("agg", AGGS)
def test_shared_prefixes_three_aggregations(agg):
    # THEORY.md 10.7: last output of TREE .6320 / .6591 / .6754 (k3, beta .4, G 3)
    prob = ga.Problem.from_rewards([[0.1, 0.2, 0.3, 0.4], [0.3, 0.2, 0.1, 0.4]], [[1, 0, 0, 1], [0, 1, 0, 1]], sequences=[TREE, OTHER])  # fmt: skip
    algo = ga.GRPO(group_size=3, beta=0.4, aggregation=agg)
    result = run(prob, algo)
    want = {"sequence_mean": 0.6320, "group_token_mean": 0.6591, "constant": 0.6754}[agg]
    assert result.predicted.policy[0, 3] == pytest.approx(want, abs=5e-5)
    other = AGGS[(AGGS.index(agg) + 1) % 3]
    assert_lands(result, wrong_algo=algo.replace(aggregation=other))


def test_group_token_mean_moves_the_end_point_without_shared_prefixes():
    # THEORY.md 10.7: short correct output .2336 (group_token_mean) against the paper's .2210
    prob = ga.Problem.from_rewards([0.1, 0.3, 0.4, 0.2], [1, 1, 0, 0], sequences=FLAT)
    algo = ga.GRPO(group_size=3, beta=0.3, aggregation="group_token_mean")
    result = run(prob, algo, groups=4096, steps=500)
    assert result.predicted.policy[0, 0] == pytest.approx(0.2336, abs=5e-5)
    paper = ga.stationary_policy(ga.Problem.from_rewards([0.1, 0.3, 0.4, 0.2], [1, 1, 0, 0]), algo).policy[0, 0]
    assert paper == pytest.approx(0.2210, abs=5e-5)
    assert_lands(result, wrong_algo=algo.replace(aggregation="sequence_mean"))


def _rlhf_on_expected_rewards(ref, mean_reward, beta):
    """pi proportional to pi_ref exp(E r / beta): RLHF's optimum, in closed form."""
    w = np.asarray(ref) * np.exp(np.asarray(mean_reward) / beta)
    return w / w.sum()


@pytest.mark.parametrize(
    "sequences, normalization, group_size",
    [(None, "shift", 2), (TREE, "rloo", 2)],
    ids=["atomic-shift", "tree-rloo"],
)
def test_k1_in_the_reward_with_linear_normalisation_is_rlhf(sequences, normalization, group_size):
    # THEORY.md 10.7: E r(o) - beta x(o) = const, RLHF on the expected rewards, for any G
    ref, succ = (
        ([0.2, 0.3, 0.5], [0.8, 0.5, 0.1]) if sequences is None else ([0.1, 0.2, 0.3, 0.4], [0.9, 0.2, 0.4, 0.7])
    )
    prob = ga.Problem.from_bernoulli(ref, succ, sequences=sequences)
    algo = ga.GRPO(group_size=group_size, beta=0.5, normalization=normalization, penalty="k1", penalty_in="reward")
    rlhf = _rlhf_on_expected_rewards(ref, succ, 0.5)
    result = run(prob, algo)
    np.testing.assert_allclose(result.predicted.policy[0], rlhf, atol=1e-8)
    if sequences is None:
        np.testing.assert_allclose(rlhf, [0.4099, 0.3374, 0.2527], atol=5e-5)
    # the wrong placement: k3 in the loss has another end point
    assert_lands(result, wrong_algo=algo.replace(penalty="k3", penalty_in="loss"))
