"""The batch path for contexts with at most two reward classes (stationary/batch.py) against
the general scan path, context by context, and at G = inf next to the vertex."""

from __future__ import annotations

import math

import numpy as np
import pytest

import grpo_align as ga
import grpo_align.theory.stationary as st
from grpo_align.theory.closed_form import binary_limit_policy


def _general(problem: ga.Problem, algo: ga.GRPO) -> st.StationaryResult:
    """The general path (scan.py), the batch path switched off."""
    orig = st.batch_binary
    st.batch_binary = lambda red: None  # type: ignore[assignment]
    try:
        return st.stationary_policy(problem, algo)
    finally:
        st.batch_binary = orig  # type: ignore[assignment]


def _assert_same(problem: ga.Problem, algo: ga.GRPO) -> None:
    fast = st.stationary_policy(problem, algo)
    slow = _general(problem, algo)
    assert fast.status == slow.status
    assert fast.message == slow.message
    np.testing.assert_allclose(fast.policy, slow.policy, rtol=0, atol=1e-12)
    for a, b in zip(fast.roots, slow.roots, strict=True):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x.policy, y.policy, rtol=0, atol=1e-12)
            assert x.stable == y.stable


def _binary(p: np.ndarray) -> ga.Problem:
    return ga.Problem.from_bernoulli(ref=np.stack([p, 1 - p], 1), success=np.tile([1.0, 0.0], (p.size, 1)))


@pytest.mark.parametrize("penalty", ["k3", "k2", "kl"])
@pytest.mark.parametrize("group_size", [2, 16, 64, math.inf])
def test_batch_matches_general_binary(penalty: str, group_size: float) -> None:
    rng = np.random.default_rng(7)
    # small p_ref: k2 at G 16/64 and beta 0.5 has three roots there
    p = np.concatenate([rng.random(12), 10 ** rng.uniform(-8, -1, 12)])
    for beta in (0.05, 0.5):
        _assert_same(_binary(p), ga.GRPO(group_size=group_size, beta=beta, penalty=penalty))


def test_batch_has_multiple_roots() -> None:
    """The three-root case is exercised (the comparison above is not vacuous)."""
    res = st.stationary_policy(_binary(np.array([0.0275, 0.5])), ga.GRPO(group_size=16, beta=0.5, penalty="k2"))
    assert len(res.roots[0]) == 3 and [r.stable for r in res.roots[0]] == [True, False, True]
    assert len(res.roots[1]) == 1


@pytest.mark.parametrize(
    "algo",
    [
        ga.GRPO(group_size=8, beta=0.3, ddof=1, eps=1e-4),
        ga.GRPO(group_size=8, beta=0.3, normalization="shift"),
        ga.GRPO(group_size=8, beta=0.3, normalization="rloo", penalty="k2"),
        ga.GRPO(group_size=8, beta=0.3, normalization="raw"),
    ],
)
def test_batch_matches_general_bernoulli_and_variants(algo: ga.GRPO) -> None:
    rng = np.random.default_rng(3)
    n = 10
    ref = rng.dirichlet(np.ones(2), size=n)
    # two Bernoulli shapes (the shape is the pair of success probabilities)
    success = np.where(np.arange(n)[:, None] % 2 == 0, [[0.8, 0.3]], [[0.1, 0.6]])
    _assert_same(ga.Problem.from_bernoulli(ref=ref, success=success), algo)
    _assert_same(_binary(ref[:, 0]), algo)


