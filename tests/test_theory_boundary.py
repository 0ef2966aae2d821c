"""Stationary policies on faces of the simplex (THEORY.md section 9, KKT on the faces).

Direct KL at G = inf: near the vertex pi(correct) = 1 of a binary question, P_inf diverges
like 1/sqrt(1 - p) and beats the log pull of the penalty, so the stationarity function
h(p) = 1/sqrt(p (1 - p)) - beta (logit p - logit p0) (paper App. B.2) is positive all the
way to p = 1 for small beta: the vertex is the stationary policy. Every expectation below
is written by hand from the definitions, not taken from the solver.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

import grpo_align as ga


def h_binary(p: np.ndarray, p0: float, beta: float) -> np.ndarray:
    logit = np.log(p / (1 - p)) - math.log(p0 / (1 - p0))
    return 1 / np.sqrt(p * (1 - p)) - beta * logit


@pytest.mark.parametrize("penalty", ["kl", "k2"])
@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_direct_kl_at_infinite_group_runs_to_the_vertex(penalty, beta):
    grid = 1 - np.logspace(-15, np.log10(0.999), 4000)
    assert np.min(h_binary(grid, 0.3, beta)) > 0  # no interior root: mass runs to p = 1
    prob = ga.Problem.from_rewards([0.3, 0.7], [1.0, 0.0])
    res = ga.stationary_policy(prob, ga.GRPO(group_size=math.inf, beta=beta, penalty=penalty))[0]
    assert res.success and res.status == "boundary", res.message
    np.testing.assert_array_equal(res.policy, [1.0, 0.0])
    (root,) = res.roots
    assert root.boundary and root.stable is True


def test_larger_beta_keeps_the_interior_roots_and_reports_the_vertex_too():
    beta, p0 = 5.0, 0.3
    grid = np.linspace(1e-9, 1 - 1e-12, 200001)
    h = h_binary(grid, p0, beta)
    brackets = np.nonzero(np.sign(h[:-1]) != np.sign(h[1:]))[0]
    expected = [brentq(h_binary, grid[i], grid[i + 1], args=(p0, beta), xtol=1e-15) for i in brackets]
    assert len(expected) == 2
    prob = ga.Problem.from_rewards([p0, 1 - p0], [1.0, 0.0])
    res = ga.stationary_policy(prob, ga.GRPO(group_size=math.inf, beta=beta, penalty="kl"))[0]
    interior = sorted(r.policy[0] for r in res.roots if not r.boundary)
    np.testing.assert_allclose(interior, expected, rtol=1e-9)
    assert [r.policy.tolist() for r in res.roots if r.boundary] == [[1.0, 0.0]]
    # the interior stable root (h decreasing through it) is the one reported
    assert res.status == "interior"
    assert res.policy[0] == pytest.approx(expected[0], rel=1e-9)


def test_face_with_mixed_drained_class_and_its_kkt_by_perturbation():
    # output 1 always gets level 1; output 0 always 0; output 2 draws 0 or 1 (mean 0.5 < 1):
    # the face pi = (0, 1, 0) is certified. By hand: perturb toward pi_ref and watch the
    # drained outputs' g - c run to -inf as the perturbation shrinks.
    levels = np.array([0.0, 1.0, 2.0])
    dist = np.array([[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0]], dtype=float)
    ref = np.array([0.5, 0.3, 0.2])
    beta = 0.3
    prob = ga.Problem(ref, levels, dist)
    res = ga.stationary_policy(prob, ga.GRPO(group_size=math.inf, beta=beta, penalty="kl"))[0]
    assert res.success and res.status == "boundary", res.message
    np.testing.assert_array_equal(res.policy, [0.0, 1.0, 0.0])
    drained_gap = []
    for eps in (1e-4, 1e-8, 1e-12):
        pi = (1 - eps) * res.policy + eps * ref
        w = pi @ dist
        mu = w @ levels
        pref = dist @ ((levels - mu) / math.sqrt(w @ (levels - mu) ** 2))
        g = pref - beta * np.log(pi / ref)
        drained_gap.append(max(g[0], g[2]) - g[1])
    assert drained_gap[0] < 0 and drained_gap[1] < drained_gap[0] and drained_gap[2] < drained_gap[1]


def test_k3_never_reports_a_boundary():
    # k3's pull -beta pi_ref/pi beats 1/sqrt(1 - p): the closed form (THEORY.md section 6)
    prob = ga.Problem.from_rewards([0.3, 0.7], [1.0, 0.0])
    res = ga.stationary_policy(prob, ga.GRPO(group_size=math.inf, beta=0.5))[0]
    assert res.status == "interior" and res.policy[0] == pytest.approx(0.9, abs=1e-12)


def test_statuses_are_documented():
    assert ga.theory.stationary.STATUSES == ("interior", "boundary", "sliding", "limit", "failed")
