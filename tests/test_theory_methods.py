"""Every solver of ``stationary_policy`` against problems with known solutions.

The known solutions are THEORY.md's closed forms (section 6: binary questions; section 7:
pairwise preferences; section 5: RLOO with k2 is RLHF's logarithmic pooling), its worked
numbers, and cases solvable by hand (one reward class; no regularisation; abs at G = 2).
Each is run with every method that ``applicable_methods`` lists for it.
"""

from __future__ import annotations

import doctest
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import grpo_align as ga
from grpo_align.errors import ConvergenceError, InputError
from grpo_align.theory import stationary as stationary_pkg
from grpo_align.theory.stationary import reduction

WIN = np.array([[0.0, 0.7, 0.2, 0.5], [0.2, 0.0, 0.6, 0.4], [0.7, 0.3, 0.0, 0.55], [0.4, 0.5, 0.35, 0.0]])
PREF_REF = np.array([0.1, 0.2, 0.3, 0.4])


def binary(p0: float) -> ga.Problem:
    return ga.Problem.from_rewards([p0, 1 - p0], [1.0, 0.0])


@dataclass(frozen=True)
class Case:
    """A problem, an algorithm, the expected policy (C, K) and how close it must be."""

    name: str
    problem: ga.Problem
    algo: ga.GRPO
    expected: Callable[[], np.ndarray]
    methods: tuple[str, ...]
    atol: float = 1e-9


def _three_levels() -> ga.Problem:
    rng = np.random.default_rng(3)
    return ga.Problem(rng.dirichlet(np.ones(4)), [0.0, 0.5, 1.5], rng.dirichlet(np.ones(3), size=4))


