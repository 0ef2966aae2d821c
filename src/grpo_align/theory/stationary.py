"""Stationary policies of GRPO and its variants (THEORY.md sections 5 and 9).

A stationary policy pi = pi_old = pi_theta zeroes the expected gradient of the tabular
softmax policy:

    P_G(o | pi) - beta phi(o) = c   for every o with pi(o) > 0.

k3:        pi(o) = pi_ref(o) / (1 - (P_G(o|pi) - c)/beta), every denominator positive;
k2 / kl:   pi(o) proportional to pi_ref(o) exp(P_G(o|pi)/beta);
abs:       P_G(o|pi) - c in beta * sign(log pi(o)/pi_ref(o)) (a set at pi(o) = pi_ref(o));
k1 or beta = 0: no interior solution, mass flows to the best reward class.

Reduction (section 5). Outputs with the same reward distribution form a class; P_G is the
same on a class, so the solution keeps reference ratios inside each class, and P_G depends
on pi only through the mixture w = sum_o pi(o) F_o. Given w, the class masses follow from
the formula above with the scalar c chosen so that they sum to 1 (a monotone
one-dimensional equation, so every candidate is a feasible policy), and a stationary policy
is a fixed point w = T(w) in L dimensions. L = 2 is scanned and bracketed, which finds every
root; larger L uses damped Newton from several starts. Pairwise-preference problems (G = 2)
use the policy itself as the variable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from grpo_align.errors import InputError
from grpo_align.theory.preference import LevelPreference, preference
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO

__all__ = ["StationaryResult", "StationaryRoot", "penalty_coefficient", "stationarity_residual", "stationary_policy"]

#: A root is accepted when the stationarity residual (max over the support of
#: |P_G(o) - beta phi(o) - c|) is below this.
RESIDUAL_TOLERANCE = 1e-9


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class StationaryRoot:
    """One stationary policy of one context.

    ``stable`` is None where stability was not computed (more than 64 reward classes).
    ``eigenvalues`` are those of the Jacobian of the expected softmax-logit gradient at the
    root, on the classes' logits (the softmax's null direction removed): negative real
    parts mean that gradient ascent with a small step converges to it.
    """

    policy: np.ndarray
    mixture: np.ndarray
    multiplier: float
    residual: float
    stable: bool | None
    eigenvalues: np.ndarray | None = field(default=None, repr=False)
    #: residual accepted for this root: RESIDUAL_TOLERANCE times the size of the terms
    #: (1, |P_G| and beta |phi| on the support), since rounding in phi = 1 - pi_ref/pi
    #: grows with pi_ref/pi
    tolerance: float = field(default=RESIDUAL_TOLERANCE, repr=False)

    def __repr__(self) -> str:
        pol = np.array2string(self.policy, precision=6, threshold=8)
        return f"StationaryRoot(policy={pol}, stable={self.stable}, residual={self.residual:.1e})"


@dataclass(frozen=True)
class StationaryResult:
    """Result of ``stationary_policy`` (fields follow scipy.optimize.OptimizeResult).

    Attributes
    ----------
    policy : ndarray, (K,) or (C, K)
        The stationary policy (the stable root nearest the reference where several exist),
        or the limit policy where no interior one exists (``status == "limit"``).
    success : bool or ndarray of bool
        True when ``policy`` satisfies the stationarity conditions to ``RESIDUAL_TOLERANCE`` times the size of the terms (``StationaryRoot.tolerance``)
        (or is the reported limit).
    status : str or list of str
        "interior", "limit" or "failed" per context.
    residual : float or ndarray
        max over the support of |P_G(o|pi) - beta phi(o) - c|, recomputed from ``policy``.
    nit : int
        Iterations of the outer solver (largest over contexts).
    message : str or list of str
    roots : list of StationaryRoot, or a list of such lists for a batch
        Every stationary policy found, each with its stability.
    """

    policy: np.ndarray
    success: Any
    status: Any
    residual: Any
    nit: int
    message: Any
    roots: Any
    algo: GRPO = field(repr=False)
    problem: Problem = field(repr=False)

    def __repr__(self) -> str:
        pol = np.array2string(np.asarray(self.policy), precision=6, threshold=8)
        res = np.max(np.asarray(self.residual))
        n_roots = (
            len(self.roots)
            if not self.problem.batched
            else f"{sum(len(r) for r in self.roots)} over {len(self.roots)} contexts"
        )
        msg = self.message if isinstance(self.message, str) else self.message[0]
        return (
            f"StationaryResult(success={np.all(self.success)}, policy={pol}, roots={n_roots}, "
            f"residual={res:.1e}, nit={self.nit}, message={msg!r})"
        )


# ---------------------------------------------------------------------------- penalty maps
def penalty_coefficient(penalty: str, policy: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """phi(o): the penalty's gradient is sum_o phi(o) grad pi(o) (THEORY.md section 3).

    k3: 1 - pi_ref/pi; k2: log(pi/pi_ref); kl: log(pi/pi_ref) + 1; k1: 1;
    abs: sign(log(pi/pi_ref)) (0 at pi = pi_ref, the subgradient torch takes).
    Entries with pi = 0 are 0 (outside the support).
    """
    pos = policy > 0
    safe_pi = np.where(pos, policy, 1.0)
    safe_ref = np.where(ref > 0, ref, 1.0)
    if penalty == "k3":
        phi = 1.0 - ref / safe_pi
    elif penalty in ("k2", "kl"):
        phi = np.log(safe_pi / safe_ref) + (1.0 if penalty == "kl" else 0.0)
    elif penalty == "k1":
        phi = np.ones_like(policy)
    elif penalty == "abs":
        phi = np.sign(np.log(safe_pi / safe_ref))
    else:  # pragma: no cover - GRPO validates
        raise InputError("penalty", f"unknown {penalty!r}")
    return np.where(pos, phi, 0.0)


def _k3_masses(pref: np.ndarray, ref_mass: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Class masses m_j = R_j / (1 - (P_j - c)/beta) with c such that sum_j m_j = 1.

    THEORY.md section 5 (k3). f(c) = sum_j R_j beta / (beta - P_j + c) - 1 is convex and
    decreasing for c > max_j P_j - beta (all denominators positive); Newton from a point
    where f >= 0 increases monotonically to the unique root, so the result is always a
    probability vector with positive denominators. Shapes (..., J).
    """
    shape = np.broadcast_shapes(pref.shape, ref_mass.shape)
    pref2 = np.broadcast_to(pref, shape).reshape(-1, shape[-1])
    ref2 = np.broadcast_to(ref_mass, shape).reshape(-1, shape[-1])
    active = ref2 > 0
    p_max = np.max(np.where(active, pref2, -np.inf), axis=-1)
    top_mass = np.sum(np.where(active & (pref2 >= p_max[:, None]), ref2, 0.0), axis=-1)
    # at c0 the top class alone contributes exactly 1, so f(c0) >= 0
    c = p_max - beta + beta * top_mass
    rb = ref2 * beta
    # iterate only on the rows not yet converged (most converge in a few steps)
    todo = np.arange(c.size)
    for _ in range(200):
        act, cc = active[todo], c[todo, None]
        denom = np.where(act, beta - pref2[todo] + cc, 1.0)
        f = np.sum(rb[todo] / denom, axis=-1) - 1.0
        fprime = -np.sum(rb[todo] / denom**2, axis=-1)
        step = -f / fprime
        c[todo] += step
        # Newton converges quadratically: a row is done once its step is small against
        # the nearest pole (the smallest denominator sets the masses' sensitivity to c)
        # or at the rounding level of c, below which the noisy sum cannot go
        min_denom = np.min(np.where(act, denom, np.inf), axis=-1)
        done = np.abs(step) <= np.maximum(1e-12 * min_denom, 4 * np.spacing(np.abs(c[todo])))
        todo = todo[~done]
        if todo.size == 0:
            break
    denom = np.where(active, beta - pref2 + c[:, None], 1.0)
    masses = np.where(active, rb / denom, 0.0)
    masses = (masses / masses.sum(axis=-1, keepdims=True)).reshape(shape)
    return masses, c.reshape(shape[:-1])


