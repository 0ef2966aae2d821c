"""Trained GRPO lands on ga.stationary_policy, within the run's own standard error.

Each test trains a small batch of contexts with many groups per step and compares the
tail-averaged policy with the prediction. Tolerance per output:

    |mean_policy - predicted| < 5 stderr + 2 tail_std^2

* stderr is the batch-means standard error of the tail average (20 batches: a t statistic
  with 19 degrees of freedom; P(|t| > 5) = 8e-5, so about 1e-3 false alarms over the ~12
  outputs of a test).
* Constant-step SGD's stationary distribution is off the fixed point by O(lr x gradient
  noise), of the order of the policy's variance over the tail (second-order expansion of
  the update around the fixed point: the drift's curvature shifts the mean logit by
  O(Var theta), and the softmax's curvature adds O(Var pi)). Measured on the three-output
  example at several step sizes the offset was 1.1-1.3 tail variances; 2 tail variances
  bound it. The step size is chosen from the Jacobian at the root so that the
  autocorrelation time is short (5 steps: 5 per batch) and this term stays near or below
  one stderr, so the test is decided by statistics.

Every test also checks that it can fail: the same run is far outside the tolerance of a
nearby wrong prediction (another algorithm's stationary policy).
"""

from __future__ import annotations

import numpy as np
import pytest

import grpo_align as ga
from grpo_align.training import TrainConfig, class_masses, reward_classes, train

N_BATCHES = 20

REF = [[0.2, 0.3, 0.5], [0.5, 0.3, 0.2], [0.3, 0.4, 0.3], [0.6, 0.2, 0.2]]
DET = ga.Problem.from_rewards(ref=REF, rewards=[[1.0, 0.5, 0.0], [0.0, 0.5, 1.0], [0.2, 1.0, 0.0], [0.0, 0.6, 1.0]])
BERN = ga.Problem.from_bernoulli(ref=REF, success=[[0.8, 0.5, 0.2], [0.1, 0.5, 0.9], [0.3, 0.9, 0.4], [0.2, 0.7, 0.5]])


def step_size(predicted, tau: float = 5.0) -> float:
    """lr with lr |lambda_max| <= 1 (stable, no overshoot) and correlation time <= tau steps."""
    eig = np.concatenate([np.abs(r.eigenvalues.real) for roots in predicted.roots for r in roots])
    return float(min(1.0 / eig.max(), 1.0 / (tau * eig.min())))


def run(problem, algo, *, groups=256, lr=None, steps=750, **kw):
    predicted = ga.stationary_policy(problem, algo)
    assert np.all(predicted.success), predicted.message
    lr = step_size(predicted) if lr is None else lr
    cfg = TrainConfig(
        steps=steps, groups_per_step=groups, lr=lr, seed=7, tail_fraction=2 / 3, n_batches=N_BATCHES, **kw
    )
    return train(problem, algo, cfg)


def tolerance(result):
    return 5 * result.stderr + 2 * result.tail_std**2


def assert_lands(result, wrong_algo=None):
    tol = tolerance(result)
    gap = np.abs(result.gap)
    assert np.all(gap < tol), f"gap {gap.max():.2e} (z = {np.max(np.abs(result.z)):.1f}); tolerance {tol.min():.2e}"
    # the batch means must be close to independent for the stderr to hold
    assert abs(result.batch_autocorrelation) < 0.5
    if wrong_algo is not None:
        wrong = ga.stationary_policy(result.problem, wrong_algo).policy
        assert np.any(np.abs(result.mean_policy - wrong) > 3 * tol), "the test could not tell the algorithms apart"


@pytest.mark.parametrize("penalty", ["k3", "k2", "kl"])
def test_penalties_deterministic_rewards(penalty):
    algo = ga.GRPO(group_size=4, beta=0.5, penalty=penalty)
    other = {"k3": "k2", "k2": "k3", "kl": "k3"}[penalty]
    assert_lands(run(DET, algo), wrong_algo=algo.replace(penalty=other))


