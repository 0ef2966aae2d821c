"""Batches of contexts with up to 8 outputs and several reward levels (the general path:
scan for two levels, continuation and damped Newton for more) against the same contexts
solved one at a time: every start and branch of a context runs on its own, so a batch must
report what each context alone reports."""

from __future__ import annotations

import math

import numpy as np
import pytest

import grpo_align as ga
import grpo_align.theory.stationary as st

#: Policies of a batch and of the context alone agree to this (the solves share no state;
#: the roots are refined to the rounding level, the acceptance test is 1e-9 relative).
ATOL = 1e-9


def _context(problem: ga.Problem, c: int) -> ga.Problem:
    return ga.Problem(problem.ref[c], problem.levels[c], problem.dist[c])


def _match(a: tuple[st.StationaryRoot, ...], b: tuple[st.StationaryRoot, ...]) -> None:
    """The same roots (in any order): policy, stability and face flag."""
    assert len(a) == len(b)
    for x in a:
        y = min(b, key=lambda r: float(np.max(np.abs(r.policy - x.policy))))
        np.testing.assert_allclose(x.policy, y.policy, rtol=0, atol=ATOL)
        assert x.stable == y.stable, (x, y)
        assert x.boundary == y.boundary
        assert (x.residual <= x.tolerance) == (y.residual <= y.tolerance)


def _assert_per_context(problem: ga.Problem, algo: ga.GRPO) -> st.StationaryResult:
    batch = st.stationary_policy(problem, algo)
    for c in range(problem.n_contexts):
        alone = st.stationary_policy(_context(problem, c), algo)
        assert batch.status[c] == alone.status[0], (c, batch.message[c], alone.message[0])
        assert bool(batch.success[c]) == bool(alone.success[0])
        np.testing.assert_allclose(batch.policy[c], alone.policy[0], rtol=0, atol=ATOL)
        _match(batch.roots[c], alone.roots[0])
        if problem.n_levels > 2:
            # the search record (continuation steps, turning points, where it ended) too
            assert batch.message[c] == alone.message[0]
    return batch


def _bernoulli(rng: np.random.Generator, n_ctx: int, n_out: int) -> ga.Problem:
    """Two levels, every output its own success probability per context, some outputs off."""
    ref = rng.dirichlet(np.ones(n_out), n_ctx)
    ref[rng.random((n_ctx, n_out)) < 0.15] = 0.0
    ref[:, 0] += 0.05
    ref /= ref.sum(axis=1, keepdims=True)
    success = rng.random((n_ctx, n_out))
    success[rng.random((n_ctx, n_out)) < 0.2] = 1.0  # some deterministic outputs
    return ga.Problem.from_bernoulli(ref=ref, success=success)


@pytest.mark.parametrize("penalty", ["k3", "k2", "kl"])
@pytest.mark.parametrize("n_out", [2, 4, 8])
def test_bernoulli_batches_match_each_context(penalty: str, n_out: int) -> None:
    rng = np.random.default_rng(n_out)
    prob = _bernoulli(rng, 24, n_out)
    _assert_per_context(prob, ga.GRPO(group_size=8, beta=0.5, penalty=penalty))


@pytest.mark.parametrize(("seed", "penalty"), [(0, "k2"), (0, "kl"), (1, "kl"), (2, "kl"), (4, "k2")])
def test_stability_next_to_a_vertex_does_not_depend_on_the_batch(seed: int, penalty: str) -> None:
    """Small beta: roots with class masses from 1e-12 down to 1e-50 and eigenvalues of their
    order. Projected orthonormally, those eigenvalues drowned in the heavy rows' rounding and
    their sign differed between a batch and the same context alone (10 of 864 roots)."""
    prob = _bernoulli(np.random.default_rng(seed), 24, 4)
    _assert_per_context(prob, ga.GRPO(group_size=8, beta=0.02, penalty=penalty))


