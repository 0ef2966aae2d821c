"""Roots of the reduced fixed point by damped Newton from several starts (THEORY.md section 5).

Used for more than two reward levels and for pairwise-preference problems (where the
variable is the policy itself, section 7). Completeness is not guaranteed: every start
that converges contributes its root, distinct roots are kept.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from grpo_align.theory.stationary.reduction import Reduced
from grpo_align.theory.stationary.scan import masses_of_mixtures

__all__ = ["N_FIXED_STARTS", "newton_candidates"]

#: Starts besides those near class distributions: pi_ref and one map step from it.
N_FIXED_STARTS = 2


def newton_candidates(red: Reduced) -> tuple[list[list[np.ndarray]], int]:
    """Stationary policies by damped Newton on the reduced fixed point (THEORY.md section 5).

    Parameters
    ----------
    red : Reduced
        A reward problem (the variable is the level mixture w, L coordinates) or a
        pairwise-preference problem (the variable is the policy, section 7), with a k3, k2
        or kl penalty and beta > 0.

    Returns
    -------
    candidates : list (per context) of lists of class masses (J,)
        The distinct roots reached from the starts (pi_ref, one map step from it, and
        points near up to eight class distributions); completeness is not guaranteed.
    nit : int
        Newton iterations (largest over starts).
    """
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
    return masses_of_mixtures(red, found), nit


def _newton(
    red: Reduced, starts: np.ndarray, fixed_map: Callable[[np.ndarray], np.ndarray], max_iter: int = 100
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
    for it in range(1, max_iter + 1):
        nit = it
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
