"""Roots for more than two reward levels by continuation in beta (THEORY.md section 11).

For beta far above the size B of P_G the map T_beta(w) (mixture -> class masses of the
penalty's formula -> mixture) moves every w to within O(B/beta) of the reference mixture and
its Jacobian there is O(1/beta): the root is unique (a contraction). Following the solution
curve {(w, beta): T_beta(w) = w} from there down to the target beta by pseudo-arclength
continuation in (w, log beta) passes through turning points (folds, where two roots are born
in a pair) and reports every crossing of the target beta. Roots on curves not connected to
the large-beta branch (isolas) are not reached this way; ``stationary_policy`` adds the
roots of its Newton starts, and the ``RootSearch`` record states what was searched.
"""

from __future__ import annotations

import numpy as np

from grpo_align.theory.stationary.reduction import Reduced, penalty_masses
from grpo_align.theory.stationary.result import RootSearch

__all__ = ["continuation_mixtures"]

#: The branch is followed until beta falls below the target beta divided by this.
BELOW_TARGET = 8.0
#: Steps per context at most (each a predictor and up to ``_CORRECTOR_ITERS`` corrections).
MAX_STEPS = 400
#: The start: beta_0 = START_FACTOR * B, B the largest |P_G| at the reference mixture.
START_FACTOR = 1e3
_KAPPA = 0.25  # weight of log beta in the arclength metric (w moves O(1), log beta O(10))
_DS_MAX = 0.3
_CORRECTOR_ITERS = 6
_FTOL = 1e-12


def _tmap(red: Reduced, w: np.ndarray, t: np.ndarray) -> np.ndarray:
    """T(w) at beta = exp(t): w (C, S, L), t (C, S) -> (C, S, L)."""
    pref = red.class_preference_from_mixture(w)
    q = pref / np.exp(t)[..., None]  # P / beta: the penalty formulas with beta = 1
    ref = red.ref_mass[:, None, :]
    masses = penalty_masses(red.algo.penalty)(q, ref, 1.0)[0]
    return red.mixture(masses)


