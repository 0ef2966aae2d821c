"""Stationary tree policies: token sequences, aggregation, the penalty in the reward.

THEORY.md section 10. A stationary policy zeroes the exact expected gradient (eq. 10.5) in
every per-prefix logit:

    S(ut) = c_u   for every prefix u with mass and every next token t with pi(t|u) > 0   (10.8)

(K - 1 equations for K outputs). Roots are sought by damped Newton in the free per-prefix
logits from several starts, on every face of the simplex where the penalty leaves no
infinite restoring force at the boundary (k1 in the loss, beta = 0, k2/k3 in the reward):
a face root is a boundary policy when each removed next token is pushed out, S(ut) < c_u
(the KKT condition, eq. 10.10). With the penalty in the reward, std scaling and eps = 0,
roots are followed from the regularised normalisation (std + eps, eps -> 0); where the
modified rewards of different outputs tie in the limit, the stationary policy is a
sliding-mode equilibrium, solved exactly in blow-up coordinates (eq. 10.9). At G = inf
with the penalty in the reward and std scaling the roots are the shift field's, rescaled
(eq. 10.14); the abs penalty is solved by forward-backward splitting (``tree_abs``, eq. 10.16).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grpo_align.theory.penalties import PENALTIES
from grpo_align.theory.problem import Problem
from grpo_align.theory.reward_penalty import TieStructure, candidate_ties, find_ties, sequence_penalty
from grpo_align.theory.sequence_gradient import SequenceModel, population_moments
from grpo_align.theory.spec import GRPO
from grpo_align.theory.stationary.assemble import assemble_roots
from grpo_align.theory.stationary.result import (
    RESIDUAL_TOLERANCE,
    RootKind,
    RootSearch,
    StationaryResult,
    StationaryRoot,
)
from grpo_align.theory.stationary.reward_tie import reward_tie_applies
from grpo_align.theory.stationary.tree_abs import abs_residual, abs_tree_policy

__all__ = [
    "SequenceRoot",
    "SequenceStationaryResult",
    "needs_tree_solver",
    "refine_tree_root",
    "tree_stationary_policy",
]

#: Largest number of active outputs whose faces are all enumerated.
MAX_FACE_OUTPUTS = 8
#: The regularisation path eps -> 0 followed for sliding modes.
EPS_PATH = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
#: At G = inf a root whose population std of the modified rewards is below this fraction of
#: their size is on the tie set (sigma = 0; a converged root has sigma at rounding level).
SIGMA_TIE = 1e-8


@dataclass(frozen=True, repr=False)
class SequenceRoot(StationaryRoot):
    """A stationary tree policy (THEORY.md section 10).

    Attributes (besides ``StationaryRoot``'s, whose ``kind`` is "interior", "boundary" (a
    face root satisfying the KKT condition 10.10) or "sliding" (a Filippov equilibrium on a
    tie set, eq. 10.9))
    -----------------------------------------------------------------------------------
    ties : TieStructure or None
        For a sliding root, the outputs whose modified rewards tie.
    """

    ties: TieStructure | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        pol = np.array2string(np.asarray(self.policy), precision=6, threshold=8)
        return f"SequenceRoot(kind={self.kind!r}, policy={pol}, stable={self.stable}, residual={self.residual:.1e})"


@dataclass(frozen=True, repr=False)
class SequenceStationaryResult(StationaryResult):
    """A ``StationaryResult`` for tree policies, with the per-prefix conditionals.

    ``status`` per context is that of the chosen root: "interior", "boundary", "sliding",
    or "failed".
    """

    def conditionals(self, c: int = 0, policy: Any = None) -> dict[tuple[Any, ...], dict[Any, float]]:
        """{branching prefix: {next token: pi(t | u)}} of context c (eq. 10.1).

        ``policy`` defaults to the chosen stationary policy; pass a root's policy to get
        its conditionals.
        """
        from grpo_align.theory.sequences import Tree

        pol = self.policy[c] if policy is None else np.asarray(policy, dtype=float)
        seqs = self.problem.sequences[c] if self.problem.sequences is not None else [(o,) for o in range(pol.size)]
        tree = Tree(seqs, self.problem.ref[c])
        return tree.as_dict(tree.conditionals(pol))

    def __repr__(self) -> str:
        return "Sequence" + super().__repr__()


def needs_tree_solver(problem: Problem, algo: GRPO) -> bool:
    """Whether ``problem``/``algo`` leave the paper's atomic setting (THEORY.md section 10):
    token sequences that matter (``Problem.sequences_are_atomic`` False), or the penalty in
    the reward."""
    if not problem.sequences_are_atomic:
        return True
    # the penalty in the reward: two deterministic reward classes have their own route
    return algo.penalty_in == "reward" and not reward_tie_applies(problem, algo)


# ---------------------------------------------------------------------------- helpers
def _newton(
    fun: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, tol: float, max_iter: int = 80
) -> tuple[np.ndarray, bool, int]:
    """Damped Newton with a central-difference Jacobian and backtracking on |F|."""
    x = np.asarray(x0, dtype=float).copy()
    f = fun(x)
    if x.size == 0:
        return x, bool(np.all(np.abs(f) <= tol)), 0
    for it in range(max_iter):
        if not np.all(np.isfinite(f)):
            return x, False, it
        if np.max(np.abs(f), initial=0.0) <= tol:
            return x, True, it
        jac = np.empty((f.size, x.size))
        for j in range(x.size):
            h = 1e-6 * max(1.0, abs(x[j]))
            xp, xm = x.copy(), x.copy()
            xp[j] += h
            xm[j] -= h
            jac[:, j] = (fun(xp) - fun(xm)) / (2 * h)
        step = np.linalg.lstsq(jac, -f, rcond=None)[0]
        big = np.max(np.abs(step), initial=0.0)
        if big > 5.0:
            step *= 5.0 / big
        norm = float(np.linalg.norm(f))
        t = 1.0
        while t > 1e-6:
            xn = x + t * step
            fn = fun(xn)
            if np.all(np.isfinite(fn)) and np.linalg.norm(fn) < (1 - 1e-4 * t) * norm:
                break
            t /= 2
        else:
            return x, bool(np.max(np.abs(f)) <= tol), it
        x, f = xn, fn
    return x, bool(np.max(np.abs(f), initial=0.0) <= tol), max_iter


@dataclass
class _Face:
    """Free per-prefix logits on the face where exactly ``support`` has mass."""

    model: SequenceModel
    support: np.ndarray  # (K,) bool

    def __post_init__(self) -> None:
        tree = self.model.tree
        self.live = (tree.through & self.support[None, :]).any(axis=1)  # (E,)
        # a prefix has mass iff some supported output passes it
        node_live = [bool(self.live[e].any()) for e in tree.node_edges]
        self.free: list[int] = []  # edges with a free logit
        self.gauge: list[int] = []  # per free edge, its prefix's gauge edge
        for n, edges in enumerate(tree.node_edges):
            if not node_live[n]:
                continue
            live_edges = [int(e) for e in edges if self.live[e]]
            for e in live_edges[1:]:
                self.free.append(e)
                self.gauge.append(live_edges[0])
        self.node_live = np.array(node_live, bool)

    @property
    def dim(self) -> int:
        return len(self.free)

    def cond(self, z: np.ndarray) -> np.ndarray:
        tree = self.model.tree
        logits = np.zeros(tree.n_edges)
        logits[self.free] = z
        cond = tree.ref_cond.copy()
        for n, edges in enumerate(tree.node_edges):
            if not self.node_live[n]:
                continue
            live = self.live[edges]
            zz = np.where(live, logits[edges], -np.inf)
            p = np.exp(zz - zz.max())
            cond[edges] = p / p.sum()
        return cond

    def z_of(self, cond: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            lc = np.log(np.maximum(cond, 1e-300))
        return np.array([lc[e] - lc[g] for e, g in zip(self.free, self.gauge, strict=True)])

    def equations(self, z: np.ndarray, ties: TieStructure | None = None, eta: np.ndarray | None = None) -> np.ndarray:
        s, _ = self.model.terms(self.cond(z), ties, eta)
        return s[self.free] - s[self.gauge]


def _starts(face: _Face, rng: np.random.Generator, n_random: int) -> list[np.ndarray]:
    tree = face.model.tree
    out = [face.z_of(tree.ref_cond), np.zeros(face.dim)]
    out += [rng.normal(scale=2.0, size=face.dim) for _ in range(n_random)]
    return out


def _faces(model: SequenceModel, algo: GRPO) -> list[np.ndarray]:
    """Supports to search: the whole tree where the penalty repels from the boundary
    (eq. 10.10: k3, k2 and kl in the loss with beta > 0), every subset otherwise."""
    active = np.nonzero(model.tree.active)[0]
    full = model.tree.active.copy()
    infinite_pull = algo.penalty_in == "loss" and algo.beta > 0 and PENALTIES[algo.penalty].repels_boundary
    if infinite_pull:
        return [full]
    sizes = range(active.size, 0, -1) if active.size <= MAX_FACE_OUTPUTS else (active.size, 1)
    out = []
    for size in sizes:
        for subset in itertools.combinations(active.tolist(), size):
            sup = np.zeros_like(full)
            sup[list(subset)] = True
            out.append(sup)
    return out


def _stability(face: _Face, z: np.ndarray, model: SequenceModel) -> tuple[np.ndarray, bool]:
    """Eigenvalues of the expected gradient field's Jacobian in the free logits (each
    prefix's common shift removed by the gauge), and stability including the KKT pushes."""

    # each free logit relative to its prefix's gauge logit: the softmax's null direction
    # (all logits of a prefix up by the same amount) drops out
    def rel(zz: np.ndarray) -> np.ndarray:
        cond = face.cond(zz)
        g = model.gradient(cond)
        return g[face.free] - g[face.gauge]

    n = face.dim
    eig: np.ndarray = np.zeros(0)
    if n > 0:
        jac = np.empty((n, n))
        for j in range(n):
            h = 1e-6 * max(1.0, abs(z[j]))
            zp, zm = z.copy(), z.copy()
            zp[j] += h
            zm[j] -= h
            jac[:, j] = (rel(zp) - rel(zm)) / (2 * h)
        eig = np.linalg.eigvals(jac)
    _, _, dev = model.residual(face.cond(z))
    reach = model.tree.reachable(face.cond(z))[model.tree.edge_node]
    removed = ~face.live & reach
    pushed_out = bool(np.all(dev[removed] < 0))
    scale = max(1.0, float(np.max(np.abs(eig), initial=0.0)))
    return eig, bool(np.all(eig.real < -1e-9 * scale)) and pushed_out


