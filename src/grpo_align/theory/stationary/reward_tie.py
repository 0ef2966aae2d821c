"""The penalty in the reward for two deterministic reward classes, every context at once.

docs/THEORY.md section 10.5 and 10.7. A context whose outputs with pi_ref > 0 each have one
reward, at one of two levels v_lo < v_hi (a binary prompt of ``predict``: correct or
wrong), with the penalty k in the reward (k1, k2 or k3, eq. 10.7): every sampled output's
modified reward r'(o) = r(o) - beta k(x(o)), x = log pi(o)/pi_ref(o), is deterministic, and
the expected advantage E[A_1 | o_1 = o] of every normalisation (shift_scale with any eps,
shift, rloo, raw; any G) is a strictly increasing function of r'(o) against the others'.
So the stationary policies are where the modified rewards of the outputs with mass tie. For
a monotone k (k1) outputs of one reward then share one log-ratio (their reference ratios);
k2 and k3 are not monotone, and with several outputs per reward they also tie at different
log-ratios and on every face of the simplex (the tree solver finds those), so they are
solved here with one output per reward only. The roots are in z = logit p (p the mass of
the v_hi outputs, p_0 their reference mass):

    h(z) = (v_hi - v_lo) - beta (k(x_1) - k(x_0)) = 0,
    x_1 = log(p / p_0) = -softplus(-z) - log p_0,   x_0 = log((1-p)/(1-p_0)) = -softplus(z) - log(1-p_0),

with the expected flow's direction the sign of h: a root is stable where h falls through
zero. k1 gives z = logit p_0 + (v_hi - v_lo)/beta (RLHF's policy); k2 and k3 have h -> +inf
as p -> 1 and -inf as p -> 0, so both vertices are boundary roots (KKT: the drained class is
pushed out) with interior roots between them (for shift_scale with eps 0 a tie root is a
sliding-mode equilibrium, eq. 10.9: the advantages are 0/0 there). h is monotone between
its two critical points (z_0 and 0 for k3, z_0 and one zero of h' for k2), so each of the
three pieces holds at most one root: every root is bracketed and refined by regula falsi.
The residual |h| is recomputed from the returned policy's log-ratios.
"""

from __future__ import annotations

import numpy as np

from grpo_align.theory.penalties import PENALTIES
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO
from grpo_align.theory.stationary.assemble import choose_roots, chosen_fields, outcome
from grpo_align.theory.stationary.batch import LAZY_FROM, LazyRoots
from grpo_align.theory.stationary.result import RESIDUAL_TOLERANCE, ROOT_KINDS, StationaryResult, StationaryRoot
from grpo_align.theory.stationary.tables import illinois

__all__ = ["reward_tie_applies", "reward_tie_policy"]

#: Contexts solved per block (bounds the working arrays).
BLOCK = 65536


def reward_tie_applies(problem: Problem, algo: GRPO) -> bool:
    """Whether ``reward_tie_policy`` solves ``problem`` under ``algo`` (module docstring):
    the penalty k1, k2 or k3 in the reward with beta > 0, atomic outputs, at most two reward
    levels, every output with pi_ref > 0 deterministic, and for k2 and k3 (not monotone)
    at most two such outputs (the two-answer form of ``predict``'s binary prompts)."""
    if algo.penalty_in != "reward" or not PENALTIES[algo.penalty].in_reward or not algo.beta > 0:
        return False
    if problem.is_preference or not problem.sequences_are_atomic or problem.n_levels > 2:
        return False
    live = problem.ref > 0
    if not bool(np.all(((problem.dist == 0) | (problem.dist == 1))[live])):
        return False
    # k2 and k3 tie outputs of one reward at different log-ratios (x and -x), and every face
    # of the simplex can hold a root: solved here only with one output per reward class
    return PENALTIES[algo.penalty].monotone or bool(np.all(np.sum(live, axis=1) <= 2))


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _tie(z: np.ndarray, gap: np.ndarray, log_p0: np.ndarray, log_q0: np.ndarray, algo: GRPO) -> np.ndarray:
    """h(z) of the module docstring (rows broadcast against z)."""
    k = PENALTIES[algo.penalty].value
    x1 = -_softplus(-z) - log_p0
    x0 = -_softplus(z) - log_q0
    with np.errstate(over="ignore", invalid="ignore"):
        return gap - algo.beta * (k(x1) - k(x0))


