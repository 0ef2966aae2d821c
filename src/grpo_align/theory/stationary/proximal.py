"""The abs penalty by forward-backward splitting with a total-variation prox (THEORY.md sections 3, 5).

With P frozen, the abs stationarity conditions P_G(o) - c in beta sign(log pi(o)/pi_ref(o))
are the optimality conditions of a concave program with a total-variation term; the
proximal iteration has exactly the stationary policies as fixed points.
"""

from __future__ import annotations

import numpy as np

from grpo_align.theory.stationary.reduction import Reduced

__all__ = ["proximal_candidates"]


def proximal_candidates(red: Reduced, max_iter: int = 50_000) -> tuple[list[list[np.ndarray]], int]:
    """Class masses for the abs penalty by forward-backward splitting (THEORY.md section 5).

    With P frozen, the abs stationarity conditions are those of
    max_m  sum_j m_j P_j - beta sum_j |m_j - R_j|  over the simplex (phi = sign(x) is the
    gradient of the total-variation term). The iteration m <- prox(m + eta P(m)) has exactly
    the stationary policies as fixed points; its proximal step (soft-thresholding toward R,
    then a shift so the masses sum to 1) is solved exactly through its breakpoints.

    Returns
    -------
    candidates : list (per context) of one class-mass vector (J,)
        The iteration's limit from the reference masses.
    nit : int
        Iterations taken.
    """
    beta = red.beta
    ref_mass = red.ref_mass
    active = ref_mass > 0
    m = ref_mass.copy()
    p0 = red.class_preference(m)
    eta = 0.25 / (1.0 + np.max(np.abs(np.where(active, p0, 0.0))))
    t = eta * beta
    nit = 0
    for it in range(1, max_iter + 1):
        nit = it
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
    return [[m[c]] for c in range(m.shape[0])], nit


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
