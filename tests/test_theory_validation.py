"""Bad input: every check raises ga.InputError (a ValueError) whose message names the field."""

from __future__ import annotations

import math

import numpy as np
import pytest

import grpo_align as ga

GOOD_REF = [0.3, 0.7]
GOOD_DIST = [[0.5, 0.5], [0.2, 0.8]]
PREF = ga.Problem.from_preference([0.5, 0.5], [[0.0, 0.6], [0.3, 0.0]])
BINARY = ga.Problem.from_rewards([0.3, 0.7], [1.0, 0.0])

CASES = {
    # ---- Problem: reference policy
    "ref negative": ("ref", lambda: ga.Problem([-0.1, 1.1], [0, 1], GOOD_DIST)),
    "ref NaN": ("ref", lambda: ga.Problem([math.nan, 1.0], [0, 1], GOOD_DIST)),
    "ref inf": ("ref", lambda: ga.Problem([math.inf, 0.0], [0, 1], GOOD_DIST)),
    "ref sum": ("ref", lambda: ga.Problem([0.3, 0.6], [0, 1], GOOD_DIST)),
    "ref zero row": ("ref", lambda: ga.Problem([0.0, 0.0], [0, 1], GOOD_DIST, renormalize=True)),
    "ref empty": ("ref", lambda: ga.Problem([], [0, 1], GOOD_DIST)),
    "ref 3-D": ("ref", lambda: ga.Problem(np.ones((1, 1, 2)) / 2, [0, 1], GOOD_DIST)),
    "ref text": ("ref", lambda: ga.Problem(["a", "b"], [0, 1], GOOD_DIST)),
    "ref ragged": ("ref", lambda: ga.Problem([[0.5, 0.5], [1.0]], [[0, 1], [0, 1]], GOOD_DIST)),
    # ---- Problem: levels and distributions
    "levels missing": ("levels/dist", lambda: ga.Problem(GOOD_REF)),
    "levels repeated": ("levels", lambda: ga.Problem(GOOD_REF, [1.0, 1.0], GOOD_DIST)),
    "levels NaN": ("levels", lambda: ga.Problem(GOOD_REF, [0.0, math.nan], GOOD_DIST)),
    "levels shape": ("levels", lambda: ga.Problem(GOOD_REF, [[0.0, 1.0]], GOOD_DIST)),
    "levels contexts": ("levels", lambda: ga.Problem([GOOD_REF, GOOD_REF], [[0, 1]] * 3, [GOOD_DIST] * 2)),
    "dist shape": ("dist", lambda: ga.Problem(GOOD_REF, [0, 1], [[0.5, 0.5]])),
    "dist negative": ("dist", lambda: ga.Problem(GOOD_REF, [0, 1], [[1.5, -0.5], [0.2, 0.8]])),
    "dist sum": ("dist", lambda: ga.Problem(GOOD_REF, [0, 1], [[0.5, 0.4], [0.2, 0.8]])),
    "dist inf": ("dist", lambda: ga.Problem(GOOD_REF, [0, 1], [[math.inf, 0.0], [0.2, 0.8]])),
    # ---- constructors
    "rewards shape": ("rewards", lambda: ga.Problem.from_rewards(GOOD_REF, [1.0, 0.0, 2.0])),
    "rewards NaN": ("rewards", lambda: ga.Problem.from_rewards(GOOD_REF, [1.0, math.nan])),
    "rewards ragged NaN": (
        "rewards[1]",
        lambda: ga.Problem.from_rewards([[1.0], [0.5, 0.5]], [[1.0], [0.0, math.nan]]),
    ),
    "success above 1": ("success", lambda: ga.Problem.from_bernoulli(GOOD_REF, [1.2, 0.1])),
    "success below 0": ("success", lambda: ga.Problem.from_bernoulli(GOOD_REF, [0.5, -0.1])),
    "success shape": ("success", lambda: ga.Problem.from_bernoulli(GOOD_REF, [0.5])),
    "bernoulli ref sum": ("ref", lambda: ga.Problem.from_bernoulli([0.5, 0.6], [0.5, 0.1])),
    "win W+W^T > 1": ("win_prob", lambda: ga.Problem.from_preference(GOOD_REF, [[0.0, 0.7], [0.4, 0.0]])),
    "win outside [0,1]": ("win_prob", lambda: ga.Problem.from_preference(GOOD_REF, [[0.0, 1.5], [0.0, 0.0]])),
    "win shape": ("win_prob", lambda: ga.Problem.from_preference(GOOD_REF, [[0.0, 0.5, 0.1], [0.5, 0.0, 0.1]])),
    "win NaN": ("win_prob", lambda: ga.Problem.from_preference(GOOD_REF, [[0.0, math.nan], [0.3, 0.0]])),
    # ---- GRPO
    "G = 1": ("group_size", lambda: ga.GRPO(group_size=1)),
    "G non-integer": ("group_size", lambda: ga.GRPO(group_size=2.5)),
    "G NaN": ("group_size", lambda: ga.GRPO(group_size=math.nan)),
    "G -inf": ("group_size", lambda: ga.GRPO(group_size=-math.inf)),
    "G text": ("group_size", lambda: ga.GRPO(group_size="8")),
    "G bool": ("group_size", lambda: ga.GRPO(group_size=True)),
    "beta negative": ("beta", lambda: ga.GRPO(beta=-0.1)),
    "beta NaN": ("beta", lambda: ga.GRPO(beta=math.nan)),
    "beta inf": ("beta", lambda: ga.GRPO(beta=math.inf)),
    "normalization": ("normalization", lambda: ga.GRPO(normalization="zscore")),
    "penalty": ("penalty", lambda: ga.GRPO(penalty="k4")),
    "ddof": ("ddof", lambda: ga.GRPO(ddof=2)),
    "eps negative": ("eps", lambda: ga.GRPO(eps=-1e-4)),
    "replace validates": ("beta", lambda: ga.GRPO().replace(beta=-1.0)),
    "preset unknown": ("preset", lambda: ga.GRPO.preset("deepspeed")),
    "preset option": ("temperature", lambda: ga.GRPO.preset("trl", temperature=1.0)),
    "preset bad value": ("beta", lambda: ga.GRPO.preset("verl", beta=-1.0)),
    # ---- preference
    "policy shape": ("policy", lambda: ga.preference(BINARY, ga.GRPO(), [0.2, 0.3, 0.5])),
    "policy sum": ("policy", lambda: ga.preference(BINARY, ga.GRPO(), [0.2, 0.3])),
    "policy negative": ("policy", lambda: ga.preference(BINARY, ga.GRPO(), [-0.2, 1.2])),
    "policy NaN": ("policy", lambda: ga.preference(BINARY, ga.GRPO(), [math.nan, 1.0])),
    "preference problem G=4": ("group_size", lambda: ga.preference(PREF, ga.GRPO(group_size=4), [0.5, 0.5])),
    "preference problem shift": (
        "normalization",
        lambda: ga.preference(PREF, ga.GRPO(group_size=2, normalization="shift"), [0.5, 0.5]),
    ),
    "preference problem eps": ("eps", lambda: ga.preference(PREF, ga.GRPO(group_size=2, eps=1e-4), [0.5, 0.5])),
    "limit of preference problem": ("problem", lambda: ga.preference_limit(PREF, ga.GRPO(group_size=2), [0.5, 0.5])),
    "enumeration too large": (
        "group_size",
        lambda: ga.preference(ga.Problem([1.0], np.arange(12.0), [np.ones(12) / 12]), ga.GRPO(group_size=64), [1.0]),
    ),
    "monte carlo G=inf": (
        "group_size",
        lambda: ga.preference_monte_carlo(BINARY, ga.GRPO(group_size=math.inf), [0.5, 0.5]),
    ),
    "monte carlo samples": ("samples", lambda: ga.preference_monte_carlo(BINARY, ga.GRPO(), [0.5, 0.5], samples=1)),
    "monte carlo preference problem": (
        "problem",
        lambda: ga.preference_monte_carlo(PREF, ga.GRPO(group_size=2), [0.5, 0.5]),
    ),
    "group of one": ("rewards", lambda: ga.group_advantages([[1.0]], ga.GRPO())),
    # ---- stationary_policy
    "solve preference G=4": ("group_size", lambda: ga.stationary_policy(PREF, ga.GRPO(group_size=4))),
    "solve preference rloo": (
        "normalization",
        lambda: ga.stationary_policy(PREF, ga.GRPO(group_size=2, normalization="rloo")),
    ),
    "solve not a problem": ("problem", lambda: ga.stationary_policy({"ref": [1.0]}, ga.GRPO())),
    "solve not an algo": ("algo", lambda: ga.stationary_policy(BINARY, {"beta": 0.1})),
    "residual policy": ("policy", lambda: ga.stationarity_residual(BINARY, ga.GRPO(), [0.5, 0.6])),
    # ---- closed forms
    "closed p0": ("p0", lambda: ga.binary_policy(1.0, 0.5, 8)),
    "closed beta": ("beta", lambda: ga.binary_g2_policy(0.3, 0.0)),
    "closed gamma": ("gamma", lambda: ga.binary_g2_policy(0.3, 0.5, gamma=1.5)),
    "limit beta": ("beta", lambda: ga.binary_limit_policy(0.3, -1.0)),
    "rlhf beta": ("beta", lambda: ga.rlhf_policy(BINARY, 0.0)),
    "rlhf problem": ("problem", lambda: ga.rlhf_policy([0.5, 0.5], 0.1)),
    "rlhf preference problem": ("problem", lambda: ga.rlhf_policy(PREF, 0.1)),
    "pairwise W": ("win_prob", lambda: ga.pairwise_policy(GOOD_REF, [[0.0, 0.9], [0.9, 0.0]], 0.5)),
    "nash tau": ("tau", lambda: ga.nash_policy(GOOD_REF, [[0.0, 0.5], [0.5, 0.0]], 0.0)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_input_error_naming_the_field(case):
    field, call = CASES[case]
    with pytest.raises(ga.InputError) as info:
        call()
    err = info.value
    assert isinstance(err, ValueError)
    assert err.field == field
    message = str(err)
    assert message.startswith(f"{field}: ")
    assert "\n" not in message  # the CLI prints it on one line


def test_renormalize_accepts_off_sums():
    prob = ga.Problem([3.0, 7.0], [0, 1], [[1.0, 1.0], [2.0, 8.0]], renormalize=True)
    np.testing.assert_allclose(prob.ref[0], [0.3, 0.7])
    np.testing.assert_allclose(prob.dist[0], [[0.5, 0.5], [0.2, 0.8]])
    bern = ga.Problem.from_bernoulli([1.0, 1.0], [0.5, 0.1], renormalize=True)
    np.testing.assert_allclose(bern.ref[0], [0.5, 0.5])
    # within 1e-9 of 1 is accepted without asking
    ga.Problem([0.3 + 5e-10, 0.7], [0, 1], GOOD_DIST)


def test_valid_unusual_input_is_accepted():
    # numpy scalars (from a grid), G = inf, unsorted levels (sorted with their columns)
    algo = ga.GRPO(group_size=np.int64(8), beta=np.float32(0.5), eps=np.float64(0.0))
    assert algo.group_size == 8 and isinstance(algo.group_size, int)
    assert ga.GRPO(group_size=math.inf).is_limit
    prob = ga.Problem(GOOD_REF, [1.0, 0.0], [[0.5, 0.5], [0.8, 0.2]])
    np.testing.assert_array_equal(prob.levels[0], [0.0, 1.0])
    np.testing.assert_allclose(prob.dist[0], [[0.5, 0.5], [0.2, 0.8]])
    # a preference matrix with ties (W + W^T < 1) is fine
    ga.Problem.from_preference(GOOD_REF, [[0.0, 0.2], [0.3, 0.0]])


def test_presets_mirror_the_documented_trainers():
    # THEORY.md "Conventions": TRL sample std + 1e-4 with beta 0 by default; verl ddof 1 +
    # 1e-6; OpenRLHF ddof 1 + 1e-9; the paper ddof 0, eps 0, k3
    trl = ga.GRPO.preset("trl")
    assert (trl.ddof, trl.eps, trl.beta, trl.normalization) == (1, 1e-4, 0.0, "shift_scale")
    assert ga.GRPO.preset("trl", beta=0.04).beta == 0.04
    verl = ga.GRPO.preset("verl")
    assert (verl.ddof, verl.eps) == (1, 1e-6)
    openrlhf = ga.GRPO.preset("openrlhf")
    assert (openrlhf.ddof, openrlhf.eps) == (1, 1e-9)
    paper = ga.GRPO.preset("paper")
    assert (paper.ddof, paper.eps, paper.penalty, paper.normalization) == (0, 0.0, "k3", "shift_scale")
    assert ga.GRPO.preset("dr_grpo").normalization == "shift"
    assert ga.GRPO.preset("rloo").normalization == "rloo"
