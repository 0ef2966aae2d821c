"""The exact expected gradient of GRPO on a tree policy (THEORY.md section 10).

At theta = theta_old the clip is inactive and the per-token ratios have gradient
grad log pi(t_ij | u_ij); their sum over a sequence is grad log pi(o_i). With aggregation
weights w_i (eq. 10.2) and a per-token penalty of gradient psi(x) grad log pi(t | u)
(eq. 10.3), exchangeability of the group gives, per prefix u and next token t,

    g(u, t) = pi(u) pi(t | u) [S(ut) - c_u],   c_u = sum_t' pi(t' | u) S(ut'),        (10.5)
    S(ut)   = E[a(o) | o passes ut] - beta E[b(o) | o passes ut] psi(x_ut),          (10.4)
    a(o)    = G E[w_1 A_1 | o_1 = o],   b(o) = G E[w_1 | o_1 = o],                     (10.3)

x_ut = log pi(t|u)/pi_ref(t|u). a and b are exact expectations over the other G - 1
members, enumerated by the counts of their *cells*: (reward level, token length) for the
penalty in the loss, (output, reward level) for the penalty in the reward, where each
output's levels are shifted by -beta k(o) (eq. 10.7). As G -> inf with the penalty in the
reward the group's mean and std become the population's (eq. 10.13).

``SequenceModel`` holds one context and evaluates S, the multipliers c_u, the per-prefix
residual max |S(ut) - c_u| and the gradient g for per-edge conditionals.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import gammaln

from grpo_align.errors import InputError
from grpo_align.theory.penalties import penalty as penalty_record
from grpo_align.theory.preference import MAX_COUNT_VECTORS, LevelPreference, _count_vectors
from grpo_align.theory.problem import Problem
from grpo_align.theory.reward_penalty import TieStructure, sequence_penalty
from grpo_align.theory.sequences import Tree
from grpo_align.theory.spec import GRPO

__all__ = [
    "SequenceModel",
    "cell_coefficients",
    "expected_gradient_tree",
    "limit_advantage",
    "limit_weights",
    "population_moments",
    "token_penalty_gradient",
]

#: Mass given to a removed edge when its one-sided terms are evaluated (faces, eq. 10.10).
FACE_EPS = 1e-100


def token_penalty_gradient(penalty: str, x: np.ndarray) -> np.ndarray:
    """psi(x): a token's penalty has gradient psi(x) grad log pi(t | u) at theta = theta_old.

    THEORY.md eq. 10.3, x = log pi(t|u)/pi_ref(t|u): k3 1 - exp(-x); k2 x; k1 1; kl (the
    trainer's rho x) x + 1; abs sign(x): the record's ``psi`` (``theory.penalties``). TRL's
    bias-corrected k3 (rho k3) has psi = x, k2's.
    """
    return penalty_record(penalty).psi(x)


def _weights(aggregation: str, g: int, own_len: np.ndarray, total_len: np.ndarray) -> np.ndarray:
    """G w_1 of eq. 10.2: G/(G |o_1|) = 1/|o_1|, G / sum_j |o_j|, or 1."""
    if aggregation == "sequence_mean":
        return np.broadcast_to(1.0 / own_len, total_len.shape)
    if aggregation == "group_token_mean":
        return g / total_len
    return np.ones_like(total_len)


def cell_coefficients(
    values: np.ndarray,
    lengths: np.ndarray,
    mix: np.ndarray,
    algo: GRPO,
    cell_class: np.ndarray | None = None,
    eta: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """H_a(m) = G E[w_1 A_1 | own cell m], H_b(m) = G E[w_1 | own cell m] (eq. 10.6).

    The other G - 1 members' cells have counts ~ Multinomial(G - 1, ``mix``); every count
    vector is enumerated. A group whose G rewards are all equal has A = 0 (section 2).
    With ``cell_class`` and ``eta`` (sliding modes, eq. 10.9), a group whose cells all lie
    in one tie class takes the blow-up advantage (eta_i - mean eta)/(std eta + 1) instead.

    Parameters
    ----------
    values, lengths, mix : ndarray, (M,)
        Reward value, token length and probability of each cell for another member.
    algo : GRPO
    cell_class, eta : ndarray, (M,), optional

    Returns
    -------
    H_a, H_b : ndarray, (M,)
    """
    g = int(algo.group_size)
    n_cells = values.size
    n_vec = math.comb(g - 1 + n_cells - 1, n_cells - 1)
    if n_vec > MAX_COUNT_VECTORS:
        raise InputError(
            "group_size",
            f"the exact expectation needs {n_vec:,} count vectors (G={g}, {n_cells} cells); use a smaller G or tree",
        )
    counts = _count_vectors(g - 1, n_cells).astype(float)  # (N, M)
    log_coef = gammaln(g) - gammaln(counts + 1.0).sum(axis=1)
    with np.errstate(divide="ignore"):
        log_mix = np.where(mix > 0, np.log(np.where(mix > 0, mix, 1.0)), -np.inf)
    with np.errstate(invalid="ignore"):
        expo = np.where(counts > 0, counts * log_mix[None, :], 0.0).sum(axis=1)
    pmf = np.exp(log_coef + expo)  # (N,)
    adv = _advantage(values, counts, algo, g)
    if cell_class is not None and eta is not None:
        differ = (cell_class[:, None] != cell_class[None, :]) | (cell_class[:, None] < 0)
        tie_group = ((counts @ differ.T.astype(float)) == 0) & (cell_class[None, :] >= 0)
        blow = _advantage(eta, counts, algo.replace(normalization="shift_scale", eps=1.0), g, zero_ties=False)
        adv = np.where(tie_group, blow, adv)
    total_len = lengths[None, :] + (counts @ lengths)[:, None]  # (N, M)
    gw = _weights(algo.aggregation, g, lengths[None, :], total_len)
    return pmf @ (gw * adv), pmf @ gw


def _advantage(values: np.ndarray, counts: np.ndarray, algo: GRPO, g: int, zero_ties: bool = True) -> np.ndarray:
    """A_1 for own cell m (column) and the others' counts (row), (N, M) (section 2)."""
    own = values[None, :]
    mean = (own + (counts @ values)[:, None]) / g
    centred = own - mean
    if algo.normalization == "raw":
        return np.broadcast_to(own, mean.shape).copy()
    if algo.normalization == "shift":
        return centred
    if algo.normalization == "rloo":
        return centred * (g / (g - 1))
    dev = values[None, None, :] - mean[:, :, None]  # (N, M own, M other)
    ssd = centred**2 + np.einsum("nk,nmk->nm", counts, dev**2)
    std = np.sqrt(ssd / (g - algo.ddof))
    if not zero_ties:
        return centred / (std + algo.eps)
    # all G rewards equal (exactly): A = 0, not a rounding residue over a rounding residue
    neq = (values[:, None] != values[None, :]).astype(float)
    all_equal = (counts @ neq.T) == 0
    return np.where(all_equal, 0.0, centred / np.where(all_equal, 1.0, std + algo.eps))


def population_moments(values: np.ndarray, mix: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the cell values under ``mix`` (cells without mass
    ignored): mu and sigma of eq. 10.13."""
    live = mix > 0
    v = np.where(live, values, 0.0)
    mu = float(mix @ v)
    var = float(mix @ np.where(live, (v - mu) ** 2, 0.0))
    return mu, math.sqrt(max(var, 0.0))


def limit_advantage(values: np.ndarray, mix: np.ndarray, algo: GRPO) -> np.ndarray:
    """A(m) = lim_{G -> inf} A_1 for own cell m (eq. 10.13), (M,).

    The group mean and std tend to the population's, mu and sigma, of the cell values
    under ``mix``: raw r', shift and rloo r' - mu, shift_scale (r' - mu)/(sigma + eps),
    which is 0 where sigma + eps = 0 (every modified reward ties, as a finite group's
    all-tied advantage).
    """
    if algo.normalization == "raw":
        return np.asarray(values, dtype=float).copy()
    mu, sigma = population_moments(values, mix)
    centred = values - mu
    if algo.normalization in ("shift", "rloo"):
        return centred
    den = sigma + algo.eps
    return centred / den if den > 0 else np.zeros_like(centred)


def limit_weights(aggregation: str, lengths: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """lim_{G -> inf} G w_1 given o_1 = o, (K,) (eqs. 10.2, 10.13): 1/|o|, 1/E_pi|o|, 1."""
    if aggregation == "sequence_mean":
        return 1.0 / lengths
    if aggregation == "group_token_mean":
        return np.full(lengths.shape, 1.0 / float(pi @ lengths))
    return np.ones(lengths.shape)


class SequenceModel:
    """One context of a problem with sequences (or a reward penalty), THEORY.md section 10.

    Parameters
    ----------
    problem : Problem
    algo : GRPO
    context : int

    Notes
    -----
    Without sequences every output is a one-token sequence under the root. The policy is
    given as per-edge conditionals ``cond`` (E,), zero on removed edges (faces).
    """

    def __init__(self, problem: Problem, algo: GRPO, context: int = 0) -> None:
        if problem.is_preference:
            raise InputError("problem", "sequences and penalty_in='reward' need reward distributions")
        self.problem, self.algo, self.context = problem, algo, context
        ref = problem.ref[context]
        n_out = ref.size
        seqs: Any = problem.sequences[context] if problem.sequences is not None else [(o,) for o in range(n_out)]
        self.tree = Tree(seqs, ref)
        self.levels = problem.levels[context]
        self.dist = problem.dist[context]
        self.lengths = self.tree.lengths
        self.reward_mode = algo.penalty_in == "reward"
        if self.reward_mode:
            act = np.nonzero(self.tree.active)[0]
            pairs = [(o, lvl) for o in act.tolist() for lvl in range(self.levels.size) if self.dist[o, lvl] > 0]
            self.cell_output = np.array([p[0] for p in pairs], dtype=np.int64)
            self.cell_level = np.array([p[1] for p in pairs], dtype=np.int64)
            self.cell_of = np.zeros((n_out, len(pairs)))  # E[o, m]: Pr[o lands in cell m]
            self.cell_of[self.cell_output, np.arange(len(pairs))] = self.dist[self.cell_output, self.cell_level]
        else:
            lens = np.unique(self.lengths[self.tree.active])
            pairs = [(lvl, n) for lvl in range(self.levels.size) for n in lens.tolist()]
            self.cell_level = np.array([p[0] for p in pairs], dtype=np.int64)
            self.cell_len = np.array([p[1] for p in pairs], dtype=float)
            self.cell_of = self.dist[:, self.cell_level] * (self.lengths[:, None] == self.cell_len[None, :])
            self.level_pref = LevelPreference(self.levels[None], algo)

    # ------------------------------------------------------------------ coefficients
    def cell_values(self, cond: np.ndarray) -> np.ndarray:
        """Reward value of every cell; in reward mode v_l - beta k(x(o)) (eq. 10.7)."""
        if not self.reward_mode:
            return self.levels[self.cell_level]
        x = self.tree.log_ratio(cond)
        k = sequence_penalty(self.algo.penalty, x[self.cell_output])
        return self.levels[self.cell_level] - self.algo.beta * k

    def coefficients(
        self, pi: np.ndarray, cond: np.ndarray, ties: TieStructure | None = None, eta: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """a(o) and b(o) of eq. 10.3 at the policy ``pi`` (K,); ``cond`` gives the cells'
        values in reward mode (removed edges at FACE_EPS)."""
        algo = self.algo
        if not self.reward_mode and algo.aggregation != "group_token_mean":
            pref = self.dist @ self.level_pref((pi @ self.dist)[None])[0]
            b = 1.0 / self.lengths if algo.aggregation == "sequence_mean" else np.ones_like(pref)
            return pref * b, b
        if not self.reward_mode and algo.is_limit:
            # G -> inf: sum_j |o_j| / G -> E_pi |o|, the same weight for every output (eq. 10.6)
            pref = self.dist @ self.level_pref((pi @ self.dist)[None])[0]
            mean_len = float(pi @ self.lengths)
            return pref / mean_len, np.full_like(pref, 1.0 / mean_len)
        values = self.cell_values(cond)
        if algo.is_limit:
            # reward mode, G -> inf: the group's mean and std become the population's (eq. 10.13)
            gw = limit_weights(algo.aggregation, self.lengths, pi)
            return (self.cell_of @ limit_advantage(values, pi @ self.cell_of, algo)) * gw, gw
        lengths = self.lengths[self.cell_output] if self.reward_mode else self.cell_len
        mix = pi @ self.cell_of
        cls = ties.cell_class if ties is not None else None
        eta_cell = None
        if ties is not None and eta is not None:
            # the blow-up of k(o) moves every cell of o by -beta eta(o)
            eta_cell = -self.algo.beta * eta[self.cell_output]
        h_a, h_b = cell_coefficients(values, lengths, mix, algo, cls, eta_cell)
        return self.cell_of @ h_a, self.cell_of @ h_b

    # ------------------------------------------------------------------ per-prefix terms
    def bars(
        self, cond: np.ndarray, ties: TieStructure | None = None, eta: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Abar(ut) and Bbar(ut) per edge (eq. 10.4); a removed edge one-sidedly (FACE_EPS)."""
        tree = self.tree
        live = np.where(cond > 0, cond, FACE_EPS)
        a, b = self.coefficients(tree.policy(cond), live, ties, eta)
        below = tree.below_product(live)  # (E, K)
        mass = below.sum(axis=1)
        return (below @ a) / mass, (below @ b) / mass

    def terms(
        self, cond: np.ndarray, ties: TieStructure | None = None, eta: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """S(ut) per edge (eq. 10.4) and c_u per prefix (eq. 10.5).

        A removed edge (cond 0) is evaluated one-sidedly, as if it had mass FACE_EPS
        (conditionals below it as given); c_u uses the exact conditionals.
        """
        tree = self.tree
        live = np.where(cond > 0, cond, FACE_EPS)
        a_bar, b_bar = self.bars(cond, ties, eta)
        s = a_bar
        if not self.reward_mode and self.algo.beta > 0:
            x = np.log(live) - np.log(tree.ref_cond)
            s = a_bar - self.algo.beta * b_bar * token_penalty_gradient(self.algo.penalty, x)
        c = np.array([float(cond[e] @ s[e]) for e in tree.node_edges])
        return s, c

    def residual(
        self, cond: np.ndarray, ties: TieStructure | None = None, eta: np.ndarray | None = None
    ) -> tuple[float, float, np.ndarray]:
        """(max |S(ut) - c_u| over live edges of reachable prefixes, size of the terms,
        S - c per edge) (eq. 10.5)."""
        s, c = self.terms(cond, ties, eta)
        dev = s - c[self.tree.edge_node]
        reach = self.tree.reachable(cond)[self.tree.edge_node]
        live = (cond > 0) & reach
        res = float(np.max(np.abs(dev[live]), initial=0.0))
        scale = max(1.0, float(np.max(np.abs(s[live]), initial=0.0)))
        return res, scale, dev

    def gradient(self, cond: np.ndarray) -> np.ndarray:
        """g(u, t) = pi(u) pi(t|u) (S(ut) - c_u) per edge, the expected gradient of the
        surrogate in the per-prefix logits (eq. 10.5)."""
        s, c = self.terms(cond)
        node_mass = self.tree.through.astype(float) @ self.tree.policy(cond)
        prefix_mass = np.array([node_mass[e].sum() for e in self.tree.node_edges])
        return prefix_mass[self.tree.edge_node] * cond * (s - c[self.tree.edge_node])


def expected_gradient_tree(
    problem: Problem, algo: GRPO, policy: Any, context: int = 0
) -> dict[tuple[Any, ...], dict[Any, float]]:
    """The exact expected gradient of the GRPO surrogate in per-prefix logits (eq. 10.5).

    Parameters
    ----------
    problem : Problem
        With or without ``sequences`` (without, every output is one token).
    algo : GRPO
    policy : array_like, (K,) or (C, K)
        pi = pi_old over whole outputs; gradient taken at theta = theta_old.
    context : int

    Returns
    -------
    dict
        {branching prefix: {next token: d E[J] / d logit(t | u)}}.
    """
    pol = problem.check_policy(policy)
    model = SequenceModel(problem, algo, context)
    cond = model.tree.conditionals(pol[context])
    return model.tree.as_dict(model.gradient(cond))