def test_limit_near_vertex_matches_closed_form() -> None:
    """G = inf, k3: 1 - p ~ beta^2 (1 - p0)^2 next to the vertex; the root is carried in the
    smaller mass, so the residual check passes up to p0 = 1 - 1e-12 (it failed above 0.9996
    when the mass was solved as 1 - u)."""
    beta = 0.5
    eps = np.array([1e-1, 1e-3, 4e-4, 1e-4, 1e-6, 1e-9, 1e-12])
    p0 = 1.0 - eps
    res = st.stationary_policy(_binary(p0), ga.GRPO(group_size=math.inf, beta=beta))
    assert res.status == ("interior",) * eps.size
    # the wrong mass from THEORY.md section 6, 1 - p = (2 beta^2 e + 1 - S) / (2 (beta^2 + 1)) with
    # e = 1 - p0, S = sqrt(1 + a), a = 4 p0 e beta^2, rewritten without cancellation:
    # 2 beta^2 e + 1 - S = 2 beta^2 e (2 e + a / (1 + S)) / (1 + S)
    e = 1.0 - p0  # the reference mass of the wrong answer as the problem holds it
    a = 4 * p0 * e * beta**2
    s = np.sqrt(1 + a)
    wrong = 2 * beta**2 * e * (2 * e + a / (1 + s)) / (1 + s) / (2 * (beta**2 + 1))
    np.testing.assert_allclose(res.policy[:, 1], wrong, rtol=1e-9)
    for q, r in zip(p0[:3], res.policy[:3, 0], strict=True):
        assert r == pytest.approx(binary_limit_policy(float(q), beta), abs=1e-12)


def test_class_partition_peeling_matches_the_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    """Classes found by exact row comparison (few per context) against the hash sort."""
    from grpo_align.theory.stationary import reduction

    rng = np.random.default_rng(11)
    problems = []
    for trial in range(60):
        n_ctx, n_out, n_lev = int(rng.integers(1, 5)), int(rng.integers(1, 9)), int(rng.integers(2, 5))
        levels = np.sort(rng.choice(10, n_lev, replace=False)).astype(float)
        ref = rng.dirichlet(np.ones(n_out), n_ctx)
        if trial % 2:
            problems.append(ga.Problem.from_rewards(ref=ref, rewards=rng.choice(levels, size=(n_ctx, n_out))))
        else:
            rows = rng.dirichlet(np.ones(n_lev), size=(n_ctx, 3))[:, rng.integers(0, 3, n_out)]
            problems.append(ga.Problem(ref=ref, levels=np.tile(levels, (n_ctx, 1)), dist=rows))
    peeled = [reduction.class_partition(p) for p in problems]
    monkeypatch.setattr(reduction, "PEEL_MAX", 0)  # every problem takes the sort
    for p, got in zip(problems, peeled, strict=True):
        for a, b in zip(got, reduction.class_partition(p), strict=True):
            np.testing.assert_array_equal(a, b)


def test_large_batch_matches_general_on_a_sample() -> None:
    """A batch above ``LAZY_FROM`` (one root per context, lazily built roots): a sample of
    its contexts against the general path, and the root counts without building roots."""
    from grpo_align.theory.stationary.batch import LAZY_FROM

    rng = np.random.default_rng(5)
    p = np.concatenate([rng.random(LAZY_FROM), 10 ** rng.uniform(-12, -1, 200)])
    algo = ga.GRPO(group_size=8, beta=0.5)
    fast = st.stationary_policy(_binary(p), algo)
    assert np.array_equal(fast.root_counts(), [len(r) for r in fast.roots])
    pick = np.concatenate([rng.choice(LAZY_FROM, 20, replace=False), LAZY_FROM + np.arange(0, 200, 10)])
    slow = _general(_binary(p[pick]), algo)
    assert tuple(fast.status[i] for i in pick) == slow.status
    np.testing.assert_allclose(fast.policy[pick], slow.policy, rtol=0, atol=1e-12)
    # the wrong mass next to the vertex to 1e-12 relative as well
    np.testing.assert_allclose(fast.policy[pick, 0], slow.policy[:, 0], rtol=1e-12, atol=0)