def _accept(
    model: SequenceModel, face: _Face, z: np.ndarray, ties: TieStructure | None = None, eta: np.ndarray | None = None
) -> tuple[bool, float, float]:
    cond = face.cond(z)
    res, scale, dev = model.residual(cond, ties, eta)
    tol = RESIDUAL_TOLERANCE * scale
    reach = model.tree.reachable(cond)[model.tree.edge_node]
    removed = ~face.live & reach
    kkt = bool(np.all(dev[removed] <= tol))
    return res <= tol and kkt, res, tol


# ---------------------------------------------------------------------------- sliding modes
def _cell_values(model: SequenceModel, face: _Face, z: np.ndarray) -> np.ndarray:
    """Modified rewards of every cell at the face point z (NaN off the support)."""
    with np.errstate(invalid="ignore", over="ignore"):
        values = model.cell_values(face.cond(z))
    return np.where(face.support[model.cell_output], values, np.nan)


def _sliding(
    model: SequenceModel, face: _Face, z: np.ndarray, eps: float, z_prev: np.ndarray | None = None
) -> tuple[np.ndarray, TieStructure, np.ndarray] | None:
    """Solve the blow-up system (eq. 10.9) from a root of the eps-regularised problem.

    ``z_prev`` is the root at the previous (ten times larger) eps: cells whose gap closed
    like eps since then are tied, as are cells within 30 eps (``find_ties``).
    """
    vals = _cell_values(model, face, z)
    idx = np.nonzero(face.support[model.cell_output])[0]
    prev = None if z_prev is None else _cell_values(model, face, z_prev)[idx]
    ties = find_ties(
        vals[idx], model.cell_output[idx], model.cell_level[idx], model.levels, model.algo.beta, 30 * eps, prev
    )
    if ties is None:
        return None
    # the tie structure over all cells (cells outside the support never tie)
    cell_class = np.full(vals.shape, -1, dtype=np.int64)
    cell_class[idx] = ties.cell_class
    ties = TieStructure(component=ties.component, offset=ties.offset, cell_class=cell_class)
    comp = np.full(model.tree.n_outputs, -1, dtype=np.int64)
    comp[: ties.component.size] = ties.component
    offset = np.zeros(model.tree.n_outputs)
    offset[: ties.offset.size] = ties.offset
    ties = TieStructure(component=comp, offset=offset, cell_class=cell_class)
    return _blow_up(model, face, z, ties, eps)


