"""The one shared loss on token sequences against the engine's exact expected gradient.

Every group of G (output, reward level) draws of a small tree is enumerated; each group's
``grpo_loss`` (per-token log-probabilities from per-prefix logits, the penalty in the loss
or ``penalised_rewards`` before the normalisation) is weighted by its probability and
differentiated with torch autograd in the per-prefix logits. The result must be minus
``expected_gradient_tree`` (THEORY.md eq. 10.5: the gradient of the surrogate J; the loss is
-J) for each aggregation x penalty x placement (THEORY.md eqs. 10.2-10.7).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import grpo_align as ga
import seq_brute as brute
from grpo_align.theory.sequence_gradient import expected_gradient_tree
from grpo_align.training import grpo_loss
from grpo_align.training.loss import penalised_rewards

T = torch.float64
TREE = [(1, 2, 9), (1, 3, 4, 5, 9), (4, 9), (5, 6, 7, 9)]
PLACEMENTS = [("k3", "loss"), ("k2", "loss"), ("k1", "loss"), ("kl", "loss"), ("k1", "reward"), ("k2", "reward"), ("k3", "reward")]  # fmt: skip
AGGS = ["sequence_mean", "group_token_mean", "constant"]


def _token_logps(seqs, logits, rcond):
    """Per-output (|o|,) tensors of log pi(t_j | u_j): log_softmax of the prefix's logits
    at branching prefixes, log 1 = 0 where the prefix has one continuation."""
    out = []
    for s in seqs:
        toks = []
        for j in range(len(s)):
            u = s[:j]
            if u in logits:
                names, z = logits[u]
                toks.append(torch.log_softmax(z, dim=0)[names.index(s[j])])
            else:
                assert len(rcond[u]) == 1
                toks.append(torch.zeros((), dtype=T))
        out.append(torch.stack(toks))
    return out


def _expected_loss_gradient(prob, algo, pi, seqs):
    ref = prob.ref[0]
    rcond = brute.conditionals(seqs, ref)
    cond = brute.conditionals(seqs, pi)
    logits = {
        u: (list(ch), torch.tensor([math.log(cond[u][t]) for t in ch], dtype=T, requires_grad=True))
        for u, ch in rcond.items()
        if len(ch) >= 2
    }
    logp_new = _token_logps(seqs, logits, rcond)
    ref_logits = {u: (list(ch), torch.tensor([math.log(p) for p in ch.values()], dtype=T)) for u, ch in rcond.items() if len(ch) >= 2}  # fmt: skip
    logp_ref = [x.detach() for x in _token_logps(seqs, ref_logits, rcond)]
    t_max = max(len(s) for s in seqs)

    def padded(rows, fill=0.0):
        return torch.stack([torch.cat([r, torch.full((t_max - r.numel(),), fill, dtype=T)]) for r in rows])

    levels, dist = prob.levels[0], prob.dist[0]
    draws = [
        (o, lv, pi[o] * dist[o, lv]) for o in range(len(seqs)) for lv in range(levels.size) if pi[o] * dist[o, lv] > 0
    ]
    g = algo.group_size
    total = torch.zeros((), dtype=T)
    for group in itertools.product(draws, repeat=g):
        p = math.prod(d[2] for d in group)
        outs = [d[0] for d in group]
        new = padded([logp_new[o] for o in outs])
        old = new.detach()
        refp = padded([logp_ref[o] for o in outs])
        mask = padded([torch.ones(len(seqs[o]), dtype=T) for o in outs])
        rewards = np.array([levels[d[1]] for d in group])
        if algo.penalty_in == "reward":
            rewards = penalised_rewards(rewards, old, refp, mask, algo)
        adv = torch.tensor(ga.group_advantages(rewards, algo), dtype=T)
        # constant: max_length 1 makes the weight 1/G of THEORY.md eq. 10.2 (its value only rescales)
        out = grpo_loss(new, old, refp, adv, mask, algo, max_length=1)
        total = total + p * out.loss
    names = list(logits)
    grads = torch.autograd.grad(total, [logits[u][1] for u in names])
    return {u: dict(zip(logits[u][0], gr.tolist(), strict=True)) for u, gr in zip(names, grads, strict=True)}


@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("pen", PLACEMENTS)
def test_loss_gradient_equals_engine(agg, pen):
    # random rewards, a policy away from pi_ref (so every penalty acts), G = 2
    prob = ga.Problem.from_bernoulli([0.1, 0.2, 0.3, 0.4], [0.9, 0.2, 0.4, 0.7], sequences=TREE)
    algo = ga.GRPO(group_size=2, beta=0.4, penalty=pen[0], penalty_in=pen[1], aggregation=agg)
    pi = np.array([0.25, 0.15, 0.35, 0.25])
    got = _expected_loss_gradient(prob, algo, pi, TREE)
    want = expected_gradient_tree(prob, algo, pi)
    assert got.keys() == want.keys()
    gap = max(abs(got[u][t] + want[u][t]) for u in want for t in want[u])
    size = max(abs(want[u][t]) for u in want for t in want[u])
    assert size > 1e-3  # a non-trivial gradient
    assert gap < 1e-13


@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("pen", [("k3", "loss"), ("k1", "reward")])
@pytest.mark.parametrize("norm", ["shift", "rloo"])
def test_loss_gradient_equals_engine_g3(agg, pen, norm):
    # deterministic rewards (one level per output), G = 3, the linear normalisations
    prob = ga.Problem.from_rewards([0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.0, 1.0], sequences=TREE)
    algo = ga.GRPO(group_size=3, beta=0.4, normalization=norm, penalty=pen[0], penalty_in=pen[1], aggregation=agg)
    pi = np.array([0.3, 0.1, 0.2, 0.4])
    got = _expected_loss_gradient(prob, algo, pi, TREE)
    want = expected_gradient_tree(prob, algo, pi)
    gap = max(abs(got[u][t] + want[u][t]) for u in want for t in want[u])
    assert max(abs(want[u][t]) for u in want for t in want[u]) > 1e-3
    assert gap < 1e-13


def test_penalised_rewards_by_hand():
    # two sequences: x = (-0.2 + 0.5) = 0.3 and (-1.0) over their valid tokens
    old = torch.tensor([[-0.2, -0.1], [-1.5, 7.0]], dtype=T)
    ref = torch.tensor([[-0.5, -0.1], [-0.5, 0.0]], dtype=T)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=T)
    x = np.array([0.3, -1.0])
    r = np.array([1.0, 0.0])
    for pen, k in [("k1", x), ("k2", x * x / 2), ("k3", np.exp(-x) + x - 1)]:
        algo = ga.GRPO(group_size=2, beta=0.5, penalty=pen, penalty_in="reward")
        np.testing.assert_allclose(penalised_rewards(r, old, ref, mask, algo), r - 0.5 * k, rtol=1e-14)
    with pytest.raises(ga.InputError, match="penalty_in"):
        penalised_rewards(r, old, ref, mask, ga.GRPO(group_size=2, beta=0.5))