CASES = [
    # THEORY.md section 6 worked numbers (p0 = 0.3, beta = 0.5) and closed forms
    Case(
        "binary G=2",
        binary(0.3),
        ga.GRPO(group_size=2, beta=0.5),
        lambda: [[0.710977, 0.289023]],
        ("scan", "newton"),
        5e-7,
    ),
    Case(
        "binary G=8",
        binary(0.3),
        ga.GRPO(group_size=8, beta=0.5),
        lambda: [[ga.binary_policy(0.3, 0.5, 8), 1 - ga.binary_policy(0.3, 0.5, 8)]],
        ("scan", "newton"),
    ),
    Case("binary G=inf", binary(0.3), ga.GRPO(group_size=math.inf, beta=0.5), lambda: [[0.9, 0.1]], ("scan", "newton")),
    Case(
        "binary shift G=8",
        binary(0.3),
        ga.GRPO(group_size=8, beta=0.5, normalization="shift"),
        lambda: [[ga.binary_shift_policy(0.3, 0.5, 8), 1 - ga.binary_shift_policy(0.3, 0.5, 8)]],
        ("scan", "newton"),
    ),
    Case(
        "binary k2 G=2",
        binary(0.25),
        ga.GRPO(group_size=2, beta=1.0, penalty="k2"),
        lambda: [[0.475367, 0.524633]],
        ("scan", "newton"),
        5e-7,
    ),
    Case(
        "binary ddof1 G=2",
        binary(0.25),
        ga.GRPO(group_size=2, beta=1.0, ddof=1),
        lambda: [[0.422533, 0.577467]],
        ("scan", "newton"),
        5e-7,
    ),
    Case(
        "batch of binary questions",
        binary(0.3).__class__.from_rewards([[0.1, 0.9], [0.5, 0.5], [0.8, 0.2]], [[1.0, 0.0]] * 3),
        ga.GRPO(group_size=4, beta=0.7),
        lambda: [[p, 1 - p] for p in (ga.binary_policy(a, 0.7, 4) for a in (0.1, 0.5, 0.8))],
        ("scan", "newton"),
    ),
    # section 6: three deterministic outputs (L = 3)
    Case(
        "three outputs",
        ga.Problem.from_rewards([0.2, 0.3, 0.5], [1.0, 0.5, 0.0]),
        ga.GRPO(group_size=2, beta=0.5),
        lambda: [[0.653113, 0.155904, 0.190983]],
        ("newton",),
        5e-7,
    ),
    # section 5: RLOO's advantage is unbiased, so with k2 GRPO is RLHF's logarithmic pooling
    Case(
        "rloo k2 = rlhf",
        _three_levels(),
        ga.GRPO(group_size=3, beta=0.4, normalization="rloo", penalty="k2"),
        lambda: np.atleast_2d(ga.rlhf_policy(_three_levels(), 0.4)),
        ("newton",),
    ),
    Case(
        "rloo k2 = rlhf, binary",
        binary(0.2),
        ga.GRPO(group_size=5, beta=0.3, normalization="rloo", penalty="k2"),
        lambda: np.atleast_2d(ga.rlhf_policy(binary(0.2), 0.3)),
        ("scan", "newton"),
    ),
    # section 7: pairwise preferences at G = 2
    Case(
        "pairwise k3",
        ga.Problem.from_preference(PREF_REF, WIN),
        ga.GRPO(group_size=2, beta=0.3),
        lambda: [ga.pairwise_policy(PREF_REF, WIN, 0.3)],
        ("newton",),
    ),
    Case(
        "pairwise k2 = Nash",
        ga.Problem.from_preference(PREF_REF, WIN),
        ga.GRPO(group_size=2, beta=0.3, penalty="k2"),
        lambda: [ga.nash_policy(PREF_REF, WIN, 0.15)],
        ("newton",),
    ),
    # one reward class: P_G is the same everywhere, pi_ref is the only stationary policy
    Case(
        "one class k3",
        ga.Problem.from_rewards([0.2, 0.3, 0.5], [1.0, 1.0, 1.0]),
        ga.GRPO(group_size=4, beta=0.5),
        lambda: [[0.2, 0.3, 0.5]],
        ("scan", "newton"),
        0.0,
    ),
    Case(
        "one class abs",
        ga.Problem.from_rewards([0.2, 0.3, 0.5], [1.0, 1.0, 1.0]),
        ga.GRPO(group_size=4, beta=0.5, penalty="abs"),
        lambda: [[0.2, 0.3, 0.5]],
        ("proximal",),
        0.0,
    ),
    # abs at G = 2, binary: P_correct - P_wrong = 1 against the pull 2 beta (by hand):
    # the wrong answer drains for beta < 1/2, the reference stays for beta > 1/2
    Case(
        "abs drains",
        binary(0.3),
        ga.GRPO(group_size=2, beta=0.3, penalty="abs"),
        lambda: [[1.0, 0.0]],
        ("proximal",),
        1e-12,
    ),
    Case(
        "abs stays",
        binary(0.3),
        ga.GRPO(group_size=2, beta=0.8, penalty="abs"),
        lambda: [[0.3, 0.7]],
        ("proximal",),
        1e-12,
    ),
    # no regularisation: mass flows to the best reward class (deterministic: the top reward)
    Case(
        "beta 0",
        ga.Problem.from_rewards([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]], [[0.0, 1.0, -2.0], [3.0, -1.0, 2.5]]),
        ga.GRPO(group_size=3, beta=0.0),
        lambda: [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
        ("replicator",),
        0.0,
    ),
    Case(
        "k1, tie inside the best class",
        ga.Problem.from_rewards([0.2, 0.3, 0.5], [1.0, 1.0, 0.0]),
        ga.GRPO(group_size=4, beta=0.5, penalty="k1"),
        lambda: [[0.4, 0.6, 0.0]],
        ("replicator",),
        1e-12,
    ),
]

PAIRS = [(case, method) for case in CASES for method in case.methods]


@pytest.mark.parametrize(("case", "method"), PAIRS, ids=[f"{c.name}-{m}" for c, m in PAIRS])
def test_method_finds_the_known_solution(case: Case, method: str) -> None:
    assert method in ga.applicable_methods(case.problem, case.algo)
    res = ga.stationary_policy(case.problem, case.algo, method=method)
    assert res.method == method
    assert np.all(res.success), res.message
    np.testing.assert_allclose(res.policy, case.expected(), rtol=0, atol=case.atol)
    if method != "replicator":
        # the residual is recomputed from the policy alone (THEORY.md section 5)
        resid, _ = ga.stationarity_residual(case.problem, case.algo, res.policy)
        assert np.all(resid <= 1e-9 * 10), resid


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_applicable_methods_are_those_listed(case: Case) -> None:
    assert set(ga.applicable_methods(case.problem, case.algo)) == set(case.methods)
    # the default is the first applicable one
    assert ga.stationary_policy(case.problem, case.algo).method == ga.applicable_methods(case.problem, case.algo)[0]