def test_bernoulli_batch_with_three_roots_matches_each_context() -> None:
    # p_ref 0.0275 on 0/1 rewards: k2, G 16, beta 0.5 has three roots (two stable)
    rng = np.random.default_rng(3)
    ref = rng.dirichlet(np.ones(2), 12)
    ref[0] = [0.0275, 0.9725]
    ref[5] = [0.03, 0.97]
    success = rng.random((12, 2))
    success[0] = success[5] = [1.0, 0.0]
    batch = _assert_per_context(
        ga.Problem.from_bernoulli(ref=ref, success=success), ga.GRPO(group_size=16, beta=0.5, penalty="k2")
    )
    assert len(batch.roots[0]) == 3 and sorted(r.stable for r in batch.roots[0]) == [False, True, True]


@pytest.mark.parametrize("penalty", ["k3", "kl"])
def test_four_level_deterministic_batches_match_each_context(penalty: str) -> None:
    # deterministic rewards on four levels of the context's own (K = 4, L = 4)
    rng = np.random.default_rng(11)
    n_ctx = 16
    ref = rng.dirichlet(np.ones(4), n_ctx)
    ref[3, 2] = 0.0  # an output off the support
    ref[3] /= ref[3].sum()
    prob = ga.Problem.from_rewards(ref=ref, rewards=rng.random((n_ctx, 4)))
    _assert_per_context(prob, ga.GRPO(group_size=8, beta=0.3, penalty=penalty))


def test_three_level_batch_with_a_fold_matches_each_context() -> None:
    # the S-shaped branch of test_theory_continuation (three roots) among random contexts
    rng = np.random.default_rng(5)
    n_ctx = 10
    eps = 0.02
    ref = rng.dirichlet(np.ones(3), n_ctx)
    rewards = rng.choice([0.0, 0.5, 1.0], size=(n_ctx, 3))
    rewards[:, :] = [1.0, 0.0, 0.5]
    ref[0] = [0.1 - eps / 2, 0.9 - eps / 2, eps]
    prob = ga.Problem.from_rewards(ref=ref, rewards=rewards)
    batch = _assert_per_context(prob, ga.GRPO(group_size=32, beta=0.725, penalty="kl"))
    assert len(batch.roots[0]) == 3 and batch.search[0].turning_points == 2


def test_random_distribution_batch_matches_each_context() -> None:
    # every output its own distribution over three levels (K = 5 classes, L = 3)
    rng = np.random.default_rng(8)
    n_ctx = 10
    levels = np.sort(rng.normal(size=(n_ctx, 3)), axis=1)
    dist = rng.dirichlet(np.full(3, 0.5), size=(n_ctx, 5))
    ref = rng.dirichlet(np.ones(5), n_ctx)
    _assert_per_context(ga.Problem(ref, levels, dist), ga.GRPO(group_size=5, beta=0.1, penalty="kl"))


def test_boundary_batch_matches_each_context() -> None:
    # G = inf with direct KL: the vertex of 0/1 rewards is a boundary root (THEORY.md
    # section 9); beta 5, p_ref 0.3 has two interior roots besides
    rng = np.random.default_rng(2)
    n_ctx = 10
    ref = rng.dirichlet(np.ones(3), n_ctx)
    success = rng.random((n_ctx, 3))
    success[:, 2] = 0.0
    ref[0] = [0.3, 0.0, 0.7]
    success[0] = [1.0, 0.5, 0.0]
    batch = _assert_per_context(
        ga.Problem.from_bernoulli(ref=ref, success=success), ga.GRPO(group_size=math.inf, beta=5.0, penalty="kl")
    )
    assert sum(r.boundary for r in batch.roots[0]) == 1 and len(batch.roots[0]) == 3