def _blow_up(
    model: SequenceModel, face: _Face, z: np.ndarray, ties: TieStructure, eps: float | None
) -> tuple[np.ndarray, TieStructure, np.ndarray] | None:
    """Newton on the blow-up system (eq. 10.9) for the tie structure ``ties`` (over all
    outputs and cells), from the face point z; eta starts at the tie gaps over ``eps``
    (a regularised root), or at 0 when ``eps`` is None.

    Newton runs in u = asinh(eta): near a change of tie structure the equilibrium's eta
    grows like 1 / |beta - beta*| while the blow-up advantage saturates (as 1 / eta^2 in
    eta), so in eta itself the Jacobian vanishes before the root is reached."""
    comp, offset = ties.component, ties.offset
    members = ties.members()
    roots = ties.roots()
    root_of = {int(comp[r]): int(r) for r in roots}
    pen = model.algo.penalty

    def k_of(zz: np.ndarray) -> np.ndarray:
        # outputs off the face have x = -inf; only tied (live) outputs are read
        with np.errstate(invalid="ignore", over="ignore"):
            return sequence_penalty(pen, model.tree.log_ratio(face.cond(zz)))

    def tie_eqs(zz: np.ndarray) -> np.ndarray:
        k = k_of(zz)
        return np.array([k[o] - k[root_of[int(comp[o])]] - offset[o] for o in members.tolist()])

    k0 = k_of(z)
    eta0 = np.array([(k0[o] - k0[root_of[int(comp[o])]] - offset[o]) / (eps or np.inf) for o in members.tolist()])
    n = face.dim

    def eta_full(e: np.ndarray) -> np.ndarray:
        out = np.zeros(model.tree.n_outputs)
        out[members] = e
        return out

    def fun(x: np.ndarray) -> np.ndarray:
        zz, e = x[:n], np.sinh(x[n:])
        return np.concatenate([face.equations(zz, ties, eta_full(e)), tie_eqs(zz)])

    x, ok, _ = _newton(fun, np.concatenate([z, np.arcsinh(eta0)]), 1e-13)
    if not ok:
        return None
    return x[:n], ties, eta_full(np.sinh(x[n:]))


