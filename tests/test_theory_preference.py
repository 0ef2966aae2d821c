"""P_G(o | pi) (THEORY.md sections 2, 4 and 8) against brute-force enumeration of groups.

The reference route (conftest.py) enumerates every output tuple and reward tuple of a
group and computes the first member's advantage by hand; it never touches the level-count
reduction that ``ga.preference`` uses. Both are exact, so they must agree to rounding
(1e-12 on values of order sqrt(G)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import grpo_align as ga
from conftest import NORMALISATIONS

NORM_NAMES = list(NORMALISATIONS)  # same order: seeds below depend on the index


def random_problem(rng: np.random.Generator, *, with_zeros: bool = True):
    """A random context: K <= 3 outputs, L <= 3 distinct levels, F with some exact zeros."""
    n_out = int(rng.integers(1, 4))
    n_lev = int(rng.integers(1, 4))
    levels = np.sort(rng.choice(np.arange(-6, 7), size=n_lev, replace=False)) * rng.uniform(0.2, 2.0)
    dist = rng.dirichlet(np.ones(n_lev), size=n_out)
    if with_zeros and n_lev > 1:
        # exact zeros exercise the pmf's log(0) path and groups whose rewards all tie
        drop = rng.random((n_out, n_lev)) < 0.3
        drop[np.arange(n_out), rng.integers(n_lev, size=n_out)] = False
        dist = np.where(drop, 0.0, dist)
        dist /= dist.sum(axis=1, keepdims=True)
    ref = rng.dirichlet(np.ones(n_out))
    policy = rng.dirichlet(np.ones(n_out))
    if with_zeros and n_out > 1 and rng.random() < 0.4:
        policy[rng.integers(n_out)] = 0.0
        policy /= policy.sum()
    return ga.Problem(ref, levels, dist), policy


def test_brute_force_reproduces_hand_derived_g2(brute):
    # Self-check of the reference route on a case solved on paper: two deterministic
    # outputs with rewards 1 and 0, G = 2. A group with different rewards has advantages
    # +-1 (ddof 0) or +-1/sqrt(2) (ddof 1), so P(correct) = s (1 - p) and P(wrong) = -s p.
    p = 0.37
    for ddof, s in ((0, 1.0), (1, 1 / math.sqrt(2))):
        got = brute.preference([0.0, 1.0], [[0.0, 1.0], [1.0, 0.0]], [p, 1 - p], 2, "shift_scale", ddof)
        np.testing.assert_allclose(got, [s * (1 - p), -s * p], rtol=0, atol=1e-15)
    # shift at G = 3: E[r_1 - mean] = (2/3)(r_1 - E r_other)
    got = brute.preference([0.0, 1.0], [[0.0, 1.0], [1.0, 0.0]], [p, 1 - p], 3, "shift")
    np.testing.assert_allclose(got, [2 / 3 * (1 - p), 2 / 3 * (0 - p)], rtol=0, atol=1e-15)


@pytest.mark.parametrize("seed", range(6))
def test_group_advantages_match_hand_formula(seed, brute):
    """ga.group_advantages (what the trainers use) against the table of section 2, per group."""
    rng = np.random.default_rng(seed)
    for name in NORM_NAMES:
        spec = brute.NORMALISATIONS[name]
        algo = ga.GRPO(group_size=4, beta=0.1, **spec)
        g = int(rng.integers(2, 7))
        # small integer rewards make ties and all-equal groups frequent
        rewards = rng.integers(0, 3, size=(50, g)).astype(float) * 0.5
        got = ga.group_advantages(rewards, algo)
        for row, adv in zip(rewards, got, strict=False):
            for i in range(g):
                rolled = tuple(np.roll(row, -i))
                want = brute.first_advantage(rolled, spec["normalization"], spec["ddof"], spec["eps"])
                assert abs(adv[i] - want) <= 1e-13, (name, row, i)


@pytest.mark.parametrize("name", NORM_NAMES)
def test_preference_equals_brute_force(name, brute):
    spec = brute.NORMALISATIONS[name]
    rng = np.random.default_rng(100 + NORM_NAMES.index(name))
    for _ in range(25):
        prob, policy = random_problem(rng)
        g = int(rng.integers(2, 5))
        algo = ga.GRPO(group_size=g, beta=0.5, **spec)
        got = ga.preference(prob, algo, policy)
        want = brute.preference(
            prob.levels[0], prob.dist[0], policy, g, spec["normalization"], spec["ddof"], spec["eps"]
        )
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=f"{name} G={g} {prob}")


@pytest.mark.parametrize("name", ["shift_scale_ddof0", "shift_scale_ddof1_eps", "raw"])
def test_batched_preference_with_per_context_levels(name, brute):
    # contexts with different reward values take the per-context table path of LevelPreference
    spec = brute.NORMALISATIONS[name]
    rng = np.random.default_rng(11)
    refs = [rng.dirichlet(np.ones(3)) for _ in range(4)]
    levels = [np.sort(rng.choice(np.arange(-5, 6), size=3, replace=False)) * 0.7 for _ in range(4)]
    dists = [rng.dirichlet(np.ones(3), size=3) for _ in range(4)]
    prob = ga.Problem(refs, levels, dists)
    policy = np.stack([rng.dirichlet(np.ones(3)) for _ in range(4)])
    algo = ga.GRPO(group_size=3, beta=0.5, **spec)
    got = ga.preference(prob, algo, policy)
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, brute.preference_batch(prob, algo, policy), rtol=0, atol=1e-12)


def test_ragged_deterministic_batch(brute):
    # from_rewards pads short contexts with outputs of reference probability 0 and pads levels
    ref = [[0.2, 0.3, 0.5], [0.6, 0.4]]
    rewards = [[1.0, 0.5, 0.0], [3.0, -1.0]]
    prob = ga.Problem.from_rewards(ref, rewards)
    policy = np.array([[0.5, 0.25, 0.25], [0.3, 0.7, 0.0]])
    for name in NORM_NAMES:
        algo = ga.GRPO(group_size=3, beta=0.5, **brute.NORMALISATIONS[name])
        got = ga.preference(prob, algo, policy)
        for c, (r, pol) in enumerate(zip(rewards, policy, strict=False)):
            k = len(r)
            dist = np.eye(k)  # output o has its own level r[o]
            spec = brute.NORMALISATIONS[name]
            want = brute.preference(r, dist, pol[:k], 3, spec["normalization"], spec["ddof"], spec["eps"])
            np.testing.assert_allclose(got[c, :k], want, rtol=0, atol=1e-12, err_msg=name)


def test_shift_normalisations_average_to_zero_at_large_g():
    # Section 4: under pi the advantages of a group sum to zero for shift normalisations and
    # average E_pi[r] for raw. Checked at a G (16, L = 4) beyond the brute force.
    rng = np.random.default_rng(3)
    levels = np.array([-1.0, 0.0, 0.5, 2.0])
    dist = rng.dirichlet(np.ones(4), size=5)
    prob = ga.Problem(rng.dirichlet(np.ones(5)), levels, dist)
    pol = rng.dirichlet(np.ones(5))
    for norm in ("shift_scale", "shift", "rloo"):
        for ddof in (0, 1):
            P = ga.preference(prob, ga.GRPO(group_size=16, normalization=norm, ddof=ddof, eps=0.01), pol)
            assert abs(pol @ P) < 1e-12
    P = ga.preference(prob, ga.GRPO(group_size=16, normalization="raw"), pol)
    assert abs(pol @ P - pol @ dist @ levels) < 1e-12


def test_ddof1_is_rescaled_ddof0():
    # Section 2: with eps = 0 each ddof-1 advantage is sqrt((G-1)/G) times the ddof-0 one
    rng = np.random.default_rng(4)
    prob = ga.Problem(rng.dirichlet(np.ones(3)), [0.0, 1.0, 3.0], rng.dirichlet(np.ones(3), size=3))
    pol = rng.dirichlet(np.ones(3))
    for g in (2, 5, 12):
        p0 = ga.preference(prob, ga.GRPO(group_size=g, ddof=0), pol)
        p1 = ga.preference(prob, ga.GRPO(group_size=g, ddof=1), pol)
        np.testing.assert_allclose(p1, math.sqrt((g - 1) / g) * p0, rtol=1e-13, atol=1e-15)


def test_limit_preference_is_standardised_reward():
    # Section 8, written out: h_l -> (v_l - mu_w)/sigma_w (shift_scale), v_l - mu_w (shift)
    rng = np.random.default_rng(5)
    levels = np.array([-1.0, 0.5, 2.0])
    dist = rng.dirichlet(np.ones(3), size=3)
    prob = ga.Problem(rng.dirichlet(np.ones(3)), levels, dist)
    pol = rng.dirichlet(np.ones(3))
    w = pol @ dist
    mu = w @ levels
    sigma = math.sqrt(w @ (levels - mu) ** 2)
    for norm, h in (
        ("shift_scale", (levels - mu) / sigma),
        ("shift", levels - mu),
        ("rloo", levels - mu),
        ("raw", levels),
    ):
        want = dist @ h
        got_inf = ga.preference(prob, ga.GRPO(group_size=math.inf, normalization=norm), pol)
        got_lim = ga.preference_limit(prob, ga.GRPO(group_size=8, normalization=norm), pol)
        np.testing.assert_allclose(got_inf, want, rtol=0, atol=1e-13)
        np.testing.assert_allclose(got_lim, want, rtol=0, atol=1e-13)


def test_binary_preference_closed_form_matches_brute_force(brute):
    # closed_form.binary_preference (section 6's sums) against the enumeration
    for g in (2, 3, 4):
        for p in (0.0, 0.15, 0.5, 0.9, 1.0):
            want = brute.preference([0.0, 1.0], [[0.0, 1.0], [1.0, 0.0]], [p, 1 - p], g, "shift_scale")
            np.testing.assert_allclose(ga.binary_preference(p, g), want, rtol=0, atol=1e-13)


def test_preference_pairwise_matrix(brute):
    # Section 7: P_2 = s M pi for a preference matrix, including ties and a cycle
    win = np.array([[0.0, 0.7, 0.2], [0.2, 0.0, 0.6], [0.5, 0.3, 0.0]])
    prob = ga.Problem.from_preference([0.5, 0.3, 0.2], win)
    pol = np.array([0.1, 0.6, 0.3])
    for ddof, s in ((0, 1.0), (1, 1 / math.sqrt(2))):
        got = ga.preference(prob, ga.GRPO(group_size=2, ddof=ddof), pol)
        np.testing.assert_allclose(got, brute.pairwise(win, pol, s), rtol=0, atol=1e-15)
