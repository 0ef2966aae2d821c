"""Property test (hypothesis): the k3 solver on random small problems.

For any reference policy, reward distributions, G and beta drawn below, the GRPO (k3)
solver must succeed and return a feasible policy that satisfies the stationarity
conditions of THEORY.md section 5 with P_G from brute-force enumeration (conftest.py).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grpo_align as ga


def simplex(n: int):
    """A probability vector with entries bounded away from 0 (the reference must be > 0)."""
    return st.lists(st.floats(0.05, 1.0), min_size=n, max_size=n).map(lambda x: np.asarray(x) / np.sum(x))


@st.composite
def problems(draw):
    n_out = draw(st.integers(2, 3))
    n_lev = draw(st.integers(2, 3))
    levels = sorted(draw(st.lists(st.integers(-4, 4), min_size=n_lev, max_size=n_lev, unique=True)))
    ref = draw(simplex(n_out))
    # reward distributions may put exact zeros on levels (deterministic rewards included)
    rows = []
    for _ in range(n_out):
        weights = draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0]), min_size=n_lev, max_size=n_lev))
        if sum(weights) == 0:
            weights[draw(st.integers(0, n_lev - 1))] = 1.0
        rows.append(np.asarray(weights) / sum(weights))
    return ga.Problem(ref, np.asarray(levels, dtype=float) * 0.5, np.stack(rows))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(
    prob=problems(),
    g=st.integers(2, 4),
    beta=st.sampled_from([0.05, 0.1, 0.3, 1.0, 3.0]),
    ddof=st.sampled_from([0, 1]),
    normalization=st.sampled_from(["shift_scale", "shift", "raw"]),
)
def test_k3_solver_property(prob, g, beta, ddof, normalization, brute):
    algo = ga.GRPO(group_size=g, beta=beta, ddof=ddof, normalization=normalization, penalty="k3")
    res = ga.stationary_policy(prob, algo)[0]
    assert res.success, res.message
    pi, ref = res.policy, prob.ref[0]
    assert np.all(pi > 0) and abs(pi.sum() - 1) < 1e-12
    pref = brute.preference(prob.levels[0], prob.dist[0], pi, g, normalization, ddof, 0.0)
    c = float(pi @ (pref - beta * (1 - ref / pi)))
    assert np.all(1 - (pref - c) / beta > 0)  # every k3 denominator positive (section 9)
    assert brute.gap(pref, pi, ref, beta, "k3") < 1e-9
    # outputs with identical reward distributions keep their reference ratio (section 5)
    for a in range(len(ref)):
        for b in range(a + 1, len(ref)):
            if np.array_equal(prob.dist[0][a], prob.dist[0][b]):
                assert abs(pi[a] / pi[b] - ref[a] / ref[b]) < 1e-9 * ref[a] / ref[b]
