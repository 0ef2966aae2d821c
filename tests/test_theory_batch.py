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
    monkeypatch.setattr(reduction, "_PEEL_MAX", 0)  # every problem takes the sort
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
