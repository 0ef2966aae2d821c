"""Shared helpers for the theory tests: an independent brute-force route to P_G.

Nothing here calls grpo_align's advantage or preference code. The brute force enumerates
every group (o_1 = o, o_2..o_G) of outputs and every tuple of rewards (r_1..r_G), weights
each by its probability under pi and F, and averages the first member's advantage computed
by hand from the definitions of THEORY.md section 2. It is exponential (K^(G-1) L^G terms)
and meant for K, L <= 3 and G <= 4.
"""

from __future__ import annotations

import itertools
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import settings

#: every normalisation of THEORY.md section 2 as (name, GRPO keyword overrides)
NORMALISATIONS = {
    "shift_scale_ddof0": {"normalization": "shift_scale", "ddof": 0, "eps": 0.0},
    "shift_scale_ddof1": {"normalization": "shift_scale", "ddof": 1, "eps": 0.0},
    "shift_scale_ddof0_eps": {"normalization": "shift_scale", "ddof": 0, "eps": 0.05},
    "shift_scale_ddof1_eps": {"normalization": "shift_scale", "ddof": 1, "eps": 1e-4},
    "shift": {"normalization": "shift", "ddof": 0, "eps": 0.0},
    "rloo": {"normalization": "rloo", "ddof": 0, "eps": 0.0},
    "raw": {"normalization": "raw", "ddof": 0, "eps": 0.0},
}


# CI (CI=true) draws the same examples every run, so a red CI is a real change, not a new
# random draw; locally every run explores new examples
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def first_advantage(rewards: tuple[float, ...], normalization: str, ddof: int = 0, eps: float = 0.0) -> float:
    """A_1 for one group of rewards, from the table in THEORY.md section 2 (plain Python)."""
    g = len(rewards)
    r1 = rewards[0]
    if normalization == "raw":
        return r1
    mean = sum(rewards) / g
    if normalization == "shift":
        return r1 - mean
    if normalization == "rloo":
        return r1 - sum(rewards[1:]) / (g - 1)
    if normalization != "shift_scale":
        raise ValueError(normalization)
    if all(r == r1 for r in rewards):
        return 0.0
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (g - ddof))
    return (r1 - mean) / (std + eps)


def brute_preference(
    ref_levels, dist, policy, group_size: int, normalization: str, ddof: int = 0, eps: float = 0.0, power: int = 1
) -> np.ndarray:
    """P_G(o | policy) = E[A_1 | o_1 = o] by enumerating all output and reward tuples.

    ``ref_levels`` (L,), ``dist`` (K, L), ``policy`` (K,). Returns (K,). ``power = 2``
    gives E[A_1^2 | o_1 = o] instead (for the Monte Carlo standard errors).
    """
    levels = [float(v) for v in ref_levels]
    dist = np.asarray(dist, dtype=float)
    pi = np.asarray(policy, dtype=float)
    n_out, n_lev = dist.shape
    adv_cache: dict[tuple[int, ...], float] = {}
    out = np.zeros(n_out)
    for o in range(n_out):
        total = 0.0
        for others in itertools.product(range(n_out), repeat=group_size - 1):
            p_others = math.prod(pi[j] for j in others)
            if p_others == 0.0:
                continue
            outputs = (o, *others)
            for lev_idx in itertools.product(range(n_lev), repeat=group_size):
                p_rew = math.prod(dist[outputs[i], lev_idx[i]] for i in range(group_size))
                if p_rew == 0.0:
                    continue
                if lev_idx not in adv_cache:
                    adv_cache[lev_idx] = first_advantage(tuple(levels[i] for i in lev_idx), normalization, ddof, eps)
                total += p_others * p_rew * adv_cache[lev_idx] ** power
        out[o] = total
    return out


def brute_preference_batch(problem, algo, policy) -> np.ndarray:
    """brute_preference for every context of a grpo_align.Problem (policy (C, K) or (K,))."""
    pol = np.atleast_2d(np.asarray(policy, dtype=float))
    res = np.stack(
        [
            brute_preference(
                problem.levels[c],
                problem.dist[c],
                pol[c],
                int(algo.group_size),
                algo.normalization,
                algo.ddof,
                algo.eps,
            )
            for c in range(problem.n_contexts)
        ]
    )
    return res if problem.batched else res[0]


def brute_pairwise_preference(win_prob, policy, scale: float) -> np.ndarray:
    """P_2(o|pi) for a preference matrix by enumerating the opponent and the outcome.

    Against opponent o': o wins with W[o,o'] (A_1 = +s), loses with W[o',o] (A_1 = -s),
    ties otherwise (A_1 = 0): THEORY.md section 7, written out.
    """
    w = np.asarray(win_prob, dtype=float)
    pi = np.asarray(policy, dtype=float)
    k = len(pi)
    out = np.zeros(k)
    for o in range(k):
        for q in range(k):
            out[o] += pi[q] * (w[o, q] * scale + w[q, o] * (-scale))
    return out


def stationarity_gap(pref: np.ndarray, policy: np.ndarray, ref: np.ndarray, beta: float, penalty: str) -> float:
    """max over the support of |P(o) - beta phi(o) - c| with phi written from THEORY.md section 3.

    c is the policy-weighted mean, as in section 5. Outputs outside the support must have
    reference probability 0 (checked by the caller).
    """
    support = policy > 0
    pi = policy[support]
    r = ref[support]
    if penalty == "k3":
        phi = 1.0 - r / pi
    elif penalty in ("k2", "kl"):
        phi = np.log(pi / r)
    else:
        raise ValueError(penalty)
    g = pref[support] - beta * phi
    c = float(np.sum(pi * g))
    return float(np.max(np.abs(g - c)))


def abs_condition_gap(pref: np.ndarray, policy: np.ndarray, ref: np.ndarray, beta: float, tie: float = 1e-9) -> float:
    """How far the abs penalty's set-valued condition is from holding (0 if it holds).

    Stationary for abs (THEORY.md sections 3 and 5): there is one c with
    P(o) - c = +beta where pi(o) > pi_ref(o), = -beta where pi(o) < pi_ref(o),
    in [-beta, beta] where pi(o) = pi_ref(o), and <= -beta where pi(o) = 0 < pi_ref(o)
    (mass drained to the boundary cannot come back). Each output gives an interval for c;
    the gap is how much the intersection of the intervals is empty.
    """
    lows, highs = [], []
    for p, pi, r in zip(pref, policy, ref, strict=False):
        if r == 0:
            continue
        if pi == 0:
            lows.append(p + beta)
            highs.append(math.inf)
        elif abs(pi - r) <= tie * max(r, 1e-300) or abs(math.log(pi / r)) <= tie:
            lows.append(p - beta)
            highs.append(p + beta)
        elif pi > r:
            lows.append(p - beta)
            highs.append(p - beta)
        else:
            lows.append(p + beta)
            highs.append(p + beta)
    return max(0.0, max(lows) - min(highs))


@pytest.fixture(scope="session")
def brute():
    """The brute-force helpers as one namespace (session scope: usable with hypothesis)."""
    return SimpleNamespace(
        first_advantage=first_advantage,
        preference=brute_preference,
        preference_batch=brute_preference_batch,
        pairwise=brute_pairwise_preference,
        gap=stationarity_gap,
        abs_gap=abs_condition_gap,
        NORMALISATIONS=NORMALISATIONS,
    )