@pytest.mark.parametrize("rewards", [[1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.5, 0.0, 1.0]])
def test_shared_partition_matches_per_context(rewards: list[float]) -> None:
    """Contexts with identical reward rows share one partition (stride 0); it must equal
    the partition of each context found on its own, and the reduction built on it."""
    from grpo_align.theory.stationary.reduction import Reduced, class_partition

    rng = np.random.default_rng(5)
    n_ctx, k = 7, len(rewards)
    ref = rng.dirichlet(np.ones(k), n_ctx)
    ref[2, 0] = 0.0  # an output outside the support keeps its class
    ref[2] /= ref[2].sum()
    batch = ga.Problem.from_rewards(ref=ref, rewards=np.tile(rewards, (n_ctx, 1)))
    class_of, ref_mass, class_dist = class_partition(batch)
    assert class_of.strides[0] == 0  # the shared path was taken
    for c in range(n_ctx):
        one = ga.Problem.from_rewards(ref=ref[c], rewards=rewards)
        c_of, r_m, c_d = class_partition(one)
        np.testing.assert_array_equal(class_of[c], c_of[0])
        np.testing.assert_allclose(ref_mass[c], r_m[0], rtol=1e-15, atol=0)
        np.testing.assert_array_equal(class_dist[c], c_d[0])
    algo = ga.GRPO(group_size=4, beta=0.5)
    red = Reduced(batch, algo)
    masses = rng.dirichlet(np.ones(ref_mass.shape[1]), n_ctx)
    expected = np.take_along_axis(masses, np.ascontiguousarray(class_of), axis=1) * red.within
    # policy forms (m_j / R_j) pi_ref, this m_j (pi_ref / R_j): two roundings each, so at
    # most 4 * 2^-53 apart relative
    np.testing.assert_allclose(red.policy(masses), expected, rtol=4 * 2.0**-53, atol=0)
    if ref_mass.shape[1] <= 2:
        _assert_same(batch, algo)


@pytest.mark.parametrize("penalty", ["k3", "kl", "k2"])
@pytest.mark.parametrize("group_size", [2, 8, 16])
def test_shared_check_agrees_with_generic_residual(penalty: str, group_size: int) -> None:
    """The two-class residual of the shared path (residual.shared_check) against the generic
    residual and tolerance (residual.py: extended-precision P_G through the level table), on
    random policies (not only solved ones) of batches with shared reward rows."""
    from grpo_align.theory.stationary import residual as rs
    from grpo_align.theory.stationary.residual import (
        preference_2d,
        residual_given,
        residual_tolerance,
    )

    rng = np.random.default_rng(11)
    algo = ga.GRPO(group_size=group_size, beta=0.3, penalty=penalty)
    for problem in (
        _binary(rng.random(200)),
        ga.Problem.from_bernoulli(ref=rng.dirichlet(np.ones(2), 200), success=np.tile([0.8, 0.3], (200, 1))),
    ):
        for pi in (rng.dirichlet(np.ones(2), 200), st.stationary_policy(problem, algo).policy):
            got = rs.shared_check(problem, algo, pi, problem.levels[0])
            assert got is not None
            res, mult, tol = got
            pref = preference_2d(problem, algo, pi)
            res_g, mult_g = residual_given(problem, algo, pi, pref)
            tol_g = residual_tolerance(problem, algo, pi, pref, st.RESIDUAL_TOLERANCE)
            # both evaluate P_G in extended precision: they differ by double rounding of the
            # terms (a few ulps of the term scale), far below the tolerance
            np.testing.assert_allclose(res, res_g, rtol=0, atol=1e-14 * tol_g.max() / 1e-9)
            np.testing.assert_allclose(mult, mult_g, rtol=0, atol=1e-14 * tol_g.max() / 1e-9)
            np.testing.assert_allclose(tol, tol_g, rtol=1e-12, atol=0)


