"""Two reward classes per context, many contexts at once (THEORY.md sections 5, 9 and 11).

When every context has at most two active reward classes (a binary question: a correct
and a wrong class, rewards 1/0 or Bernoulli) and two reward levels, the stationary
conditions in the class mass m1 of the better class (m2 = 1 - m1, D = P_1 - P_2 =
sum_l (F_1(l) - F_2(l)) h_l(w), w = m1 F_1 + m2 F_2) are, with R the class reference masses:

    k3:     R1 = m1 (1 - m2 D / beta),   equivalently   R2 = m2 (1 + m1 D / beta),
    k2/kl:  log(m1 / m2) - D / beta = log(R1 / R2).

The left sides do not depend on the context except through (F_1, F_2, levels), its
"shape"; contexts of one shape share them. So each shape's left side is tabulated once on
a grid dense toward both ends (down to masses of 1e-300), its sampled extrema are zoomed
into (the folds of section 11), and within each monotone piece a context has a root
exactly when its right side lies in the piece's range: ``bracket`` finds its table interval
(an interpolated index of the piece's values, checked, ``searchsorted`` for the misses) and
a vectorised Illinois iteration refines all brackets at once. Each root is carried as the
pair (m1, m2) with the smaller mass as the unknown, so a root next to a vertex (G = inf,
p0 -> 1: m2 ~ beta^2 (1 - p0)^2) keeps its relative precision, which the residual check
needs (its terms grow like pi_ref / pi).

Every root is then checked by the same residual code as the general path, and rated by
the same stability criterion (the Jacobian of the class-logit field, here the scalar
2 (m1 m2)^2 d(g1 - g2)/dm1). Problems this does not cover return None and take the
general path: more than two active classes in a context, more than ``MAX_SHAPES``
shapes, the abs penalty or no regularisation, and the faces of G = inf with direct KL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np

from grpo_align.theory.penalties import PENALTIES
from grpo_align.theory.problem import Problem
from grpo_align.theory.stationary.assemble import choose_roots, chosen_fields, outcome
from grpo_align.theory.stationary.boundary import has_boundary_roots
from grpo_align.theory.stationary.reduction import Reduced
from grpo_align.theory.stationary.residual import (
    one_context_check,
    preference_2d,
    residual_given,
    residual_tolerance,
    shared_check,
    two_class_route,
)
from grpo_align.theory.stationary.result import RESIDUAL_TOLERANCE, ROOT_KINDS, StationaryResult, StationaryRoot
from grpo_align.theory.stationary.stability import stability_threshold
from grpo_align.theory.stationary.tables import HORNER_MAX_G, Shape, binary_coefficients, binary_levels, side_roots

__all__ = ["MAX_SHAPES", "batch_binary"]

#: Batches with more contexts get their ``roots`` as a ``LazyRoots`` (built when read).
LAZY_FROM = 4096

#: Most distinct (F_1, F_2, levels) shapes solved by tabulation; more take the general path.
MAX_SHAPES = 32


class LazyRoots(Sequence[tuple[StationaryRoot, ...]]):
    """The roots of every context, built into ``StationaryRoot`` objects only when read.

    ``counts`` (C,) is the number of roots per context without building any.
    """

    def __init__(self, build: Any, counts: np.ndarray) -> None:
        self._build = build
        self.counts = counts
        self._cache: dict[int, tuple[StationaryRoot, ...]] = {}

    def __len__(self) -> int:
        return int(self.counts.size)

    @overload
    def __getitem__(self, c: int) -> tuple[StationaryRoot, ...]: ...
    @overload
    def __getitem__(self, c: slice) -> Sequence[tuple[StationaryRoot, ...]]: ...
    def __getitem__(self, c: int | slice) -> Any:
        if isinstance(c, slice):
            return tuple(self[i] for i in range(*c.indices(len(self))))
        n = len(self)
        if not -n <= c < n:
            raise IndexError(f"context {c} out of range for {n} contexts")
        c = int(c) % n
        if c not in self._cache:
            self._cache[c] = self._build(c)
        return self._cache[c]

    def __iter__(self) -> Iterator[tuple[StationaryRoot, ...]]:
        return (self[c] for c in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Sequence)
            and len(other) == len(self)
            and all(a == b for a, b in zip(self, other, strict=False))
        )

    __hash__ = None  # type: ignore[assignment]


def batch_binary(red: Reduced) -> StationaryResult | None:
    """All stationary policies of a problem whose contexts have at most two active reward
    classes and two levels, solved for all contexts at once (module docstring); None where
    the problem is not of that kind (the caller takes the general path)."""
    problem, algo = red.problem, red.algo
    if (
        not red.is_reward
        or problem.n_levels != 2
        or PENALTIES[algo.penalty].stationary_map is None
        or not algo.regularised
        or has_boundary_roots(red)
    ):
        return None
    n_ctx = problem.n_contexts
    active = red.ref_mass > 0
    shared = _shared_classes(red, active)
    if shared is not None:
        return _solve_roots(red, *shared)
    n_act = active.sum(axis=1)
    if np.any(n_act > 2):
        return None
    dist = red.dist
    high = np.where(active, dist[..., 1], -np.inf)
    # the better class (larger probability of the high level) is class 1
    j1 = np.argmax(high, axis=1)
    not_j1 = np.arange(red.n_classes)[None, :] != j1[:, None]
    j2 = np.where(n_act == 2, np.argmax(np.where(active & not_j1, 1.0, 0.0), axis=1), j1)
    two = n_act == 2
    rows = np.arange(n_ctx)
    f1, f2 = dist[rows, j1], dist[rows, j2]
    if np.any(two & (f1[:, 1] <= f2[:, 1])):
        return None
    key = np.concatenate([f1, f2, problem.levels], axis=1)
    key_two = key[two]
    if key_two.shape[0] and np.all(key_two == key_two[:1]):
        shapes, which = key_two[:1], np.zeros(key_two.shape[0], np.int64)
    elif key_two.shape[0]:
        shapes, which = np.unique(key_two, axis=0, return_inverse=True)
        which = which.ravel()
        if shapes.shape[0] > MAX_SHAPES:
            return None
    else:
        shapes, which = key_two[:0], np.zeros(0, np.int64)
    r1, r2 = red.ref_mass[rows, j1], red.ref_mass[rows, j2]
    return _solve_roots(red, j1, j2, f1, f2, two, shapes, which, r1, r2)


def _shared_classes(red: Reduced, active: np.ndarray) -> tuple[Any, ...] | None:
    """The arguments of ``_solve_roots`` without per-context indexing, when every context
    has the same two classes (a partition shared by reference, ``class_partition``), both
    active, and the same levels: one shape, class columns as views. None otherwise."""
    problem = red.problem
    n_ctx = problem.n_contexts
    if red.dist.strides[0] != 0 or red.n_classes != 2 or n_ctx < 2 or not bool(np.all(active)):
        return None
    levels = problem.levels
    if levels.strides[0] != 0 and not bool(np.all(levels == levels[:1])):
        return None
    row = red.dist[0]
    a, b = (0, 1) if row[0, 1] >= row[1, 1] else (1, 0)
    if row[a, 1] <= row[b, 1]:
        return None  # equal high-level probabilities: not two classes of this kind
    j1, j2 = np.full(n_ctx, a), np.full(n_ctx, b)
    f1, f2 = np.broadcast_to(row[a], (n_ctx, 2)), np.broadcast_to(row[b], (n_ctx, 2))
    shapes = np.concatenate([row[a], row[b], levels[0]])[None, :]
    two = np.ones(n_ctx, bool)
    which = np.zeros(n_ctx, np.int64)
    return j1, j2, f1, f2, two, shapes, which, red.ref_mass[:, a], red.ref_mass[:, b]


def _solve_roots(
    red: Reduced,
    j1: np.ndarray,
    j2: np.ndarray,
    f1: np.ndarray,
    f2: np.ndarray,
    two: np.ndarray,
    shapes: np.ndarray,
    which: np.ndarray,
    r1: np.ndarray,
    r2: np.ndarray,
) -> StationaryResult:
    """The roots of every context (class 1 the better, ``j1``/``j2`` its class slots), checked
    and assembled (``_assemble``)."""
    problem, algo = red.problem, red.algo
    reciprocal = PENALTIES[algo.penalty].stationary_map == "reciprocal"  # k3
    n_ctx = problem.n_contexts

    # roots: (context, m1, m2)
    ctx_parts: list[np.ndarray] = []
    m1_parts: list[np.ndarray] = []
    m2_parts: list[np.ndarray] = []
    dd_parts: list[np.ndarray] = []
    shape_parts: list[np.ndarray] = []
    nit = 0
    two_idx = np.nonzero(two)[0]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for s in range(shapes.shape[0]):
            members = two_idx if shapes.shape[0] == 1 else two_idx[which == s]
            every = members.size == n_ctx  # no indexing where every context takes part
            r1_s, r2_s = (r1, r2) if every else (r1[members], r2[members])
            shape = Shape(shapes[s, 0:2], shapes[s, 2:4], shapes[s, 4:6], algo)
            log_ratio = None if reciprocal else np.log(r1_s / r2_s)
            for side in (0, 1):
                target = (r1_s if side == 0 else r2_s) if log_ratio is None else log_ratio
                c_loc, x, it = side_roots(shape, algo.penalty, algo.beta, side, target)
                nit = max(nit, it)
                ctx_parts.append(c_loc if every else members[c_loc])
                m1_parts.append(x if side == 0 else 1.0 - x)
                m2_parts.append(1.0 - x if side == 0 else x)
                dd_parts.append(shape.slope(x, side))
                shape_parts.append(np.full(x.size, s))
    one = np.nonzero(~two)[0]
    if one.size:
        ctx_parts.append(one)
        m1_parts.append(np.where(red.ref_mass[one, j1[one]] > 0, 1.0, 0.0))
        m2_parts.append(np.zeros(one.size))
        dd_parts.append(np.zeros(one.size))
        shape_parts.append(np.full(one.size, -1))
    ctx_r = np.concatenate(ctx_parts)
    m1_r, m2_r = np.concatenate(m1_parts), np.concatenate(m2_parts)
    dd_r, shape_r = np.concatenate(dd_parts), np.concatenate(shape_parts)
    counts = np.bincount(ctx_r, minlength=n_ctx)
    if ctx_r.size == n_ctx and not np.any(counts != 1):
        # one root per context (the usual case): order by context with one scatter
        order = np.empty(n_ctx, np.int64)
        order[ctx_r] = np.arange(n_ctx)
        return _assemble(
            red, None, m1_r[order], m2_r[order], dd_r[order], shape_r[order], shapes, j1, j2, f1, f2, two, nit
        )
    # order roots by context, then by the mixture's high-level mass (as the general path)
    u = m1_r * f1[ctx_r, 1] + m2_r * f2[ctx_r, 1]
    order = np.lexsort((u, ctx_r))
    ctx_r, m1_r, m2_r, u = ctx_r[order], m1_r[order], m2_r[order], u[order]
    dd_r, shape_r = dd_r[order], shape_r[order]
    # drop duplicates (a root on the seam m1 = 1/2 or a piece end found twice)
    dup = np.zeros(ctx_r.size, bool)
    dup[1:] = (ctx_r[1:] == ctx_r[:-1]) & (np.abs(u[1:] - u[:-1]) <= 1e-10)
    keep = ~dup
    ctx_r, m1_r, m2_r = ctx_r[keep], m1_r[keep], m2_r[keep]
    dd_r, shape_r = dd_r[keep], shape_r[keep]
    return _assemble(red, ctx_r, m1_r, m2_r, dd_r, shape_r, shapes, j1, j2, f1, f2, two, nit)


def _extended_preference(
    problem: Problem, algo: Any, pi: np.ndarray, shape_r: np.ndarray, shapes: np.ndarray
) -> np.ndarray:
    """P_G(o | pi) (n, K) for the roots, in extended precision from the problem's own levels.

    The independent route of the residual check (``residual.preference_2d``), for two
    levels by the polynomial of ``binary_levels`` in longdouble at the mixture of the
    policy's outputs, one table per shape;
    G = inf, large G and one-class contexts go through ``preference_2d`` itself.
    """
    pref = np.empty(pi.shape)
    general = np.ones(pi.shape[0], bool)
    if not algo.is_limit and algo.group_size <= HORNER_MAX_G:
        ld = np.longdouble
        for s in range(shapes.shape[0]):
            rows = np.nonzero(shape_r == s)[0]
            general[rows] = False
            every = rows.size == pi.shape[0]
            coef = binary_coefficients(shapes[s, 4:6].astype(float), algo, ld)
            dist = problem.dist if every else problem.dist[rows]
            p = pi if every else pi[rows]
            # the mixture w = sum_o pi(o) F_o from the outputs (sums of non-negative terms,
            # pairwise: relative error O(eps log K)); the polynomial, where rounding
            # accumulates, in longdouble
            w = np.einsum("ck,ckl->cl", p, dist).astype(ld)
            h = binary_levels(w[:, 0], w[:, 1], coef).astype(float)  # (n, 2)
            pref[rows] = np.einsum("ckl,cl->ck", dist, h)
    rest = np.nonzero(general)[0]
    if rest.size:
        pref[rest] = preference_2d(problem.contexts(rest), algo, pi[rest])
    return pref


def _assemble(
    red: Reduced,
    ctx_r: np.ndarray | None,
    m1_r: np.ndarray,
    m2_r: np.ndarray,
    dd_r: np.ndarray,
    shape_r: np.ndarray,
    shapes: np.ndarray,
    j1: np.ndarray,
    j2: np.ndarray,
    f1: np.ndarray,
    f2: np.ndarray,
    two: np.ndarray,
    nit: int,
) -> StationaryResult:
    """Check every root (residual in extended precision, stability), choose one per context
    and build the result. ``ctx_r`` None: exactly one root per context, in context order."""
    problem, algo = red.problem, red.algo
    reciprocal = PENALTIES[algo.penalty].stationary_map == "reciprocal"  # k3
    n_ctx = problem.n_contexts
    single = ctx_r is None
    if ctx_r is None:
        ctx_r = np.arange(n_ctx)
        counts = np.ones(n_ctx, np.int64)

        def take(a: np.ndarray) -> np.ndarray:
            return a

        sub = problem
    else:
        counts = np.bincount(ctx_r, minlength=n_ctx)
        idx = ctx_r

        def take(a: np.ndarray) -> np.ndarray:
            return a[idx]

        sub = problem.contexts(ctx_r)
    n_r = ctx_r.size
    rows = np.arange(n_r)
    checked = None
    if single and f1.strides[0] == 0:
        # one shared partition of two active classes (``_shared_classes``): columns, no scatter
        masses = np.empty((n_r, 2))
        masses[:, int(j1[0])] = m1_r
        masses[:, int(j2[0])] = m2_r
        pi = red.policy(masses)
        checked = shared_check(problem, algo, pi, shapes[0, 4:6])
    else:
        masses = np.zeros((n_r, red.n_classes))
        masses[rows, take(j1)] = m1_r
        # a one-class context has j2 == j1: its mass is already 1 (m2 = 0)
        masses[rows, take(j2)] += m2_r
        one_two = single and n_ctx == 1 and red.n_classes == 2 and bool(two[0])
        fast = two_class_route(red, masses, shapes[0, 4:6]) if one_two and red.split is not None else None
        if fast is not None:
            pi, checked = fast
        else:
            pi = (
                red.policy(masses)
                if single
                else np.take_along_axis(masses, take(red.class_of), axis=1) * take(red.within)
            )
            if one_two and problem.n_outputs > 8:
                checked = one_context_check(problem, algo, pi, red.class_of, red.dist[0], shapes[0, 4:6])
    # the roots' mixtures: built here when choosing among several roots, else per root on demand
    mix = None if single else m1_r[:, None] * take(f1) + m2_r[:, None] * take(f2)
    if checked is not None:
        res, mult, tol = checked
    else:
        pref = _extended_preference(sub, algo, pi, shape_r, shapes)
        res, mult = residual_given(sub, algo, pi, pref)
        tol = residual_tolerance(sub, algo, pi, pref, RESIDUAL_TOLERANCE)
    good = res <= tol

    # stability (stability.stability's criterion on the scalar eigenvalue of two classes)
    eig = np.zeros(n_r)
    stable = np.ones(n_r, bool)
    has_eig = np.ones(n_r, bool)
    two_r = take(two)
    every = bool(np.all(two_r))
    t = rows if every else np.nonzero(two_r)[0]
    if t.size:
        if every:  # no copies through an index of every root
            c, a1, a2, dd = ctx_r, m1_r, m2_r, dd_r
        else:
            c, a1, a2, dd = ctx_r[t], m1_r[t], m2_r[t], dd_r[t]
        small = np.minimum(a1, a2)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if single and f1.strides[0] == 0:  # the shared path: class columns
                r1, r2 = red.ref_mass[:, int(j1[0])], red.ref_mass[:, int(j2[0])]
            else:
                r1, r2 = red.ref_mass[c, j1[c]], red.ref_mass[c, j2[c]]
            # d(phi_2 - phi_1)/d m: k3 phi = 1 - R/m, k2 and kl phi = log(m/R) (+ 1)
            dphi = r2 / a2**2 + r1 / a1**2 if reciprocal else 1.0 / a1 + 1.0 / a2
            lam = 2.0 * (a1 * a2) ** 2 * (dd - algo.beta * dphi)
            bound = stability_threshold(np.abs(lam), small)
        finite = np.isfinite(lam)
        if every:
            stable, has_eig = (lam < bound) & finite, finite
            eig = np.where(finite, lam, np.nan)
        else:
            stable[t] = (lam < bound) & finite
            eig[t] = np.where(finite, lam, np.nan)
            has_eig[t] = finite

    # (the shared check ran only on policies with every output in the support)
    on_face = np.zeros(n_r, bool) if checked is not None else np.any((pi == 0) & (sub.ref > 0), axis=1)
    kind = np.where(on_face, ROOT_KINDS.index("boundary"), ROOT_KINDS.index("interior"))
    stable_code = np.where(has_eig, stable.astype(np.int64), -1)
    reached = None
    if single:
        mix_d = pol_d = np.zeros(n_r)
    else:
        assert mix is not None
        mix_d = np.max(np.abs(mix - take(problem.reference_mixture())), axis=1)
        pol_d = np.max(np.abs(pi - sub.ref), axis=1)
        # one dimension: at pi_ref the penalty's gradient is 0 and D = P_1 - P_2 > 0 (class 1
        # is the better), so the flow raises m1 from R1 to the first root above it
        r1_r = red.ref_mass[ctx_r, take(j1)]
        above = np.where(m1_r >= r1_r, m1_r, np.nan)
        first = np.full(n_ctx, np.nan)
        np.fmin.at(first, ctx_r, above)
        reached = above == first[ctx_r]
    choice = choose_roots(ctx_r, good, stable_code, kind, mix_d, pol_d, res, n_ctx, reached=reached)
    if single:
        policy, residual = pi, res
    else:
        policy, residual = chosen_fields(choice, pi, res, problem.ref)
    status, messages = outcome(choice, kind, res, algo)
    starts = np.concatenate([[0], np.cumsum(counts)])

    def build(c: int) -> tuple[StationaryRoot, ...]:
        out = []
        for i in range(int(starts[c]), int(starts[c + 1])):
            eigs = np.array([eig[i]], dtype=complex) if two_r[i] else np.zeros(0)
            st: bool | None = bool(stable[i])
            if two_r[i] and not has_eig[i]:
                st, eigs_opt = None, None
            else:
                eigs_opt = eigs
            out.append(
                StationaryRoot(
                    pi[i],
                    mix[i] if mix is not None else m1_r[i] * f1[i] + m2_r[i] * f2[i],
                    float(mult[i]),
                    float(res[i]),
                    st,
                    eigs_opt,
                    float(tol[i]),
                    kind="boundary" if on_face[i] else "interior",
                )
            )
        return tuple(out)

    return StationaryResult(
        policy=policy,
        success=choice.success,
        status=status,
        residual=residual,
        nit=nit,
        message=messages,
        # a tuple as everywhere else for small batches; built on demand for large ones, where
        # making 10^6 root objects would cost more than the solve
        roots=tuple(build(i) for i in range(n_ctx)) if n_ctx <= LAZY_FROM else LazyRoots(build, counts),  # type: ignore[arg-type]
        algo=algo,
        problem=problem,
        method="scan",
    )