# ---------------------------------------------------------------------------- the solver
def _limit_std_roots(model: SequenceModel, algo: GRPO, seed: int) -> tuple[list[SequenceRoot], int]:
    """Roots at G = inf with the penalty in the reward and std scaling (eq. 10.14).

    The field is the shift field divided by sigma + eps, one positive number per policy:
    the same roots with the same stability (at a root the Jacobian is the shift one over
    sigma + eps). Roots are found on the shift field, which stays smooth where sigma
    vanishes; a root with sigma = 0 and eps = 0 (every modified reward of the support
    ties, a.s.) is a sliding-mode equilibrium of the normalised field: it sends F to -F
    across the root, so 0 is in the Filippov hull, and the flow has the shift field's
    orbits.
    """
    shift = SequenceModel(model.problem, algo.replace(normalization="shift"), model.context)
    roots, nit = _context_roots(shift, shift.algo, seed)
    out: list[SequenceRoot] = []
    for r in roots:
        cond = model.tree.conditionals(r.policy)
        live = np.nonzero(r.policy[model.cell_output] > 0)[0]
        with np.errstate(invalid="ignore", over="ignore"):
            values = model.cell_values(cond)
        mix = r.policy @ model.cell_of
        _, sigma = population_moments(values, mix)
        size = max(1.0, float(np.max(np.abs(values[live]), initial=0.0)))
        if algo.eps == 0 and sigma <= SIGMA_TIE * size:
            if np.count_nonzero(r.policy) < 2:
                # one output with a sure reward: nothing to tie with; the field's sign at
                # the removed outputs is the shift field's (the KKT push of eq. 10.10)
                out.append(dataclasses.replace(r, multiplier=math.nan))
                continue
            comp = np.where(r.policy > 0, 0, -1).astype(np.int64)
            k = (model.levels[model.cell_level] - values) / algo.beta if algo.beta > 0 else np.zeros_like(values)
            k_out = np.zeros(model.tree.n_outputs)
            k_out[model.cell_output[live]] = k[live]
            root = int(np.nonzero(comp == 0)[0][0])
            ties = TieStructure(
                component=comp,
                offset=np.where(comp == 0, k_out - k_out[root], 0.0),
                cell_class=np.where(mix > 0, 0, -1).astype(np.int64),
            )
            out.append(dataclasses.replace(r, kind="sliding", ties=ties, multiplier=math.nan))
            continue
        scale = 1.0 / (sigma + algo.eps)
        eig = None if r.eigenvalues is None else r.eigenvalues * scale
        out.append(
            dataclasses.replace(
                r,
                multiplier=r.multiplier * scale,
                residual=r.residual * scale,
                tolerance=r.tolerance * scale,
                eigenvalues=eig,
            )
        )
    return out, nit


