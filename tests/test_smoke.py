import math

import numpy as np

import grpo_align as ga


def test_worked_example_three_outputs():
    # THEORY.md section 6: rewards (1, 0.5, 0), pi_ref (0.2, 0.3, 0.5), G = 2, beta = 0.5, k3
    prob = ga.Problem.from_rewards(ref=[0.2, 0.3, 0.5], rewards=[1.0, 0.5, 0.0])
    res = ga.stationary_policy(prob, ga.GRPO(group_size=2, beta=0.5))[0]
    assert res.success
    np.testing.assert_allclose(res.policy, [0.653113, 0.155904, 0.190983], atol=5e-7)


def test_worked_binary_numbers():
    prob = ga.Problem.from_rewards(ref=[0.3, 0.7], rewards=[1.0, 0.0])
    expected = {2: 0.710977, 8: 0.853564, math.inf: 0.9}
    for g, p in expected.items():
        res = ga.stationary_policy(prob, ga.GRPO(group_size=g, beta=0.5))[0]
        assert abs(res.policy[0] - p) < 5e-7, (g, res.policy)