def test_a_wrong_candidate_fails_its_own_context_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # every candidate is checked from scratch per context: a root moved by 1e-6 in one
    # context (and its branch roots withheld) must fail there, with a message, and leave
    # the other contexts as they were
    rng = np.random.default_rng(4)
    prob = ga.Problem.from_rewards(ref=rng.dirichlet(np.ones(4), 6), rewards=rng.random((6, 4)))
    algo = ga.GRPO(group_size=8, beta=0.3)
    clean = st.stationary_policy(prob, algo)
    orig_newton, orig_branch = st.newton_candidates, st.continuation_mixtures

    def newton(red):  # type: ignore[no-untyped-def]
        found, nit = orig_newton(red)
        moved = []
        for m in found[1]:
            m = m * (1.0 + 1e-6 * np.arange(m.size))
            moved.append(m / m.sum())
        found[1] = moved
        return found, nit

    def branch(red):  # type: ignore[no-untyped-def]
        mixtures, searches = orig_branch(red)
        mixtures[1] = []
        return mixtures, searches

    monkeypatch.setattr(st, "newton_candidates", newton)
    monkeypatch.setattr(st, "continuation_mixtures", branch)
    res = st.stationary_policy(prob, algo)
    assert res.status[1] == "failed" and not res.success[1]
    assert res.message[1].startswith("no stationary policy found to tolerance")
    assert res.residual[1] > 1e-9
    others = [c for c in range(6) if c != 1]
    assert all(res.success[others]) and all(clean.success)
    np.testing.assert_array_equal(res.policy[others], clean.policy[others])


def test_two_class_k3_masses_closed_form_against_bisection() -> None:
    # the closed form of k3's masses for two classes against bisection on its defining
    # equation R_1/d_1 + R_2/(d_1 + delta) = 1 (d_1 > 0) in extended precision: relative
    # precision on both masses, also where one is tiny (P spread far beyond beta); the
    # Newton route (three classes, one of them empty) finds the same root where its
    # denominators are not tiny against c / beta
    from grpo_align.theory.stationary.reduction import penalty_masses

    k3_masses = penalty_masses("k3")

    rng = np.random.default_rng(6)
    n = 2000
    pref = rng.normal(size=(n, 2)) * 10 ** rng.uniform(-2, 3, size=(n, 1))
    ref = rng.dirichlet(np.ones(2), n)
    ref[:4] = [[1e-300, 1.0], [1.0, 1e-300], [1e-12, 1 - 1e-12], [0.5, 0.5]]
    for beta in (1e-3, 0.5, 100.0):
        masses, _ = k3_masses(pref, ref, beta)
        ld = np.longdouble
        p, r = pref.astype(ld), ref.astype(ld)
        hi = np.argmax(pref, axis=1)
        rows = np.arange(n)
        delta = (p[rows, hi] - p[rows, 1 - hi]) / ld(beta)
        r_hi, r_lo = r[rows, hi], r[rows, 1 - hi]
        # f(d) = r_hi/d + r_lo/(d + delta) - 1 decreases in d > 0; f(r_hi) >= 0 >= f(r_hi + r_lo)
        lo_d, hi_d = r_hi.copy(), r_hi + r_lo
        for _ in range(200):  # bisection on log d: relative precision whatever the scale
            mid = np.sqrt(lo_d * hi_d)
            pos = r_hi / mid + r_lo / (mid + delta) - 1 > 0
            lo_d, hi_d = np.where(pos, mid, lo_d), np.where(pos, hi_d, mid)
        d = 0.5 * (lo_d + hi_d)
        m_hi, m_lo = r_hi / d, r_lo / (d + delta)
        s = m_hi + m_lo
        expect = np.empty((n, 2), dtype=ld)
        expect[rows, hi], expect[rows, 1 - hi] = m_hi / s, m_lo / s
        # a few roundings each (sqrt, divisions, the normalisation): 1e-14 relative, for
        # the masses in the normal double range (the 1e-300 reference mass ends below it)
        normal = expect > 1e-290
        rel = np.abs(masses - expect)[normal] / expect[normal]
        assert float(np.max(rel)) < 1e-14
        assert float(np.max(np.abs(masses - expect)[~normal], initial=0.0)) < 1e-290
        benign = np.all(pref / beta < 10, axis=1) & np.all(ref > 1e-6, axis=1)
        pad = np.zeros((int(benign.sum()), 1))
        newton, _ = k3_masses(np.hstack([pref[benign], pad]), np.hstack([ref[benign], pad]), beta)
        newton = newton[:, :2]
        # (Newton stops once its step is 1e-12 of the nearest denominator, so its masses
        # carry errors near 1e-10 relative: the same root, not the same digits)
        np.testing.assert_allclose(newton, masses[benign], rtol=1e-9, atol=0)