@pytest.mark.parametrize("penalty", ["k3", "kl"])
def test_shared_check_flags_a_perturbed_policy(penalty: str) -> None:
    """A solved policy passes the shared check; the same policy moved by 1e-6 (relative,
    renormalised) fails it in every context: the check is not the solve's bookkeeping."""
    from grpo_align.theory.stationary import residual as rs

    rng = np.random.default_rng(12)
    problem = _binary(rng.uniform(0.01, 0.99, 500))
    algo = ga.GRPO(group_size=8, beta=0.5, penalty=penalty)
    res = st.stationary_policy(problem, algo)
    assert bool(np.all(res.success))
    ok = rs.shared_check(problem, algo, res.policy, problem.levels[0])
    assert ok is not None and bool(np.all(ok[0] <= ok[2]))
    moved = res.policy * np.array([1 + 1e-6, 1.0])
    moved /= moved.sum(axis=1, keepdims=True)
    bad = rs.shared_check(problem, algo, moved, problem.levels[0])
    assert bad is not None and bool(np.all(bad[0] > bad[2]))


@pytest.mark.parametrize("penalty", ["k3", "kl", "k2"])
def test_one_context_check_agrees_and_flags(penalty: str) -> None:
    """The one-context two-class residual (residual.one_context_check) against the generic
    residual and tolerance on random and solved policies, and a solved policy moved by 1e-6
    on one output (renormalised) fails it."""
    from grpo_align.theory.stationary import residual as rs
    from grpo_align.theory.stationary.reduction import Reduced
    from grpo_align.theory.stationary.residual import preference_2d, residual_given, residual_tolerance

    rng = np.random.default_rng(13)
    n_out = 5000
    problem = ga.Problem.from_rewards(rng.dirichlet(np.ones(n_out)), (rng.random(n_out) < 0.3).astype(float))
    algo = ga.GRPO(group_size=8, beta=0.5, penalty=penalty)
    red = Reduced(problem, algo)
    solved = st.stationary_policy(problem, algo)
    assert bool(np.all(solved.success))
    for pi in (rng.dirichlet(np.ones(n_out))[None, :], solved.policy):
        got = rs.one_context_check(problem, algo, pi, red.class_of, red.dist[0], problem.levels[0])
        assert got is not None
        pref = preference_2d(problem, algo, pi)
        res_g, mult_g = residual_given(problem, algo, pi, pref)
        tol_g = residual_tolerance(problem, algo, pi, pref, st.RESIDUAL_TOLERANCE)
        # differ only by the rounding of K-term sums of O(term scale) numbers
        np.testing.assert_allclose(got[0], res_g, rtol=0, atol=1e-12 * tol_g.max() / 1e-9)
        np.testing.assert_allclose(got[1], mult_g, rtol=0, atol=1e-12 * tol_g.max() / 1e-9)
        np.testing.assert_allclose(got[2], tol_g, rtol=1e-12, atol=0)
    ok = rs.one_context_check(problem, algo, solved.policy, red.class_of, red.dist[0], problem.levels[0])
    assert ok is not None and ok[0][0] <= ok[2][0]
    moved = solved.policy.copy()
    moved[0, int(np.argmax(moved[0]))] *= 1 + 1e-6
    moved /= moved.sum()
    bad = rs.one_context_check(problem, algo, moved, red.class_of, red.dist[0], problem.levels[0])
    assert bad is not None and bad[0][0] > bad[2][0]


@pytest.mark.parametrize("penalty", ["k3", "kl", "k2"])
@pytest.mark.parametrize("group_size", [2, 8, 64])
def test_bracket_matches_searchsorted(penalty: str, group_size: int) -> None:
    """tables.bracket (interpolated guess on a uniform grid of the table's values, checked
    against the table) gives the interval of a binary search, on every monotone piece of
    the side tables: random targets, the table values themselves and their neighbours."""
    from grpo_align.theory.stationary import tables as tb

    rng = np.random.default_rng(14)
    algo = ga.GRPO(group_size=group_size, beta=0.3, penalty=penalty)
    shape = tb.Shape(np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), algo)
    for side in (0, 1):
        for _, _, _, vv, index in tb.cached_pieces(shape, penalty, algo.beta, side):
            t = np.concatenate(
                [rng.uniform(vv[0], vv[-1], 5000), vv, np.nextafter(vv, np.inf), np.nextafter(vv, -np.inf)]
            )
            t = t[(t >= vv[0]) & (t <= vv[-1])]
            want = np.clip(np.searchsorted(vv, t, side="right") - 1, 0, vv.size - 2)
            np.testing.assert_array_equal(tb.bracket(vv, index, t), want)