def _abs_roots(model: SequenceModel, algo: GRPO) -> tuple[list[SequenceRoot], int]:
    """The abs penalty: forward-backward splitting from pi_ref (eq. 10.16); one root, its
    stability not computed (the field is set-valued where x_ut = 0), as for atomic abs."""
    cond, nit = abs_tree_policy(model)
    res = abs_residual(model, cond)
    a_bar, b_bar = model.bars(cond)
    live = cond > 0
    scale = max(1.0, float(np.max(np.abs(a_bar[live]), initial=0.0)) + algo.beta * float(np.max(b_bar, initial=0.0)))
    tol = RESIDUAL_TOLERANCE * scale
    if not res <= tol:
        return [], nit
    pi = model.tree.policy(cond)
    kind: RootKind = "interior" if np.all(pi[model.tree.active] > 0) else "boundary"
    root = SequenceRoot(policy=pi, mixture=pi @ model.dist, multiplier=math.nan, residual=res, stable=None,
                        eigenvalues=None, tolerance=tol, kind=kind)  # fmt: skip
    return [root], nit


def _context_roots(model: SequenceModel, algo: GRPO, seed: int) -> tuple[list[SequenceRoot], int]:
    if not PENALTIES[algo.penalty].smooth:
        return _abs_roots(model, algo)
    if algo.is_limit and algo.penalty_in == "reward" and algo.normalization == "shift_scale":
        return _limit_std_roots(model, algo, seed)
    rng = np.random.default_rng(seed)
    roots: list[SequenceRoot] = []
    nit = 0
    sliding_case = (
        algo.penalty_in == "reward" and algo.normalization == "shift_scale" and algo.eps == 0 and not algo.is_limit
    )
    regs = [SequenceModel(model.problem, algo.replace(eps=e), model.context) for e in EPS_PATH] if sliding_case else []

    def add(
        face: _Face,
        z: np.ndarray,
        kind: RootKind,
        ties: TieStructure | None = None,
        eta: np.ndarray | None = None,
        eig_model: SequenceModel | None = None,
    ) -> None:
        ok, res, tol = _accept(model, face, z, ties, eta)
        if not ok:
            return
        cond = face.cond(z)
        pi = model.tree.policy(cond)
        pi = np.where(face.support, pi, 0.0)
        if any(float(np.max(np.abs(r.policy - pi))) < 1e-7 for r in roots):
            return
        eig, stable = _stability(face, z, eig_model or model)
        _, c = model.terms(cond, ties, eta)
        multiplier = float(c[0]) if c.size else math.nan
        if kind == "interior" and not np.all(face.support[model.tree.active]):
            kind = "boundary"
        roots.append(
            SequenceRoot(
                policy=pi,
                mixture=pi @ model.dist,
                multiplier=multiplier,
                residual=res,
                stable=stable,
                eigenvalues=eig,
                tolerance=tol,
                kind=kind,
                ties=ties,
            )
        )

    for support in _faces(model, algo):
        face = _Face(model, support)
        n_random = 6 if face.dim > 0 else 0
        for z0 in _starts(face, rng, n_random):
            if not sliding_case:
                z, ok, it = _newton(face.equations, z0, 1e-13)
                nit = max(nit, it)
                if ok:
                    add(face, z, "interior")
                continue
            # follow the regularised roots eps -> 0 (eq. 10.9); once eps is small against
            # the gaps between modified rewards, near-ties name the tie set to blow up
            z = z0
            z_prev: np.ndarray | None = None
            ok = False
            slide = None
            for reg, eps in zip(regs, EPS_PATH, strict=True):
                rface = _Face(reg, support)
                z_prev, (z, ok, it) = z, _newton(rface.equations, z, 1e-13)
                nit = max(nit, it)
                if not ok:
                    break
                if eps <= 1e-3:
                    slide = _sliding(model, face, z, eps, z_prev)
                    if slide is not None:
                        zs, ties, eta = slide
                        add(face, zs, "sliding", ties, eta, eig_model=reg)
                        break
            if ok and slide is None:
                zs, ok, _ = _newton(face.equations, z, 1e-13)
                if ok:
                    add(face, zs, "interior")
    if sliding_case and not roots:
        # near a change of tie structure the regularised path reaches its limit only at an
        # eps below what Newton resolves: solve the blow-up system for every candidate tie
        # structure instead (eq. 10.9)
        for support in _faces(model, algo):
            face = _Face(model, support)
            live = np.nonzero(support[model.cell_output])[0]
            for ties in candidate_ties(
                model.cell_output, model.cell_level, model.levels, algo.beta, live, model.tree.n_outputs
            ):
                for z0 in _starts(face, rng, 0):
                    slide = _blow_up(model, face, z0, ties, None)
                    if slide is not None:
                        zs, ties_s, eta = slide
                        add(face, zs, "sliding", ties_s, eta, eig_model=regs[2])
    return roots, nit


