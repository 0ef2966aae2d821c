"""Every root for more than two reward levels (THEORY.md section 11): continuation in beta.

The expected roots come from an independent route: the fixed point w = T(w) of the
mixture map written out here (direct KL: class masses proportional to pi_ref exp(P_G/beta)),
evaluated on a dense grid of the mixture simplex, and each grid point where |T(w) - w| has a
local minimum polished by scipy's hybrid Powell method.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import root

import grpo_align as ga
from grpo_align.theory.preference import level_preference
from grpo_align.theory.stationary.newton import newton_candidates
from grpo_align.theory.stationary.reduction import Reduced


def _tmap(levels: np.ndarray, dist: np.ndarray, ref: np.ndarray, algo: ga.GRPO, w: np.ndarray) -> np.ndarray:
    """T(w) for w (N, L): P_G = F h(w), masses by the penalty's formula, mixture again."""
    h = level_preference(np.broadcast_to(levels, w.shape), w, algo)
    pref = h @ dist.T  # (N, J)
    if algo.penalty == "k3":
        raise NotImplementedError
    z = np.log(ref) + pref / algo.beta
    m = np.exp(z - z.max(axis=1, keepdims=True))
    m /= m.sum(axis=1, keepdims=True)
    return m @ dist


def _brute_roots(levels, dist, ref, algo, n):
    """Roots of T(w) = w: grid of spacing 1/n on the simplex, local minima of |T - w| polished."""
    n_lev = dist.shape[1]
    lattice = [(*c, n - sum(c)) for c in itertools.product(range(n + 1), repeat=n_lev - 1) if sum(c) <= n]
    index = {c: i for i, c in enumerate(lattice)}
    pts = np.clip(np.array(lattice) / n, 1e-9, None)
    pts /= pts.sum(axis=1, keepdims=True)
    val = np.max(np.abs(_tmap(levels, dist, ref, algo, pts) - pts), axis=1)
    # a grid point is a local minimum when none of its lattice neighbours (one unit moved
    # from level b to level a) is lower
    steps = [tuple((k == a) - (k == b) for k in range(n_lev)) for a in range(n_lev) for b in range(n_lev) if a != b]
    local = [
        i
        for i, c in enumerate(lattice)
        if all(
            val[i] <= val[j]
            for s in steps
            if (j := index.get(tuple(x + y for x, y in zip(c, s, strict=True)))) is not None
        )
    ]
    out: list[np.ndarray] = []
    for i in local:

        def fun(u):
            w = np.append(u, 1 - u.sum())
            if np.any(w < 0):
                return np.full(n_lev - 1, 10.0)
            return (_tmap(levels, dist, ref, algo, w[None])[0] - w)[:-1]

        sol = root(fun, pts[i, :-1], method="hybr", tol=1e-14)
        w = np.append(sol.x, 1 - sol.x.sum())
        ok = np.all(w >= 0) and np.max(np.abs(_tmap(levels, dist, ref, algo, w[None])[0] - w)) < 1e-12
        if ok and all(np.max(np.abs(w - r)) > 1e-7 for r in out):
            out.append(w)
    return out


def _fold_problem(beta: float) -> tuple[ga.Problem, ga.GRPO]:
    # a binary question (p0 0.1) whose direct-KL G = 32 branch folds twice, plus a third
    # class at the middle level: three stationary policies for beta in about (0.67, 0.76)
    eps = 0.02
    prob = ga.Problem.from_rewards([0.1 - eps / 2, 0.9 - eps / 2, eps], [1.0, 0.0, 0.5])
    return prob, ga.GRPO(group_size=32, beta=beta, penalty="kl")


def test_fold_three_roots_all_found_newton_alone_misses_one():
    prob, algo = _fold_problem(0.725)
    levels, dist, ref = prob.levels[0], prob.dist[0], prob.ref[0]
    # the roots are 0.007 or more from each other and from the simplex's edges; spacing
    # 1/300 gives each its own local minimum of |T - w| on the grid
    expected = _brute_roots(levels, dist, ref, algo, 300)
    assert len(expected) == 3
    res = ga.stationary_policy(prob, algo)[0]
    assert res.success, res.message
    got = [r.mixture for r in res.roots if r.residual <= r.tolerance]
    for e in expected:
        assert min(np.max(np.abs(e - g)) for g in got) < 1e-8
    assert len(got) == 3
    # the S-shaped branch: two folds, all three roots on the large-beta branch
    assert res.search is not None
    assert res.search.turning_points == 2
    assert res.search.branch_roots == 3
    assert res.search.ended == "below target"
    assert "all roots on the branch connected to large beta" in res.message
    assert "2 turning points" in res.message
    # the regression this guards: damped Newton from its starts reaches only two of them
    newton, _ = newton_candidates(Reduced(prob, algo))
    assert len(newton[0]) == 2
    # stability alternates along the S: stable, unstable (middle), stable
    stable = sorted((r.policy[0], r.stable) for r in res.roots)
    assert [s for _, s in stable] == [True, False, True]


@pytest.mark.parametrize("beta", [0.6, 0.8])
def test_outside_the_fold_one_root(beta):
    prob, algo = _fold_problem(beta)
    expected = _brute_roots(prob.levels[0], prob.dist[0], prob.ref[0], algo, 300)
    res = ga.stationary_policy(prob, algo)[0]
    got = [r.mixture for r in res.roots if r.residual <= r.tolerance]
    assert len(expected) == len(got) == 1
    np.testing.assert_allclose(got[0], expected[0], atol=1e-8, rtol=0)


@pytest.mark.parametrize("seed", range(6))
def test_random_three_and_four_levels_match_the_grid(seed):
    rng = np.random.default_rng(seed)
    n_lev = 3 + seed % 2
    levels = np.sort(rng.normal(size=n_lev))
    dist = rng.dirichlet(np.full(n_lev, 0.5), size=n_lev)
    ref = rng.dirichlet(np.ones(n_lev))
    algo = ga.GRPO(group_size=int(rng.choice([3, 5, 8])), beta=float(10 ** rng.uniform(-2, -0.5)), penalty="kl")
    prob = ga.Problem(ref, levels, dist)
    expected = _brute_roots(levels, dist, ref, algo, 40 if n_lev == 3 else 14)
    assert expected
    res = ga.stationary_policy(prob, algo)[0]
    assert res.success, res.message
    got = [r.mixture for r in res.roots if r.residual <= r.tolerance]
    for e in expected:
        assert min(np.max(np.abs(e - g)) for g in got) < 1e-8
    assert res.search is not None and res.search.steps > 0
