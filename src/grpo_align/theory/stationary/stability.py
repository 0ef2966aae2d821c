"""Stability of a stationary policy under the expected gradient dynamics (THEORY.md section 9)."""

from __future__ import annotations

import numpy as np

from grpo_align.theory.stationary.reduction import Reduced
from grpo_align.theory.stationary.residual import penalty_coefficient

__all__ = ["STABILITY_MARGIN", "stability", "stability_threshold"]

#: A root is stable when every eigenvalue's real part lies below -STABILITY_MARGIN times
#: its scale (``stability_threshold``): the central differences' noise level.
STABILITY_MARGIN = 1e-7


def stability_threshold(largest_modulus: np.ndarray, smallest_mass: np.ndarray) -> np.ndarray:
    """The bound every eigenvalue's real part must lie below for a stable root (section 9):
    -STABILITY_MARGIN max(1, max |lambda|) min(1, the smallest active class mass).

    The field is m_j (g_j - g_bar), so a class with a small mass m_j contributes an
    eigenvalue of order m_j: a root next to a vertex (m_j ~ 1e-9) is stable with an
    eigenvalue ~ -1e-9. The noise of the differences scales the same way, so the
    threshold does too.
    """
    scale = np.maximum(1.0, largest_modulus) * np.minimum(1.0, smallest_mass)
    return -STABILITY_MARGIN * scale


def _class_field(red: Reduced, logits: np.ndarray) -> np.ndarray:
    """Expected softmax-logit gradient on class logits: m_j (g_j - sum_k m_k g_k)."""
    m = np.exp(logits - logits.max(axis=-1, keepdims=True))
    m /= m.sum(axis=-1, keepdims=True)
    pref = red.class_preference(m)
    phi = penalty_coefficient(red.algo.penalty, m, np.broadcast_to(red.ref_mass, m.shape))
    g = pref - red.beta * phi
    return m * (g - np.sum(m * g, axis=-1, keepdims=True))


def stability(red: Reduced, masses: np.ndarray) -> list[tuple[np.ndarray | None, bool | None]]:
    """Eigenvalues of the class-logit gradient field's Jacobian at a root, per context.

    The Jacobian is taken by central differences for all contexts at once; only active
    classes count, and the softmax's null direction (every logit up by the same amount) is
    removed by taking logit differences to the heaviest class (``_difference_jacobian``). Contexts with more than 64 active classes get (None, None).
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
        eigs = np.full((members.size, n_act - 1), np.nan, dtype=complex)
        if np.any(finite):
            heaviest = np.argmax(masses[members][:, idx], axis=1)
            eigs[finite] = np.linalg.eigvals(_difference_jacobian(sub[finite], heaviest[finite]))
        # (all members at once; NaN rows of non-finite Jacobians unused)
        with np.errstate(invalid="ignore"):
            bound = stability_threshold(np.max(np.abs(eigs), axis=1), np.min(masses[members][:, idx], axis=1))
            stable = np.all(eigs.real < bound[:, None], axis=1)
        for ci, eig, ok, st in zip(members.tolist(), eigs, finite.tolist(), stable.tolist(), strict=True):
            if ok:
                out[ci] = (eig, st)
    return out


def _difference_jacobian(jac: np.ndarray, heaviest: np.ndarray) -> np.ndarray:
    """The field's Jacobian in logit differences to each context's heaviest class.

    With u_i = z_i - z_r (r the heaviest class) the field is F(u), and du_i/dt = F_i - F_r
    has the Jacobian K_ij = J_ij - J_rj (i, j != r): the eigenvalues of J other than the
    softmax's null direction (J 1 = 0). An orthonormal projection would give the same
    spectrum exactly, but it mixes the rows of light classes (entries of order their mass)
    with the heavy rows, so an eigenvalue of order a mass of 1e-13 drowns in the heavy
    rows' rounding (about 1e-16 of their size); in these coordinates a light class's row
    keeps its own scale.
    """
    n_ctx, n, _ = jac.shape
    keep = np.ones((n_ctx, n), dtype=bool)
    keep[np.arange(n_ctx), heaviest] = False
    others = np.nonzero(keep)[1].reshape(n_ctx, n - 1)
    rows = np.take_along_axis(jac, others[:, :, None], axis=1)  # (C, n-1, n): J_i. for i != r
    rows = np.take_along_axis(rows, others[:, None, :], axis=2)  # (C, n-1, n-1): J_ij
    ref_row = jac[np.arange(n_ctx), heaviest]  # (C, n): J_r.
    ref_row = np.take_along_axis(ref_row, others, axis=1)  # (C, n-1): J_rj
    return rows - ref_row[:, None, :]