def test_default_equals_its_named_method_exactly() -> None:
    prob = ga.Problem.from_bernoulli([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], [[0.9, 0.5, 0.1], [0.2, 0.8, 0.4]])
    algo = ga.GRPO(group_size=6, beta=0.3)
    a = ga.stationary_policy(prob, algo)
    b = ga.stationary_policy(prob, algo, method=a.method)
    np.testing.assert_array_equal(a.policy, b.policy)
    assert a.status == b.status and a.message == b.message


INAPPLICABLE = [
    ("scan", ga.Problem.from_rewards([0.2, 0.3, 0.5], [1.0, 0.5, 0.0]), ga.GRPO(group_size=2, beta=0.5)),
    ("scan", ga.Problem.from_preference(PREF_REF, WIN), ga.GRPO(group_size=2, beta=0.5)),
    ("newton", binary(0.3), ga.GRPO(group_size=2, beta=0.5, penalty="abs")),
    ("proximal", binary(0.3), ga.GRPO(group_size=2, beta=0.5)),
    ("replicator", binary(0.3), ga.GRPO(group_size=2, beta=0.5)),
    ("newton", binary(0.3), ga.GRPO(group_size=2, beta=0.0)),
    ("tree", binary(0.3), ga.GRPO(group_size=2, beta=0.5)),
    ("newton", binary(0.3), ga.GRPO(group_size=2, beta=0.5, penalty="k1", penalty_in="reward")),
    (
        "scan",
        ga.Problem.from_bernoulli(ref=[0.3, 0.7], success=[1.0, 0.0], sequences=[("a",), ("b", "c")]),
        ga.GRPO(group_size=2, beta=0.5),
    ),
]


def test_tree_is_a_method_like_the_others() -> None:
    """Sequences that matter and the penalty in the reward with random rewards list "tree"
    alone; naming it gives the result the default gives, and every status it reports is one
    of STATUSES. Two deterministic reward classes with the penalty in the reward default to
    "scan" (stationary.reward_tie) and still take "tree", which agrees."""
    seqs = ga.Problem.from_bernoulli(ref=[0.3, 0.7], success=[1.0, 0.0], sequences=[("a",), ("b", "c")])
    bern = ga.Problem.from_bernoulli(ref=[0.2, 0.3, 0.5], success=[0.8, 0.5, 0.1])
    for problem, algo in (
        (seqs, ga.GRPO(group_size=4, beta=0.5, aggregation="sequence_mean")),
        (bern, ga.GRPO(group_size=2, beta=0.5, penalty="k1", penalty_in="reward", normalization="shift")),
    ):
        assert ga.applicable_methods(problem, algo) == ("tree",)
        named = ga.stationary_policy(problem, algo, method="tree")
        default = ga.stationary_policy(problem, algo)
        np.testing.assert_array_equal(named.policy, default.policy)
        assert named.status == default.status and set(named.status) <= set(ga.theory.stationary.STATUSES)
    algo = ga.GRPO(group_size=4, beta=0.5, penalty="k1", penalty_in="reward")
    assert ga.applicable_methods(binary(0.3), algo) == ("scan", "tree")
    tree = ga.stationary_policy(binary(0.3), algo, method="tree")
    scan = ga.stationary_policy(binary(0.3), algo)
    assert scan.method == "scan" and tree.status == scan.status
    np.testing.assert_allclose(tree.policy, scan.policy, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("method", "problem", "algo"), INAPPLICABLE)
def test_inapplicable_method_is_an_input_error(method: str, problem: ga.Problem, algo: ga.GRPO) -> None:
    with pytest.raises(InputError) as info:
        ga.stationary_policy(problem, algo, method=method)
    assert info.value.field == "method"
    text = str(info.value)
    assert "\n" not in text and text.startswith("method: ")
    assert repr(method) in text
    for ok in ga.applicable_methods(problem, algo):
        assert repr(ok) in text


def test_unknown_method_is_an_input_error() -> None:
    with pytest.raises(InputError, match="method: expected one of 'scan', 'newton', 'proximal', 'replicator', 'tree'"):
        ga.stationary_policy(binary(0.3), ga.GRPO(), method="bisection")
    assert ga.METHODS == ("scan", "newton", "proximal", "replicator", "tree")


