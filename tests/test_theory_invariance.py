"""Affine invariance of the solvers and the independence of the residual check.

shift_scale with eps = 0 is invariant under r -> a r + b (a > 0); shift and rloo under
r -> r + b (THEORY.md section 2). The solvers work on pairwise level differences in
units of the range (THEORY.md section 4, "Coordinates"), so a problem and its affine image
must give the same stationary policy to solver precision, whatever a and b.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grpo_align as ga


def test_levels_one_ulp_apart_are_a_binary_question():
    # 1 + 2^-52 and 1 are distinct doubles: the question is binary (THEORY.md section 6,
    # p0 0.3, beta 0.5, G 8 -> 0.853564), whatever the size of the gap
    prob = ga.Problem.from_rewards(ref=[0.3, 0.7], rewards=[1 + 2**-52, 1.0])
    res = ga.stationary_policy(prob, ga.GRPO(group_size=8, beta=0.5))[0]
    assert res.success, res.message
    np.testing.assert_allclose(res.policy, [0.853564, 0.146436], atol=1e-6)


@pytest.mark.parametrize("transform", [lambda r: r + 1e15, lambda r: r * 1e-160, lambda r: r * 1e300 - 3e299])
@pytest.mark.parametrize("penalty", ["k3", "kl"])
def test_shifted_and_scaled_rewards_give_the_unshifted_answer(transform, penalty):
    rewards = np.array([1.0, 0.5, 0.0])
    algo = ga.GRPO(group_size=8, beta=0.5, penalty=penalty)
    base = ga.stationary_policy(ga.Problem.from_rewards([0.2, 0.3, 0.5], rewards), algo)
    moved = ga.stationary_policy(ga.Problem.from_rewards([0.2, 0.3, 0.5], transform(rewards)), algo)
    assert base.success[0] and moved.success[0], moved.message
    np.testing.assert_allclose(moved.policy, base.policy, rtol=0, atol=1e-12)


def test_shift_normalisation_is_translation_invariant():
    algo = ga.GRPO(group_size=5, beta=0.3, normalization="shift")
    base = ga.stationary_policy(ga.Problem.from_rewards([0.2, 0.3, 0.5], [1.0, 0.5, 0.0]), algo)
    moved = ga.stationary_policy(ga.Problem.from_rewards([0.2, 0.3, 0.5], [1e15 + 1.0, 1e15 + 0.5, 1e15]), algo)
    np.testing.assert_allclose(moved.policy, base.policy, atol=1e-12)


def test_residual_check_sees_a_wrong_policy_that_shares_the_solver_rounding(brute):
    # The failure: with levels 1 + 2^-52 and 1 the old double-precision table gave
    # [0.5416, 0.4584]. That policy must fail the (independent) residual check now.
    prob = ga.Problem.from_rewards(ref=[0.3, 0.7], rewards=[1 + 2**-52, 1.0])
    algo = ga.GRPO(group_size=8, beta=0.5)
    res, _ = ga.stationarity_residual(prob, algo, [0.5416, 0.4584])
    assert res[0] > 0.1
    # and the brute force (binary levels 0/1, same question) agrees with the solver's answer
    pi = ga.stationary_policy(prob, algo)[0].policy
    pref = brute.preference([0.0, 1.0], [[0, 1], [1, 0]], pi, 8, "shift_scale")
    assert brute.gap(pref, pi, prob.ref[0], 0.5, "k3") < 1e-9


def test_levels_too_close_to_distinguish_are_refused():
    # gaps below 1e-150 of the range: the squared gap underflows in the group variance
    prob = ga.Problem.from_rewards(ref=[0.2, 0.3, 0.5], rewards=[0.0, 1e-200, 1.0])
    with pytest.raises(ga.InputError, match=r"levels.*too close"):
        ga.stationary_policy(prob, ga.GRPO(group_size=4, beta=0.5))


def _exact_preimage(levels_moved: np.ndarray, a: float, b: float) -> np.ndarray:
    """(v' - b) / a in exact rational arithmetic, rounded once: the levels the moved
    problem really has, in the original units."""
    return np.array([float((Fraction(v) - Fraction(b)) / Fraction(a)) for v in levels_moved])


@st.composite
def problems(draw):
    n_out = draw(st.integers(2, 3))
    n_lev = draw(st.integers(2, 3))
    levels = np.asarray(sorted(draw(st.lists(st.integers(-6, 6), min_size=n_lev, max_size=n_lev, unique=True))), float)
    ref = np.asarray(draw(st.lists(st.floats(0.05, 1.0), min_size=n_out, max_size=n_out)))
    rows = []
    for _ in range(n_out):
        weights = draw(st.lists(st.sampled_from([0.0, 0.2, 1.0, 3.0]), min_size=n_lev, max_size=n_lev))
        if sum(weights) == 0:
            weights[draw(st.integers(0, n_lev - 1))] = 1.0
        rows.append(np.asarray(weights) / sum(weights))
    return ref / ref.sum(), levels, np.stack(rows)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(
    data=problems(),
    log_a=st.floats(-250, 250),
    b_over_a=st.floats(-1e9, 1e9),
    g=st.integers(2, 6),
    beta=st.sampled_from([0.05, 0.3, 1.0]),
    ddof=st.sampled_from([0, 1]),
    penalty=st.sampled_from(["k3", "k2"]),
)
def test_affine_invariance_property(data, log_a, b_over_a, g, beta, ddof, penalty, brute):
    ref, levels, dist = data
    a = 10.0**log_a
    b = b_over_a * a
    moved = levels * a + b
    algo = ga.GRPO(group_size=g, beta=beta, ddof=ddof, penalty=penalty)
    res_moved = ga.stationary_policy(ga.Problem(ref, moved, dist), algo)[0]
    res_base = ga.stationary_policy(ga.Problem(ref, _exact_preimage(moved, a, b), dist), algo)[0]
    assert res_moved.success and res_base.success, res_moved.message
    np.testing.assert_allclose(res_moved.policy, res_base.policy, atol=1e-9)
    # independent route: the brute force in the original (well-scaled) units
    pi = res_moved.policy
    pref = brute.preference(levels, dist, pi, g, "shift_scale", ddof, 0.0)
    assert brute.gap(pref[pi > 0], pi[pi > 0], ref[pi > 0], beta, penalty) < 1e-7
