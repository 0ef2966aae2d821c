"""Very large beta: the stationary policy is pi_ref + O(1/beta) (THEORY.md section 5).

Expanding pi(o) = pi_ref(o) / (1 - (P - c)/beta) (k3) or pi_ref exp((P - c)/beta) / Z
(k2, kl) to first order: beta (pi - pi_ref) -> pi_ref (P_G(o|pi_ref) - Pbar), with
Pbar = sum_o pi_ref(o) P_G(o|pi_ref) and P_G from the brute force. pytest turns any
overflow warning into an error, so none may escape up to beta = 1e300.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import grpo_align as ga

PROBLEMS = {
    "binary": ([0.3, 0.7], [1.0, 0.0]),
    "three": ([0.2, 0.3, 0.5], [1.0, 0.5, 0.0]),
}


@pytest.mark.parametrize("beta", [1e8, 1e12, 1e50, 1e300])
@pytest.mark.parametrize("penalty", ["k3", "k2", "kl"])
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_large_beta_gives_the_reference_to_first_order(name, penalty, beta, brute):
    ref, rewards = PROBLEMS[name]
    prob = ga.Problem.from_rewards(ref, rewards)
    res = ga.stationary_policy(prob, ga.GRPO(group_size=4, beta=beta, penalty=penalty))[0]
    assert res.success and res.status == "interior", res.message
    ref_a = np.asarray(ref)
    p_ref = brute.preference(prob.levels[0], prob.dist[0], ref_a, 4, "shift_scale")
    first_order = ref_a * (p_ref - ref_a @ p_ref)
    # |pi - pi_ref| is first order in 1/beta; the double policy carries eps relative on top
    np.testing.assert_allclose(res.policy, ref_a, rtol=0, atol=2 * np.max(np.abs(first_order)) / beta + 1e-15)
    if beta == 1e8:
        # second-order terms are O(1/beta^2); rounding of pi is 1e-16 * beta = 1e-8 here
        np.testing.assert_allclose(beta * (res.policy - ref_a), first_order, atol=1e-6)


def test_large_beta_at_infinite_group_size():
    prob = ga.Problem.from_rewards([0.3, 0.7], [1.0, 0.0])
    res = ga.stationary_policy(prob, ga.GRPO(group_size=float("inf"), beta=1e200))[0]
    assert res.success, res.message
    np.testing.assert_allclose(res.policy, [0.3, 0.7], atol=1e-15)


@pytest.mark.parametrize("penalty", ["k3", "k2", "kl", "abs", "k1"])
@pytest.mark.parametrize("group_size", [2, 8, math.inf])
def test_tiny_beta_never_warns_and_never_lies(penalty, group_size):
    # beta 1e-270 against rewards of order 1: the k3 poles round to 0 on the way (the fuzz
    # test found a divide-by-zero escaping as an exception); a result must be a probability
    # vector that either satisfies the conditions or says it failed
    prob = ga.Problem.from_rewards(ref=[0.2, 0.3, 0.5], rewards=[1.0, 0.5, 0.0])
    algo = ga.GRPO(group_size=group_size, beta=6.47e-270, penalty=penalty)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ga.stationary_policy(prob, algo)[0]
    assert np.all(np.isfinite(res.policy)) and abs(res.policy.sum() - 1) < 1e-12
    if res.success:
        assert res.residual <= max(r.tolerance for r in res.roots)
    else:
        assert res.status == "failed" and res.message