# ---------------------------------------------------------------- the result's context axis
def test_unbatched_result_has_one_context() -> None:
    res = ga.stationary_policy(binary(0.3), ga.GRPO(group_size=2, beta=0.5))
    assert res.policy.shape == (1, 2) and len(res) == 1
    assert res.success.shape == (1,) and res.success.dtype == bool
    assert res.residual.shape == (1,)
    assert isinstance(res.status, tuple) and isinstance(res.message, tuple) and isinstance(res.roots, tuple)
    assert len(res.status) == len(res.message) == len(res.roots) == 1
    ctx = res[0]
    assert isinstance(ctx, ga.StationaryContext)
    assert ctx.policy.shape == (2,) and ctx.success is True and ctx.status == "interior"
    assert isinstance(ctx.residual, float) and isinstance(ctx.message, str)
    assert ctx.roots == res.roots[0] and len(ctx.roots) == 1
    np.testing.assert_array_equal(ctx.policy, res.policy[0])
    assert "StationaryContext(success=True, status='interior'" in repr(ctx)
    assert repr(res).startswith("StationaryResult(success=True, method='scan'")


def test_batched_result_indexing_and_iteration() -> None:
    prob = ga.Problem.from_rewards([[0.1, 0.9], [0.5, 0.5], [0.8, 0.2]], [[1.0, 0.0]] * 3)
    res = ga.stationary_policy(prob, ga.GRPO(group_size=4, beta=0.7))
    assert len(res) == 3 and res.policy.shape == (3, 2)
    contexts = list(res)
    assert len(contexts) == 3
    for c, ctx in enumerate(contexts):
        np.testing.assert_array_equal(ctx.policy, res.policy[c])
        assert ctx.status == res.status[c] and ctx.roots == res.roots[c]
    np.testing.assert_array_equal(res[-1].policy, res.policy[2])
    with pytest.raises(IndexError):
        res[3]
    with pytest.raises(TypeError):
        res["policy"]  # type: ignore[index]
    assert "3 over 3 contexts" in repr(res)


def test_limit_result_has_the_context_axis() -> None:
    res = ga.stationary_policy(binary(0.3), ga.GRPO(group_size=2, beta=0.0))
    assert res.policy.shape == (1, 2) and res.status == ("limit",) and res.method == "replicator"
    assert res[0].roots[0].stable is True


# ---------------------------------------------------------------- reward classes
def test_reward_classes_in_lexicographic_order() -> None:
    prob = ga.Problem.from_rewards([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]], [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    # reward 1 is the row (0, 1) of dist, before reward 0 (1, 0)
    np.testing.assert_array_equal(ga.reward_classes(prob), [[0, 1, 0], [0, 0, 0]])
    rng = np.random.default_rng(0)
    for _ in range(50):
        n_ctx, n_out, n_lev = (int(x) for x in rng.integers(1, 6, size=3))
        base = rng.dirichlet(np.ones(n_lev), size=(n_ctx, 3))
        pick = rng.integers(0, 3, size=(n_ctx, n_out))
        dist = np.take_along_axis(base, pick[..., None], axis=1)
        prob = ga.Problem(
            rng.dirichlet(np.ones(n_out), size=n_ctx), np.tile(np.arange(n_lev, dtype=float), (n_ctx, 1)), dist
        )
        want = np.stack([np.unique(prob.dist[c], axis=0, return_inverse=True)[1].ravel() for c in range(n_ctx)])
        np.testing.assert_array_equal(ga.reward_classes(prob), want)
    pref = ga.Problem.from_preference(PREF_REF, WIN)
    np.testing.assert_array_equal(ga.reward_classes(pref), [[0, 1, 2, 3]])


# ---------------------------------------------------------------- closed-form oracles
def test_mirror_prox_reports_non_convergence() -> None:
    with pytest.raises(ConvergenceError, match="did not converge in 3 iterations"):
        ga.pairwise_policy(PREF_REF, WIN, 0.3, max_iter=3)
    with pytest.raises(ConvergenceError):
        ga.nash_policy(PREF_REF, WIN, 0.15, max_iter=3)
    assert issubclass(ConvergenceError, RuntimeError) and ga.ConvergenceError is ConvergenceError
    with pytest.raises(InputError, match="max_iter"):
        ga.pairwise_policy(PREF_REF, WIN, 0.3, max_iter=0)


# ---------------------------------------------------------------- docstring examples
@pytest.mark.parametrize("module", [stationary_pkg, reduction], ids=lambda m: m.__name__)
def test_docstring_examples(module) -> None:
    globs = {"Problem": ga.Problem, "GRPO": ga.GRPO, "np": np}
    failures, tried = doctest.testmod(module, extraglobs=globs, verbose=False)
    assert tried > 0 and failures == 0
