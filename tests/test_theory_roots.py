"""Roots the scan must not miss (THEORY.md section 9): a pair inside one grid cell.

Direct KL at G = inf on a binary question, p0 0.3: just above the fold beta* (where the
two interior roots of h(p) = 1/sqrt(p (1 - p)) - beta (logit p - logit p0) are born) the
pair lies far closer than the scan's grid spacing, so g = T(u) - u never changes sign
between grid points. The fold and the roots are computed here by hand (scipy).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq, minimize_scalar

import grpo_align as ga

P0 = 0.3


def h(p: float, beta: float) -> float:
    return 1 / math.sqrt(p * (1 - p)) - beta * (math.log(p / (1 - p)) - math.log(P0 / (1 - P0)))


def test_root_pair_closer_than_the_grid_is_found():
    # at the fold, min_p h(p, beta*) = 0; h is linear in beta, so beta* = min_p of
    # (1/sqrt(p(1-p))) / (logit p - logit p0) over p > p0
    ratio = minimize_scalar(
        lambda p: (1 / math.sqrt(p * (1 - p))) / (math.log(p / (1 - p)) - math.log(P0 / (1 - P0))),
        bounds=(0.5, 1 - 1e-9),
        method="bounded",
        options={"xatol": 1e-12},
    )
    beta = ratio.fun * (1 + 1e-9)
    p_star = ratio.x
    expected = [brentq(h, 0.5, p_star, args=(beta,), xtol=1e-15), brentq(h, p_star, 1 - 1e-9, args=(beta,), xtol=1e-15)]
    assert expected[1] - expected[0] < 1e-3  # far below the grid spacing of 1/128
    prob = ga.Problem.from_rewards([P0, 1 - P0], [1.0, 0.0])
    res = ga.stationary_policy(prob, ga.GRPO(group_size=math.inf, beta=beta, penalty="kl"))[0]
    assert res.success, res.message
    interior = sorted(r.policy[0] for r in res.roots if not r.boundary)
    np.testing.assert_allclose(interior, expected, rtol=0, atol=1e-9)