def _search_record(model: SequenceModel, algo: GRPO) -> RootSearch:
    """What the tree solver searched for one context and what it claims (THEORY.md 10.6)."""
    nan = math.nan
    if not PENALTIES[algo.penalty].smooth:
        return RootSearch("forward-backward", nan, nan, nan, 0, 0, 0, 1, "", faces=1, claim=(
            "forward-backward splitting from pi_ref (eq. 10.16): one stationary policy, others not searched"
        ))  # fmt: skip
    faces = _faces(model, algo)
    starts = sum(2 + (6 if _Face(model, sup).dim > 0 else 0) for sup in faces)
    n_active = int(model.tree.active.sum())
    unbounded = (
        algo.is_limit
        and algo.normalization == "shift_scale"
        and algo.eps == 0
        and PENALTIES[algo.penalty].stationary_map == "exponential"
    )
    if len(faces) == 1 and unbounded:
        # boundary.py: at G = inf P_G diverges near a point-mass mixture and beats the log pull
        where = (
            "the whole tree only (at G = inf with shift_scale, eps 0 and a direct-KL penalty, faces where P_G "
            "diverges can hold stationary policies, THEORY.md section 9, which this search does not visit)"
        )
    elif len(faces) == 1:
        where = "the whole tree (the penalty repels from every face)"
    elif n_active <= MAX_FACE_OUTPUTS:
        where = f"every support ({len(faces)} faces)"
    else:
        where = f"the whole tree and the {n_active} vertices only (more than {MAX_FACE_OUTPUTS} outputs)"
    how = "damped Newton in per-prefix logits"
    if algo.penalty_in == "reward" and algo.normalization == "shift_scale" and algo.eps == 0:
        how += (
            " on the shift field rescaled by sigma (eq. 10.14)"
            if algo.is_limit
            else ", each start followed along eps = 1e-1..1e-6 with tie sets blown up (eq. 10.9)"
        )
    claim = f"the roots that {how} reaches from {starts} starts on {where}; roots outside those basins may be missed"
    return RootSearch("tree", nan, nan, nan, 0, 0, 0, starts, "", faces=len(faces), claim=claim)


