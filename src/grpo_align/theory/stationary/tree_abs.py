"""The abs penalty on tree policies (THEORY.md section 10.10).

Trainers define abs per token (verl ``kl_penalty="abs"``: |log pi(t|u) - log pi_ref(t|u)|
for every token, aggregated like the other per-token penalties), so on a tree its gradient
is psi = sign(x_ut) per token (eq. 10.3) and the stationary conditions (10.8) become, per
prefix u with mass,

    Abar(ut) - c_u  in  beta Bbar(ut) sign(x_ut)   (pi(t|u) > 0; [-1, 1] at x_ut = 0),
    Abar(ut) - c_u  <= -beta Bbar(ut)              (pi(t|u) = 0),                   (10.16)

which, with Abar and Bbar frozen, are the optimality conditions of
max_q sum_t q_t Abar(ut) - beta sum_t Bbar(ut) |q_t - pi_ref(t|u)| over the simplex of next
tokens: d/dz(u,t) of the weighted total variation is q_t (Bbar_t sign_t - sum_t' q_t' Bbar_t'
sign_t'). Forward-backward splitting, one weighted-TV prox per prefix, has exactly these
policies as fixed points (the atomic ``proximal`` solver is the one-prefix, Bbar = 1 case).
"""

from __future__ import annotations

import numpy as np

from grpo_align.theory.sequence_gradient import SequenceModel

__all__ = ["abs_residual", "abs_tree_policy"]

#: |x_ut| below this counts as x_ut = 0 (the set-valued sign), as the atomic abs residual does.
UNDETERMINED = 1e-9


def prox_weighted_tv(y: np.ndarray, ref: np.ndarray, t: np.ndarray) -> np.ndarray:
    """argmin_q 1/2 |q - y|^2 + sum_j t_j |q_j - ref_j| over the simplex.

    q_j(lam) = max(0, ref_j + soft(y_j - lam - ref_j, t_j)) is continuous and non-increasing
    in lam; lam with sum_j q_j = 1 is found by bisection to rounding.
    """

    def q_of(lam: float) -> np.ndarray:
        z = y - lam - ref
        return np.maximum(0.0, ref + np.sign(z) * np.maximum(np.abs(z) - t, 0.0))

    lo = float(np.min(y - ref - t)) - 1.0  # every q_j >= ref_j: sum >= 1
    hi = float(np.max(y + t)) + 1.0  # every q_j = 0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if q_of(mid).sum() > 1.0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-16 * max(1.0, abs(mid)):
            break
    q = q_of(0.5 * (lo + hi))
    return q / q.sum()


def abs_residual(model: SequenceModel, cond: np.ndarray) -> float:
    """Largest violation of (10.16) over reachable prefixes, c_u the best constant.

    Per prefix each live next token confines c_u to a point (x != 0) or to the interval
    [Abar - beta Bbar, Abar + beta Bbar] (x = 0), a removed one to c_u >= Abar + beta Bbar;
    the violation is half the spread of the lower and upper bounds where they cross.
    """
    beta = model.algo.beta
    a_bar, b_bar = model.bars(cond)
    with np.errstate(divide="ignore"):
        x = np.log(cond) - np.log(model.tree.ref_cond)
    reach = model.tree.reachable(cond)
    worst = 0.0
    for n, edges in enumerate(model.tree.node_edges):
        if not reach[n]:
            continue
        lower, upper = -np.inf, np.inf
        for e in edges.tolist():
            if cond[e] <= 0:
                lower = max(lower, a_bar[e] + beta * b_bar[e])
            elif abs(x[e]) <= UNDETERMINED:
                lower = max(lower, a_bar[e] - beta * b_bar[e])
                upper = min(upper, a_bar[e] + beta * b_bar[e])
            else:
                point = a_bar[e] - beta * b_bar[e] * np.sign(x[e])
                lower, upper = max(lower, point), min(upper, point)
        worst = max(worst, 0.5 * (lower - upper))
    return float(worst)


def abs_tree_policy(model: SequenceModel, max_iter: int = 20_000) -> tuple[np.ndarray, int]:
    """Per-edge conditionals from forward-backward splitting started at pi_ref (eq. 10.16).

    Every prefix takes the step q <- prox(q + step Abar) with weights step beta Bbar at
    once (Abar, Bbar at the current policy); the step is a quarter over the size of the
    terms. Returns the conditionals and the iterations taken (stops when no conditional
    moves by 1e-15).
    """
    tree = model.tree
    cond = tree.ref_cond.copy()
    a_bar, b_bar = model.bars(cond)
    step = 0.25 / (1.0 + float(np.max(np.abs(a_bar), initial=0.0)) + model.algo.beta * float(np.max(b_bar, initial=0)))
    nit = 0
    while nit < max_iter:
        nit += 1
        a_bar, b_bar = model.bars(cond)
        new = cond.copy()
        for edges in tree.node_edges:
            new[edges] = prox_weighted_tv(
                cond[edges] + step * a_bar[edges], tree.ref_cond[edges], step * model.algo.beta * b_bar[edges]
            )
        moved = float(np.max(np.abs(new - cond), initial=0.0))
        cond = new
        if moved < 1e-15:
            break
    return cond, nit
