"""Where mass goes without regularisation: beta = 0 or the k1 penalty (THEORY.md sections 5, 9).

There is no interior stationary policy; the expected dynamics drive all mass to the reward
class that wins under P_G. This follows the class-level replicator flow to that vertex.
"""

from __future__ import annotations

import numpy as np

from grpo_align.theory.stationary.reduction import Reduced

__all__ = ["replicator_limit"]


def replicator_limit(red: Reduced, max_iter: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Where mass goes without regularisation (beta = 0 or k1): the class-level replicator.

    Follows the expected natural-gradient flow log m_j += eta (P_j - sum_k m_k P_k) from the
    reference (within a class the reference ratios are kept) until one class holds all but
    1e-12 of the mass, or until nothing moves (classes that tie exactly).

    Returns
    -------
    limit : ndarray, (C, J)
        The vertex (one class with all the mass) the flow reaches, or the face of classes
        that tie exactly under P_G (reference ratios inside the face).
    converged : ndarray of bool, (C,)
        Whether the limit satisfies the KKT conditions: P_G equal on the face (to 1e-12)
        and no drained class higher there.
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
    # the face the flow reached: the classes still carrying mass. Classes that tie exactly
    # under P_G for every policy (e.g. equal means under shift) get equal log-steps, so they
    # keep their reference ratios: the limit is R restricted to the face, renormalised.
    face = active & (m > 1e-6)
    limit = np.where(face, red.ref_mass, 0.0)
    limit /= limit.sum(axis=-1, keepdims=True)
    # KKT on the face (THEORY.md section 9, no penalty): P_G equal on the face, and every
    # drained class no better there
    pref = red.class_preference(limit)
    size = 1.0 + np.max(np.abs(np.where(active, pref, 0.0)), axis=-1)
    top = np.max(np.where(face, pref, -np.inf), axis=-1)
    low = np.min(np.where(face, pref, np.inf), axis=-1)
    gap = np.max(np.where(active & ~face, pref, -np.inf), axis=-1) - top
    converged = (top - low <= 1e-12 * size) & (gap <= 1e-12)
    return limit, converged