def _tie_slope(z: np.ndarray, log_p0: np.ndarray, log_q0: np.ndarray, algo: GRPO) -> np.ndarray:
    """dh/dz = -beta (k'(x_1)(1 - p) - k'(x_0) (-p)) with k' = psi (eq. 10.3)."""
    psi = PENALTIES[algo.penalty].psi
    x1 = -_softplus(-z) - log_p0
    x0 = -_softplus(z) - log_q0
    p, q = np.exp(-_softplus(-z)), np.exp(-_softplus(z))
    with np.errstate(over="ignore", invalid="ignore"):
        return -algo.beta * (psi(x1) * q + psi(x0) * p)


def reward_tie_policy(problem: Problem, algo: GRPO) -> StationaryResult:
    """Every class-symmetric stationary policy of the penalty in the reward (module
    docstring) for all contexts, assembled by ``assemble``'s one rule."""
    n_ctx = problem.n_contexts
    live = problem.ref > 0
    top = problem.levels.shape[1] - 1
    is_hi = live & (problem.dist[..., top] == 1) if top > 0 else np.zeros_like(live)
    p0 = np.sum(np.where(is_hi, problem.ref, 0.0), axis=1)
    q0 = np.sum(np.where(live & ~is_hi, problem.ref, 0.0), axis=1)
    gap = (problem.levels[:, top] - problem.levels[:, 0]) if top > 0 else np.zeros(n_ctx)
    two = (p0 > 0) & (q0 > 0)

    # per context: (z or +-inf for a vertex, kind) candidates
    cand_ctx: list[np.ndarray] = []
    cand_z: list[np.ndarray] = []
    one = np.nonzero(~two)[0]
    cand_ctx.append(one)
    cand_z.append(np.full(one.size, np.nan))  # one class: pi_ref
    rows_two = np.nonzero(two)[0]
    nit = 0
    for start in range(0, rows_two.size, BLOCK):
        rows = rows_two[start : start + BLOCK]
        ctx, z, it, to_top, to_bottom = _tie_roots(gap[rows], p0[rows], q0[rows], algo)
        nit = max(nit, it)
        # a vertex is a boundary root where h keeps pushing toward it past the last root
        # (k2, k3: k(x) -> inf as a class drains; k1 pulls back)
        cand_ctx += [rows[ctx], rows[to_top], rows[to_bottom]]
        cand_z += [z, np.full(int(to_top.sum()), np.inf), np.full(int(to_bottom.sum()), -np.inf)]
    context = np.concatenate(cand_ctx).astype(np.int64)
    z = np.concatenate(cand_z)
    order = np.argsort(context, kind="stable")
    context, z = context[order], z[order]
    return _assemble_ties(problem, algo, context, z, is_hi, live, p0, q0, gap, nit)


