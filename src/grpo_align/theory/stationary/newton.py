"""Roots of the reduced fixed point by damped Newton from several starts (THEORY.md section 5).

Used for more than two reward levels and for pairwise-preference problems (where the
variable is the policy itself, section 7). Completeness is not guaranteed: every start
that converges contributes its root, distinct roots are kept. Each start iterates on its
own, so a batch of contexts costs what its running starts need.
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

        def fixed_map(r: Reduced, z: np.ndarray) -> np.ndarray:
            return r.masses_given(r.class_preference(z))[0]

        ref_z = red.ref_mass
        corners = np.broadcast_to(np.eye(ref_z.shape[1])[None], (ref_z.shape[0],) + (ref_z.shape[1],) * 2)
    else:

        def fixed_map(r: Reduced, z: np.ndarray) -> np.ndarray:
            return r.mixture(r.masses_given(r.class_preference_from_mixture(z))[0])

        ref_z = problem.reference_mixture()
        corners = red.class_dist
    starts = [ref_z, fixed_map(red, ref_z[:, None, :])[:, 0, :]]
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


#: A start whose residual norm fell by less than this fraction over ``_STALL_WINDOW``
#: iterations is stalled (at that rate it would need thousands of iterations: typically a
#: start pressed against a face of the simplex, where the line search keeps accepting
#: steps that are a tiny fraction of Newton's); it is frozen like a start whose line
#: search accepts no step.
_STALL_DROP = 0.01
_STALL_WINDOW = 10


def _newton(
    red: Reduced, starts: np.ndarray, fixed_map: Callable[[Reduced, np.ndarray], np.ndarray], max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray, int]:
    """Damped Newton on z = T(z) over the simplex, batched over (C, S) starts.

    z has D coordinates summing to 1; each start's largest coordinate is the dependent
    one and the other D - 1 are free (a coordinate that should stay at 0, such as a padded
    level or one no output draws, must be free: as the dependent one every Newton step
    would push it out of the simplex). The Jacobian is taken by forward differences (D is
    the number of reward levels, or outputs for a preference problem). A step is halved
    until the residual falls and z stays in the simplex. Returns the final z (C, S, D),
    the residual norm max_d |T(z)_d - z_d| (C, S) and the iteration count.

    Every start runs on its own: ``fixed_map(r, z)`` is called with the reduction of the
    starts still running (each start a pseudo-context, ``Reduced.take``) and z (n, M, D),
    so a start that has converged (norm below 1e-13), whose line search accepts no step,
    or that has stalled (``_STALL_DROP``) costs nothing further, and the line search
    evaluates only the starts that have not yet accepted a step. The iteration of each
    start is the same whatever the other starts do (up to rounding: one singular Jacobian
    sends its whole set through the pseudo-inverse).
    """
    n_ctx, n_starts, dim = starts.shape
    z = starts.reshape(-1, dim).copy()
    ctx_of = np.repeat(np.arange(n_ctx), n_starts)
    axis = np.arange(dim)

    def resid(r: Reduced, zz: np.ndarray) -> np.ndarray:
        """T(z) - z for z (n, D) or (n, M, D), one pseudo-context per row."""
        flat = zz.ndim == 2
        zz3 = zz[:, None, :] if flat else zz
        out = fixed_map(r, zz3) - zz3
        return out[:, 0, :] if flat else out

    res = resid(red.take(ctx_of), z)
    norm = np.max(np.abs(res), axis=-1)
    # below this the residual is at the rounding level of T: a converged start
    done_at = 1e-13
    # a start whose line search accepts no step would fail identically from then on
    # (the iteration is deterministic): it stops, as a converged or stalled one does
    todo = np.nonzero(~(norm < done_at))[0]
    checkpoint = norm.copy()
    nit = 0
    for it in range(1, max_iter + 1):
        if todo.size == 0:
            break
        nit = it
        sub = red.take(ctx_of[todo])
        zt, rt, nt = z[todo], res[todo], norm[todo]
        m = todo.size
        dep = np.argmax(zt, axis=-1)
        is_dep = axis[None, :] == dep[:, None]  # (m, D)
        free = np.argsort(axis[None, :] + dim * is_dep, axis=-1, kind="stable")[:, :-1]  # (m, D-1)
        f = np.take_along_axis(rt, free, axis=-1)
        h = 1e-7
        # every Jacobian column at once: move h from the dependent coordinate (>= 1/D) to
        # free coordinate k, (m, D-1, D)
        dirs = (free[:, :, None] == axis[None, None, :]).astype(float) - is_dep[:, None, :]
        moved = resid(sub, zt[:, None, :] + h * dirs)
        jac = np.swapaxes((np.take_along_axis(moved, free[:, None, :], axis=-1) - f[:, None, :]) / h, 1, 2)
        finite = np.all(np.isfinite(jac), axis=(-2, -1))
        jac = np.where(finite[:, None, None], jac, np.eye(dim - 1))
        try:
            step = -np.linalg.solve(jac, f[..., None])[..., 0]
        except np.linalg.LinAlgError:
            # one singular Jacobian must not cost the other starts their Newton step
            step = -(np.linalg.pinv(jac) @ f[..., None])[..., 0]
        bad = ~np.all(np.isfinite(step), axis=-1) | ~finite
        step = np.where(bad[:, None], 0.5 * f, step)
        full = np.zeros_like(zt)
        np.put_along_axis(full, free, step, axis=-1)
        full -= is_dep * step.sum(axis=-1, keepdims=True)
        lam = 1.0
        accepted = np.zeros(m, bool)
        new_z, new_res, new_norm = zt.copy(), rt.copy(), nt.copy()
        pend = np.arange(m)  # the starts that have accepted no step yet
        # 25 halvings: a step 3e-8 of Newton's that still does not lower the residual means
        # the start sits at rounding level or in a region Newton cannot leave
        for _ in range(25):
            trial = zt[pend] + lam * full[pend]
            inside = np.all(trial >= -1e-15, axis=-1)
            trial = np.clip(trial, 0.0, None)
            trial /= trial.sum(axis=-1, keepdims=True)
            tr = resid(sub if pend.size == m else sub.take(pend), trial)
            tn = np.max(np.abs(tr), axis=-1)
            ok = inside & (tn < nt[pend] * (1 - 1e-4 * lam) + 1e-300)
            hit = pend[ok]
            new_z[hit], new_res[hit], new_norm[hit] = trial[ok], tr[ok], tn[ok]
            accepted[hit] = True
            pend = pend[~ok]
            if pend.size == 0:
                break
            lam *= 0.5
        z[todo], res[todo], norm[todo] = new_z, new_res, new_norm
        # (a NaN residual stops too)
        keep = accepted & ~(new_norm < done_at)
        if it % _STALL_WINDOW == 0:
            keep &= new_norm <= (1.0 - _STALL_DROP) * checkpoint[todo]
            checkpoint[todo] = new_norm
        todo = todo[keep]
    return z.reshape(n_ctx, n_starts, dim), norm.reshape(n_ctx, n_starts), nit
