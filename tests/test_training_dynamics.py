"""Expected dynamics: noise-free GRPO updates reach ga.stationary_policy, cycle when the
step is too large, and fall into the basin of the root they start in."""

from __future__ import annotations

import numpy as np
import pytest

import grpo_align as ga
from grpo_align.training import expected_dynamics, expected_gradient

BERN = ga.Problem.from_bernoulli(ref=[[0.2, 0.3, 0.5], [0.5, 0.3, 0.2]], success=[[0.8, 0.5, 0.2], [0.1, 0.5, 0.9]])
LEVELS = ga.Problem(
    ref=[0.5, 0.3, 0.2], levels=[0.0, 0.5, 1.0], dist=[[0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]
)
RPS = ga.Problem.from_preference(ref=[0.2, 0.3, 0.5], win_prob=[[0.0, 0.7, 0.2], [0.2, 0.0, 0.7], [0.7, 0.2, 0.0]])


def _lr(predicted):
    """lr |lambda_max| = 1: the linearised SGD map contracts every direction."""
    return 1.0 / max(np.max(np.abs(r.eigenvalues)) for ctx in predicted for r in ctx.roots)


@pytest.mark.parametrize(
    "problem, algo",
    [
        (BERN, ga.GRPO(group_size=4, beta=0.5)),
        (BERN, ga.GRPO(group_size=4, beta=0.5, penalty="k2")),
        (BERN, ga.GRPO(group_size=6, beta=0.3, penalty="kl", ddof=1)),
        (BERN, ga.GRPO(group_size=4, beta=0.5, normalization="rloo")),
        (LEVELS, ga.GRPO(group_size=5, beta=0.4)),
        (RPS, ga.GRPO(group_size=2, beta=0.3)),
        (RPS, ga.GRPO(group_size=2, beta=0.3, penalty="kl")),
    ],
)
def test_expected_dynamics_reach_the_stationary_policy(problem, algo):
    predicted = ga.stationary_policy(problem, algo)
    result = expected_dynamics(problem, algo, lr=_lr(predicted), steps=400)
    assert np.all(result.converged) and not np.any(result.oscillating)
    np.testing.assert_allclose(result.policy, predicted.policy, atol=1e-9)
    assert np.max(result.residual) < 1e-9
    # the expected gradient vanishes there (a second check of the fixed point)
    assert np.max(np.abs(expected_gradient(problem, algo, predicted.policy))) < 1e-9


def test_adam_reaches_the_stationary_policy():
    algo = ga.GRPO(group_size=4, beta=0.5)
    result = expected_dynamics(BERN, algo, lr=0.05, steps=1500, optimizer="adam")
    np.testing.assert_allclose(BERN.check_policy(result.policy), ga.stationary_policy(BERN, algo).policy, atol=1e-6)


# TRL's preset at beta = 0.04 is thrown to the boundary (and stalls there) by half the
# largest stable step on its way in from pi_ref; a tenth gets there
@pytest.mark.parametrize("preset", [("verl", {}, 0.5, 800), ("trl", {"beta": 0.04}, 0.1, 1500)])
def test_presets_reached_from_reference_by_expected_dynamics(preset):
    name, overrides, fraction, steps = preset
    prob = ga.Problem.from_bernoulli(ref=[0.2, 0.3, 0.5], success=[0.6, 0.5, 0.45])
    algo = ga.GRPO.preset(name, **overrides)
    predicted = ga.stationary_policy(prob, algo)
    result = expected_dynamics(prob, algo, lr=fraction * _lr(predicted), steps=steps)
    assert result[0].converged, result[0].message
    np.testing.assert_allclose(result[0].policy, predicted[0].policy, rtol=1e-7, atol=1e-12)


def test_step_size_past_stability_gives_a_two_cycle():
    # one direction with Jacobian eigenvalue -lam: the linearised SGD map multiplies the
    # deviation by 1 - lr lam. lr lam = 1.5 (-0.5): damped, converges; lr lam = 2.4
    # (-1.4): the fixed point repels and the update settles on a 2-cycle
    prob = ga.Problem.from_rewards(ref=[0.3, 0.7], rewards=[1.0, 0.0])
    algo = ga.GRPO(group_size=8, beta=0.5)
    predicted = ga.stationary_policy(prob, algo)[0]  # the one context
    lam = abs(predicted.roots[0].eigenvalues[0])
    damped = expected_dynamics(prob, algo, lr=1.5 / lam, steps=300)[0]
    assert damped.converged and not damped.oscillating
    np.testing.assert_allclose(damped.policy, predicted.policy, atol=1e-9)
    cycling = expected_dynamics(prob, algo, lr=2.4 / lam, steps=300)[0]
    assert cycling.oscillating and not cycling.converged
    assert cycling.period == 2 and "oscillating" in cycling.message
    # the two points of the cycle straddle the stationary policy
    a, b = cycling.trajectory[-1, 0], cycling.trajectory[-2, 0]
    assert min(a, b) < predicted.policy[0] < max(a, b)


def test_which_stationary_policy_is_reached_from_which_start():
    # examples/multiple_roots.toml: direct KL with G = 32 has two stable roots and an
    # unstable one between them (THEORY.md section 9)
    prob = ga.Problem.from_rewards(ref=[0.01, 0.99], rewards=[1.0, 0.0])
    algo = ga.GRPO(group_size=32, beta=0.5, penalty="k2")
    roots = ga.stationary_policy(prob, algo)[0].roots
    assert [r.stable for r in roots] == [True, False, True]
    low, mid, high = (r.policy[0] for r in roots)
    # a step suited to each basin (the high root's eigenvalue is 250 times smaller; its
    # full 1/|eigenvalue| overshoots to the vertex on the way in)
    lr = {low: 1 / abs(roots[0].eigenvalues[0]), high: 0.15 / abs(roots[2].eigenvalues[0])}
    for start, target in ((0.5 * (low + mid), low), (0.5 * (mid + high), high), (0.01, low), (mid + 1e-3, high)):
        result = expected_dynamics(prob, algo, lr=lr[target], steps=600, init=[start, 1 - start])[0]
        assert result.converged, result.message
        assert abs(result.policy[0] - target) < 1e-9, (start, result.policy, target)


def test_overshooting_to_the_boundary_is_not_called_converged():
    # a step of 1/|eigenvalue| of the high root throws the policy to within 2e-9 of the
    # vertex, where the softmax gradient (proportional to pi) all but vanishes: tiny
    # steps, but not a stationary policy
    prob = ga.Problem.from_rewards(ref=[0.01, 0.99], rewards=[1.0, 0.0])
    algo = ga.GRPO(group_size=32, beta=0.5, penalty="k2")
    lam = abs(ga.stationary_policy(prob, algo)[0].roots[2].eigenvalues[0])
    result = expected_dynamics(prob, algo, lr=1 / lam, steps=300, init=[0.9658, 0.0342])[0]
    assert result.policy[0] > 1 - 1e-6
    assert not result.converged and "stalled" in result.message


def test_batched_contexts_are_classified_separately():
    prob = ga.Problem.from_rewards(ref=[[0.3, 0.7], [0.3, 0.7]], rewards=[[1.0, 0.0], [1.0, 0.0]])
    algo = ga.GRPO(group_size=8, beta=0.5)
    result = expected_dynamics(prob, algo, lr=1.0, steps=200)
    assert result.trajectory.shape == (201, 2, 2)
    assert list(result.converged) == [True, True] and len(result.message) == 2
    assert len(result) == 2 and [ctx.converged for ctx in result] == [True, True]
    assert result[1].trajectory.shape == (201, 2) and isinstance(result[1].message, str)


def test_unbatched_problem_keeps_the_context_axis():
    prob = ga.Problem.from_rewards(ref=[0.3, 0.7], rewards=[1.0, 0.0])
    result = expected_dynamics(prob, ga.GRPO(group_size=4, beta=0.5), lr=0.5, steps=20)
    assert result.policy.shape == (1, 2) and result.trajectory.shape == (21, 1, 2)
    assert result.converged.shape == (1,) and len(result.message) == 1 and len(result) == 1


def test_bad_input():
    algo = ga.GRPO(group_size=4, beta=0.5)
    with pytest.raises(ga.InputError, match="lr"):
        expected_dynamics(BERN, algo, lr=0.0, steps=10)
    with pytest.raises(ga.InputError, match="steps"):
        expected_dynamics(BERN, algo, lr=1.0, steps=0)
    with pytest.raises(ga.InputError, match="optimizer"):
        expected_dynamics(BERN, algo, lr=1.0, steps=5, optimizer="lbfgs")
    with pytest.raises(ga.InputError, match="group_size"):
        expected_dynamics(RPS, algo, lr=1.0, steps=5)
