"""Explicit results (THEORY.md sections 5-7) against the general solver, and the worked numbers.

The worked numbers are the ones printed in THEORY.md section 6 (6 decimals, so a rounding
tolerance of 5e-7); they are checked from both routes. Closed form against solver is two
independent computations of the same root, each to ~1e-12, so 1e-9 leaves room for the
conditioning of the root and nothing else.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import grpo_align as ga

ROUND6 = 5e-7 + 1e-12  # a value printed to 6 decimals


def binary(p0: float) -> ga.Problem:
    return ga.Problem.from_rewards([p0, 1 - p0], [1.0, 0.0])


def solve_p(prob: ga.Problem, **algo) -> float:
    res = ga.stationary_policy(prob, ga.GRPO(**algo))[0]
    assert res.success, res.message
    return float(res.policy[0])


# ----------------------------------------------------------------- worked numbers (section 6)
def test_worked_numbers_p03_beta05():
    p0, beta = 0.3, 0.5
    for value, want in [
        (solve_p(binary(p0), group_size=2, beta=beta), 0.710977),
        (ga.binary_g2_policy(p0, beta), 0.710977),
        (ga.binary_policy(p0, beta, 2), 0.710977),
        (solve_p(binary(p0), group_size=8, beta=beta), 0.853564),
        (ga.binary_policy(p0, beta, 8), 0.853564),
        (solve_p(binary(p0), group_size=8, beta=beta, normalization="shift"), 0.680491),
        (ga.binary_shift_policy(p0, beta, 8), 0.680491),
        (float(ga.rlhf_policy(binary(p0), beta)[0]), 0.760004),
    ]:
        assert abs(value - want) <= ROUND6, (value, want)
    # G -> infinity gives 0.9 exactly: (2 * 0.3 * 0.25 + 1 + sqrt(1.21)) / 2.5
    assert abs(ga.binary_limit_policy(p0, beta) - 0.9) < 1e-15
    assert abs(solve_p(binary(p0), group_size=math.inf, beta=beta) - 0.9) < 1e-12


@pytest.mark.parametrize(
    "p0, beta, expected",
    [(0.5, 1.0, (0.707107, 0.818310, 0.850679, 0.853553)), (0.1, 0.5, (0.585410, 0.791112, 0.833737, 0.837612))],
)
def test_worked_numbers_by_group_size(p0, beta, expected):
    for g, want in zip((2, 8, 64, math.inf), expected, strict=False):
        assert abs(solve_p(binary(p0), group_size=g, beta=beta) - want) <= ROUND6, g
        closed = ga.binary_limit_policy(p0, beta) if g == math.inf else ga.binary_policy(p0, beta, g)
        assert abs(closed - want) <= ROUND6, g
    assert abs(ga.binary_g2_policy(p0, beta) - expected[0]) <= ROUND6


def test_worked_numbers_direct_kl_and_sample_std():
    # direct KL at G = 2, (0.25, 1) -> 0.475367, from k2, exact KL and the closed form
    for penalty in ("k2", "kl"):
        assert abs(solve_p(binary(0.25), group_size=2, beta=1.0, penalty=penalty) - 0.475367) <= ROUND6
    assert abs(ga.binary_direct_kl_g2_policy(0.25, 1.0) - 0.475367) <= ROUND6
    # sample std at G = 2, (0.25, 1) -> 0.422533
    assert abs(solve_p(binary(0.25), group_size=2, beta=1.0, ddof=1) - 0.422533) <= ROUND6
    assert abs(ga.binary_g2_policy(0.25, 1.0, ddof=1) - 0.422533) <= ROUND6
    assert abs(ga.binary_policy(0.25, 1.0, 2, ddof=1) - 0.422533) <= ROUND6


def test_worked_three_outputs():
    ref, rewards = [0.2, 0.3, 0.5], [1.0, 0.5, 0.0]
    want = np.array([0.653113, 0.155904, 0.190983])
    res = ga.stationary_policy(ga.Problem.from_rewards(ref, rewards), ga.GRPO(group_size=2, beta=0.5))[0]
    assert res.success
    np.testing.assert_allclose(res.policy, want, rtol=0, atol=ROUND6)
    # deterministic rewards at G = 2 are the preference matrix "higher reward wins"
    win = np.array([[float(a > b) for b in rewards] for a in rewards])
    np.testing.assert_allclose(ga.pairwise_policy(ref, win, 0.5), want, rtol=0, atol=ROUND6)


# ----------------------------------------------------------------- closed forms over a grid
@pytest.mark.parametrize("p0", [0.02, 0.3, 0.7])
@pytest.mark.parametrize("beta", [0.05, 0.5, 2.0])
def test_binary_closed_forms_equal_solver(p0, beta):
    prob = binary(p0)
    for g in (2, 3, 8, 64, math.inf):
        got = solve_p(prob, group_size=g, beta=beta)
        want = ga.binary_limit_policy(p0, beta) if g == math.inf else ga.binary_policy(p0, beta, g)
        assert abs(got - want) < 1e-9, (g, got, want)
        # sample std: the solver with ddof 1 against beta * sqrt(G/(G-1)) in the closed form
        if g != math.inf:
            got1 = solve_p(prob, group_size=g, beta=beta, ddof=1)
            assert abs(got1 - ga.binary_policy(p0, beta, g, ddof=1)) < 1e-9
        # shift without scale: a quadratic
        got_shift = solve_p(prob, group_size=g, beta=beta, normalization="shift")
        assert abs(got_shift - ga.binary_shift_policy(p0, beta, g)) < 1e-9
    assert abs(ga.binary_g2_policy(p0, beta) - ga.binary_policy(p0, beta, 2)) < 1e-12
    assert abs(ga.binary_g2_policy(p0, beta, ddof=1) - ga.binary_policy(p0, beta, 2, ddof=1)) < 1e-12


@pytest.mark.parametrize("succ", [(0.9, 0.2), (0.6, 0.5), (1.0, 0.3)])
@pytest.mark.parametrize("ddof", [0, 1])
def test_margin_form_with_bernoulli_rewards(succ, ddof):
    # two answers with random rewards: gamma = Pr[a beats b] - Pr[b beats a] = s_a - s_b
    sa, sb = succ
    gamma = sa * (1 - sb) - sb * (1 - sa)
    for p0 in (0.2, 0.6):
        for beta in (0.05, 0.4):
            prob = ga.Problem.from_bernoulli([p0, 1 - p0], [sa, sb])
            got = solve_p(prob, group_size=2, beta=beta, ddof=ddof)
            assert abs(got - ga.binary_g2_policy(p0, beta, gamma, ddof=ddof)) < 1e-9
            got_kl = solve_p(prob, group_size=2, beta=beta, ddof=ddof, penalty="k2")
            assert abs(got_kl - ga.binary_direct_kl_g2_policy(p0, beta, gamma, ddof=ddof)) < 1e-9


# ----------------------------------------------------------------- pairwise preferences (section 7)
ROCK_PAPER_SCISSORS = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def random_win_matrix(rng: np.random.Generator, k: int) -> np.ndarray:
    """W[o,o'] = Pr[o beats o'], ties allowed: split 1 into win / lose / tie per pair."""
    w = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            win, lose, _tie = rng.dirichlet(np.ones(3))
            w[i, j], w[j, i] = win, lose
    return w


@pytest.mark.parametrize("which", ["rps", "random3", "random4"])
@pytest.mark.parametrize("ddof", [0, 1])
def test_pairwise_preference_solver_equals_pairwise_policy(which, ddof):
    rng = np.random.default_rng({"rps": 1, "random3": 2, "random4": 3}[which])
    win = ROCK_PAPER_SCISSORS if which == "rps" else random_win_matrix(rng, 3 if which == "random3" else 4)
    k = win.shape[0]
    ref = rng.dirichlet(np.ones(k))
    scale = 1.0 if ddof == 0 else 1 / math.sqrt(2)
    prob = ga.Problem.from_preference(ref, win)
    for beta in (0.1, 1.0):
        res = ga.stationary_policy(prob, ga.GRPO(group_size=2, beta=beta, ddof=ddof))[0]
        assert res.success, res.message
        want = ga.pairwise_policy(ref, win, beta, scale=scale)
        np.testing.assert_allclose(res.policy, want, rtol=0, atol=1e-9)
        # both are the fixed point pi = pi_ref / (1 - (s M pi - c)/beta), written out here
        margin = scale * (win - win.T) @ want
        phi = 1 - ref / want
        g = margin - beta * phi
        assert np.max(np.abs(g - want @ g)) < 1e-9


@pytest.mark.parametrize("which", ["rps", "random3"])
@pytest.mark.parametrize("ddof", [0, 1])
def test_direct_kl_at_g2_is_regularised_nash(which, ddof):
    rng = np.random.default_rng(7 if which == "rps" else 8)
    win = ROCK_PAPER_SCISSORS if which == "rps" else random_win_matrix(rng, 3)
    ref = rng.dirichlet(np.ones(3))
    s = 1.0 if ddof == 0 else 1 / math.sqrt(2)
    prob = ga.Problem.from_preference(ref, win)
    for beta in (0.2, 1.0):
        for penalty in ("k2", "kl"):
            res = ga.stationary_policy(prob, ga.GRPO(group_size=2, beta=beta, ddof=ddof, penalty=penalty))[0]
            assert res.success
            tau = beta / (2 * s)
            nash = ga.nash_policy(ref, win, tau)
            np.testing.assert_allclose(res.policy, nash, rtol=0, atol=1e-9)
        # Munos's regularised Nash equilibrium written out: pi prop. to pi_ref exp((P pi)/tau),
        # P = W + ties / 2
        ties = 1 - win - win.T
        np.fill_diagonal(ties, 1.0)
        munos = win + ties / 2
        logits = np.log(ref) + munos @ nash / tau
        fixed = np.exp(logits - logits.max())
        np.testing.assert_allclose(nash, fixed / fixed.sum(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("penalty", ["k3", "k2"])
def test_reward_problem_at_g2_equals_its_preference_matrix(penalty):
    rng = np.random.default_rng(21)
    levels = np.array([-1.0, 0.0, 2.0])
    dist = rng.dirichlet(np.ones(3), size=4)
    ref = rng.dirichlet(np.ones(4))
    # W[o, o'] = Pr[r_o > r_o'] with independent draws, by a double loop over levels
    win = np.zeros((4, 4))
    for o in range(4):
        for q in range(4):
            if o != q:
                win[o, q] = sum(dist[o, a] * dist[q, b] for a in range(3) for b in range(3) if levels[a] > levels[b])
    for ddof in (0, 1):
        algo = ga.GRPO(group_size=2, beta=0.3, ddof=ddof, penalty=penalty)
        from_rewards = ga.stationary_policy(ga.Problem(ref, levels, dist), algo)[0]
        from_matrix = ga.stationary_policy(ga.Problem.from_preference(ref, win), algo)[0]
        assert from_rewards.success and from_matrix.success
        np.testing.assert_allclose(from_rewards.policy, from_matrix.policy, rtol=0, atol=1e-10)
        np.testing.assert_allclose(ga.Problem(ref, levels, dist).margin_matrix()[0], win - win.T, atol=1e-15)


# ----------------------------------------------------------------- RLHF (section 5)
@pytest.mark.parametrize("g", [2, 3, 5, 16])
def test_rlhf_is_rloo_with_direct_kl(g, brute):
    # rloo: A_1 = r_1 - mean of the others, so P_G(o) = E r(o) - E_pi r exactly, and the
    # k2 stationary policy is pi_ref exp(E r / beta) up to normalisation
    rng = np.random.default_rng(g)
    levels = np.array([0.0, 0.5, 1.5])
    dist = rng.dirichlet(np.ones(3), size=3)
    prob = ga.Problem(rng.dirichlet(np.ones(3)), levels, dist)
    pol = rng.dirichlet(np.ones(3))
    algo = ga.GRPO(group_size=g, beta=0.4, normalization="rloo", penalty="k2")
    exp_r = dist @ levels
    np.testing.assert_allclose(ga.preference(prob, algo, pol), exp_r - pol @ exp_r, rtol=0, atol=1e-12)
    if g <= 3:
        np.testing.assert_allclose(brute.preference(levels, dist, pol, g, "rloo"), exp_r - pol @ exp_r, atol=1e-12)
    for beta in (0.05, 0.4, 3.0):
        res = ga.stationary_policy(prob, algo.replace(beta=beta))[0]
        assert res.success
        want = ga.rlhf_policy(prob, beta)
        np.testing.assert_allclose(res.policy, want, rtol=0, atol=1e-10)
        # logarithmic pooling written out
        pooled = prob.ref[0] * np.exp(exp_r / beta)
        np.testing.assert_allclose(want, pooled / pooled.sum(), rtol=1e-12)


def test_rlhf_batched_matches_contexts():
    refs = [[0.2, 0.8], [0.5, 0.5]]
    rewards = [[1.0, 0.0], [0.3, 0.9]]
    batch = ga.rlhf_policy(ga.Problem.from_rewards(refs, rewards), 0.5)
    for c in range(2):
        np.testing.assert_allclose(
            batch[c], ga.rlhf_policy(ga.Problem.from_rewards(refs[c], rewards[c]), 0.5), atol=1e-15
        )


@pytest.mark.parametrize("p0, beta", [(1e-13, 2.0), (1e-10, 5.0), (1e-10, 1.0), (1 - 1e-10, 1.0), (1e-6, 50.0)])
def test_closed_forms_near_the_interval_ends(p0, beta):
    # Roots next to 0 or 1 (the ends of the scan), compared in relative terms: the
    # quadratic formula used to cancel catastrophically for large beta, small p0
    # (1e-13, 2.0 gave a root 2e-4 off).
    prob = binary(p0)

    def close(a: float, b: float, rel: float = 1e-9) -> bool:
        # relative on p and on 1 - p, so both ends are resolved, down to a few ulps of p
        return abs(a - b) <= rel * min(b, 1 - b) + 4 * np.spacing(b)

    assert close(solve_p(prob, group_size=2, beta=beta), ga.binary_g2_policy(p0, beta))
    assert close(solve_p(prob, group_size=2, beta=beta, penalty="k2"), ga.binary_direct_kl_g2_policy(p0, beta))
    assert close(solve_p(prob, group_size=8, beta=beta), ga.binary_policy(p0, beta, 8))
    assert close(solve_p(prob, group_size=8, beta=beta, normalization="shift"), ga.binary_shift_policy(p0, beta, 8))
    # G = inf: P_inf diverges at a point mass; the two-class batch path carries the smaller
    # mass as the unknown, so a root next to the vertex (p0 = 1 - 1e-10 gives 1 - p ~ 1e-20)
    # is reached and passes the residual check (tests/test_theory_batch.py checks 1 - p).
    res = ga.stationary_policy(prob, ga.GRPO(group_size=math.inf, beta=beta))[0]
    want = ga.binary_limit_policy(p0, beta)
    assert res.success and close(float(res.policy[0]), want)