@pytest.mark.parametrize("n_classes", [1, 2, 3])
def test_one_context_partition_matches_the_batch_route(n_classes: int) -> None:
    """class_partition of one context (the two-class comparison route, or its fallback)
    equals the partition of the same context inside a batch of two different contexts
    (the generic peel), and puts outputs in one class exactly when their reward rows are equal."""
    from grpo_align.theory.stationary.reduction import class_partition

    rng = np.random.default_rng(15)
    rows = rng.random((n_classes, 2))
    rows /= rows.sum(axis=1, keepdims=True)
    n_out = 400
    pick = rng.integers(0, n_classes, n_out)
    pick[rng.integers(1, n_out)] = n_classes - 1  # every class present, not first
    dist = rows[pick][None]
    ref = rng.dirichlet(np.ones(n_out))[None]
    class_of, ref_mass, class_dist = class_partition(ga.Problem(ref=ref[0], levels=[0.0, 1.0], dist=dist[0]))
    other = np.full((1, n_out, 2), 0.5)
    batch = ga.Problem(ref=np.concatenate([ref, ref]), levels=[[0.0, 1.0]] * 2, dist=np.concatenate([dist, other]))
    b_class_of, b_ref_mass, b_class_dist = class_partition(batch)
    np.testing.assert_array_equal(class_of[0], b_class_of[0])
    np.testing.assert_array_equal(ref_mass[0], b_ref_mass[0, : ref_mass.shape[1]])
    np.testing.assert_array_equal(class_dist[0], b_class_dist[0, : class_dist.shape[1]])
    same_rows = pick[:, None] == pick[None, :]
    np.testing.assert_array_equal(class_of[0][:, None] == class_of[0][None, :], same_rows)
    np.testing.assert_allclose(ref_mass[0][class_of[0]], np.bincount(pick, weights=ref[0])[pick], rtol=1e-14)


def test_bracket_on_a_table_spanning_the_double_range() -> None:
    """A piece whose value span overflows a double takes the binary search (the index
    grid is not finite there), with the same answer."""
    from grpo_align.theory.stationary import tables as tb

    vv = np.array([-1.7e308, -1.0, 0.0, 1.0, 1.7e308])
    t = np.array([-1e308, -0.5, 0.5, 1.7e308, -1.7e308, 1.0])
    want = np.clip(np.searchsorted(vv, t, side="right") - 1, 0, vv.size - 2)
    np.testing.assert_array_equal(tb.bracket(vv, tb.value_index(vv), t), want)


K3 = ga.GRPO(group_size=8, beta=0.5)


def _one_context(rows: np.ndarray, pick: np.ndarray, ref: np.ndarray) -> ga.Problem:
    return ga.Problem(ref=ref, levels=[0.0, 1.0], dist=rows[pick])