def _critical_points(z0: np.ndarray, log_p0: np.ndarray, log_q0: np.ndarray, algo: GRPO) -> tuple[np.ndarray, int]:
    """The zeros of h' per context, (n, 2) sorted: h is monotone between them and beyond.

    k3: h' = -beta (1 - p_0 e^{-z} - q_0 e^{z}) vanishes at z = 0 and z = z_0 (with
    p_0 + q_0 = 1). k2: h = gap + (beta/2)(z - z_0)(w(z) - w(z_0)), w(z) = softplus(z) +
    softplus(-z), so h' = 0 at z_0 (a double zero of the product) and once between z_0 and
    -z_0, where h' changes sign (found by regula falsi).
    """
    if algo.penalty == "k3":
        return np.sort(np.stack([z0, np.zeros_like(z0)], axis=1), axis=1), 0
    far = -z0
    lo = z0 + 1e-3 * (far - z0)  # off z_0, where h' = 0 as well

    def slope(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return _tie_slope(x, log_p0[idx], log_q0[idx], algo)

    rows = np.arange(z0.size)
    s_lo, s_far = slope(lo, rows), slope(far, rows)
    c, nit = illinois(slope, lo, far, s_lo, s_far, atol=4e-16)
    c = np.where(np.sign(s_lo) != np.sign(s_far), c, z0)  # p_0 = 1/2: z_0 = 0 is the only one
    return np.sort(np.stack([z0, c], axis=1), axis=1), nit


def _far_point(
    start: np.ndarray,
    direction: float,
    want: float,
    gap: np.ndarray,
    log_p0: np.ndarray,
    log_q0: np.ndarray,
    algo: GRPO,
) -> np.ndarray:
    """A point beyond ``start`` (in ``direction``) where sign(h) = ``want``: past the last
    critical point h is monotone, so no root lies beyond it."""
    step = np.ones_like(start)
    point = start + direction * step
    for _ in range(64):
        todo = np.sign(_tie(point, gap, log_p0, log_q0, algo)) != want
        if not todo.any():
            break
        step = np.where(todo, 2.0 * step, step)
        point = np.where(todo, start + direction * step, point)
    return point


def _tie_roots(
    gap: np.ndarray, p0: np.ndarray, q0: np.ndarray, algo: GRPO
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    """Interior roots of h for a block of two-class contexts: (row, z) pairs, iterations,
    and per row whether h > 0 toward p = 1 (that vertex attracts) and h < 0 toward p = 0.

    h is monotone on the pieces between its critical points (``_critical_points``), so each
    piece holds at most one root, bracketed where h changes sign across it: every root is
    found, two roots near a fold included."""
    log_p0, log_q0 = np.log(p0), np.log(q0)
    z0 = log_p0 - log_q0
    if algo.penalty == "k1":  # h = gap - beta (z - z_0): one root, and both vertices repel
        none = np.zeros(gap.size, bool)
        return np.arange(gap.size), z0 + gap / algo.beta, 0, none, none
    crit, nit = _critical_points(z0, log_p0, log_q0, algo)
    args = (gap, log_p0, log_q0, algo)
    # k2 and k3 penalise a draining class without bound: h -> -inf toward p = 0, +inf toward 1
    far_lo = _far_point(crit[:, 0], -1.0, -1.0, *args)
    far_hi = _far_point(crit[:, 1], 1.0, 1.0, *args)
    ends = np.stack([far_lo, crit[:, 0], crit[:, 1], far_hi], axis=1)
    h_ends = _tie(ends, gap[:, None], log_p0[:, None], log_q0[:, None], algo)
    r, piece = np.nonzero(np.sign(h_ends[:, :-1]) * np.sign(h_ends[:, 1:]) < 0)
    lo, hi, f_lo, f_hi = ends[r, piece], ends[r, piece + 1], h_ends[r, piece], h_ends[r, piece + 1]

    def tie(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return _tie(x, gap[r][idx], log_p0[r][idx], log_q0[r][idx], algo)

    roots, it = illinois(tie, lo, hi, f_lo, f_hi, atol=4e-16)
    # a root exactly at a critical point (a tangency) has no sign change around it
    rt, ct = np.nonzero(h_ends[:, 1:3] == 0)
    row = np.concatenate([r, rt])
    roots = np.concatenate([roots, crit[rt, ct]])
    order = np.lexsort((roots, row))
    return row[order], roots[order], max(nit, it), h_ends[:, -1] > 0, h_ends[:, 0] < 0


def _assemble_ties(
    problem: Problem,
    algo: GRPO,
    context: np.ndarray,
    z: np.ndarray,
    is_hi: np.ndarray,
    live: np.ndarray,
    p0: np.ndarray,
    q0: np.ndarray,
    gap: np.ndarray,
    nit: int,
) -> StationaryResult:
    n_ctx = problem.n_contexts
    ref = problem.ref[context]
    hi_r, live_r = is_hi[context], live[context]
    p0_r, q0_r = p0[context], q0[context]
    single = np.isnan(z)
    vertex = np.isinf(z)
    with np.errstate(over="ignore"):
        log_p = np.where(single, 0.0, -_softplus(-z))
        log_q = np.where(single, 0.0, -_softplus(z))
    # the policy: class masses times reference ratios inside each class
    scale_hi = np.where(single, 1.0, np.exp(log_p) / np.where(p0_r > 0, p0_r, 1.0))
    scale_lo = np.where(single, 1.0, np.exp(log_q) / np.where(q0_r > 0, q0_r, 1.0))
    pi = np.where(hi_r, ref * scale_hi[:, None], np.where(live_r, ref * scale_lo[:, None], 0.0))

    # residual |h| recomputed from the policy's log-ratios (the root's logit where a class's
    # mass underflows to 0: a root 1 - O(exp(-gap/beta)) from a vertex, issue 21)
    k = PENALTIES[algo.penalty].value
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m_hi = np.sum(np.where(hi_r, pi, 0.0), axis=1)
        m_lo = np.sum(np.where(live_r & ~hi_r, pi, 0.0), axis=1)
        x1 = np.where((m_hi > 0) & (p0_r > 0), np.log(m_hi) - np.log(p0_r), log_p - np.log(p0_r))
        x0 = np.where((m_lo > 0) & (q0_r > 0), np.log(m_lo) - np.log(q0_r), log_q - np.log(q0_r))
        k1v, k0v = k(x1), k(x0)
        h = gap[context] - algo.beta * (k1v - k0v)
        size = np.maximum.reduce(
            [np.ones_like(h), np.abs(gap[context]), algo.beta * np.abs(k1v), algo.beta * np.abs(k0v)]
        )
    residual = np.where(single | vertex, 0.0, np.abs(h))
    tolerance = RESIDUAL_TOLERANCE * np.where(single | vertex, 1.0, size)
    accepted = residual <= tolerance

    slope = _tie_slope(
        np.where(single | vertex, 0.0, z),
        np.log(np.where(p0_r > 0, p0_r, 1.0)),
        np.log(np.where(q0_r > 0, q0_r, 1.0)),
        algo,
    )
    stable = np.where(single | vertex, 1, (slope < 0).astype(np.int64))
    sliding = algo.normalization == "shift_scale" and algo.eps == 0
    kind_code = np.where(
        vertex,
        ROOT_KINDS.index("boundary"),
        np.where(single | (not sliding), ROOT_KINDS.index("interior"), ROOT_KINDS.index("sliding")),
    )
    multiplier = np.where(kind_code == ROOT_KINDS.index("sliding"), np.nan, 0.0)
    mixture = np.stack([np.sum(np.where(live_r & ~hi_r, pi, 0.0), axis=1), m_hi], axis=1)
    if problem.n_levels == 1:
        mixture = mixture[:, 1:] + mixture[:, :1]
    ref_mix = problem.reference_mixture()[context]
    mix_d = np.max(np.abs(mixture - ref_mix), axis=1)
    pol_d = np.max(np.abs(pi - ref), axis=1)
    # h(z_0) = gap > 0: from pi_ref the flow raises p to the first root above z_0 (the
    # vertex p = 1 where h stays positive); a one-class context's only root is pi_ref
    with np.errstate(divide="ignore"):
        above = np.where(~single & (z > np.log(p0_r) - np.log(q0_r)), z, np.nan)  # +inf: the vertex p = 1
    first = np.full(n_ctx, np.nan)
    np.fmin.at(first, context, above)  # fmin: NaN (not above) loses to any number
    reached = (above == first[context]) | single
    choice = choose_roots(context, accepted, stable, kind_code, mix_d, pol_d, residual, n_ctx, reached=reached)
    status, messages = outcome(choice, kind_code, residual, algo)
    policy, res = chosen_fields(choice, pi, residual, problem.ref)
    counts = np.bincount(context, minlength=n_ctx)
    starts = np.concatenate([[0], np.cumsum(counts)])

    def build(c: int) -> tuple[StationaryRoot, ...]:
        return tuple(
            StationaryRoot(
                pi[i],
                mixture[i],
                float(multiplier[i]),
                float(residual[i]),
                bool(stable[i]),
                None,
                float(tolerance[i]),
                kind=ROOT_KINDS[int(kind_code[i])],
            )
            for i in range(int(starts[c]), int(starts[c + 1]))
        )

    # built on demand for a large batch, as the loss's batch path does
    roots = tuple(build(c) for c in range(n_ctx)) if n_ctx <= LAZY_FROM else LazyRoots(build, counts)
    return StationaryResult(
        policy=policy,
        success=choice.success,
        status=status,
        residual=res,
        nit=nit,
        message=messages,
        roots=roots,  # type: ignore[arg-type]
        algo=algo,
        problem=problem,
        method="scan",
    )