@pytest.mark.parametrize(
    "spec, wrong",
    [
        (dict(ddof=0), dict(ddof=1)),
        (dict(ddof=1), dict(ddof=0)),
        (dict(normalization="shift"), dict(normalization="rloo")),
        (dict(normalization="rloo"), dict(normalization="shift")),
    ],
)
def test_normalizations_bernoulli_rewards(spec, wrong):
    algo = ga.GRPO(group_size=4, beta=0.5, **spec)
    assert_lands(run(BERN, algo), wrong_algo=algo.replace(**wrong))


def test_pairwise_rock_paper_scissors_g2():
    # non-transitive: each output beats the next with 0.7, loses with 0.2, ties 0.1
    win = np.array([[0.0, 0.7, 0.2], [0.2, 0.0, 0.7], [0.7, 0.2, 0.0]])
    prob = ga.Problem.from_preference(ref=[[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], win_prob=[win, win])
    algo = ga.GRPO(group_size=2, beta=0.3)
    result = run(prob, algo, groups=512)
    assert_lands(result, wrong_algo=algo.replace(penalty="kl"))


def test_direct_kl_rock_paper_scissors_is_nash():
    win = np.array([[0.0, 0.7, 0.2], [0.2, 0.0, 0.7], [0.7, 0.2, 0.0]])
    prob = ga.Problem.from_preference(ref=[[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], win_prob=[win, win])
    algo = ga.GRPO(group_size=2, beta=0.3, penalty="kl")
    assert_lands(run(prob, algo, groups=512), wrong_algo=algo.replace(penalty="k3"))


def test_adam():
    algo = ga.GRPO(group_size=4, beta=0.5)
    result = run(BERN, algo, lr=0.05, steps=900, optimizer="adam")
    assert_lands(result, wrong_algo=algo.replace(ddof=1))


def test_inner_iterations_with_active_clip_land_on_prediction():
    # 4 inner steps on each batch with a narrow clip: the clip binds while the policy is
    # far from the fixed point and stops binding near it (the expected first-step
    # gradient vanishes there), so the end point is the predicted one
    algo = ga.GRPO(group_size=4, beta=0.5)
    two = ga.Problem.from_rewards(ref=REF[:2], rewards=[[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]])
    result = run(two, algo, groups=128, lr=0.2, steps=750, inner_iterations=4, clip_eps=0.05)
    clip = result.metrics["charts/clip_fraction"]
    assert clip[:20].mean() > 0.1  # the clip is active
    assert_lands(result, wrong_algo=algo.replace(beta=0.6))


def replicas_stay(problem_one, algo, *, lr, replicas=16, steps=400, groups=128):
    """Replicas of one context start at the prediction and must stay there on average.

    For presets with a small beta the policy sits near a vertex and the dynamics there are
    slow (small Jacobian eigenvalues), and a large step is no way out: the penalty's kicks
    grow like pi_ref/pi on rare samples and throw rare outputs to probability 0. So
    independent replicas start at the prediction and their spread gives the standard
    error (no autocorrelation assumption). The noise-free route from pi_ref is
    test_presets_reached_from_reference_by_expected_dynamics.
    """
    ref = np.repeat(problem_one.ref, replicas, axis=0)
    prob = ga.Problem(
        ref=ref,
        levels=np.repeat(problem_one.levels, replicas, axis=0),
        dist=np.repeat(problem_one.dist, replicas, axis=0),
    )
    predicted = ga.stationary_policy(prob, algo).policy
    cfg = TrainConfig(steps=steps, groups_per_step=groups, lr=lr, seed=5, tail_fraction=1.0)
    result = train(prob, algo, cfg, init=predicted)
    mean = result.mean_policy.mean(axis=0)
    stderr = result.mean_policy.std(axis=0, ddof=1) / np.sqrt(replicas)
    tol = 5 * stderr + 2 * np.mean(result.tail_std**2, axis=0)
    assert np.all(np.abs(mean - predicted[0]) < tol), (mean, predicted[0], stderr)
    return mean, tol


PRESET_PROBLEM = ga.Problem.from_bernoulli(ref=[[0.2, 0.3, 0.5]], success=[[0.6, 0.5, 0.45]])


def test_presets_trl_stays_at_prediction():
    algo = ga.GRPO.preset("trl", beta=0.04)
    mean, tol = replicas_stay(PRESET_PROBLEM, algo, lr=5.0)
    wrong = ga.stationary_policy(PRESET_PROBLEM, algo.replace(beta=0.05)).policy[0]
    assert np.any(np.abs(mean - wrong) > 3 * tol)


def test_presets_verl_stays_at_prediction():
    algo = ga.GRPO.preset("verl")
    mean, tol = replicas_stay(PRESET_PROBLEM, algo, lr=20.0)
    wrong = ga.stationary_policy(PRESET_PROBLEM, algo.replace(beta=0.002)).policy[0]
    assert np.any(np.abs(mean - wrong) > 3 * tol)


def _class_of_best(problem, algo, policy):
    """Index of the reward class holding (almost) all of ``policy``, per context."""
    return np.argmax(class_masses(problem, policy), axis=-1)


def test_k1_drifts_to_best_class():
    # k1 in the loss has zero expected gradient: no interior stationary policy; the
    # theory's limit is the class that wins under P_G
    algo = ga.GRPO(group_size=4, beta=0.2, penalty="k1")
    predicted = ga.stationary_policy(DET, algo)
    assert all(s == "limit" for s in predicted.status)
    cfg = TrainConfig(steps=300, groups_per_step=64, lr=2.0, seed=3)
    result = train(DET, algo, cfg)
    masses = class_masses(DET, result.policy)
    best = _class_of_best(DET, algo, predicted.policy)
    assert np.all(masses[np.arange(4), best] > 0.99)
    # and it keeps drifting: the best class's mass grows over the run
    start = class_masses(DET, result.trajectory[len(result.trajectory) // 4])
    assert np.all(masses[np.arange(4), best] >= start[np.arange(4), best])


def test_dr_grpo_beta0_drifts_to_limit():
    algo = ga.GRPO.preset("dr_grpo")
    predicted = ga.stationary_policy(BERN, algo)
    assert all(s == "limit" for s in predicted.status)
    result = train(BERN, algo, TrainConfig(steps=300, groups_per_step=64, lr=2.0, seed=3))
    best = _class_of_best(BERN, algo, predicted.policy)
    masses = class_masses(BERN, result.policy)
    assert np.all(masses[np.arange(4), best] > 0.99)
    # the winner is the highest success probability (shift normalisation: P is linear)
    success = BERN.dist[..., 1]
    np.testing.assert_array_equal(reward_classes(BERN)[np.arange(4), np.argmax(success, axis=1)], best)


def test_abs_penalty_at_class_level():
    # abs fixes only class masses (redistribution inside a class that keeps every output
    # on the same side of pi_ref is stationary too), so compare the correct class's mass.
    # Its stderr comes from batch means of the class mass along the recorded trajectory.
    # G = 16 makes P_correct - P_wrong steep near the root (about 1/sqrt(p(1-p))), so the
    # root attracts strongly; the vertex is a second attractor (the difference grows again
    # as p -> 1), which a larger step (lr 2) lets the noise reach: lr stays at 0.5.
    ref = [[0.05, 0.475, 0.475], [0.1, 0.3, 0.6], [0.02, 0.49, 0.49], [0.05, 0.9, 0.05]]
    prob = ga.Problem.from_rewards(ref=ref, rewards=[[1.0, 0.0, 0.0]] * 4)
    algo = ga.GRPO(group_size=16, beta=1.0, penalty="abs")
    predicted = class_masses(prob, ga.stationary_policy(prob, algo).policy)[:, 0]
    tail, batches = 1000, N_BATCHES
    cfg = TrainConfig(steps=1500, groups_per_step=64, lr=0.5, seed=3, tail_fraction=tail / 1500, record_every=1)
    result = train(prob, algo, cfg)
    correct = class_masses(prob, result.trajectory)[-tail:, :, 0]  # (tail, C)
    batch_means = correct.reshape(batches, tail // batches, -1).mean(axis=1)
    mean = correct.mean(axis=0)
    stderr = batch_means.std(axis=0, ddof=1) / np.sqrt(batches)
    tol = 5 * stderr + 2 * correct.var(axis=0)
    assert np.all(np.abs(mean - predicted) < tol), (mean, predicted, stderr)
    wrong = class_masses(prob, ga.stationary_policy(prob, algo.replace(beta=1.05)).policy)[:, 0]
    assert np.all(np.abs(mean - wrong) > 3 * tol)