@pytest.mark.parametrize("n_out", [8192, 8193, 12345])
def test_two_class_split_matches_the_partition(n_out: int) -> None:
    """The one-context two-class split (``Reduced.split``: block comparison, signed
    reference) against ``class_partition`` (the peel): the same classes, numbering and rows; class masses against
    math.fsum; signed zeros compare equal; a third row or a single class gives None."""
    from grpo_align.theory.stationary import reduction

    rng = np.random.default_rng(21)
    row_sets = [
        np.array([[1.0, 0.0], [0.0, 1.0]]),
        np.array([[0.0, 1.0], [1.0, 0.0]]),
        np.array([[0.3, 0.7], [0.75, 0.25]]),
        np.array([[0.5, 0.5], [np.nextafter(0.5, 1.0), np.nextafter(0.5, 0.0)]]),  # one ulp apart
    ]
    for rows in row_sets:
        for share in (0.3, 0.999, 1e-3):  # a class below 1/16 of the mass is summed directly
            pick = (rng.random(n_out) < share).astype(int)
            pick[rng.integers(1, n_out)] = 1 - pick[0]  # both classes present
            ref = rng.dirichlet(np.ones(n_out))
            problem = _one_context(rows, pick, ref)
            red = reduction.Reduced(problem, K3)
            assert red.split is not None
            split, ref_mass, class_dist = red.split, red.ref_mass, red.class_dist
            class_of, want_mass, want_dist = reduction.class_partition(problem)
            np.testing.assert_array_equal(split.mask, class_of[0] == 1)
            np.testing.assert_array_equal(class_dist, want_dist)
            pr = problem.ref[0]
            exact = [math.fsum(pr[class_of[0] == j]) for j in (0, 1)]
            # pairwise sums (S +- D) / 2, or for a class under 1/16 of the mass its own sum and
            # S minus it: a few eps
            np.testing.assert_allclose(ref_mass[0], exact, rtol=2e-15, atol=0)
            np.testing.assert_allclose(want_mass[0], exact, rtol=1e-12, atol=0)
            np.testing.assert_array_equal(split.signed_ref, np.where(split.mask, -pr, pr))
            assert split.ref_total == pytest.approx(math.fsum(pr), rel=1e-15)
    # -0.0 and 0.0 are one reward row, as for ==
    dist = np.tile([1.0, 0.0], (n_out, 1))
    dist[::3] = [0.0, 1.0]
    dist[1::3, 1] = -0.0
    uniform = np.full(n_out, 1.0 / n_out)
    split_z = reduction.Reduced(ga.Problem(ref=uniform, levels=[0.0, 1.0], dist=dist), K3).split
    assert split_z is not None and int(np.count_nonzero(split_z.mask)) in (len(dist[::3]), n_out - len(dist[::3]))
    # a third row anywhere (also in the tail past the last block), or one class: None
    for where in (n_out // 2, n_out - 1):
        three = dist.copy()
        three[where] = [0.5, 0.5]
        assert reduction.Reduced(ga.Problem(ref=uniform, levels=[0.0, 1.0], dist=three), K3).split is None
    one_class = ga.Problem(ref=uniform, levels=[0.0, 1.0], dist=np.tile([0.2, 0.8], (n_out, 1)))
    assert reduction.Reduced(one_class, K3).split is None


def test_two_class_route_policy_and_check() -> None:
    """residual.two_class_route / two_class_check (one context split in two classes, k3):
    pi as Reduced.policy rounds it; the residual, multiplier and tolerance against the
    generic ones on random and solved policies; a solved policy with any one of the four
    class extremes of pi_ref / pi moved by 1e-6, or with both class masses moved by 1e-6
    (reference ratios kept), fails; a zero pi_ref or pi gives None."""
    from grpo_align.theory.stationary import residual as rs
    from grpo_align.theory.stationary.reduction import Reduced
    from grpo_align.theory.stationary.residual import preference_2d, residual_given, residual_tolerance

    rng = np.random.default_rng(22)
    n_out = 9000
    problem = ga.Problem.from_rewards(rng.dirichlet(np.ones(n_out)), (rng.random(n_out) < 0.3).astype(float))
    for algo in (ga.GRPO(group_size=8, beta=0.5), ga.GRPO(group_size=2, beta=0.05), ga.GRPO(group_size=16, beta=4.0)):
        red = Reduced(problem, algo)
        assert red.split is not None
        levels, rows = problem.levels[0], red.dist[0]
        masses = rng.dirichlet(np.ones(2))[None]
        got = rs.two_class_route(red, masses, levels)
        assert got is not None
        np.testing.assert_array_equal(got[0], red.policy(masses))
        solved = st.stationary_policy(problem, algo)
        assert bool(np.all(solved.success))
        for pi in (rng.dirichlet(np.ones(n_out))[None], got[0], solved.policy):
            checked = rs.two_class_check(problem, algo, pi[0], red.split, rows, levels)
            assert checked is not None
            pref = preference_2d(problem, algo, pi)
            res_g, mult_g = residual_given(problem, algo, pi, pref)
            tol_g = residual_tolerance(problem, algo, pi, pref, st.RESIDUAL_TOLERANCE)
            # differ by the rounding of K-term sums of O(term scale) numbers
            np.testing.assert_allclose(checked[0], res_g, rtol=0, atol=1e-12 * tol_g.max() / 1e-9)
            np.testing.assert_allclose(checked[1], mult_g, rtol=0, atol=1e-12 * tol_g.max() / 1e-9)
            np.testing.assert_allclose(checked[2], tol_g, rtol=1e-12, atol=0)
        ok = rs.two_class_check(problem, algo, solved.policy[0], red.split, rows, levels)
        assert ok is not None and ok[0][0] <= ok[2][0]
        ratio = problem.ref[0] / solved.policy[0]
        for cls in (False, True):
            members = np.nonzero(red.split.mask == cls)[0]
            for o in (members[np.argmax(ratio[members])], members[np.argmin(ratio[members])]):
                for step in (1e-6, -1e-6):
                    moved = solved.policy[0].copy()
                    moved[o] *= 1 + step
                    moved /= moved.sum()
                    bad = rs.two_class_check(problem, algo, moved, red.split, rows, levels)
                    assert bad is not None and bad[0][0] > bad[2][0], (cls, o, step)
        shifted = solved.policy[0] * np.where(red.split.mask, 1 + 1e-6, 1.0)
        shifted /= shifted.sum()
        bad = rs.two_class_check(problem, algo, shifted, red.split, rows, levels)
        assert bad is not None and bad[0][0] > bad[2][0]
        drained = solved.policy[0].copy()
        drained[3] = 0.0
        assert rs.two_class_check(problem, algo, drained, red.split, rows, levels) is None
    ref = rng.dirichlet(np.ones(n_out))
    ref[7] = 0.0
    zero = ga.Problem.from_rewards(ref / ref.sum(), (rng.random(n_out) < 0.3).astype(float))
    red = Reduced(zero, ga.GRPO(group_size=8, beta=0.5))
    assert red.split is not None
    assert rs.two_class_route(red, np.array([[0.4, 0.6]]), zero.levels[0]) is None


@pytest.mark.parametrize("penalty", ["k3", "kl"])
def test_one_context_many_outputs_matches_general(penalty: str) -> None:
    """One context with 10^4 outputs in two classes (the split route, for k3 its own policy
    and check) against the general path, also with an output of pi_ref = 0."""
    rng = np.random.default_rng(23)
    n_out = 10_000
    for zero in (False, True):
        ref = rng.dirichlet(np.ones(n_out))
        if zero:
            ref[11] = 0.0
            ref /= ref.sum()
        problem = ga.Problem.from_bernoulli(ref, np.where(rng.random(n_out) < 0.4, 0.9, 0.2))
        for beta in (0.05, 0.5):
            algo = ga.GRPO(group_size=8, beta=beta, penalty=penalty)
            _assert_same(problem, algo)
            fast = st.stationary_policy(problem, algo)
            assert not np.any(np.signbit(fast.policy))  # no -0.0 from the signed reference


def test_two_class_check_class_sums_by_bounds() -> None:
    """two_class_check takes the class sums of pi from R_j and the class extremes of
    pi_ref / pi when those agree to 8 eps (a solved policy): the same residual, multiplier
    and tolerance as with the sums over the outputs; a policy spread by 1e-11 inside a
    class takes the sums (and, stationary to 1e-11, passes)."""
    from grpo_align.theory.stationary import residual as rs
    from grpo_align.theory.stationary.reduction import Reduced

    rng = np.random.default_rng(24)
    n_out = 9000
    problem = ga.Problem.from_bernoulli(rng.dirichlet(np.ones(n_out)), np.where(rng.random(n_out) < 0.2, 0.7, 0.1))
    algo = ga.GRPO(group_size=8, beta=0.5)
    red = Reduced(problem, algo)
    assert red.split is not None
    solved = st.stationary_policy(problem, algo).policy[0]
    spread = solved.copy()
    spread[int(np.nonzero(~red.split.mask)[0][0])] *= 1 + 1e-11

    def class_spread(pi: np.ndarray) -> float:
        r = problem.ref[0] / pi
        return max(float(np.max(r[m]) / np.min(r[m])) - 1 for m in (red.split.mask, ~red.split.mask))

    assert class_spread(solved) <= 4 * 2.0**-52 < 1e-12 < class_spread(spread)
    for pi in (solved, spread):
        got = rs.two_class_check(problem, algo, pi, red.split, red.dist[0], problem.levels[0])
        # a negative spread: always the sums over the outputs
        want = rs.two_class_check(problem, algo, pi, red.split, red.dist[0], problem.levels[0], spread_for_bounds=-1.0)
        assert got is not None and want is not None
        assert got[0][0] <= got[2][0]
        # the enclosure's middle is within 4 eps of the sums (relative): c and the residual
        # move by a few eps times the term scale (about 1 here)
        np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-14)
        np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-14)
        np.testing.assert_allclose(got[2], want[2], rtol=1e-12, atol=0)


