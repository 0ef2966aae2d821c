"""Stationary policies on the boundary of the simplex: KKT on its faces (THEORY.md section 9).

With a k3, k2 or kl penalty and a bounded P_G no class with pi_ref > 0 can be drained: its
term beta phi -> -inf (k3 like -beta pi_ref/pi, k2/kl like beta log pi) pulls it back, so
every stationary policy is interior. The one unbounded P_G is shift_scale with eps = 0 at
G = inf near a point-mass mixture w = e_l (section 8): with a small mass eps on other classes,
sigma_w ~ sqrt(eps) and a drained class k has

    P_k ~ (E_{F_k}[v] - v_l) / sigma_w,

which beats the log pull of k2/kl (not k3's 1/pi). So the face where only the classes
deterministic at level l carry mass (in reference ratios: P is 0 on all of them, and
-beta log(m_j/R_j) must agree) is a stationary policy of k2/kl exactly when every other
class with pi_ref > 0 has E_{F_k}[v] < v_l (strict): its logit gradient m_k (g_k - c) tends
to 0 and g_k - c -> -inf, the KKT condition of a drained class, and the face attracts.
A tie E_{F_k}[v] = v_l is left undecided (no root is reported for that face).
"""

from __future__ import annotations

import numpy as np

from grpo_align.theory.penalties import PENALTIES
from grpo_align.theory.preference import scaled_level_differences
from grpo_align.theory.stationary.reduction import Reduced

__all__ = ["has_boundary_roots", "vertex_candidates"]


def has_boundary_roots(red: Reduced) -> bool:
    """Whether the problem can have stationary policies on a face (G = inf, k2/kl, shift_scale, eps = 0)."""
    algo = red.algo
    return (
        red.is_reward
        and algo.is_limit
        and PENALTIES[algo.penalty].stationary_map == "exponential"
        and algo.beta > 0
        and algo.normalization == "shift_scale"
        and algo.eps == 0
    )


def vertex_candidates(red: Reduced) -> list[list[tuple[np.ndarray, float]]]:
    """Face policies of the KKT conditions above, per context: (class masses, KKT margin).

    The margin is max_k (E_{F_k}[v] - v_l) over the drained classes in units of the range of
    the levels; it is negative for a certified face (only those are returned).
    """
    dist = red.dist  # (C, J, L)
    active = red.ref_mass > 0
    diff, _ = scaled_level_differences(red.problem.levels)  # (C, L, L): (v_l - v_m) / range
    out: list[list[tuple[np.ndarray, float]]] = [[] for _ in range(dist.shape[0])]
    for level in range(dist.shape[2]):
        on_face = active & (dist[..., level] == 1.0)  # classes deterministic at this level
        drained = active & ~on_face
        # E_{F_k}[v] - v_l = sum_m F_k(m) (v_m - v_l), in units of the range
        excess = np.einsum("cjm,cm->cj", dist, diff[:, :, level])
        margin = np.max(np.where(drained, excess, -np.inf), axis=1)
        ok = np.any(on_face, axis=1) & np.any(drained, axis=1) & (margin < 0)
        for c in np.nonzero(ok)[0].tolist():
            masses = np.where(on_face[c], red.ref_mass[c], 0.0)
            out[c].append((masses / masses.sum(), float(margin[c])))
    return out
