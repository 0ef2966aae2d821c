"""Stationary policies (THEORY.md sections 5 and 9) checked against brute-force P_G.

Every solver result is held against the stationarity conditions of section 5 written out
here, with P_G from the enumeration of groups in conftest.py (not the solver's own P_G):
k3 / k2 / kl: P(o) - beta phi(o) = c on the support, to 1e-9; abs: the set-valued
condition; k1 or beta = 0: all mass on one reward class, and that class attracts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import grpo_align as ga
from conftest import NORMALISATIONS

NORM_NAMES = list(NORMALISATIONS)  # same order: seeds below depend on the index
KINDS = ["deterministic", "bernoulli", "general", "batched"]
TOL = 1e-9


def make_problem(kind: str, rng: np.random.Generator) -> ga.Problem:
    """Small random problems (K <= 3, L <= 3) of each constructor."""
    if kind == "deterministic":
        # 3 outputs, two of which may share a reward (a class of two outputs)
        rewards = rng.choice([-1.0, 0.0, 0.5, 2.0], size=3, replace=bool(rng.random() < 0.5))
        return ga.Problem.from_rewards(rng.dirichlet(np.ones(3)), rewards)
    if kind == "bernoulli":
        return ga.Problem.from_bernoulli(rng.dirichlet(np.ones(3)), rng.uniform(0.05, 0.95, size=3))
    if kind == "general":
        levels = np.sort(rng.choice(np.arange(-4, 5), size=3, replace=False)) * 0.5
        return ga.Problem(rng.dirichlet(np.ones(3)), levels, rng.dirichlet(np.ones(3), size=3))
    # a batch of contexts, each with its own reward values (per-context level tables) and
    # one context with an output of reference probability 0 (padding)
    refs = [rng.dirichlet(np.ones(3)) for _ in range(3)]
    refs[2] = np.array([0.6, 0.4, 0.0])
    levels = [np.sort(rng.choice(np.arange(-4, 5), size=3, replace=False)) * 0.5 for _ in range(3)]
    dists = [rng.dirichlet(np.ones(3), size=3) for _ in range(3)]
    return ga.Problem(refs, levels, dists)


def check_probability_vector(pi: np.ndarray, ref: np.ndarray) -> None:
    assert np.all(np.isfinite(pi))
    assert np.all(pi >= 0)
    assert abs(pi.sum() - 1) < 1e-12
    assert np.all(pi[ref == 0] == 0), "mass on an output of reference probability 0"


def check_interior_root(pi, ref, pref, beta, penalty) -> None:
    """An interior root is a feasible policy; for k3 every denominator is positive (section 9)."""
    check_probability_vector(pi, ref)
    assert np.all(pi[ref > 0] > 0), "a k3/k2 stationary policy keeps every reference output"
    if penalty == "k3":
        support = ref > 0
        g = pref[support] - beta * (1 - ref[support] / pi[support])
        c = float(pi[support] @ g)
        denom = 1 - (pref[support] - c) / beta
        assert np.all(denom > 0), f"k3 denominator not positive: {denom}"
        # pi = pi_ref / denominator is the k3 formula of section 5 itself
        np.testing.assert_allclose(pi[support], ref[support] / denom, rtol=1e-8)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("penalty", ["k3", "k2", "kl"])
@pytest.mark.parametrize("norm", NORM_NAMES)
def test_smooth_penalties_are_stationary(norm, penalty, kind, brute):
    spec = brute.NORMALISATIONS[norm]
    seed = 1000 * NORM_NAMES.index(norm) + 10 * KINDS.index(kind) + ["k3", "k2", "kl"].index(penalty)
    rng = np.random.default_rng(seed)
    prob = make_problem(kind, rng)
    g = int(rng.integers(2, 5))
    beta = float(rng.choice([0.1, 0.3, 1.0]))
    algo = ga.GRPO(group_size=g, beta=beta, penalty=penalty, **spec)
    res = ga.stationary_policy(prob, algo)
    n = prob.n_contexts
    assert all(res.success), res.message
    assert all(s == "interior" for s in res.status)
    pols = res.policy
    roots = res.roots
    for c in range(n):
        ref = prob.ref[c]
        pref = brute.preference(
            prob.levels[c], prob.dist[c], pols[c], g, spec["normalization"], spec["ddof"], spec["eps"]
        )
        check_interior_root(pols[c], ref, pref, beta, penalty)
        assert brute.gap(pref, pols[c], ref, beta, penalty) < TOL
        # every reported root is a feasible policy; the accepted ones are stationary
        assert roots[c], "the returned policy must be among the roots"
        for root in roots[c]:
            check_probability_vector(root.policy, ref)
            if root.residual <= TOL:
                p_root = brute.preference(
                    prob.levels[c], prob.dist[c], root.policy, g, spec["normalization"], spec["ddof"], spec["eps"]
                )
                check_interior_root(root.policy, ref, p_root, beta, penalty)
                assert brute.gap(p_root, root.policy, ref, beta, penalty) < TOL


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("norm", NORM_NAMES)
def test_abs_penalty_satisfies_set_valued_condition(norm, kind, brute):
    spec = brute.NORMALISATIONS[norm]
    rng = np.random.default_rng(500 + 10 * NORM_NAMES.index(norm) + KINDS.index(kind))
    prob = make_problem(kind, rng)
    g = int(rng.integers(2, 5))
    # small beta drains classes (pi = 0 < pi_ref), large beta keeps pi = pi_ref on some
    beta = float(rng.choice([0.05, 0.2, 0.6]))
    algo = ga.GRPO(group_size=g, beta=beta, penalty="abs", **spec)
    res = ga.stationary_policy(prob, algo)
    assert all(res.success), res.message
    pols = res.policy
    for c in range(prob.n_contexts):
        check_probability_vector(pols[c], prob.ref[c])
        pref = brute.preference(
            prob.levels[c], prob.dist[c], pols[c], g, spec["normalization"], spec["ddof"], spec["eps"]
        )
        assert brute.abs_gap(pref, pols[c], prob.ref[c], beta) < TOL


def test_abs_condition_detects_a_wrong_policy(brute):
    # the abs check can fail: the reference itself is not stationary when beta is small
    prob = ga.Problem.from_rewards([0.3, 0.7], [1.0, 0.0])
    pref = brute.preference([0.0, 1.0], prob.dist[0], prob.ref[0], 2, "shift_scale")
    assert brute.abs_gap(pref, prob.ref[0], prob.ref[0], 0.1) > 0.5
    # and ga's own residual agrees that the drained policy is stationary, the reference not
    algo = ga.GRPO(group_size=2, beta=0.1, penalty="abs")
    assert ga.stationarity_residual(prob, algo, [0.3, 0.7])[0][0] > 0.3
    assert ga.stationarity_residual(prob, algo, [1.0, 0.0])[0][0] == 0
    # draining the better output is not stationary (its advantage exceeds the pull)
    assert ga.stationarity_residual(prob, algo, [0.0, 1.0])[0][0] > 0.5


@pytest.mark.parametrize("how", ["beta0", "k1"])
@pytest.mark.parametrize("norm", NORM_NAMES)
def test_unregularised_limit_class_attracts(norm, how, brute):
    spec = brute.NORMALISATIONS[norm]
    rng = np.random.default_rng(700 + NORM_NAMES.index(norm) + (50 if how == "k1" else 0))
    kind = ["general", "bernoulli", "batched"][NORM_NAMES.index(norm) % 3]
    prob = make_problem(kind, rng)
    g = int(rng.integers(2, 5))
    algo = ga.GRPO(group_size=g, beta=0.0 if how == "beta0" else 0.4, penalty="k3" if how == "beta0" else "k1", **spec)
    res = ga.stationary_policy(prob, algo)
    n = prob.n_contexts
    assert len(res) == n
    assert all(s == "limit" for s in res.status), res.message
    assert all(res.success)
    assert "no interior stationary policy" in res.message[0]
    pols = res.policy
    for c in range(n):
        pi, ref, dist = pols[c], prob.ref[c], prob.dist[c]
        check_probability_vector(pi, ref)
        members = pi > 0
        # one reward class: identical reward distributions, reference ratios inside it
        assert np.all(dist[members] == dist[members][0])
        np.testing.assert_allclose(pi[members], ref[members] / ref[members].sum(), rtol=1e-12)
        same_class = np.all(dist == dist[members][0], axis=1) & (ref > 0)
        assert np.array_equal(members, same_class)
        # it attracts: at the vertex every other output has a lower P_G (section 9)
        pref = brute.preference(prob.levels[c], dist, pi, g, spec["normalization"], spec["ddof"], spec["eps"])
        others = (ref > 0) & ~members
        assert np.all(pref[others] < pref[members][0] + 1e-12)


@pytest.mark.parametrize("norm", NORM_NAMES)
def test_limit_is_the_best_deterministic_reward(norm, brute):
    # With deterministic rewards A_1 increases in r_1 for every normalisation, so the top
    # reward wins under P_G wherever pi is: the limit must be the highest-reward output,
    # whatever the reference says.
    algo = ga.GRPO(group_size=3, beta=0.0, **brute.NORMALISATIONS[norm])
    prob = ga.Problem.from_rewards([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]], [[0.0, 1.0, -2.0], [3.0, -1.0, 2.5]])
    res = ga.stationary_policy(prob, algo)
    np.testing.assert_array_equal(res.policy, [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def test_exactly_tied_classes_give_a_face_limit(brute):
    # Two reward classes with the same mean tie exactly under shift (P = (G-1)/G (E r - mu)):
    # the dynamics keep both in their reference ratio and drain the third, so the limit is
    # a face (a mixture), reported as such (THEORY.md section 9), quickly.
    prob = ga.Problem([0.3, 0.3, 0.4], [0.0, 1.0, 2.0], [[0, 1, 0], [0.5, 0, 0.5], [0.6, 0.4, 0]])
    res = ga.stationary_policy(prob, ga.GRPO(group_size=3, beta=0.0, normalization="shift"))[0]
    assert res.status == "limit" and res.success, res.message
    assert "tie exactly" in res.message
    np.testing.assert_allclose(res.policy, [0.5, 0.5, 0.0], atol=1e-12)
    # independent route: the brute-force replicator flow from pi_ref (Euler steps on log pi)
    log_pi = np.log(prob.ref[0])
    for _ in range(400):
        pi = np.exp(log_pi - log_pi.max())
        pi /= pi.sum()
        pref = brute.preference(prob.levels[0], prob.dist[0], pi, 3, "shift")
        log_pi += 0.5 * (pref - pi @ pref)
    pi = np.exp(log_pi - log_pi.max())
    pi /= pi.sum()
    assert abs(pi[0] / pi[1] - 1.0) < 1e-12 and pi[2] < 1e-6


@pytest.mark.parametrize("penalty", ["k3", "k2", "abs", "k1"])
def test_batch_equals_per_context_solves(penalty):
    rng = np.random.default_rng(42)
    refs = [rng.dirichlet(np.ones(3)) for _ in range(4)]
    levels = [np.sort(rng.choice(np.arange(-4, 5), size=3, replace=False)) * 0.5 for _ in range(4)]
    dists = [rng.dirichlet(np.ones(3), size=3) for _ in range(4)]
    algo = ga.GRPO(group_size=3, beta=0.3, penalty=penalty)
    batch = ga.stationary_policy(ga.Problem(refs, levels, dists), algo)
    assert batch.policy.shape == (4, 3)
    for c in range(4):
        single = ga.stationary_policy(ga.Problem(refs[c], levels[c], dists[c]), algo)[0]
        assert single.status == batch.status[c]
        np.testing.assert_allclose(batch.policy[c], single.policy, rtol=0, atol=1e-10)


def test_batch_of_binary_contexts_equals_per_context_solves():
    # ragged deterministic batch (padding outputs and levels) through the L = 2 scan
    refs = [[0.3, 0.7], [0.1, 0.2, 0.7], [0.5, 0.5]]
    rewards = [[1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0]]
    algo = ga.GRPO(group_size=6, beta=0.4)
    batch = ga.stationary_policy(ga.Problem.from_rewards(refs, rewards), algo)
    for c, (r, w) in enumerate(zip(refs, rewards, strict=False)):
        single = ga.stationary_policy(ga.Problem.from_rewards(r, w), algo)[0]
        np.testing.assert_allclose(batch.policy[c, : len(r)], single.policy, rtol=0, atol=1e-12)
        assert np.all(batch.policy[c, len(r) :] == 0)


def test_newton_with_three_levels_stops_early():
    # Starts that cannot converge used to run all 100 damped-Newton iterations (k2, L = 3)
    prob = ga.Problem.from_rewards([0.2, 0.3, 0.5], [1.0, 0.5, 0.0])
    for penalty in ("k2", "k3"):
        res = ga.stationary_policy(prob, ga.GRPO(group_size=2, beta=0.1, penalty=penalty))
        assert all(res.success)
        assert res.nit < 60, res.nit


# ----------------------------------------------------------------- several stationary policies
def binary_pref(u: float, g: int, brute) -> tuple[float, float]:
    """(P_correct, P_wrong) for deterministic rewards 1/0 by counting the other correct members.

    The G - 1 others are exchangeable, so only their number of correct answers k matters:
    Binomial(G - 1, u) with u the correct mass. The advantage of each group is computed by
    hand (conftest.first_advantage), not from the closed form.
    """
    pc = pw = 0.0
    for k in range(g):
        weight = math.comb(g - 1, k) * u**k * (1 - u) ** (g - 1 - k)
        others = (1.0,) * k + (0.0,) * (g - 1 - k)
        pc += weight * brute.first_advantage((1.0, *others), "shift_scale")
        pw += weight * brute.first_advantage((0.0, *others), "shift_scale")
    return pc, pw


def k2_drift(p: float, p0: float, beta: float, g: int, brute) -> float:
    """g_correct - g_wrong for the direct-KL penalty: the sign of d logit(p)/dt (section 9)."""
    pc, pw = binary_pref(p, g, brute)
    return (pc - pw) - beta * (math.log(p / p0) - math.log((1 - p) / (1 - p0)))


@pytest.mark.parametrize("g, beta", [(16, 0.3), (64, 0.3), (64, 0.5)])
def test_direct_kl_has_three_stationary_policies(g, beta, brute):
    # Section 9: direct KL at large G, small p_ref. Found by scanning p_ref, G and beta.
    p0 = 0.001
    prob = ga.Problem.from_rewards([p0, 1 - p0], [1.0, 0.0])
    res = ga.stationary_policy(prob, ga.GRPO(group_size=g, beta=beta, penalty="k2"))[0]
    assert res.success
    roots = sorted(res.roots, key=lambda r: r.policy[0])
    assert len(roots) == 3, roots
    for root in roots:
        p = root.policy[0]
        pc, pw = binary_pref(p, g, brute)
        gap = brute.gap(np.array([pc, pw]), root.policy, prob.ref[0], beta, "k2")
        assert gap < TOL
        assert root.residual < TOL
    # in one dimension stable and unstable roots alternate
    assert [r.stable for r in roots] == [True, False, True]
    # independent stability check: the sign of the logit drift on both sides of each root
    for root, stable in zip(roots, (True, False, True), strict=False):
        p = root.policy[0]
        d = min(1e-5, p / 4, (1 - p) / 4)
        left, right = k2_drift(p - d, p0, beta, g, brute), k2_drift(p + d, p0, beta, g, brute)
        assert (left > 0 > right) if stable else (left < 0 < right), (p, left, right)
    # the chosen policy is stable and is the one the dynamics reach from pi_ref: no
    # unstable root lies between p_ref and it
    chosen = res.policy[0]
    assert any(abs(r.policy[0] - chosen) < 1e-12 and r.stable for r in roots)
    assert not any(r.stable is False and min(p0, chosen) < r.policy[0] < max(p0, chosen) for r in roots)
    assert "3 stationary policies" in res.message


def test_multiple_roots_with_bernoulli_rewards():
    # the same phenomenon with noisy rewards and three outputs (two classes are mixed)
    prob = ga.Problem.from_bernoulli([0.001, 0.5, 0.499], [0.98, 0.02, 0.02])
    algo = ga.GRPO(group_size=32, beta=0.3, penalty="kl")
    res = ga.stationary_policy(prob, algo)[0]
    assert res.success
    assert len(res.roots) == 3
    assert [r.stable for r in sorted(res.roots, key=lambda r: r.mixture[1])] == [True, False, True]
    for r in res.roots:
        assert ga.stationarity_residual(prob, algo, r.policy)[0][0] < TOL


# ----------------------------------------------------------------- robustness
def test_small_beta_large_group_four_levels():
    rng = np.random.default_rng(8)
    prob = ga.Problem(rng.dirichlet(np.ones(6)), [0.0, 0.3, 0.7, 1.0], rng.dirichlet(np.ones(4), size=6))
    for beta in (0.05, 0.5):
        algo = ga.GRPO(group_size=64, beta=beta)
        res = ga.stationary_policy(prob, algo)[0]
        assert res.success and res.residual < TOL
        # recomputed from scratch by the public residual, and the k3 formula holds
        assert ga.stationarity_residual(prob, algo, res.policy)[0][0] < TOL
        pref = ga.preference(prob, algo, res.policy)
        c = res.policy @ (pref - beta * (1 - prob.ref[0] / res.policy))
        assert np.all(1 - (pref - c) / beta > 0)


def test_large_binary_group_matches_closed_form():
    prob = ga.Problem.from_rewards([0.3, 0.7], [1.0, 0.0])
    for beta in (0.05, 0.5):
        res = ga.stationary_policy(prob, ga.GRPO(group_size=1024, beta=beta))[0]
        assert res.success and res.residual < TOL
        assert abs(res.policy[0] - ga.binary_policy(0.3, beta, 1024)) < 1e-9


def test_infinite_group_three_levels(brute):
    # section 8's P_inf written out: h_l = (v_l - mu_w)/sigma_w
    rng = np.random.default_rng(9)
    levels = np.array([0.0, 0.4, 1.0])
    dist = rng.dirichlet(np.ones(3), size=4)
    prob = ga.Problem(rng.dirichlet(np.ones(4)), levels, dist)
    for penalty in ("k3", "k2"):
        for beta in (0.05, 0.5):
            res = ga.stationary_policy(prob, ga.GRPO(group_size=math.inf, beta=beta, penalty=penalty))[0]
            assert res.success, res.message
            w = res.policy @ dist
            mu = w @ levels
            pref = dist @ ((levels - mu) / math.sqrt(w @ (levels - mu) ** 2))
            check_interior_root(res.policy, prob.ref[0], pref, beta, penalty)
            assert brute.gap(pref, res.policy, prob.ref[0], beta, penalty) < TOL


@pytest.mark.parametrize("penalty", ["k3", "k2", "abs"])
def test_infinite_group_degenerate_mixtures(penalty):
    # A single reward class that is a point mass: sigma_w = 0 and P_inf is 0/0; every
    # output is the same, so pi_ref is the answer. And a problem whose mixture can reach a
    # point mass, where P_inf diverges: no NaN, no exception, a probability vector.
    algo = ga.GRPO(group_size=math.inf, beta=0.3, penalty=penalty)
    same = ga.Problem([0.5, 0.5], [0.0, 1.0, 2.0], [[0, 1, 0], [0, 1, 0]])
    res = ga.stationary_policy(same, algo)[0]
    assert res.success and res.residual == 0
    np.testing.assert_array_equal(res.policy, [0.5, 0.5])
    edge = ga.Problem([0.5, 0.3, 0.2], [0.0, 1.0, 2.0], [[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0]])
    res = ga.stationary_policy(edge, algo)[0]
    check_probability_vector(res.policy, edge.ref[0])
    assert not math.isnan(res.residual)
    if res.success:
        assert ga.stationarity_residual(edge, algo, res.policy)[0][0] < TOL


def test_preference_at_point_mass_has_no_nan():
    # public P_inf at a point-mass mixture: 0 on the drawn level, -inf for an output that
    # always draws below it, and never 0 * inf = NaN for outputs that never draw a level
    prob = ga.Problem([0.5, 0.5], [0.0, 1.0], [[0, 1], [1, 0]])
    pref = ga.preference(prob, ga.GRPO(group_size=math.inf), [1.0, 0.0])
    assert pref[0] == 0 and pref[1] == -math.inf


def test_spurious_roots_are_rejected_not_returned():
    # A k3 fixed point can have "solutions" with negative entries (section 9). Over many
    # problems every reported root must be a probability vector with positive denominators.
    rng = np.random.default_rng(13)
    for _ in range(12):
        prob = make_problem("general", rng)
        algo = ga.GRPO(group_size=int(rng.integers(2, 6)), beta=float(rng.choice([0.05, 0.2])))
        res = ga.stationary_policy(prob, algo)[0]
        assert res.success
        for root in res.roots:
            check_probability_vector(root.policy, prob.ref[0])
            pref = ga.preference(prob, algo, root.policy)
            check_interior_root(root.policy, prob.ref[0], pref, algo.beta, "k3")
