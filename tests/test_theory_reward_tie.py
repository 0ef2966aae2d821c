"""The penalty in the reward for two deterministic reward classes (theory/stationary/reward_tie):
checked against the tree solver (per-prefix Newton, an independent route), RLHF's closed form
for k1, and a dense brute-force count of the tie equation's sign changes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import grpo_align as ga

INF = math.inf
NORMS = ("shift_scale", "shift", "rloo", "raw")


def _binary(p0, low=0.0, high=1.0, split: bool = False) -> ga.Problem:
    """A correct (reward ``high``) and a wrong answer, as predict's classes; ``split``: each
    class over two outputs (k1 only keeps reference ratios inside a class)."""
    p0 = np.atleast_1d(np.asarray(p0, dtype=float))
    if split:
        ref = np.stack([0.4 * p0, 0.6 * p0, 0.5 * (1 - p0), 0.5 * (1 - p0)], axis=1)
        rewards = np.broadcast_to([high, high, low, low], ref.shape)
    else:
        ref = np.stack([p0, 1 - p0], axis=1)
        rewards = np.broadcast_to([high, low], ref.shape)
    prob = ga.Problem.from_rewards(ref if ref.shape[0] > 1 else ref[0], rewards if ref.shape[0] > 1 else rewards[0])
    return prob


def _field(z: float, p0: float, low: float, high: float, pen: str, algo: ga.GRPO) -> float:
    """d logit p / dt of expected softmax-logit ascent, by enumerating every group of G
    samples of the two answers (finite G), the penalty in the reward written out (eq. 10.7)."""
    from math import comb

    k = {"k1": lambda x: x, "k2": lambda x: x * x / 2, "k3": lambda x: math.exp(-x) + x - 1}[pen]
    p = 1.0 / (1.0 + math.exp(-z))
    log_p, log_q = -float(np.logaddexp(0.0, -z)), -float(np.logaddexp(0.0, z))  # 1 - p rounds to 0 at z 40
    r1 = high - algo.beta * k(log_p - math.log(p0))
    r0 = low - algo.beta * k(log_q - math.log(1 - p0))
    g = int(algo.group_size)
    total = 0.0
    for n1 in range(g + 1):
        r = np.array([r1] * n1 + [r0] * (g - n1))
        if algo.normalization == "rloo":
            adv = r - (r.sum() - r) / (g - 1)
        elif algo.normalization == "raw":
            adv = r
        else:
            adv = r - r.mean()
            if algo.normalization == "shift_scale":
                adv = adv / (r.std(ddof=algo.ddof) + algo.eps) if r.std() > 0 else 0.0 * adv
        # sum_i A_i d log pi(o_i) / dz with d log p/dz = 1 - p, d log(1 - p)/dz = -p
        grad = np.sum(adv[:n1]) * (1 - p) - np.sum(adv[n1:]) * p
        total += comb(g, n1) * p**n1 * (1 - p) ** (g - n1) * grad
    return total


def _reached_from_reference(p0: float, low: float, high: float, pen: str, algo: ga.GRPO) -> float:
    """Where the one-dimensional flow from p0 stops: the first sign change of the field
    going up (it points up at p0), scanned in steps of 0.05 in logit and bisected; 1.0
    past logit 30 (beyond, 1 - p < 1e-13 and the enumeration's rounding decides the sign)."""
    z = math.log(p0 / (1 - p0))
    assert _field(z + 1e-6, p0, low, high, pen, algo) > 0
    while z < 30.0:
        if _field(z + 0.05, p0, low, high, pen, algo) <= 0:
            lo, hi = z, z + 0.05
            for _ in range(30):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if _field(mid, p0, low, high, pen, algo) > 0 else (lo, mid)
            return 1.0 / (1.0 + math.exp(-0.5 * (lo + hi)))
        z += 0.05
    return 1.0


@pytest.mark.parametrize("pen", ["k1", "k2", "k3"])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("p0", [0.1, 0.3, 0.6])
def test_the_reported_policy_is_where_the_flow_from_the_reference_goes(pen: str, norm: str, p0: float) -> None:
    """The chosen root is the one the expected dynamics reach from pi_ref, checked by
    following the brute-force field (every group enumerated) up from p0."""
    algo = ga.GRPO(group_size=4, beta=0.4, normalization=norm, penalty=pen, penalty_in="reward", eps=1e-2)
    res = ga.stationary_policy(_binary(p0, low=-0.5, high=1.5), algo)
    want = _reached_from_reference(p0, -0.5, 1.5, pen, algo)
    got = float(res.policy[0, 0])
    if want == 1.0:
        assert got == 1.0 and res.status == ("boundary",)
    else:
        z_got, z_want = math.log(got / (1 - got)), math.log(want / (1 - want))
        assert abs(z_got - z_want) < 1e-6, (got, want)


def _cases():
    for norm in NORMS:
        for pen in ("k1", "k2", "k3"):
            for g, eps in ((2, 0.0), (4, 0.0), (4, 0.1), (INF, 0.0)):
                yield pytest.param(norm, pen, g, eps, id=f"{norm}-{pen}-G{g}-eps{eps:g}")


@pytest.mark.parametrize(("norm", "pen", "g", "eps"), list(_cases()))
def test_the_route_agrees_with_the_tree_solver(norm: str, pen: str, g: float, eps: float) -> None:
    prob = _binary([0.3, 0.85], low=-0.5, high=1.5, split=pen == "k1")
    algo = ga.GRPO(group_size=g, beta=0.4, normalization=norm, penalty=pen, penalty_in="reward", eps=eps)
    fast = ga.stationary_policy(prob, algo)
    tree = ga.stationary_policy(prob, algo, method="tree")
    assert fast.method == "scan" and tree.method == "tree"
    assert fast.success.all() and tree.success.all()
    if pen == "k1":  # one root: the same report
        np.testing.assert_allclose(fast.policy, tree.policy, rtol=0, atol=1e-7)
        assert fast.status == tree.status
    for c in range(len(fast)):
        # every root the tree solver finds, the route finds, with the same kind and stability
        for t in tree.roots[c]:
            same = [r for r in fast.roots[c] if np.max(np.abs(r.policy - t.policy)) < 1e-7]
            assert len(same) == 1, (t, fast.roots[c])
            assert same[0].kind == t.kind and same[0].stable == t.stable
        # and the stable roots are the same set
        assert sum(bool(r.stable) for r in fast.roots[c]) == sum(bool(r.stable) for r in tree.roots[c])


@pytest.mark.parametrize("beta", [1e-3, 0.05, 0.7, 30.0])
@pytest.mark.parametrize("norm", NORMS)
def test_k1_in_the_reward_is_rlhf(beta: float, norm: str) -> None:
    """k1: the modified rewards tie where logit p = logit p0 + gap / beta (RLHF's pooling)."""
    p0 = np.array([0.01, 0.3, 0.5, 0.97])
    res = ga.stationary_policy(
        _binary(p0, low=0.0, high=2.0, split=True),
        ga.GRPO(group_size=8, beta=beta, normalization=norm, penalty="k1", penalty_in="reward"),
    )
    assert res.success.all()
    z = np.log(p0) - np.log1p(-p0) + 2.0 / beta
    want = np.exp(-np.logaddexp(0.0, -z))
    np.testing.assert_allclose(res.policy[:, :2].sum(axis=1), want, rtol=1e-13, atol=1e-300)
    # reference ratios inside each class
    np.testing.assert_allclose(res.policy[:, 0] * 0.6, res.policy[:, 1] * 0.4, rtol=1e-14)
    assert all(len(r) == 1 and r[0].stable for r in res.roots)


def _brute_tie_roots(p0: float, gap: float, beta: float, pen: str) -> list[float]:
    """Sign changes of r'(correct) - r'(wrong) on a dense grid of p, written out from eq. 10.7."""
    k = {"k2": lambda x: x * x / 2, "k3": lambda x: np.exp(-x) + x - 1}[pen]
    p = np.concatenate([np.logspace(-12, -1, 20000), np.linspace(0.1, 0.9, 20000), 1 - np.logspace(-1, -12, 20000)])
    h = gap - beta * (k(np.log(p / p0)) - k(np.log((1 - p) / (1 - p0))))
    idx = np.nonzero(np.sign(h[:-1]) != np.sign(h[1:]))[0]
    return [float(0.5 * (p[i] + p[i + 1])) for i in idx]


@pytest.mark.parametrize("pen", ["k2", "k3"])
@pytest.mark.parametrize(("p0", "gap", "beta"), [(0.3, 1.0, 0.3), (0.02, 1.0, 0.05), (0.5, 0.2, 2.0), (0.9, 3.0, 0.01)])
def test_every_interior_root_is_found(pen: str, p0: float, gap: float, beta: float) -> None:
    brute = _brute_tie_roots(p0, gap, beta, pen)
    res = ga.stationary_policy(
        _binary(p0, high=gap), ga.GRPO(group_size=4, beta=beta, penalty=pen, penalty_in="reward", normalization="shift")
    )
    interior = sorted(float(r.policy[0]) for r in res.roots[0] if r.kind == "interior")
    assert len(interior) == len(brute)
    np.testing.assert_allclose(interior, brute, rtol=1e-3)
    # both vertices: h -> +inf as p -> 1 and -inf as p -> 0, so each is a stable boundary root
    vertices = sorted(float(r.policy[0]) for r in res.roots[0] if r.kind == "boundary")
    assert vertices == [0.0, 1.0]


def test_a_batch_equals_its_contexts_solved_one_by_one() -> None:
    rng = np.random.default_rng(7)
    p0 = rng.uniform(0.001, 0.999, 300)
    algo = ga.GRPO(group_size=8, beta=0.2, penalty="k3", penalty_in="reward", eps=1e-4)
    batch = ga.stationary_policy(_binary(p0), algo)
    for c in rng.choice(p0.size, 12, replace=False).tolist():
        one = ga.stationary_policy(_binary(p0[c]), algo)
        np.testing.assert_array_equal(batch.policy[c], one.policy[0])
        assert batch.status[c] == one.status[0] and batch.message[c] == one.message[0]
        assert [(r.kind, r.stable) for r in batch.roots[c]] == [(r.kind, r.stable) for r in one.roots[0]]


def test_a_root_beyond_double_resolution_still_succeeds() -> None:
    """k1 at beta 1e-3 puts the wrong answers at exp(-1000): the mass underflows, the residual
    is measured on the root's logit and the result says interior with pi(wrong) = 0."""
    res = ga.stationary_policy(_binary(0.3), ga.GRPO(group_size=8, beta=1e-3, penalty="k1", penalty_in="reward"))
    assert res.success[0] and res.status == ("sliding",)
    np.testing.assert_array_equal(res.policy[0, 1:], 0.0)
    assert res.residual[0] <= 1e-9 * 1000


def test_stochastic_rewards_still_go_to_the_tree_solver() -> None:
    prob = ga.Problem.from_bernoulli([0.2, 0.3, 0.5], [0.8, 0.5, 0.1])
    algo = ga.GRPO(group_size=2, beta=0.5, penalty="k1", penalty_in="reward", normalization="shift")
    assert ga.applicable_methods(prob, algo) == ("tree",)
    assert ga.applicable_methods(_binary(0.3), algo) == ("scan", "tree")
    # k2 with a class over two outputs: ties at x and -x, roots on every face (the tree's)
    k2 = ga.GRPO(group_size=2, beta=0.5, penalty="k2", penalty_in="reward")
    assert ga.applicable_methods(_binary(0.3, split=True), k2) == ("tree",)
    assert ga.applicable_methods(_binary(0.3), k2) == ("scan", "tree")


@pytest.mark.parametrize("pen", ["k2", "k3"])
def test_root_counts_match_the_brute_force_on_random_prompts(pen: str) -> None:
    """One batched solve against the dense sign-change count, prompt by prompt (pass rates,
    reward gaps and betas drawn over several decades)."""
    rng = np.random.default_rng(11 if pen == "k2" else 12)
    n = 40
    p0 = rng.uniform(0.02, 0.98, n)
    gap = 10.0 ** rng.uniform(-1, 0.5, n)
    beta = 10.0 ** rng.uniform(-1.5, 0.5, n)
    for c in range(n):
        res = ga.stationary_policy(
            _binary(p0[c], high=gap[c]), ga.GRPO(group_size=4, beta=float(beta[c]), penalty=pen, penalty_in="reward")
        )
        interior = sorted(float(r.policy[0]) for r in res.roots[0] if r.kind != "boundary")
        brute = _brute_tie_roots(float(p0[c]), float(gap[c]), float(beta[c]), pen)
        assert len(interior) == len(brute), (p0[c], gap[c], beta[c])
        np.testing.assert_allclose(interior, brute, rtol=1e-3)
