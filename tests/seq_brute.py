"""Independent brute force for token sequences (THEORY.md section 10), used by the tests.

Written from the definition of the surrogate, not from the engine: every group of G
(output, reward level) draws is enumerated with its probability; each member's advantage
comes from its group's (modified) rewards; the per-token gradient of the surrogate at
theta = theta_old is accumulated token by token in the per-prefix logits:

    d/d z(u, t) [ w_i (rho_ij A_i - beta D_ij) ] = w_i (A_i - beta psi(x_ij)) (1[t = t_ij] - pi(t | u))

for every token j of member i whose prefix u_ij = u. No function of grpo_align is used.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def conditionals(seqs, pi):
    """{prefix: {token: pi(t|u)}} over every prefix with mass (branching or not)."""
    mass: dict = {}
    for s, p in zip(seqs, pi, strict=True):
        for j in range(len(s)):
            mass.setdefault(s[:j], {}).setdefault(s[j], 0.0)
            mass[s[:j]][s[j]] += p
    out = {}
    for u, ch in mass.items():
        tot = sum(ch.values())
        if tot > 0:
            out[u] = {t: m / tot for t, m in ch.items()}
    return out


def advantages(r, normalization, ddof=0, eps=0.0):
    r = np.asarray(r, dtype=float)
    g = r.size
    if normalization == "raw":
        return r.copy()
    c = r - r.mean()
    if normalization == "shift":
        return c
    if normalization == "rloo":
        return np.array([r[i] - (r.sum() - r[i]) / (g - 1) for i in range(g)])
    if np.all(r == r[0]):
        return np.zeros(g)
    return c / (r.std(ddof=ddof) + eps)


def psi(penalty, x):
    if penalty == "abs":  # d|x|/dx, 0 at x = 0 (torch's subgradient)
        return float(np.sign(x))
    return {"k3": 1 - math.exp(-x), "k2": x, "k1": 1.0, "kl": x + 1.0}[penalty]


def kpen(penalty, x):
    return {"k1": x, "k2": x * x / 2, "k3": math.exp(-x) + x - 1}[penalty]


def gradient(
    seqs,
    ref,
    levels,
    dist,
    pi,
    g,
    beta,
    normalization="shift_scale",
    ddof=0,
    eps=0.0,
    penalty="k3",
    aggregation="sequence_mean",
    penalty_in="loss",
):
    """{prefix: {token: expected gradient}} at pi = pi_old, every group enumerated."""
    cond = conditionals(seqs, pi)
    rcond = conditionals(seqs, ref)
    draws = [
        (o, lv, pi[o] * dist[o][lv]) for o in range(len(seqs)) for lv in range(len(levels)) if pi[o] * dist[o][lv] > 0
    ]
    grad = {u: {t: 0.0 for t in ch} for u, ch in cond.items() if len(rcond[u]) >= 2}
    xseq = [sum(math.log(cond[s[:j]][s[j]] / rcond[s[:j]][s[j]]) for j in range(len(s))) for s in seqs]
    for group in itertools.product(draws, repeat=g):
        prob = math.prod(d[2] for d in group)
        rewards = [levels[lv] for _, lv, _ in group]
        if penalty_in == "reward":
            rewards = [r - beta * kpen(penalty, xseq[o]) for r, (o, _, _) in zip(rewards, group, strict=True)]
        adv = advantages(rewards, normalization, ddof, eps)
        total = sum(len(seqs[o]) for o, _, _ in group)
        for i, (o, _, _) in enumerate(group):
            s = seqs[o]
            w = {"sequence_mean": 1 / (g * len(s)), "group_token_mean": 1 / total, "constant": 1 / g}[aggregation]
            for j in range(len(s)):
                u, tok = s[:j], s[j]
                if u not in grad:
                    continue
                coef = adv[i]
                if penalty_in == "loss" and beta > 0:
                    coef -= beta * psi(penalty, math.log(cond[u][tok] / rcond[u][tok]))
                for t, q in cond[u].items():
                    grad[u][t] += prob * w * coef * ((t == tok) - q)
    return grad


def policy_from_logits(seqs, ref, logits):
    """pi over outputs from per-prefix logits {prefix: {token: z}} (branching prefixes)."""
    rcond = conditionals(seqs, ref)
    pi = []
    for s in seqs:
        p = 1.0
        for j in range(len(s)):
            u = s[:j]
            if u in logits:
                z = logits[u]
                m = max(z.values())
                p *= math.exp(z[s[j]] - m) / sum(math.exp(v - m) for v in z.values())
            else:
                p *= rcond[u][s[j]]
        pi.append(p)
    return np.array(pi)


def gradient_limit(
    seqs, ref, levels, dist, pi, beta, normalization="shift_scale", eps=0.0, penalty="k1", aggregation="sequence_mean"
):
    """{prefix: {token: expected gradient}} as G -> inf, the penalty in the reward.

    One member's draw (o, level) is enumerated; the group's mean and std of the modified
    rewards r' = r - beta k(x(o)) are replaced by the population's under pi, sum_j |o_j| / G
    by E_pi |o|; the member's per-token gradient is accumulated as in ``gradient``.
    """
    cond = conditionals(seqs, pi)
    rcond = conditionals(seqs, ref)
    xseq = [sum(math.log(cond[s[:j]][s[j]] / rcond[s[:j]][s[j]]) for j in range(len(s))) if pi[o] > 0 else 0.0
            for o, s in enumerate(seqs)]  # fmt: skip
    draws = [
        (o, levels[lv] - beta * kpen(penalty, xseq[o]), pi[o] * dist[o][lv])
        for o in range(len(seqs))
        for lv in range(len(levels))
        if pi[o] * dist[o][lv] > 0
    ]
    mu = sum(p * r for _, r, p in draws)
    sd = math.sqrt(sum(p * (r - mu) ** 2 for _, r, p in draws))
    mean_len = sum(pi[o] * len(s) for o, s in enumerate(seqs))
    grad = {u: {t: 0.0 for t in ch} for u, ch in cond.items() if len(rcond[u]) >= 2}
    for o, r, p in draws:
        if normalization == "raw":
            adv = r
        elif normalization in ("shift", "rloo"):
            adv = r - mu
        else:
            adv = (r - mu) / (sd + eps) if sd + eps > 0 else 0.0
        s = seqs[o]
        w = {"sequence_mean": 1 / len(s), "group_token_mean": 1 / mean_len, "constant": 1.0}[aggregation]
        for j in range(len(s)):
            u, tok = s[:j], s[j]
            if u not in grad:
                continue
            for t, q in cond[u].items():
                grad[u][t] += p * w * adv * ((t == tok) - q)
    return grad
