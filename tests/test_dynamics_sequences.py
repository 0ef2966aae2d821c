"""Expected dynamics on tree policies and with the penalty in the reward (THEORY.md 10.9).

The flow steps the trainer's own per-prefix logits along the exact expected gradient
(eq. 10.5). Its first step is held against ``seq_brute`` (every group enumerated), its
fixed points against the stationary roots, and its trajectory against the mean of sampled
``train`` runs (16 seeds, 5 standard errors), which must be far from another aggregation's
flow so that the test can fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import grpo_align as ga
import seq_brute as brute
from grpo_align.training.config import TrainConfig
from grpo_align.training.dynamics import expected_dynamics
from grpo_align.training.tabular import train

TREE = [(1, 2, 9), (1, 3, 4, 5, 9), (4, 9), (5, 6, 7, 9)]
AGGS = ["sequence_mean", "group_token_mean", "constant"]


def _bernoulli_tree():
    return ga.Problem.from_bernoulli([0.1, 0.2, 0.3, 0.4], [0.9, 0.2, 0.4, 0.7], sequences=TREE)


@pytest.mark.parametrize(
    "seqs, spec",
    [
        # (eps > 0: at pi_ref every modified reward ties, k = 0, where std scaling with
        # eps = 0 jumps, THEORY.md 10.6; the step there would be the rounding's)
        (TREE, dict(penalty="k2", penalty_in="reward", aggregation="group_token_mean", eps=0.01)),
        (TREE, dict(penalty="kl", aggregation="sequence_mean", normalization="rloo")),
        (None, dict(penalty="k1", penalty_in="reward", aggregation="constant", eps=0.1)),
    ],
)
def test_first_step_is_the_brute_force_gradient(seqs, spec):
    ref, succ = [0.1, 0.2, 0.3, 0.4], [0.9, 0.2, 0.4, 0.7]
    prob = ga.Problem.from_bernoulli(ref, succ, sequences=seqs)
    algo = ga.GRPO(group_size=3, beta=0.4, **spec)
    lr = 0.7
    d = expected_dynamics(prob, algo, lr=lr, steps=1)
    bseqs = seqs if seqs is not None else [(o,) for o in range(4)]
    grad = brute.gradient(bseqs, np.array(ref), [0.0, 1.0], prob.dist[0], np.array(ref), 3, 0.4,
                          normalization=algo.normalization, eps=algo.eps, penalty=algo.penalty,
                          aggregation=algo.aggregation, penalty_in=algo.penalty_in)  # fmt: skip
    rcond = brute.conditionals(bseqs, np.array(ref))
    logits = {u: {t: math.log(rcond[u][t]) + lr * grad[u][t] for t in ch} for u, ch in grad.items()}
    np.testing.assert_allclose(d.trajectory[1, 0], brute.policy_from_logits(bseqs, np.array(ref), logits),
                               rtol=0, atol=1e-13)  # fmt: skip


@pytest.mark.parametrize(
    "prob, algo",
    [
        *[(_bernoulli_tree(), ga.GRPO(group_size=3, beta=0.4, aggregation=agg)) for agg in AGGS],
        (ga.Problem.from_bernoulli([0.2, 0.3, 0.5], [0.8, 0.5, 0.1]),
         ga.GRPO(group_size=4, beta=0.5, penalty="k1", penalty_in="reward")),
        (_bernoulli_tree(), ga.GRPO(group_size=math.inf, beta=0.4, penalty="k1", penalty_in="reward",
                                    aggregation="group_token_mean")),
    ],
)  # fmt: skip
def test_fixed_points_are_the_stationary_roots(prob, algo):
    d = expected_dynamics(prob, algo, lr=2.0, steps=1500)
    res = ga.stationary_policy(prob, algo)
    assert d.converged[0], d.message
    assert d.residual[0] < 1e-9
    # the flow from pi_ref ends on one of the reported roots, a stable one
    gaps = [np.max(np.abs(r.policy - d.policy[0])) for r in res.roots[0]]
    i = int(np.argmin(gaps))
    assert gaps[i] < 1e-8 and res.roots[0][i].stable


@pytest.mark.parametrize("agg, other", [("group_token_mean", "constant"), ("constant", "sequence_mean")])
def test_sampled_runs_follow_the_expected_flow(agg, other):
    prob = _bernoulli_tree()
    algo = ga.GRPO(group_size=3, beta=0.4, aggregation=agg)
    steps, lr = 40, 1.0
    flow = expected_dynamics(prob, algo, lr=lr, steps=steps).trajectory[:, 0]
    wrong = expected_dynamics(prob, algo.replace(aggregation=other), lr=lr, steps=steps).trajectory[:, 0]
    runs = []
    for seed in range(16):
        cfg = TrainConfig(steps=steps, groups_per_step=64, lr=lr, seed=seed, record_every=10, tail_fraction=0.5,
                          n_batches=2)  # fmt: skip
        res = train(prob, algo, cfg, predict=False)
        runs.append(res.trajectory[1:, 0])
    steps_at = res.record_steps[1:]
    runs_arr = np.array(runs)
    mean, se = runs_arr.mean(axis=0), runs_arr.std(axis=0, ddof=1) / np.sqrt(len(runs))
    assert np.all(np.abs(mean - flow[steps_at]) < 5 * se)
    assert np.max(np.abs(mean - wrong[steps_at]) / se) > 10
