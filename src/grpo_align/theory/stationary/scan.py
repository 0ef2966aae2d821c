"""All roots for two reward levels: scan and bracket (THEORY.md sections 5 and 9).

With L = 2 the reduced fixed point w = T(w) is one-dimensional (u = w(high level)), so a
dense scan followed by bracketing finds every root.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from grpo_align.theory.stationary.reduction import Reduced

__all__ = ["scan_candidates"]


def scan_candidates(red: Reduced) -> tuple[list[list[np.ndarray]], int]:
    """Every stationary policy of a reward problem with at most two levels (section 9).

    Parameters
    ----------
    red : Reduced
        A reward problem with L <= 2 and a k3, k2 or kl penalty with beta > 0.

    Returns
    -------
    candidates : list (per context) of lists of class masses (J,)
        One per root of the reduced fixed point; every root is bracketed. With one level
        every output is in one class and pi_ref is the only candidate.
    nit : int
        Iterations of the bracketing (largest over brackets).
    """
    if red.dist.shape[-1] == 1:
        return [[red.ref_mass[c]] for c in range(red.ref_mass.shape[0])], 0
    mixtures, nit = _scan_mixtures(red)
    return masses_of_mixtures(red, mixtures), nit


def _scan_mixtures(red: Reduced) -> tuple[list[list[np.ndarray]], int]:
    """All fixed points u = T(u) for two levels, u = w(high level): scan then bracket.

    T(u) lies between the smallest and largest high-level probability of the active
    classes, [a, b], so every root does; g(u) = T(u) - u is evaluated on a grid dense near
    both ends and every sign change is refined by the Illinois method.
    """
    active = red.ref_mass > 0
    high = red.dist[..., 1]
    a = np.min(np.where(active, high, np.inf), axis=1)
    b = np.max(np.where(active, high, -np.inf), axis=1)
    if red.algo.is_limit:
        # h is unbounded at a point-mass w; stay inside (0, 1)
        a = np.maximum(a, 1e-13)
        b = np.minimum(b, 1 - 1e-13)
    ends = np.logspace(-12, -1, 23)
    s = np.unique(np.concatenate([np.linspace(0, 1, 129), ends, 1 - ends]))
    grid = a[:, None] + (b - a)[:, None] * s[None, :]  # (C, M)

    def g(r: Reduced, u: np.ndarray) -> np.ndarray:
        w = np.stack([1 - u, u], axis=-1)
        masses, _ = r.masses_given(r.class_preference_from_mixture(w))
        return r.mixture(masses)[..., 1] - u

    # chunks of grid points keep the (C, points, J) work arrays near 2^18 entries (larger
    # ones leave the cache: at 10^5 contexts 2^24 entries took twice the time)
    chunk = max(1, (1 << 18) // max(1, grid.shape[0] * red.n_classes))
    values = np.concatenate([g(red, grid[:, i : i + chunk]) for i in range(0, grid.shape[1], chunk)], axis=1)
    roots: list[list[float]] = [[] for _ in range(grid.shape[0])]
    zero = values == 0
    for c, i in zip(*np.nonzero(zero), strict=False):
        roots[c].append(float(grid[c, i]))
    change = (np.sign(values[:, :-1]) * np.sign(values[:, 1:])) < 0
    ctx, idx = np.nonzero(change)
    lo, hi = grid[ctx, idx], grid[ctx, idx + 1]
    g_lo, g_hi = values[ctx, idx], values[ctx, idx + 1]
    # two roots inside one grid cell leave no sign change: zoom into every sampled
    # extremum of g that turns back toward 0 without crossing it
    extra = _hidden_brackets(red, grid, values, g)
    if extra is not None:
        ctx = np.concatenate([ctx, extra[0]])
        lo, hi = np.concatenate([lo, extra[1]]), np.concatenate([hi, extra[2]])
        g_lo, g_hi = np.concatenate([g_lo, extra[3]]), np.concatenate([g_hi, extra[4]])
    nit = 0
    if ctx.size:
        # each bracket is solved as its own pseudo-context: a copy of its context's classes
        brackets = red.take(ctx)

        def g_at(u: np.ndarray) -> np.ndarray:
            return g(brackets, u[:, None])[:, 0]

        side = np.zeros(ctx.size)
        for it in range(1, 200):
            nit = it
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


def _hidden_brackets(
    red: Reduced, grid: np.ndarray, values: np.ndarray, g: Callable[[Reduced, np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Brackets of root pairs that fall between two grid points (THEORY.md section 9).

    At a sampled local minimum of g above 0 (or maximum below 0) the function may dip
    through 0 and back inside the neighbouring cells. Each such extremum is zoomed into:
    33 points over the two cells around it, then around the best sample again, six
    times (a factor 16^6 ~ 1.7e7 finer than the grid). A sign change found on the way
    becomes a bracket; the zoom follows the sample nearest 0, so a pair of roots closer
    than the final spacing (a near-tangency) can still be missed, and is then not claimed.
    Returns (ctx, lo, hi, g_lo, g_hi) or None.
    """
    d = np.diff(values, axis=1)
    mid = values[:, 1:-1]
    turn = ((d[:, :-1] < 0) & (d[:, 1:] > 0) & (mid > 0)) | ((d[:, :-1] > 0) & (d[:, 1:] < 0) & (mid < 0))
    same = (np.sign(values[:, :-2]) == np.sign(mid)) & (np.sign(values[:, 2:]) == np.sign(mid))
    ctx, idx = np.nonzero(turn & same)
    if ctx.size == 0:
        return None
    idx = idx + 1
    sub = red.take(ctx)
    lo, hi = grid[ctx, idx - 1], grid[ctx, idx + 1]
    t = np.linspace(0.0, 1.0, 33)
    found = np.zeros(ctx.size, bool)
    out: list[tuple[np.ndarray, ...]] = []
    for _ in range(6):
        pts = lo[:, None] + (hi - lo)[:, None] * t[None, :]
        vals = g(sub, pts)
        cross = np.sign(vals[:, :-1]) * np.sign(vals[:, 1:]) < 0
        rows = np.nonzero(np.any(cross, axis=1) & ~found)[0]
        # the pair's first and last crossings (the same one if only one was resolved)
        first = np.argmax(cross[rows], axis=1)
        last = cross.shape[1] - 1 - np.argmax(cross[rows, ::-1], axis=1)
        for k in (first, np.where(last != first, last, -1)):
            ok = k >= 0
            r, kk = rows[ok], k[ok]
            out.append((ctx[r], pts[r, kk], pts[r, kk + 1], vals[r, kk], vals[r, kk + 1]))
        found[rows] = True
        if np.all(found):
            break
        best = np.argmin(np.abs(vals), axis=1)
        k0, k1 = np.maximum(best - 1, 0), np.minimum(best + 1, t.size - 1)
        rr = np.arange(ctx.size)
        lo, hi = np.where(found, lo, pts[rr, k0]), np.where(found, hi, pts[rr, k1])
    if not out:
        return None
    c_all, lo_all, hi_all, glo_all, ghi_all = (np.concatenate(parts) for parts in zip(*out, strict=True))
    return c_all, lo_all, hi_all, glo_all, ghi_all


def _dedupe(values: list[float], tol: float = 1e-10) -> list[float]:
    out: list[float] = []
    for v in values:
        if not out or abs(v - out[-1]) > tol:
            out.append(v)
    return out


def masses_of_mixtures(red: Reduced, mixtures: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
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