def _frame(w: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directions e_k - e_dep (dep = largest coordinate) for live k != dep, (C, L, L) rows k."""
    n_lev = w.shape[-1]
    dep = np.argmax(np.where(live, w, -1.0), axis=-1)
    eye = np.eye(n_lev)
    dirs = eye[None] - eye[dep][:, None, :]
    use = live & (np.arange(n_lev)[None] != dep[:, None])
    return dirs * use[..., None], dep


def _linearise(
    red: Reduced, w: np.ndarray, t: np.ndarray, live: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """F = T - w, and its derivatives along the frame's directions and along t (forward differences)."""
    dirs, dep = _frame(w, live)
    n_lev = w.shape[-1]
    h_w, h_t = 1e-7, 1e-6
    pts = np.concatenate([w[:, None], w[:, None] + h_w * dirs, w[:, None]], axis=1)  # (C, L + 2, L)
    ts = np.concatenate([np.repeat(t[:, None], n_lev + 1, axis=1), (t + h_t)[:, None]], axis=1)
    vals = _tmap(red, pts, ts) - pts
    f = vals[:, 0]
    jw = np.swapaxes((vals[:, 1 : n_lev + 1] - f[:, None]) / h_w, 1, 2)  # (C, L eq, L dir)
    jt = (vals[:, -1] - f) / h_t
    return f, jw, jt, dirs, dep


def _solve_step(
    f: np.ndarray,
    jw: np.ndarray,
    jt: np.ndarray,
    dirs: np.ndarray,
    dep: np.ndarray,
    live: np.ndarray,
    cw: np.ndarray,
    ct: np.ndarray,
    rhs: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Solve F + J (dw, dt) = 0 (rows k != dep) with the constraint cw . dw + ct dt = rhs.

    Unknowns: the coefficient of each frame direction, and dt in the dependent slot.
    Rows and columns of dead levels (no active class draws them: w stays 0) are identity.
    """
    n_ctx, n_lev = f.shape
    rows = np.arange(n_ctx)
    a = jw.copy()
    a[rows, :, dep] = jt
    b = -f.copy()
    dead = ~live
    a = np.where(dead[:, :, None], np.eye(n_lev)[None], a)  # dead rows
    a = np.where(dead[:, None, :], np.eye(n_lev)[None], a)  # dead columns
    b = np.where(dead, 0.0, b)
    con = np.einsum("cl,ckl->ck", cw, dirs)
    con[rows, dep] = ct
    a[rows, dep] = con
    b[rows, dep] = rhs
    finite = np.all(np.isfinite(a), axis=(1, 2)) & np.all(np.isfinite(b), axis=1)
    a = np.where(finite[:, None, None], a, np.eye(n_lev)[None])
    b = np.where(finite[:, None], b, 0.0)
    try:
        z = np.linalg.solve(a, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        z = (np.linalg.pinv(a) @ b[..., None])[..., 0]
    dt = z[rows, dep]
    zz = z.copy()
    zz[rows, dep] = 0.0
    dw = np.einsum("ck,ckl->cl", zz, dirs)
    bad = ~finite | ~np.all(np.isfinite(dw), axis=1) | ~np.isfinite(dt)
    return np.where(bad[:, None], np.nan, dw), np.where(bad, np.nan, dt)


def _tangent(
    red: Reduced, w: np.ndarray, t: np.ndarray, live: np.ndarray, prev_w: np.ndarray, prev_t: np.ndarray
) -> np.ndarray:
    """Unit tangent (dw, dt) of the solution curve, oriented along the previous one."""
    f, jw, jt, dirs, dep = _linearise(red, w, t, live)
    dw, dt = _solve_step(np.zeros_like(f), jw, jt, dirs, dep, live, prev_w, _KAPPA**2 * prev_t, np.ones(len(t)))
    norm = np.sqrt(np.sum(dw**2, axis=1) + (_KAPPA * dt) ** 2)
    return np.concatenate([dw, dt[:, None]], axis=1) / norm[:, None]


def _keep_positive(w: np.ndarray, new: np.ndarray, live: np.ndarray, dep: np.ndarray) -> np.ndarray:
    """A live level pushed to <= 0 by a linear step keeps a tenth of its mass instead.

    Near a vertex (small beta) the root's small level masses shrink exponentially along the
    branch; a linear step overshoots them. The dependent level absorbs the difference.
    """
    fix = live & (new <= 0)
    out = np.where(fix, 0.1 * w, new)
    rows = np.arange(len(w))
    out[rows, dep] += 1.0 - out.sum(axis=1)
    return out


def _correct(
    red: Reduced, w: np.ndarray, t: np.ndarray, live: np.ndarray, cw: np.ndarray, ct: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Newton on F(w, t) = 0 with the constraint cw . w + ct t = target; returns w, t, converged.

    Each row runs on its own: a row that has converged (or whose F is not finite, which no
    step changes) leaves the set that is linearised again, so a batch costs what its
    slowest rows need, not that many iterations for every row.
    """
    n = len(t)
    w, t = w.copy(), t.copy()
    ok = np.zeros(n, bool)
    todo = np.arange(n)
    for _ in range(_CORRECTOR_ITERS):
        every = todo.size == n
        r = red if every else red.take(todo)
        wt, tt, lt = (w, t, live) if every else (w[todo], t[todo], live[todo])
        cwt, ctt = (cw, ct) if every else (cw[todo], ct[todo])
        f, jw, jt, dirs, dep = _linearise(r, wt, tt, lt)
        fn = np.max(np.abs(f), axis=1)
        con = (target if every else target[todo]) - np.sum(cwt * wt, axis=1) - ctt * tt
        ok_t = (fn < _FTOL) & (np.abs(con) < 1e-12)
        ok[todo] = ok_t
        go = ~ok_t & np.isfinite(fn)
        if not np.any(go):
            break
        g = np.nonzero(go)[0]
        dw, dt = _solve_step(f[g], jw[g], jt[g], dirs[g], dep[g], lt[g], cwt[g], ctt[g], con[g])
        rows = todo[g]
        w[rows] = _keep_positive(wt[g], wt[g] + np.nan_to_num(dw, nan=0.0), lt[g], dep[g])
        t[rows] = tt[g] + np.nan_to_num(dt, nan=0.0)
        # (a row whose step is not finite is not converged, whatever its last F said)
        ok[rows] &= np.all(np.isfinite(dw), axis=1)
        todo = rows
    inside = np.all(np.where(live, w > 0, True), axis=1)
    return w, t, ok & inside


def _start(red: Reduced, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """beta_0 per context and the root there: START_FACTOR times the largest |P_G| at w_ref."""
    w_ref = red.problem.reference_mixture()
    pref = red.class_preference_from_mixture(w_ref)
    size = np.max(np.where(red.ref_mass > 0, np.abs(pref), 0.0), axis=1)
    beta0 = np.maximum(beta, START_FACTOR * size)
    return beta0, w_ref


def continuation_mixtures(red: Reduced) -> tuple[list[list[np.ndarray]], list[RootSearch]]:
    """Every root on the large-beta branch of each context, and the search record (section 11).

    Parameters
    ----------
    red : Reduced
        A reward problem with a k3, k2 or kl penalty and beta > 0.

    Returns
    -------
    mixtures : list (per context) of lists of root mixtures (L,)
    searches : list of RootSearch (``newton_starts`` 0: the caller adds its own)
    """
    n_ctx, n_lev = red.problem.reference_mixture().shape
    t_target = float(np.log(red.beta))
    beta0, w0 = _start(red, red.beta)
    live = w0 > 0
    t = np.log(beta0)
    # the start root: Newton at fixed t from the reference mixture
    zero_w = np.zeros((n_ctx, n_lev))
    w, t, ok = _correct(red, w0.copy(), t.copy(), live, zero_w, np.ones(n_ctx), t.copy())
    tau = _tangent(red, w, t, live, zero_w, -np.ones(n_ctx))
    ds = np.full(n_ctx, 0.05)
    running = ok & (t > t_target)
    ended = np.where(ok, "below target", "stalled").astype(object)
    steps = np.zeros(n_ctx, int)
    turns = np.zeros(n_ctx, int)
    length = np.zeros(n_ctx)
    t_low = t.copy()
    roots: list[list[np.ndarray]] = [[] for _ in range(n_ctx)]
    crossings: list[tuple[int, np.ndarray, float, np.ndarray, float]] = []
    # contexts whose target is at or above beta_0: the start is the target's unique root
    at_start = ok & (t <= t_target)
    for c in np.nonzero(at_start)[0].tolist():
        roots[c].append(w[c])
    t_end = t_target - np.log(BELOW_TARGET)
    for _ in range(MAX_STEPS * 4):
        idx = np.nonzero(running)[0]
        if idx.size == 0:
            break
        sub = red.take(idx)
        wi, ti, taui, dsi, livei = w[idx], t[idx], tau[idx], ds[idx], live[idx]
        dep_i = np.argmax(np.where(livei, wi, -1.0), axis=1)
        pw = _keep_positive(wi, wi + dsi[:, None] * taui[:, :-1], livei, dep_i)
        pt = ti + dsi * taui[:, -1]
        cw, ct = taui[:, :-1], _KAPPA**2 * taui[:, -1]
        nw, nt, conv = _correct(sub, pw, pt, livei, cw, ct, np.sum(cw * pw, axis=1) + ct * pt)
        moved = np.sqrt(np.sum((nw - pw) ** 2, axis=1) + (_KAPPA * (nt - pt)) ** 2)
        conv &= moved <= 0.5 * dsi
        new_tau = np.full_like(taui, np.nan)
        if np.any(conv):
            k = np.nonzero(conv)[0]
            new_tau[k] = _tangent(sub.take(k), nw[k], nt[k], livei[k], taui[k, :-1], taui[k, -1])
        cos = np.sum(new_tau[:, :-1] * taui[:, :-1], axis=1) + _KAPPA**2 * new_tau[:, -1] * taui[:, -1]
        accept = conv & (cos > 0.9)
        for j in np.nonzero(accept)[0].tolist():
            c = int(idx[j])
            if (ti[j] - t_target) * (nt[j] - t_target) <= 0:
                crossings.append((c, wi[j], float(ti[j]), taui[j], float(dsi[j])))
        acc = idx[accept]
        turns[acc] += np.sign(tau[acc, -1]) != np.sign(new_tau[accept, -1])
        length[acc] += dsi[accept]
        steps[acc] += 1
        w[acc], t[acc], tau[acc] = nw[accept], nt[accept], new_tau[accept]
        t_low[acc] = np.minimum(t_low[acc], nt[accept])
        ds[acc] = np.minimum(_DS_MAX, 1.5 * dsi[accept])
        rej = idx[~accept]
        ds[rej] *= 0.5
        # leaving the branch: below target, at the boundary, stalled, or out of steps
        near_edge = np.any(live[rej] & (w[rej] < 1e-9), axis=1)
        stall = ds[rej] < 1e-9
        ended[rej[stall & near_edge]] = "boundary"
        ended[rej[stall & ~near_edge]] = "stalled"
        running[rej[stall]] = False
        below = acc[t[acc] < t_end]
        ended[below] = "below target"
        running[below] = False
        over = running & (steps >= MAX_STEPS)
        ended[over] = "step limit"
        running[over] = False
    _refine_crossings(red, crossings, t_target, live, roots)
    searches = [
        RootSearch(
            "continuation+newton",
            float(beta0[c]),
            float(np.exp(t_low[c])),
            float(length[c]),
            int(steps[c]),
            int(turns[c]),
            len(roots[c]),
            0,
            str(ended[c]),
        )
        for c in range(n_ctx)
    ]
    return roots, searches


def _refine_crossings(
    red: Reduced,
    crossings: list[tuple[int, np.ndarray, float, np.ndarray, float]],
    t_target: float,
    live: np.ndarray,
    roots: list[list[np.ndarray]],
) -> None:
    """Land each crossing on t = t_target: Illinois on the arclength sigma along the step.

    Each trial sigma is a predictor along the step's tangent and a pseudo-arclength
    correction, which stays well conditioned at a fold (where fixing t would not).
    """
    if not crossings:
        return
    ctx = np.array([c[0] for c in crossings])
    w0 = np.stack([c[1] for c in crossings])
    t0 = np.array([c[2] for c in crossings])
    tau = np.stack([c[3] for c in crossings])
    sub = red.take(ctx)
    lv = live[ctx]
    cw, ct = tau[:, :-1], _KAPPA**2 * tau[:, -1]

    def land(sig: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = sub if rows.size == len(ctx) else sub.take(rows)
        pw = w0[rows] + sig[:, None] * tau[rows, :-1]
        pt = t0[rows] + sig * tau[rows, -1]
        cwr, ctr = cw[rows], ct[rows]
        ww, tt, _ = _correct(r, pw, pt, lv[rows], cwr, ctr, np.sum(cwr * pw, axis=1) + ctr * pt)
        return ww, tt

    every = np.arange(len(ctx))
    lo = np.zeros(len(ctx))
    hi = np.array([c[4] for c in crossings])
    g_lo = t0 - t_target
    w_hi, t_hi = land(hi, every)
    g_hi = t_hi - t_target
    best_w, best_g = w_hi, g_hi
    side = np.zeros(len(ctx))
    # each crossing iterates until its own |t - t_target| < 1e-14 (or 60 iterations)
    todo = np.nonzero(~(np.abs(best_g) < 1e-14))[0]
    for _ in range(60):
        if todo.size == 0:
            break
        lo_t, hi_t, gl, gh = lo[todo], hi[todo], g_lo[todo], g_hi[todo]
        sig = np.where(gh != gl, (lo_t * gh - hi_t * gl) / np.where(gh != gl, gh - gl, 1.0), 0.5 * (lo_t + hi_t))
        sig = np.clip(np.nan_to_num(sig, nan=0.0), lo_t, hi_t)
        ww, tt = land(sig, todo)
        g = tt - t_target
        better = np.abs(g) < np.abs(best_g[todo])
        best_w[todo[better]], best_g[todo[better]] = ww[better], g[better]
        sd = side[todo]
        left = np.sign(g) == np.sign(gl)
        gh = np.where(left & (sd == 1), 0.5 * gh, gh)
        gl = np.where(~left & (sd == -1), 0.5 * gl, gl)
        lo[todo], g_lo[todo] = np.where(left, sig, lo_t), np.where(left, g, gl)
        hi[todo], g_hi[todo] = np.where(left, hi_t, sig), np.where(left, gh, g)
        side[todo] = np.where(left, 1, -1)
        todo = todo[~(np.abs(best_g[todo]) < 1e-14)]
    # final polish at t = t_target exactly (a few Newton steps in w)
    n = len(ctx)
    pw, _, done = _correct(
        sub, best_w, np.full(n, t_target), lv, np.zeros_like(best_w), np.ones(n), np.full(n, t_target)
    )
    pw = np.where(done[:, None], pw, best_w)
    for c, wc in zip(ctx.tolist(), pw, strict=True):
        if np.all(np.isfinite(wc)):
            roots[c].append(wc)
