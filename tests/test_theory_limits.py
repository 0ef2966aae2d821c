"""Monte Carlo P_G against the exact P_G, and the G -> infinity limit (THEORY.md sections 4, 8).

Why 5 standard errors: each comparison is a mean of 20,000 i.i.d. bounded advantages, so
its z-score is close to N(0, 1); P(|Z| > 5) = 5.7e-7 per comparison, and with about 150
comparisons in this file the chance of a false alarm is below 1e-4 (union bound), while a
real error of 5 standard errors (here ~0.01-0.05) is still caught. The seeds are fixed,
so the run is reproducible; the tolerance is what makes it honest.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import grpo_align as ga

Z = 5.0
SAMPLES = 20_000


def random_problem(rng: np.random.Generator):
    levels = np.array([-1.0, 0.0, 0.5, 2.0])[: int(rng.integers(2, 5))]
    n_lev = len(levels)
    dist = rng.dirichlet(np.ones(n_lev), size=3)
    return ga.Problem(rng.dirichlet(np.ones(3)), levels, dist), rng.dirichlet(np.ones(3))


@pytest.mark.parametrize(
    "norm", ["shift_scale_ddof0", "shift_scale_ddof1", "shift_scale_ddof0_eps", "shift", "rloo", "raw"]
)
def test_monte_carlo_agrees_with_exact(norm, brute):
    spec = brute.NORMALISATIONS[norm]
    rng = np.random.default_rng(300 + len(norm))
    for g in (2, 3, 7):
        prob, pol = random_problem(rng)
        algo = ga.GRPO(group_size=g, beta=0.1, **spec)
        exact = ga.preference(prob, algo, pol)
        mc = ga.preference_monte_carlo(prob, algo, pol, samples=SAMPLES, seed=g)
        assert mc.samples == SAMPLES
        assert np.all(mc.stderr > 0)
        assert np.all(np.abs(mc.mean - exact) <= Z * mc.stderr), (norm, g, mc.mean, exact, mc.stderr)
        if g <= 3:
            # the standard error estimates sqrt(Var[A_1 | o] / n): Var from the enumeration.
            # The sample std of 20,000 draws is within a few percent of the true one.
            second = brute.preference(
                prob.levels[0], prob.dist[0], pol, g, spec["normalization"], spec["ddof"], spec["eps"], power=2
            )
            sd = np.sqrt(np.maximum(second - exact**2, 0.0))
            np.testing.assert_allclose(mc.stderr, sd / math.sqrt(SAMPLES), rtol=0.05)


def test_monte_carlo_batched_and_per_context_levels():
    refs = [[0.2, 0.3, 0.5], [0.6, 0.4]]
    rewards = [[1.0, 0.5, 0.0], [3.0, -1.0]]
    prob = ga.Problem.from_rewards(refs, rewards)
    pol = np.array([[0.4, 0.4, 0.2], [0.5, 0.5, 0.0]])
    algo = ga.GRPO(group_size=4)
    exact = ga.preference(prob, algo, pol)
    mc = ga.preference_monte_carlo(prob, algo, pol, samples=SAMPLES, seed=1)
    assert mc.mean.shape == (2, 3)
    real = np.array([[True, True, True], [True, True, False]])
    assert np.all(np.abs(mc.mean - exact)[real] <= Z * mc.stderr[real])


def test_monte_carlo_check_has_power():
    # the same comparison catches a wrong normalisation (ddof 1 vs 0 differ by 1 - 1/sqrt(2))
    prob = ga.Problem.from_rewards([0.3, 0.7], [1.0, 0.0])
    mc = ga.preference_monte_carlo(prob, ga.GRPO(group_size=2, ddof=1), [0.5, 0.5], samples=SAMPLES, seed=0)
    wrong = ga.preference(prob, ga.GRPO(group_size=2, ddof=0), [0.5, 0.5])
    assert np.all(np.abs(mc.mean - wrong) > Z * mc.stderr)


# ----------------------------------------------------------------- G -> infinity
GROUPS = [2, 4, 8, 16, 32, 64, 128, 256, 512]


def limit_problem():
    rng = np.random.default_rng(3)
    return ga.Problem(rng.dirichlet(np.ones(3)), [0.0, 0.4, 1.0], rng.dirichlet(np.ones(3), size=3)), rng.dirichlet(
        np.ones(3)
    )


def test_shift_converges_exactly_like_one_over_g():
    # Derived: E[r_1 - mean | r_1 = v] = (G-1)/G (v - mu), so P_G - P_inf = -(E r(o) - mu)/G.
    prob, pol = limit_problem()
    mean_r = prob.dist[0] @ prob.levels[0]
    mu = pol @ mean_r
    for g in GROUPS:
        diff = ga.preference(prob, ga.GRPO(group_size=g, normalization="shift"), pol) - ga.preference_limit(
            prob, ga.GRPO(normalization="shift"), pol
        )
        # (a sum of G terms: rounding ~1e-14, so 1e-13 absolute on the difference itself)
        np.testing.assert_allclose(diff, -(mean_r - mu) / g, rtol=0, atol=1e-13)


@pytest.mark.parametrize("ddof", [0, 1])
def test_shift_scale_converges_like_one_over_g(ddof):
    # Measured (not derived): |P_G - P_inf| halves when G doubles (the bias of a
    # standardised score is O(1/G), faster than the 1/sqrt(G) of a CLT argument).
    # Asserted: a strict decrease at every doubling; from G = 32 on the halving ratio is
    # within 2 +- 0.1 (measured 2.00-2.09); and Richardson extrapolation 2 P_2G - P_G
    # converges to P_inf like 1/G^2 (a wrong limit would make it stall).
    prob, pol = limit_problem()
    algo = ga.GRPO(ddof=ddof)
    p_inf = ga.preference_limit(prob, algo, pol)
    pg = {g: ga.preference(prob, algo.replace(group_size=g), pol) for g in GROUPS}
    dist = [float(np.max(np.abs(pg[g] - p_inf))) for g in GROUPS]
    assert all(a > b for a, b in itertools.pairwise(dist)), dist
    for g, a, b in zip(GROUPS, dist, dist[1:], strict=False):
        if g >= 32:
            assert 1.9 < a / b < 2.1, (g, a / b)
    rich = [float(np.max(np.abs(2 * pg[2 * g] - pg[g] - p_inf))) for g in GROUPS[3:-1]]
    assert all(a / b > 3.0 for a, b in itertools.pairwise(rich)), rich
    assert rich[-1] < 2e-5


def test_binary_limit_formula():
    # section 6: P_correct -> sqrt((1-p)/p), P_wrong -> -sqrt(p/(1-p)), error ~ c / G
    for p in (0.1, 0.3, 0.8):
        errs = []
        for g in (64, 128, 256, 512, 1024):
            pc, pw = ga.binary_preference(p, g)
            errs.append(max(abs(pc - math.sqrt((1 - p) / p)), abs(pw + math.sqrt(p / (1 - p)))))
        assert all(1.8 < a / b < 2.2 for a, b in itertools.pairwise(errs)), errs
    prob = ga.Problem.from_rewards([0.5, 0.5], [1.0, 0.0])
    got = ga.preference(prob, ga.GRPO(group_size=math.inf), [0.3, 0.7])
    np.testing.assert_allclose(got, [math.sqrt(0.7 / 0.3), -math.sqrt(0.3 / 0.7)], rtol=1e-14)


def test_stationary_policy_converges_in_g():
    # the solver's policy at finite G approaches its G = inf policy (k3, binary and L = 3)
    prob, _ = limit_problem()
    lim = ga.stationary_policy(prob, ga.GRPO(group_size=math.inf, beta=0.5)).policy
    errs = [
        np.max(np.abs(ga.stationary_policy(prob, ga.GRPO(group_size=g, beta=0.5)).policy - lim)) for g in (8, 32, 128)
    ]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.01