def refine_tree_root(problem: Problem, algo: GRPO, policy: Any, context: int = 0) -> np.ndarray | None:
    """The stationary tree policy damped Newton reaches from ``policy`` (K,) in the free
    per-prefix logits of the whole tree (eq. 10.8), or None where it does not converge.

    A local solve from a guess (as ``scipy.optimize.root`` from x0): one start on one face,
    no stability, no search; for following a known root where the full search of
    ``tree_stationary_policy`` is slow (a large G).
    """
    model = SequenceModel(problem, algo, context)
    face = _Face(model, model.tree.active.copy())
    start = np.asarray(policy, dtype=float)
    z, ok, _ = _newton(face.equations, face.z_of(model.tree.conditionals(start)), 1e-13)
    return model.tree.policy(face.cond(z)) if ok else None


def tree_stationary_policy(problem: Problem, algo: GRPO) -> SequenceStationaryResult:
    """Stationary tree policies of ``algo`` on ``problem`` (THEORY.md section 10).

    Every root found on every searched face is reported with its stability; ``policy`` is
    chosen by ``assemble.ROOT_CHOICE_RULE``. ``search[c]`` (and the message) states what was
    searched and what is claimed: the roots damped Newton reaches from its starts, not
    every root.
    """
    all_roots: list[list[SequenceRoot]] = []
    searches: list[RootSearch] = []
    nit = 0
    for c in range(problem.n_contexts):
        model = SequenceModel(problem, algo, c)
        roots, it = _context_roots(model, algo, seed=20250225 + c)
        nit = max(nit, it)
        all_roots.append(roots)
        searches.append(_search_record(model, algo))
    result: SequenceStationaryResult = assemble_roots(
        problem,
        algo,
        all_roots,
        method="tree",
        nit=nit,
        search=tuple(searches),
        claims=["; searched: " + s.describe() for s in searches],
        exhaustive_one=False,
        result_type=SequenceStationaryResult,
    )
    return result