def test_repr_counts_roots_without_building_them() -> None:
    """``repr`` of a large batch's result reads the root counts (``root_counts``), never the
    roots themselves: building every root object of 10^6 contexts took minutes."""
    import dataclasses
    from collections.abc import Sequence

    class Unbuilt(Sequence):  # type: ignore[type-arg]
        counts = np.array([1, 2, 1])

        def __len__(self) -> int:
            return 3

        def __getitem__(self, c: object) -> object:
            raise AssertionError("a root was built")

    res = st.stationary_policy(_binary(np.array([0.2, 0.5, 0.7])), ga.GRPO(group_size=8, beta=0.5))
    text = repr(dataclasses.replace(res, roots=Unbuilt()))
    assert "roots=4 over 3 contexts" in text


def test_contexts_of_a_problem_equal_the_problem_built_from_them() -> None:
    """Problem.contexts (the solvers' unvalidated sub-batch) holds exactly what building the
    sub-batch through the validating constructor holds."""
    rng = np.random.default_rng(31)
    ref = rng.dirichlet(np.ones(3), 6)
    succ = rng.random((6, 3))
    seqs = [[(0,), (1, 2), (1, 3)]] * 6
    whole = ga.Problem.from_bernoulli(ref, succ, sequences=seqs)
    idx = np.array([4, 1, 1])
    sub = whole.contexts(idx)
    built = ga.Problem.from_bernoulli(ref[idx], succ[idx], sequences=[seqs[i] for i in idx])
    for name in ("ref", "levels", "dist"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(built, name))
    assert sub.sequences == built.sequences and sub.batched and not sub.is_preference
    pref = ga.Problem.from_preference(ref=[0.5, 0.5], win_prob=[[0.5, 0.7], [0.3, 0.5]])
    with pytest.raises(ga.InputError):
        pref.contexts(np.array([0]))


def test_several_roots_report_the_one_the_flow_reaches() -> None:
    """Two classes, k2 at G 32 (three roots near p0 = 0.01): at pi_ref the penalty's gradient
    is 0 and P_correct > P_wrong, so the flow raises p from p0 to the smallest root; that
    root, stable, is the one reported, for every prompt of the three-root region."""
    p0 = np.geomspace(0.004, 0.03, 40)
    res = st.stationary_policy(_binary(p0), ga.GRPO(group_size=32, beta=0.5, penalty="k2"))
    counts = res.root_counts()
    assert counts.max() == 3
    for c in np.nonzero(counts == 3)[0].tolist():
        lowest = min(res.roots[c], key=lambda r: r.policy[0])
        assert lowest.policy[0] > p0[c] and lowest.stable
        np.testing.assert_array_equal(res.policy[c], lowest.policy)
