"""grpo_loss against hand-computed values and, at theta = theta_old, against the theory.

The exact check enumerates every group (outputs and reward levels) of a small tabular
problem, weights its loss by its probability and differentiates: the gradient of the
expected loss with respect to the logits must be -pi(o)(P_G(o|pi) - beta phi(o) - c)
(THEORY.md sections 3-5), with P_G from ga.preference and phi from ga.penalty_coefficient.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import grpo_align as ga
from grpo_align.training import grpo_loss

T = torch.float64


def _t(x):
    return torch.tensor(x, dtype=T)


# ------------------------------------------------------------------ hand-computed values
def test_surrogate_and_clip_by_hand():
    # one token per sequence; rho = 1.5, 0.5, 1.1, 1.5 with advantages +1, +2, -1, -1
    logp_old = _t([[-1.0], [-1.0], [-2.0], [-0.5]])
    rho = [1.5, 0.5, 1.1, 1.5]
    logp_new = logp_old + _t([[math.log(r)] for r in rho])
    adv = _t([1.0, 2.0, -1.0, -1.0])
    mask = torch.ones(4, 1, dtype=T)
    algo = ga.GRPO(group_size=2, beta=0.0)
    out = grpo_loss(logp_new.requires_grad_(), logp_old, None, adv, mask, algo, clip_eps_low=0.2)
    # -min(rho A, clip(rho) A): 1.5 -> clipped to 1.2 (A > 0); 0.5 with A > 0 unclipped;
    # 1.1 inside; 1.5 with A < 0: min(-1.5, -1.2) = -1.5 unclipped
    per_seq = [-1.2 * 1.0, -0.5 * 2.0, 1.1 * 1.0, 1.5 * 1.0]
    assert out.loss.item() == pytest.approx(sum(per_seq) / 4, abs=1e-15)
    assert out.policy_loss.item() == pytest.approx(sum(per_seq) / 4, abs=1e-15)
    assert out.clip_fraction.item() == pytest.approx(1 / 4)  # only the first is clipped
    out.loss.backward()
    grad = logp_new.grad[:, 0].tolist()
    # d/dlogp of -rho A / 4 is -rho A / 4 where unclipped, 0 where clipped
    assert grad == pytest.approx([0.0, -0.5 * 2.0 / 4, 1.1 / 4, 1.5 / 4], abs=1e-15)


def test_clip_high_and_low_are_separate():
    logp_old = _t([[0.0], [0.0]])
    logp_new = _t([[math.log(1.25)], [math.log(0.75)]])
    adv = _t([1.0, -1.0])
    mask = torch.ones(2, 1, dtype=T)
    algo = ga.GRPO(group_size=2, beta=0.0)
    same = grpo_loss(logp_new, logp_old, None, adv, mask, algo, clip_eps_low=0.2)
    assert same.clip_fraction.item() == 1.0  # 1.25 > 1.2 with A > 0, 0.75 < 0.8 with A < 0
    assert same.loss.item() == pytest.approx((-1.2 + 0.8) / 2, abs=1e-15)
    higher = grpo_loss(logp_new, logp_old, None, adv, mask, algo, clip_eps_low=0.2, clip_eps_high=0.3)
    assert higher.clip_fraction.item() == 0.5
    assert higher.loss.item() == pytest.approx((-1.25 + 0.8) / 2, abs=1e-15)


@pytest.mark.parametrize(
    "penalty, formula",
    [
        ("k3", lambda x, rho: math.exp(-x) + x - 1),
        ("k2", lambda x, rho: x * x / 2),
        ("k1", lambda x, rho: x),
        ("abs", lambda x, rho: abs(x)),
        ("kl", lambda x, rho: rho * x),
    ],
)
def test_penalties_by_hand(penalty, formula):
    new, old, ref = [[-0.3], [-1.7]], [[-0.5], [-1.2]], [[-1.0], [-0.9]]
    adv = [0.7, -0.4]
    algo = ga.GRPO(group_size=2, beta=0.25, penalty=penalty)
    out = grpo_loss(_t(new), _t(old), _t(ref), _t(adv), torch.ones(2, 1, dtype=T), algo, clip_eps_low=0.5)
    pens = [formula(n[0] - r[0], math.exp(n[0] - o[0])) for n, o, r in zip(new, old, ref, strict=False)]
    surr = [-math.exp(n[0] - o[0]) * a for n, o, a in zip(new, old, adv, strict=False)]  # rho within [0.5, 1.5]
    assert out.penalty.item() == pytest.approx(sum(pens) / 2, rel=1e-14)
    assert out.policy_loss.item() == pytest.approx(sum(surr) / 2, rel=1e-14)
    assert out.loss.item() == pytest.approx(sum(surr) / 2 + 0.25 * sum(pens) / 2, rel=1e-14)


def test_aggregations_by_hand():
    # two groups of G = 2: valid tokens 3, 1 | 2, 2 (of T = 3); beta = 0, rho = 1
    logp = torch.zeros(4, 3, dtype=T)
    adv = _t([1.0, -2.0, 0.5, -0.5])
    mask = _t([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 0]])

    def loss(aggregation, **kw):
        algo = ga.GRPO(group_size=2, beta=0.0, aggregation=aggregation)
        return grpo_loss(logp, logp, None, adv, mask, algo, **kw).loss.item()

    # per-token losses -A_i on each valid token; the loss is the mean over the 2 groups
    # sequence_mean: (1/G) sum_i mean over o_i's tokens
    assert loss("sequence_mean") == pytest.approx(((-1.0 + 2.0) / 2 + (-0.5 + 0.5) / 2) / 2)
    # group_token_mean: group token sums over the group's token count (4 and 4)
    assert loss("group_token_mean") == pytest.approx(((-3.0 + 2.0) / 4 + (-1.0 + 1.0) / 4) / 2)
    # constant: token sums over G * max_length
    assert loss("constant", max_length=5) == pytest.approx(((-3.0 + 2.0) / 10 + 0.0) / 2)
    assert loss("constant") == pytest.approx(((-3.0 + 2.0) / 6 + 0.0) / 2)
    # TRL "dapo": one count for the whole batch, its 8 valid tokens
    assert loss("constant", constant_by="batch_tokens") == pytest.approx((-3.0 + 2.0 - 1.0 + 1.0) / 8)
    # the group structure matters: a batch-wide token mean would give (-3 + 2 - 1 + 1) / 8
    mask2 = _t([[1, 1, 1], [1, 1, 1], [1, 0, 0], [1, 0, 0]])
    algo = ga.GRPO(group_size=2, beta=0.0, aggregation="group_token_mean")
    got = grpo_loss(logp, logp, None, adv, mask2, algo).loss.item()
    assert got == pytest.approx(((-3.0 + 6.0) / 6 + (-0.5 + 0.5) / 2) / 2)


def test_bad_input():
    algo = ga.GRPO(group_size=2, beta=0.1)
    x = torch.zeros(2, 1, dtype=T)
    with pytest.raises(ga.InputError, match="logp_old"):
        grpo_loss(x, torch.zeros(3, 1, dtype=T), x, torch.zeros(2, dtype=T), x, algo)
    with pytest.raises(ga.InputError, match="advantages"):
        grpo_loss(x, x, x, torch.zeros(2, 1, dtype=T), x, algo)
    with pytest.raises(ga.InputError, match="logp_ref"):
        grpo_loss(x, x, None, torch.zeros(2, dtype=T), x, algo)
    with pytest.raises(ga.InputError, match="clip_eps_low"):
        grpo_loss(x, x, x, torch.zeros(2, dtype=T), x, algo, clip_eps_low=1.5)
    with pytest.raises(ga.InputError, match="group_size"):
        y = torch.zeros(3, 1, dtype=T)
        grpo_loss(y, y, y, torch.zeros(3, dtype=T), y, algo)
    # the penalty in the reward needs no reference log-probabilities in the loss
    rew = ga.GRPO(group_size=2, beta=0.1, penalty="k1", penalty_in="reward")
    assert grpo_loss(x, x, None, torch.zeros(2, dtype=T), torch.ones_like(x), rew).penalty.item() == 0.0


# ------------------------------------------------------------------ exact expected gradient
def _expected_loss_gradient(problem, algo, pi):
    """Gradient of E[loss] over every group (outputs and reward levels), by enumeration.

    All groups go into one batch (T = 1) whose mask holds each group's probability: with
    "constant" aggregation (max_length 1) the loss is sum_rows mask_i loss_i / B, so B / G
    times it is sum_groups Pr[group] (1/G) sum_i loss_i = E[loss] (the weights sum to G).
    """
    k = problem.n_outputs
    g = algo.group_size
    outputs, rewards, weights = [], [], []
    for outs in itertools.product(range(k), repeat=g):
        p_outs = float(np.prod(pi[list(outs)]))
        if problem.is_preference:
            w = problem.win_prob[0]
            a, b = outs
            reward_sets = [((1.0, 0.0), w[a, b]), ((0.0, 1.0), w[b, a]), ((0.0, 0.0), 1 - w[a, b] - w[b, a])]
        else:
            levels, dist = problem.levels[0], problem.dist[0]
            reward_sets = [
                (levels[list(lv)], float(np.prod([dist[o, lev] for o, lev in zip(outs, lv, strict=True)])))
                for lv in itertools.product(range(problem.n_levels), repeat=g)
            ]
        for r, p_r in reward_sets:
            outputs.append(outs)
            rewards.append(r)
            weights.append(p_outs * p_r)
    idx = torch.tensor(outputs).reshape(-1)  # (N * G,)
    adv = torch.tensor(ga.group_advantages(np.asarray(rewards, float), algo).reshape(-1), dtype=T)
    mask = torch.tensor(np.repeat(weights, g), dtype=T)[:, None]
    logits = torch.tensor(np.log(pi), dtype=T, requires_grad=True)
    logp_all = torch.log_softmax(logits, dim=0)
    log_ref = torch.tensor(np.log(problem.ref[0]), dtype=T)
    out = grpo_loss(
        logp_all[idx][:, None],
        logp_all.detach()[idx][:, None],
        log_ref[idx][:, None],
        adv,
        mask,
        algo.replace(aggregation="constant"),
        max_length=1,
    )
    assert float(mask.sum()) == pytest.approx(g, rel=1e-12)
    (grad,) = torch.autograd.grad(out.loss * idx.numel() / g, logits)
    return grad.numpy()


def _theory_gradient(problem, algo, pi):
    pref = ga.preference(problem, algo, pi)
    phi = ga.penalty_coefficient(algo.penalty, pi[None], problem.ref)[0]
    field = pref - algo.beta * phi
    return pi * (field - np.sum(pi * field))


RNG = np.random.default_rng(4)
_REF = RNG.dirichlet(np.ones(3))
_PI = RNG.dirichlet(np.ones(3))
LEVEL_PROBLEM = ga.Problem(ref=_REF, levels=[0.0, 0.4, 1.0], dist=RNG.dirichlet(np.ones(3), size=3))


@pytest.mark.parametrize("penalty", ["k3", "k2", "k1", "abs", "kl"])
@pytest.mark.parametrize(
    "norm",
    [
        ("shift_scale", 0, 0.0),
        ("shift_scale", 1, 0.0),
        ("shift_scale", 1, 1e-4),
        ("shift", 0, 0.0),
        ("rloo", 0, 0.0),
        ("raw", 0, 0.0),
    ],
)
def test_gradient_at_old_policy_equals_theory(penalty, norm):
    normalization, ddof, eps = norm
    algo = ga.GRPO(group_size=3, beta=0.3, normalization=normalization, ddof=ddof, eps=eps, penalty=penalty)
    got = _expected_loss_gradient(LEVEL_PROBLEM, algo, _PI)
    want = -_theory_gradient(LEVEL_PROBLEM, algo, _PI)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)
    assert np.max(np.abs(want)) > 1e-3  # a non-trivial gradient


@pytest.mark.parametrize("penalty", ["k3", "kl"])
def test_gradient_at_old_policy_preference_problem(penalty):
    # rock-paper-scissors with ties: Pr[o beats o'] for o' after o (cyclically) is 0.6
    win = np.array([[0.0, 0.6, 0.1], [0.1, 0.0, 0.6], [0.6, 0.1, 0.0]])
    prob = ga.Problem.from_preference(ref=_REF, win_prob=win)
    for ddof in (0, 1):
        algo = ga.GRPO(group_size=2, beta=0.2, ddof=ddof, penalty=penalty)
        got = _expected_loss_gradient(prob, algo, _PI)
        np.testing.assert_allclose(got, -_theory_gradient(prob, algo, _PI), rtol=0, atol=1e-13)