def _kl_masses(pref: np.ndarray, ref_mass: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """m_j proportional to R_j exp(P_j / beta) (THEORY.md section 5, k2 and exact KL)."""
    active = ref_mass > 0
    p_max = np.max(np.where(active, pref, -np.inf), axis=-1, keepdims=True)
    weights = np.where(active, ref_mass * np.exp((np.where(active, pref, p_max) - p_max) / beta), 0.0)
    z = weights.sum(axis=-1, keepdims=True)
    # c = beta * log(sum_j R_j exp(P_j/beta)) makes P_j - beta log(m_j/R_j) = c
    return weights / z, (p_max + beta * np.log(z))[..., 0]


# ---------------------------------------------------------------------------- reduction
class _Reduced:
    """A problem in class space: class reference masses R (C, J) and P_j as a function of m."""

    def __init__(self, problem: Problem, algo: GRPO) -> None:
        self.problem = problem
        self.algo = algo
        self.beta = algo.beta
        if problem.is_preference:
            n_ctx, n_out = problem.ref.shape
            self.class_of = np.broadcast_to(np.arange(n_out), (n_ctx, n_out))
            self.ref_mass = problem.ref.copy()
            self.margin = problem.margin_matrix() * algo.pairwise_scale
            self.class_dist = None
        else:
            self.class_of, self.ref_mass, self.class_dist = _reward_classes(problem)
            self.level_pref = LevelPreference(problem.levels, algo)
        # ratio of each output's reference probability to its class's
        cls_ref = np.take_along_axis(self.ref_mass, self.class_of, axis=1)
        self.within = np.where(cls_ref > 0, problem.ref / np.where(cls_ref > 0, cls_ref, 1.0), 0.0)

    @property
    def n_classes(self) -> int:
        return int(self.ref_mass.shape[1])

    def mixture(self, masses: np.ndarray) -> np.ndarray:
        """w = sum_j m_j F_j, (C, ..., L) for masses (C, ..., J)."""
        return np.einsum("c...j,cjl->c...l", masses, self.class_dist)

    def class_preference_from_mixture(self, w: np.ndarray) -> np.ndarray:
        """P_j = F_j . h(w), (C, ..., J)."""
        h = self.level_pref(w)
        if self.algo.is_limit and not np.all(np.isfinite(h)):
            # G = inf at a point-mass w: 0 * inf must count as 0 (see preference.expect_levels)
            extra = (1,) * (w.ndim - 2)
            dist = self.class_dist.reshape(self.class_dist.shape[:1] + extra + self.class_dist.shape[1:])
            with np.errstate(invalid="ignore"):
                return np.where(dist > 0, dist * h[..., None, :], 0.0).sum(axis=-1)
        return np.einsum("cjl,c...l->c...j", self.class_dist, h)

    def class_preference(self, masses: np.ndarray) -> np.ndarray:
        """P_G of every class when the classes carry ``masses``, (C, ..., J)."""
        if self.class_dist is None:
            return np.einsum("cjk,c...k->c...j", self.margin, masses)
        return self.class_preference_from_mixture(self.mixture(masses))

    def masses_given(self, pref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class masses and multiplier c solving the penalty's stationarity for frozen P."""
        extra = pref.ndim - 2
        ref_mass = self.ref_mass.reshape(self.ref_mass.shape[:1] + (1,) * extra + self.ref_mass.shape[1:])
        if self.algo.penalty == "k3":
            return _k3_masses(pref, ref_mass, self.beta)
        return _kl_masses(pref, ref_mass, self.beta)

    def take(self, idx: np.ndarray) -> _Reduced:
        """The contexts ``idx`` (repeats allowed) of a reward problem, as a new reduction."""
        sub = _Reduced.__new__(_Reduced)
        sub.__dict__.update(self.__dict__)
        sub.class_of = self.class_of[idx]
        sub.ref_mass = self.ref_mass[idx]
        sub.class_dist = self.class_dist[idx]
        sub.within = self.within[idx]
        sub.level_pref = self.level_pref.take(idx)
        return sub

    def policy(self, masses: np.ndarray) -> np.ndarray:
        """Spread class masses over outputs in reference ratios, (C, K) from (C, J)."""
        return np.take_along_axis(masses, self.class_of, axis=1) * self.within


def _reward_classes(problem: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group outputs with identical reward distributions.

    Returns class_of (C, K), class reference mass R (C, J) and class distributions
    (C, J, L). Rows are hashed by a fixed random projection, then checked exactly; a hash
    collision falls back to one class per output (slower, still exact).
    """
    dist = problem.dist
    n_ctx, n_out, n_levels = dist.shape
    rng = np.random.default_rng(20250225)
    key = dist @ rng.random(n_levels)
    order = np.argsort(key, axis=1, kind="stable")
    sorted_key = np.take_along_axis(key, order, axis=1)
    new_class = np.concatenate([np.zeros((n_ctx, 1), bool), np.diff(sorted_key, axis=1) != 0], axis=1)
    class_sorted = np.cumsum(new_class, axis=1)
    class_of = np.empty_like(class_sorted)
    np.put_along_axis(class_of, order, class_sorted, axis=1)
    n_classes = int(class_sorted[:, -1].max()) + 1
    flat = (np.arange(n_ctx)[:, None] * n_classes + class_of).ravel()
    ref_mass = np.bincount(flat, weights=problem.ref.ravel(), minlength=n_ctx * n_classes).reshape(n_ctx, n_classes)
    class_dist = np.zeros((n_ctx, n_classes, n_levels))
    class_dist[np.arange(n_ctx)[:, None], class_of] = dist
    exact = np.array_equal(np.take_along_axis(class_dist, class_of[..., None], axis=1), dist)
    if not exact:
        return np.broadcast_to(np.arange(n_out), (n_ctx, n_out)).copy(), problem.ref.copy(), dist.copy()
    # a padded class slot (a context with fewer classes) has no members: give it mass 0
    return class_of, ref_mass, class_dist


# ---------------------------------------------------------------------------- solvers
def _scan_binary(red: _Reduced) -> tuple[list[list[np.ndarray]], int]:
    """All fixed points u = T(u) for two levels, u = w(high level): scan then bracket.

    T(u) lies between the smallest and largest high-level probability of the active
    classes, [a, b], so every root does; g(u) = T(u) - u is evaluated on a grid dense near
    both ends and every sign change is refined by the Illinois method.
    """
    active = red.ref_mass > 0
    high = red.class_dist[..., 1]
    a = np.min(np.where(active, high, np.inf), axis=1)
    b = np.max(np.where(active, high, -np.inf), axis=1)
    if red.algo.is_limit:
        # h is unbounded at a point-mass w; stay inside (0, 1)
        a = np.maximum(a, 1e-13)
        b = np.minimum(b, 1 - 1e-13)
    ends = np.logspace(-12, -1, 23)
    s = np.unique(np.concatenate([np.linspace(0, 1, 129), ends, 1 - ends]))
    grid = a[:, None] + (b - a)[:, None] * s[None, :]  # (C, M)

    def g(r: _Reduced, u: np.ndarray) -> np.ndarray:
        w = np.stack([1 - u, u], axis=-1)
        masses, _ = r.masses_given(r.class_preference_from_mixture(w))
        return r.mixture(masses)[..., 1] - u

    # chunks of grid points keep the (C, points, J) work arrays near 2^24 entries
    chunk = max(1, (1 << 24) // max(1, grid.shape[0] * red.n_classes))
    values = np.concatenate([g(red, grid[:, i : i + chunk]) for i in range(0, grid.shape[1], chunk)], axis=1)
    roots: list[list[float]] = [[] for _ in range(grid.shape[0])]
    zero = values == 0
    for c, i in zip(*np.nonzero(zero), strict=False):
        roots[c].append(float(grid[c, i]))
    change = (np.sign(values[:, :-1]) * np.sign(values[:, 1:])) < 0
    ctx, idx = np.nonzero(change)
    lo, hi = grid[ctx, idx], grid[ctx, idx + 1]
    g_lo, g_hi = values[ctx, idx], values[ctx, idx + 1]
    nit = 0
    if ctx.size:
        # each bracket is solved as its own pseudo-context: a copy of its context's classes
        brackets = red.take(ctx)

        def g_at(u: np.ndarray) -> np.ndarray:
            return g(brackets, u[:, None])[:, 0]

        side = np.zeros(ctx.size)
        for nit in range(1, 200):
            # Illinois: regula falsi with the stale end's value halved
            u = np.clip((lo * g_hi - hi * g_lo) / (g_hi - g_lo), lo, hi)
            mid_needed = ~np.isfinite(u)
            u = np.where(mid_needed, 0.5 * (lo + hi), u)
            gu = g_at(u)
            left = np.sign(gu) == np.sign(g_lo)
            g_hi = np.where(left & (side == 1), g_hi * 0.5, g_hi)
            g_lo = np.where(~left & (side == -1), g_lo * 0.5, g_lo)
            lo, g_lo = np.where(left, u, lo), np.where(left, gu, g_lo)
            hi, g_hi = np.where(left, hi, u), np.where(left, g_hi, gu)
            side = np.where(left, 1, -1)
            done = (gu == 0) | (hi - lo <= 4e-16 * np.maximum(1.0, np.abs(u)))
            lo = np.where(gu == 0, u, lo)
            hi = np.where(gu == 0, u, hi)
            if np.all(done):
                break
        for c, u_root in zip(ctx, 0.5 * (lo + hi), strict=False):
            roots[int(c)].append(float(u_root))
    same = a == b  # a single active reward distribution: T is constant
    for c in np.nonzero(same)[0]:
        roots[c] = [float(a[c])]
    mixtures = [[np.array([1 - u, u]) for u in _dedupe(sorted(r))] for r in roots]
    return mixtures, nit


def _dedupe(values: list[float], tol: float = 1e-10) -> list[float]:
    out: list[float] = []
    for v in values:
        if not out or abs(v - out[-1]) > tol:
            out.append(v)
    return out


def _newton(
    red: _Reduced, starts: np.ndarray, fixed_map: Callable[[np.ndarray], np.ndarray], max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray, int]:
    """Damped Newton on z = T(z) over the simplex, batched over (C, S) starts.

    z has D coordinates summing to 1; each start's largest coordinate is the dependent
    one and the other D - 1 are free (a coordinate that should stay at 0, such as a padded
    level or one no output draws, must be free: as the dependent one every Newton step
    would push it out of the simplex). The Jacobian is taken by forward differences (D is
    the number of reward levels, or outputs for a preference problem). A step is halved
    until the residual falls and z stays in the simplex. Returns the final z (C, S, D),
    the residual norm max_d |T(z)_d - z_d| (C, S) and the iteration count.
    """
    z = starts.copy()
    dim = z.shape[-1]
    axis = np.arange(dim)

    def resid(zz: np.ndarray) -> np.ndarray:
        return fixed_map(zz) - zz

    res = resid(z)
    norm = np.max(np.abs(res), axis=-1)
    # a start whose line search accepts no step would fail identically from then on
    # (the iteration is deterministic): freeze it instead of spending every iteration on it
    frozen = np.zeros(z.shape[:-1], bool)
    # below this the residual is at the rounding level of T: a converged start
    done_at = 1e-13
    nit = 0
    for nit in range(1, max_iter + 1):
        if np.all((norm < done_at) | frozen):
            break
        dep = np.argmax(z, axis=-1)
        is_dep = axis == dep[..., None]  # (C, S, D)
        free = np.argsort(axis + dim * is_dep, axis=-1, kind="stable")[..., :-1]  # (C, S, D-1)
        f = np.take_along_axis(res, free, axis=-1)
        h = 1e-7
        jac = np.empty((*z.shape[:-1], dim - 1, dim - 1))
        for k in range(dim - 1):
            # move h from the dependent coordinate (>= 1/D) to free coordinate k
            zk = z + h * ((axis == free[..., k : k + 1]).astype(float) - is_dep)
            jac[..., :, k] = (np.take_along_axis(resid(zk), free, axis=-1) - f) / h
        finite = np.all(np.isfinite(jac), axis=(-2, -1))
        jac = np.where(finite[..., None, None], jac, np.eye(dim - 1))
        try:
            step = -np.linalg.solve(jac, f[..., None])[..., 0]
        except np.linalg.LinAlgError:
            # one singular Jacobian must not cost the other starts their Newton step
            step = -(np.linalg.pinv(jac) @ f[..., None])[..., 0]
        bad = ~np.all(np.isfinite(step), axis=-1) | ~finite
        step = np.where(bad[..., None], 0.5 * f, step)
        full = np.zeros_like(z)
        np.put_along_axis(full, free, step, axis=-1)
        full = full - is_dep * step.sum(axis=-1, keepdims=True)
        lam = np.ones(z.shape[:-1])
        accepted = np.zeros(z.shape[:-1], bool)
        new_z, new_res, new_norm = z.copy(), res.copy(), norm.copy()
        # 25 halvings: a step 3e-8 of Newton's that still does not lower the residual means
        # the start sits at rounding level or in a region Newton cannot leave
        for _ in range(25):
            trial = z + lam[..., None] * full
            inside = np.all(trial >= -1e-15, axis=-1)
            trial = np.clip(trial, 0.0, None)
            trial /= trial.sum(axis=-1, keepdims=True)
            tr = resid(trial)
            tn = np.max(np.abs(tr), axis=-1)
            ok = inside & (tn < norm * (1 - 1e-4 * lam) + 1e-300) & ~accepted
            new_z = np.where(ok[..., None], trial, new_z)
            new_res = np.where(ok[..., None], tr, new_res)
            new_norm = np.where(ok, tn, new_norm)
            accepted |= ok
            if np.all(accepted | (norm < done_at) | frozen):
                break
            lam = np.where(accepted, lam, 0.5 * lam)
        frozen |= ~accepted & ~(norm < done_at)  # (a NaN residual freezes too)
        z, res, norm = new_z, new_res, new_norm
    return z, norm, nit


def _abs_masses(red: _Reduced, max_iter: int = 50_000) -> tuple[np.ndarray, np.ndarray, int]:
    """Class masses for the abs penalty by forward-backward splitting.

    With P frozen, the abs stationarity conditions are those of
    max_m  sum_j m_j P_j - beta sum_j |m_j - R_j|  over the simplex (phi = sign(x) is the
    gradient of the total-variation term). The iteration m <- prox(m + eta P(m)) has exactly
    the stationary policies as fixed points; its proximal step (soft-thresholding toward R,
    then a shift so the masses sum to 1) is solved exactly through its breakpoints.
    """
    beta = red.beta
    ref_mass = red.ref_mass
    active = ref_mass > 0
    m = ref_mass.copy()
    p0 = red.class_preference(m)
    eta = 0.25 / (1.0 + np.max(np.abs(np.where(active, p0, 0.0))))
    t = eta * beta
    nit = 0
    for nit in range(1, max_iter + 1):
        # G = inf at a point-mass mixture gives P = -inf to the drained classes; the prox
        # only needs "far below": a finite stand-in keeps the arithmetic exact elsewhere
        y = m + eta * np.clip(red.class_preference(m), -1e12, 1e12)
        new = _prox_tv_simplex(y, ref_mass, t, active)
        # a context whose P_G diverged (G = inf at a point-mass mixture) cannot recover
        finite = np.all(np.isfinite(new), axis=-1)
        still = finite & (np.max(np.abs(np.where(finite[:, None], new - m, 0.0)), axis=-1) >= 1e-15)
        m = new
        if not np.any(still):
            break
    return m, red.class_preference(m), nit


def _prox_tv_simplex(y: np.ndarray, ref: np.ndarray, t: float, active: np.ndarray) -> np.ndarray:
    """argmin_m 1/2 |m - y|^2 + t sum_j |m_j - R_j| over the simplex (active classes only).

    m_j(lam) = max(0, R_j + soft(y_j - lam - R_j, t)) is non-increasing and piecewise
    linear in lam; lam with sum_j m_j = 1 is found between consecutive breakpoints.
    """
    d = y - ref
    breaks = np.concatenate([d - t, d + t, d + t + ref], axis=-1)
    breaks = np.sort(np.where(np.concatenate([active] * 3, axis=-1), breaks, np.nan), axis=-1)

    def mass(lam: np.ndarray) -> np.ndarray:
        z = d[..., None, :] - lam[..., :, None]
        soft = np.sign(z) * np.maximum(np.abs(z) - t, 0.0)
        m = np.maximum(0.0, ref[..., None, :] + soft)
        return np.where(active[..., None, :], m, 0.0)

    total = mass(np.nan_to_num(breaks, nan=np.inf)).sum(axis=-1)  # non-increasing in lam
    # the first breakpoint where the total drops to <= 1
    idx = np.argmax(total <= 1.0, axis=-1)
    idx = np.maximum(idx, 1)
    lam_hi = np.take_along_axis(breaks, idx[..., None], axis=-1)[..., 0]
    lam_lo = np.take_along_axis(breaks, (idx - 1)[..., None], axis=-1)[..., 0]
    s_hi = np.take_along_axis(total, idx[..., None], axis=-1)[..., 0]
    s_lo = np.take_along_axis(total, (idx - 1)[..., None], axis=-1)[..., 0]
    frac = np.where(s_lo > s_hi, (s_lo - 1.0) / np.where(s_lo > s_hi, s_lo - s_hi, 1.0), 0.0)
    lam = lam_lo + frac * (lam_hi - lam_lo)
    m = mass(lam[..., None])[..., 0, :]
    return m / m.sum(axis=-1, keepdims=True)


def _limit_masses(red: _Reduced, max_iter: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Where mass goes without regularisation (beta = 0 or k1): the class-level replicator.

    Follows the expected natural-gradient flow log m_j += eta (P_j - sum_k m_k P_k) from the
    reference (within a class the reference ratios are kept) until one class holds all but
    1e-12 of the mass. Returns the limit masses and a flag per context: whether it converged.
    """
    active = red.ref_mass > 0
    log_m = np.where(active, np.log(np.where(active, red.ref_mass, 1.0)), -np.inf)
    m_prev = None
    for _ in range(max_iter):
        m = np.exp(log_m - np.max(log_m, axis=-1, keepdims=True))
        m /= m.sum(axis=-1, keepdims=True)
        done = np.max(m, axis=-1) > 1 - 1e-12
        if np.all(done):
            break
        # every class's advantage is 0 (e.g. two classes tie exactly): nothing moves again
        if m_prev is not None and np.all(done | np.all(m == m_prev, axis=-1)):
            break
        m_prev = m
        pref = red.class_preference(m)
        adv = np.where(active, pref - np.sum(m * pref, axis=-1, keepdims=True), 0.0)
        # differences at rounding level are ties: normalised, they would be steps of 0.5
        size = np.max(np.abs(np.where(active, pref, 0.0)), axis=-1, keepdims=True)
        adv = np.where(np.abs(adv) <= 1e-13 * (1.0 + size), 0.0, adv)
        # The step is normalised by the largest advantage among classes that still carry
        # mass: a drained class keeps a large negative advantage, and letting it set the
        # scale would slow the race between two nearly tied leaders to a crawl. A class
        # below the threshold grows by at most 0.5 per iteration in log space.
        carries = m > 1e-6
        scale = np.max(np.where(carries, np.abs(adv), 0.0), axis=-1, keepdims=True)
        scale = np.where(scale > 0, scale, np.max(np.abs(adv), axis=-1, keepdims=True))
        step = np.clip(adv / np.maximum(scale, 1e-300) * 0.5, -50.0, 0.5)
        log_m = log_m + np.where(active, step, 0.0)
    m = np.exp(log_m - np.max(log_m, axis=-1, keepdims=True))
    m /= m.sum(axis=-1, keepdims=True)
    top = np.argmax(m, axis=-1)
    limit = np.zeros_like(m)
    limit[np.arange(m.shape[0]), top] = 1.0
    # the vertex must attract: every other class has lower P_G there
    pref = red.class_preference(limit)
    gap = np.where(active, pref - pref[np.arange(m.shape[0]), top][:, None], -np.inf)
    gap[np.arange(m.shape[0]), top] = -np.inf
    converged = (np.max(m, axis=-1) > 1 - 1e-6) & np.all(gap <= 1e-12, axis=-1)
    return limit, converged


def _class_field(red: _Reduced, logits: np.ndarray) -> np.ndarray:
    """Expected softmax-logit gradient on class logits: m_j (g_j - sum_k m_k g_k)."""
    m = np.exp(logits - logits.max(axis=-1, keepdims=True))
    m /= m.sum(axis=-1, keepdims=True)
    pref = red.class_preference(m)
    phi = penalty_coefficient(red.algo.penalty, m, np.broadcast_to(red.ref_mass, m.shape))
    g = pref - red.beta * phi
    return m * (g - np.sum(m * g, axis=-1, keepdims=True))


def _stability(red: _Reduced, masses: np.ndarray) -> list[tuple[np.ndarray | None, bool | None]]:
    """Eigenvalues of the class-logit gradient field's Jacobian at a root, per context.

    The Jacobian is taken by central differences for all contexts at once; only active
    classes count, and the softmax's null direction (every logit up by the same amount) is
    projected out. Contexts with more than 64 active classes get (None, None).
    """
    active = masses > 0
    base = np.where(active, np.log(np.where(active, masses, 1.0)), -np.inf)
    n_cls = masses.shape[1]
    if n_cls > 64:
        return [(None, None)] * masses.shape[0]
    h = 1e-6
    jac = np.empty((*masses.shape, n_cls))  # (C, J, J): d field_i / d logit_j
    for j in range(n_cls):
        plus, minus = base.copy(), base.copy()
        plus[:, j] += h
        minus[:, j] -= h
        jac[:, :, j] = (_class_field(red, plus) - _class_field(red, minus)) / (2 * h)
    out: list[tuple[np.ndarray | None, bool | None]] = [(None, None)] * masses.shape[0]
    # contexts with the same set of active classes are handled together
    patterns, which = np.unique(active, axis=0, return_inverse=True)
    for pattern, members in ((p, np.nonzero(which.ravel() == k)[0]) for k, p in enumerate(patterns)):
        idx = np.nonzero(pattern)[0]
        n_act = idx.size
        if n_act <= 1:
            for c in members:
                out[c] = (np.zeros(0), True)
            continue
        sub = jac[np.ix_(members, idx, idx)]
        finite = np.all(np.isfinite(sub), axis=(1, 2))
        basis = _null_free_basis(n_act)
        eigs = np.full((members.size, n_act - 1), np.nan, dtype=complex)
        if np.any(finite):
            eigs[finite] = np.linalg.eigvals(basis.T @ sub[finite] @ basis)
        for c, eig, ok in zip(members, eigs, finite, strict=False):
            if not ok:
                continue
            # The field is m_j (g_j - g_bar), so a class with a small mass m_j contributes an
            # eigenvalue of order m_j: a root next to a vertex (m_j ~ 1e-9) is stable with an
            # eigenvalue ~ -1e-9. The noise of the differences scales the same way, so the
            # threshold does too.
            scale = max(1.0, float(np.max(np.abs(eig)))) * min(1.0, float(np.min(masses[c, idx])))
            out[c] = (eig, bool(np.all(eig.real < -1e-7 * scale)))
    return out


@lru_cache(maxsize=64)
def _null_free_basis(n: int) -> np.ndarray:
    """Orthonormal basis (n, n - 1) of the vectors orthogonal to (1, ..., 1)."""
    return np.linalg.qr(np.eye(n) - 1.0 / n)[0][:, : n - 1]


def stationarity_residual(problem: Problem, algo: GRPO, policy: Any) -> tuple[np.ndarray, np.ndarray]:
    """Max over the support of |P_G(o|pi) - beta phi(o) - c|, recomputed from scratch.

    c = sum_o pi(o)(P_G(o|pi) - beta phi(o)) (THEORY.md section 5). For abs the residual is
    the distance of P_G(o) - c to the set beta * sign(log pi/pi_ref), with c the best such
    constant; an output with pi(o) = 0 < pi_ref(o) (drained by the bounded pull) also counts,
    by how much P_G(o) - c exceeds -beta. For k2 and kl such an output counts only where the
    formula pi_ref exp((P - c)/beta) underflows for a finite P (infinite residual otherwise);
    for k3 never.
    Returns (residual (C,), c (C,)).
    """
    pi = np.atleast_2d(np.asarray(policy, dtype=float))
    return _residual_given(problem, algo, pi, _preference_2d(problem, algo, pi))


def _preference_2d(problem: Problem, algo: GRPO, pi: np.ndarray) -> np.ndarray:
    """P_G(o | pi) as (C, K) for a policy given as (C, K)."""
    return np.atleast_2d(preference(problem, algo, problem.squeeze(pi)))


def _residual_given(problem: Problem, algo: GRPO, pi: np.ndarray, pref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``stationarity_residual`` with P_G(o | pi) already computed, (C, K) arrays."""
    support = pi > 0
    if algo.penalty == "abs":
        x = np.where(
            support & (problem.ref > 0),
            np.log(np.where(support, pi, 1.0) / np.where(problem.ref > 0, problem.ref, 1.0)),
            0.0,
        )
        up, down = support & (x > 1e-9), support & (x < -1e-9)
        # c candidates from the determined outputs; otherwise the middle of the P range
        determined = up | down
        cands = np.where(up, pref - algo.beta, np.where(down, pref + algo.beta, 0.0))
        n_det = determined.sum(axis=1)
        # (np.nanmean would warn on contexts where no output is determined)
        c = np.where(
            n_det == 0,
            0.5 * (np.max(np.where(support, pref, -np.inf), 1) + np.min(np.where(support, pref, np.inf), 1)),
            cands.sum(axis=1) / np.maximum(n_det, 1),
        )
        dev = pref - c[:, None]
        res = np.where(
            up, np.abs(dev - algo.beta), np.where(down, np.abs(dev + algo.beta), np.maximum(np.abs(dev) - algo.beta, 0))
        )
        # an output drained to 0 (the abs pull is bounded) stays there only if the pull back,
        # beta, does not beat its advantage: P(o) - c <= -beta
        drained = ~support & (problem.ref > 0)
        res = np.where(drained, np.maximum(dev + algo.beta, 0.0), res)
        return np.max(np.where(support | drained, res, 0.0), axis=1), c
    phi = penalty_coefficient(algo.penalty, pi, problem.ref)
    g = pref - algo.beta * phi
    # (P_G may be -inf off the support: G = inf at a point-mass mixture)
    c = np.sum(np.where(support, pi * np.where(support, g, 0.0), 0.0), axis=1)
    res = np.where(support, np.abs(np.where(support, g, 0.0) - c[:, None]), 0.0)
    starved = ~support & (problem.ref > 0)
    if algo.regularised and algo.penalty in ("k3", "k2", "kl") and np.any(starved):
        # pi(o) = 0 < pi_ref(o) is stationary only where the penalty's formula for its mass
        # (THEORY.md section 5) underflows: for k2/kl pi_ref exp((P - c)/beta) < tiny,
        # measured as the excess of P - c over beta log(tiny/pi_ref). An infinite P(o)
        # (G = inf at a point-mass mixture) makes the policy a boundary limit, not an
        # interior stationary policy: it never counts, as in the L = 2 scan.
        if algo.penalty == "k3":
            # k3 masses are beta pi_ref / (beta - P + c): they never underflow for finite P
            excess = np.full_like(pref, np.inf)
        else:
            safe_ref = np.where(starved, problem.ref, 1.0)
            bound = algo.beta * np.log(np.finfo(float).tiny / safe_ref)
            with np.errstate(invalid="ignore"):
                excess = np.maximum(np.where(starved, pref, 0.0) - c[:, None] - bound, 0.0)
            excess = np.where(np.isfinite(pref), excess, np.inf)
        res = np.where(starved, excess, res)
    return np.max(res, axis=1), c


def _term_scale(problem: Problem, algo: GRPO, pi: np.ndarray, pref: np.ndarray) -> np.ndarray:
    """max(1, |P_G(o)|, beta |phi(o)|) over the support, per context: the size of the terms
    whose cancellation the stationarity residual measures."""
    with np.errstate(all="ignore"):
        phi = penalty_coefficient(algo.penalty, pi, problem.ref)
    support = (pi > 0) & np.isfinite(pref)
    size = np.where(support, np.maximum(np.abs(pref), algo.beta * np.abs(phi)), 0.0)
    return np.maximum(1.0, np.max(size, axis=1))


def _validate(problem: Problem, algo: GRPO) -> None:
    if not isinstance(problem, Problem):
        raise InputError("problem", "expected a grpo_align.Problem")
    if not isinstance(algo, GRPO):
        raise InputError("algo", "expected a grpo_align.GRPO")
    if problem.is_preference:
        if algo.group_size != 2:
            raise InputError("group_size", "a pairwise-preference problem defines P_G for G = 2 only")
        _ = algo.pairwise_scale  # raises for normalisations without the pairwise form


def stationary_policy(problem: Problem, algo: GRPO) -> StationaryResult:
    """The stationary policies of GRPO variant ``algo`` on ``problem`` (THEORY.md section 5).

    Every penalty is solved in the reduced space (the reward-level mixture w, or the
    policy itself for a pairwise-preference problem). With two reward levels every root is
    found by a scan; each root is reported with its stability (``roots``), and ``policy``
    is the stable root nearest the reference mixture. Without regularisation (beta = 0 or
    k1) there is no interior stationary policy: ``status`` is "limit" and ``policy`` is the
    vertex the expected dynamics reach from pi_ref. ``success`` is False, with a message,
    whenever the stationarity residual recomputed from the returned policy exceeds 1e-9.

    Examples
    --------
    >>> prob = Problem.from_rewards(ref=[0.2, 0.3, 0.5], rewards=[1.0, 0.5, 0.0])
    >>> stationary_policy(prob, GRPO(group_size=2, beta=0.5)).policy.round(6)
    array([0.653113, 0.155904, 0.190983])
    """
    _validate(problem, algo)
    if not algo.is_limit:
        return _solve(problem, algo)
    # For G = inf, P_G diverges at a point-mass mixture (a deviant member's advantage grows
    # like sqrt(G)); iterates can land there and produce inf/NaN on the way. Every candidate
    # is checked from scratch below (finite, residual), so the warnings carry no news.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _solve(problem, algo)


def _solve(problem: Problem, algo: GRPO) -> StationaryResult:
    red = _Reduced(problem, algo)
    n_ctx = problem.n_contexts
    status = ["interior"] * n_ctx
    messages = [""] * n_ctx
    roots: list[list[StationaryRoot]] = [[] for _ in range(n_ctx)]
    nit = 0

    if not algo.regularised:
        limit, converged = _limit_masses(red)
        policy = red.policy(limit)
        why = "beta = 0" if algo.beta == 0 else "the k1 penalty has zero expected gradient"
        limit_mix = red.mixture(limit) if red.class_dist is not None else limit
        for c in range(n_ctx):
            status[c] = "limit" if converged[c] else "failed"
            messages[c] = (
                f"no interior stationary policy ({why}); GRPO drives all mass to the reward class "
                "that wins under P_G; policy is that limit (reference ratios inside the class)"
                if converged[c]
                else f"no interior stationary policy ({why}) and the expected dynamics reach no single class"
            )
            roots[c] = [StationaryRoot(policy[c], limit_mix[c], math.nan, 0.0, bool(converged[c]))]
        return _finish(
            problem, algo, policy, np.asarray(converged), status, messages, roots, 0, residual=np.zeros(n_ctx)
        )

    single = np.sum(red.ref_mass > 0, axis=1) == 1
    if algo.penalty == "abs":
        masses, _, nit = _abs_masses(red)
        candidates = [[masses[c]] for c in range(n_ctx)]
    elif red.class_dist is not None and problem.n_levels == 1:
        candidates = [[red.ref_mass[c]] for c in range(n_ctx)]
    elif red.class_dist is not None and problem.n_levels == 2:
        mixtures, nit = _scan_binary(red)
        candidates = _masses_of_mixtures(red, mixtures)
    elif np.all(single):
        candidates = [[red.ref_mass[c]] for c in range(n_ctx)]
    else:
        candidates, nit = _newton_candidates(red)
    for c in np.nonzero(single)[0]:
        # one reward class: P_G is the same for every output, so pi_ref is the only
        # stationary policy (and a point-mass mixture would make G = inf diverge)
        candidates[c] = [red.ref_mass[c]]

    # every candidate is checked from scratch; roots are handled in slots across contexts
    n_slots = max((len(c) for c in candidates), default=0)
    for slot in range(n_slots):
        # a candidate with non-finite entries (P_G diverging at a point-mass mixture for
        # G = inf) is no root; it must not reach the residual check as a "policy"
        has = np.array(
            [len(candidates[c]) > slot and bool(np.all(np.isfinite(candidates[c][slot]))) for c in range(n_ctx)]
        )
        masses = np.stack([candidates[c][slot] if has[c] else red.ref_mass[c] for c in range(n_ctx)])
        pi = red.policy(masses)
        pref = _preference_2d(problem, algo, pi)
        res, mult = _residual_given(problem, algo, pi, pref)
        tol = RESIDUAL_TOLERANCE * _term_scale(problem, algo, pi, pref)
        stab = _stability(red, masses) if algo.penalty != "abs" else [(None, None)] * n_ctx
        mix = red.mixture(masses) if red.class_dist is not None else masses
        for c in np.nonzero(has)[0]:
            roots[c].append(
                StationaryRoot(pi[c], mix[c], float(mult[c]), float(res[c]), stab[c][1], stab[c][0], float(tol[c]))
            )

    policy = np.zeros_like(problem.ref)
    success = np.zeros(n_ctx, bool)
    residual = np.full(n_ctx, np.inf)
    ref_mix = problem.reference_mixture() if red.class_dist is not None else problem.ref
    for c in range(n_ctx):
        good = [r for r in roots[c] if r.residual <= r.tolerance]
        if not good:
            status[c] = "failed"
            best = min(roots[c], key=lambda r: r.residual, default=None)
            if best is not None:
                policy[c] = best.policy
                residual[c] = best.residual
            else:
                # nothing usable was found: still return a probability vector
                policy[c] = problem.ref[c]
            messages[c] = (
                f"no stationary policy found to tolerance {RESIDUAL_TOLERANCE:g} (relative to the size of the terms)"
                + (f" (best residual {best.residual:.2e})" if best is not None else "")
                + "; the expected dynamics may cycle or the solver did not converge"
                + ("; for G = inf they may also run to the boundary, where P_G diverges" if algo.is_limit else "")
            )
            continue
        stable_roots = [r for r in good if r.stable is not False] or good
        chosen = min(stable_roots, key=lambda r: float(np.max(np.abs(r.mixture - ref_mix[c]))))
        policy[c] = chosen.policy
        residual[c] = chosen.residual
        success[c] = True
        messages[c] = (
            "converged: unique stationary policy found"
            if len(good) == 1
            else f"converged: {len(good)} stationary policies found ({sum(r.stable is True for r in good)} stable); "
            "policy is the stable one nearest the reference"
        )
        if algo.penalty == "abs":
            messages[c] += (
                "; abs: any redistribution inside a reward class that keeps each output on the same side "
                "of pi_ref is stationary too"
            )
        if red.class_dist is not None and problem.n_levels > 2:
            messages[c] += " (L > 2: roots from several Newton starts; completeness is not guaranteed)"
    return _finish(problem, algo, policy, success, status, messages, roots, nit, residual)


def _masses_of_mixtures(red: _Reduced, mixtures: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Class masses belonging to each context's root mixtures (batched by root index)."""
    n_ctx = len(mixtures)
    out: list[list[np.ndarray]] = [[] for _ in range(n_ctx)]
    ref_mix = red.problem.reference_mixture()
    for slot in range(max((len(m) for m in mixtures), default=0)):
        w = np.stack([mixtures[c][slot] if len(mixtures[c]) > slot else ref_mix[c] for c in range(n_ctx)])
        m, _ = red.masses_given(red.class_preference_from_mixture(w))
        for c in range(n_ctx):
            if len(mixtures[c]) > slot:
                out[c].append(m[c])
    return out


def _newton_candidates(red: _Reduced) -> tuple[list[list[np.ndarray]], int]:
    """Damped Newton in the reduced space from several starts; distinct converged roots."""
    problem = red.problem
    if red.class_dist is None:

        def fixed_map(z: np.ndarray) -> np.ndarray:
            return red.masses_given(red.class_preference(z))[0]

        ref_z = red.ref_mass
        corners = np.broadcast_to(np.eye(ref_z.shape[1])[None], (ref_z.shape[0],) + (ref_z.shape[1],) * 2)
    else:

        def fixed_map(z: np.ndarray) -> np.ndarray:
            return red.mixture(red.masses_given(red.class_preference_from_mixture(z))[0])

        ref_z = problem.reference_mixture()
        corners = red.class_dist
    starts = [ref_z, fixed_map(ref_z[:, None, :])[:, 0, :]]
    for j in range(min(corners.shape[1], 8)):
        # a padded class slot has no distribution (a zero row): start from the reference
        real = np.sum(corners[:, j, :], axis=-1, keepdims=True) > 0
        starts.append(np.where(real, 0.9 * corners[:, j, :] + 0.1 * ref_z, ref_z))
    z, norm, nit = _newton(red, np.stack(starts, axis=1), fixed_map)
    found: list[list[np.ndarray]] = []
    for c in range(problem.n_contexts):
        roots: list[np.ndarray] = []
        for s in np.argsort(norm[c]):
            if norm[c, s] <= 1e-10 and all(np.max(np.abs(z[c, s] - r)) > 1e-8 for r in roots):
                roots.append(z[c, s])
        found.append(roots)
    if red.class_dist is None:
        return found, nit
    return _masses_of_mixtures(red, found), nit


def _finish(
    problem: Problem,
    algo: GRPO,
    policy: np.ndarray,
    success: np.ndarray,
    status: list[str],
    messages: list[str],
    roots: list[list[StationaryRoot]],
    nit: int,
    residual: np.ndarray,
) -> StationaryResult:
    if problem.batched:
        return StationaryResult(policy, success, status, residual, nit, messages, roots, algo, problem)
    return StationaryResult(
        policy[0], bool(success[0]), status[0], float(residual[0]), nit, messages[0], roots[0], algo, problem
    )
