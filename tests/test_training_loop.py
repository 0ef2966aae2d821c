"""The tabular GRPO loop: reproducibility, resume, masking, batching and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import grpo_align as ga
from grpo_align.training import TabularPolicy, TrainConfig, expected_gradient, train
from grpo_align.training.tabular import RewardSampler, context_sum_loss

PROB = ga.Problem.from_bernoulli(ref=[[0.2, 0.3, 0.5], [0.5, 0.3, 0.2]], success=[[0.8, 0.5, 0.2], [0.1, 0.5, 0.9]])
ALGO = ga.GRPO(group_size=4, beta=0.5)


def small(**kw):
    base = dict(steps=60, groups_per_step=8, lr=1.0, seed=11, tail_fraction=0.5, n_batches=5)
    return TrainConfig(**{**base, **kw})


def test_same_seed_same_run_and_other_seed_differs():
    a = train(PROB, ALGO, small())
    b = train(PROB, ALGO, small())
    c = train(PROB, ALGO, small(seed=12))
    np.testing.assert_array_equal(a.trajectory, b.trajectory)
    assert not np.array_equal(a.policy, c.policy)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_is_bit_identical(tmp_path, optimizer):
    cfg = small(optimizer=optimizer, lr=0.1 if optimizer == "adam" else 1.0, checkpoint_every=7, inner_iterations=2)
    full = train(PROB, ALGO, cfg)
    ckpt = tmp_path / "ckpt.pt"

    def crash(step, metrics):
        if step == 38:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(PROB, ALGO, cfg, callback=crash, checkpoint_path=ckpt)
    assert torch.load(ckpt, weights_only=True)["step"] == 35  # the last multiple of 7
    resumed = train(PROB, ALGO, cfg, checkpoint_path=ckpt, resume=True)
    np.testing.assert_array_equal(resumed.policy, full.policy)
    np.testing.assert_array_equal(resumed.mean_policy, full.mean_policy)
    np.testing.assert_array_equal(resumed.stderr, full.stderr)
    np.testing.assert_array_equal(resumed.trajectory, full.trajectory)
    for name, values in full.metrics.items():
        np.testing.assert_array_equal(resumed.metrics[name], values)


def test_resume_refuses_a_different_run(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    train(PROB, ALGO, small(checkpoint_every=10), checkpoint_path=ckpt)
    with pytest.raises(ga.InputError, match="resume"):
        train(PROB, ALGO.replace(beta=0.4), small(checkpoint_every=10), checkpoint_path=ckpt, resume=True)


def test_outputs_with_zero_reference_keep_zero_probability():
    # a ragged batch: the first context has two outputs, padded with a ref-0 output
    prob = ga.Problem.from_rewards(ref=[[0.4, 0.6], [0.2, 0.3, 0.5]], rewards=[[1.0, 0.0], [1.0, 0.5, 0.0]])
    result = train(prob, ALGO, small(record_every=1))
    assert np.all(result.trajectory[:, 0, 2] == 0.0)
    assert np.all(result.mean_policy[0, 2] == 0.0)
    np.testing.assert_allclose(result.mean_policy.sum(axis=1), 1.0, atol=1e-12)


def test_each_context_gets_its_own_gradient():
    # the loss summed over contexts gives every context exactly the gradient it would get
    # trained alone on the same samples
    ref = np.array([[0.2, 0.3, 0.5], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    cfg = small(clip_eps=0.2)
    gen = torch.Generator().manual_seed(0)
    outputs = torch.randint(0, 3, (3, 8), generator=gen)
    advantages = torch.randn(24, generator=gen, dtype=torch.float64)
    batch = TabularPolicy(ref, init=ref[[1, 2, 0]])

    def grad(policy, outs, adv):
        with torch.no_grad():
            logp_old = policy.log_probs().gather(1, outs).reshape(-1, 1)
        logp_ref = policy.log_ref.gather(1, outs).reshape(-1, 1)
        mask = torch.ones_like(logp_old)
        out = context_sum_loss(policy, outs, logp_old, logp_ref, adv, mask, ALGO, cfg)
        (g,) = torch.autograd.grad(out.loss, policy.logits)
        return g

    together = grad(batch, outputs, advantages)
    for c in range(3):
        alone = TabularPolicy(ref[c : c + 1], init=ref[[1, 2, 0]][c : c + 1])
        g = grad(alone, outputs[c : c + 1], advantages[8 * c : 8 * (c + 1)])
        torch.testing.assert_close(together[c : c + 1], g, rtol=1e-13, atol=1e-15)


def test_first_step_matches_the_expected_gradient_on_average():
    # one SGD step from pi_ref moves the logits by lr x (sampled gradient); over many
    # seeded runs its mean must be lr x the theory's expected gradient, within 4 stderr
    prob = ga.Problem.from_bernoulli(ref=[0.2, 0.3, 0.5], success=[0.8, 0.5, 0.2])
    algo = ga.GRPO(group_size=4, beta=0.5, penalty="k2")
    lr, runs = 0.01, 30
    steps = []
    for seed in range(runs):
        cfg = TrainConfig(
            steps=2, groups_per_step=2000, lr=lr, seed=seed, tail_fraction=1.0, n_batches=2, record_every=1
        )
        traj = np.log(train(prob, algo, cfg).trajectory[:2])
        steps.append((traj[1] - traj[1].mean()) - (traj[0] - traj[0].mean()))
    steps = np.array(steps) / lr
    g = expected_gradient(prob, algo, prob.ref[0])
    mean = steps.mean(axis=0)
    se = steps.std(axis=0, ddof=1) / np.sqrt(runs)
    assert np.all(np.abs(mean - (g - g.mean())) < 4 * se), (mean, g - g.mean(), se)
    assert np.max(np.abs(g - g.mean())) > 10 * se.max()  # a real signal


def test_reward_sampler_frequencies():
    levels_prob = ga.Problem(ref=[0.5, 0.5], levels=[0.0, 0.5, 1.0], dist=[[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]])
    sampler = RewardSampler(levels_prob)
    n = 200_000
    outputs = torch.tensor([0, 1]).repeat(n // 2).reshape(1, n // 2, 2)
    rewards = sampler(outputs, torch.Generator().manual_seed(0)).numpy()[0]
    for o, dist in enumerate(levels_prob.dist[0]):
        freq = np.array([(rewards[:, o] == v).mean() for v in (0.0, 0.5, 1.0)])
        se = np.sqrt(dist * (1 - dist) / (n // 2))
        assert np.all(np.abs(freq - dist) <= 4 * se + 1e-12)


def test_preference_sampler_frequencies():
    win = np.array([[0.0, 0.7], [0.2, 0.0]])
    sampler = RewardSampler(ga.Problem.from_preference(ref=[0.5, 0.5], win_prob=win))
    n = 100_000
    outputs = torch.tensor([0, 1]).repeat(n).reshape(1, n, 2)
    r = sampler(outputs, torch.Generator().manual_seed(0)).numpy()[0]
    for outcome, p in (((1, 0), 0.7), ((0, 1), 0.2), ((0, 0), 0.1)):
        freq = np.mean(np.all(r == outcome, axis=1))
        assert abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_tabular_policy_masks_and_init():
    pol = TabularPolicy(np.array([[0.5, 0.5, 0.0]]), init=np.array([[0.25, 0.75, 0.0]]))
    np.testing.assert_allclose(pol.probs(), [[0.25, 0.75, 0.0]], atol=1e-15)


def test_bad_input():
    with pytest.raises(ga.InputError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ga.InputError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ga.InputError, match="tail_fraction"):
        TrainConfig(steps=10, n_batches=20)
    with pytest.raises(ga.InputError, match="group_size"):
        train(PROB, ALGO.replace(group_size=float("inf")), small())
    with pytest.raises(ga.InputError, match="init"):
        train(PROB, ALGO, small(), init=[[1.0, 0.0, 0.0], [0.5, 0.3, 0.2]])
    pref = ga.Problem.from_preference(ref=[0.5, 0.5], win_prob=[[0.0, 0.7], [0.2, 0.0]])
    with pytest.raises(ga.InputError, match="group_size"):
        train(pref, ALGO, small())
    with pytest.raises(ga.InputError, match=r"train\.foo"):
        TrainConfig.from_dict({"foo": 1})
