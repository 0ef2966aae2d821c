"""Finding 7: theory against training (the tabular GRPO trainer, ``grpo_align.training``).

The real GRPO loop (sampled groups, group advantages, clipped surrogate, sampled penalty)
on random problems, for every variant, lands on the stationary policy the theory engine
computes, within the run's own standard error; and the noise-free expected dynamics runs
through the middle of the stochastic trajectories.

This section needs the ``train`` extra (torch); without it the section is skipped and its
verdict names the install command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from grpo_align.extras import require
from grpo_align.report.common import binary_problem
from grpo_align.report.model import JSON, Cell, FigureOut, ReportConfig, Table, Verdict
from grpo_align.report.style import color, new_figure
from grpo_align.theory import GRPO, Problem, stationary_policy
from grpo_align.verify import ALPHA, family_wise_bound, within_bound

KEY = "training"
TITLE = "Theory against training"
WITHIN = 4.0  # stderr
FAMILY_ALPHA = ALPHA  # family-wise false-alarm rate of the max-|z| test when the theory is right (grpo_align.verify)
BETA = 1.0
#: share of the trained probabilities that must lie within WITHIN standard errors
WITHIN_SHARE = 0.99
#: the noise-free dynamics must end on the stationary policy
DYNAMICS_TOL = 1e-6
TRAJ_BETA = 0.5

#: (colour key, label, GRPO fields, problem kind)
VARIANTS: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("shift_scale", "shift_scale, k3, G 4", dict(group_size=4), "bernoulli"),
    ("shift_scale ddof=1", "shift_scale ddof 1, k3, G 4", dict(group_size=4, ddof=1), "bernoulli"),
    ("shift", "shift, k3, G 4", dict(group_size=4, normalization="shift"), "bernoulli"),
    ("rloo", "rloo, k3, G 4", dict(group_size=4, normalization="rloo"), "bernoulli"),
    ("k2", "shift_scale, k2, G 4", dict(group_size=4, penalty="k2"), "bernoulli"),
    ("kl", "shift_scale, exact KL, G 4", dict(group_size=4, penalty="kl"), "bernoulli"),
    ("G=2", "shift_scale, k3, G 2", dict(group_size=2), "bernoulli"),
    ("pairwise", "pairwise preferences, k3, G 2", dict(group_size=2), "preference"),
)


CLAIM = (
    "Running GRPO itself (groups sampled from π_old, group-normalised advantages, the clipped surrogate and the "
    "sampled penalty, on a tabular softmax policy) lands on the stationary policy computed by the theory engine, "
    "for every variant, within the run's own standard error; the expected (noise-free) dynamics follows the "
    "average of the stochastic runs to the same point."
)


def random_problem(rng: np.random.Generator, kind: str, n_contexts: int) -> Problem:
    """Random contexts: 3 outputs with Bernoulli rewards, or a random 3 x 3 win-probability matrix."""
    ref = rng.dirichlet(np.full(3, 3.0), size=n_contexts)
    if kind == "bernoulli":
        return Problem.from_bernoulli(ref=ref, success=rng.random((n_contexts, 3)))
    upper = np.triu(rng.random((n_contexts, 3, 3)), 1)
    win = upper + np.swapaxes(np.triu(1 - upper, 1), 1, 2)  # no ties; cyclic for about a quarter of draws
    return Problem.from_preference(ref, win)


@dataclass(frozen=True)
class VariantRow:
    """Training against theory for one variant, pooled over contexts and seeds."""

    key: str
    label: str
    algo: GRPO
    n: int
    max_abs_gap: float
    median_stderr: float
    max_abs_z: float
    within: float
    autocorrelation: float


@dataclass(frozen=True)
class Points:
    """Every trained probability: its variant index, prediction, tail average and stderr."""

    variant: np.ndarray
    predicted: np.ndarray
    trained: np.ndarray
    stderr: np.ndarray


@dataclass(frozen=True)
class Trajectories:
    """Stochastic runs (steps, runs) and the expected dynamics on one binary question."""

    p0: float
    group_size: int
    beta: float
    lr: float
    steps: np.ndarray
    stochastic: np.ndarray
    expected: np.ndarray
    stationary: float


@dataclass(frozen=True)
class TrainingData:
    """Everything the training section measured."""

    train_config: dict[str, float]
    n_contexts: int
    seeds: int
    variants: tuple[VariantRow, ...]
    points: Points
    #: z-scores per variant, in VARIANTS order
    z: tuple[np.ndarray, ...]
    max_z: float
    z_crit: float
    within: float
    trajectories: Trajectories
    dynamics_end_gap: float
    tables: tuple[Table, ...]

    @property
    def n_points(self) -> int:
        return int(self.points.predicted.size)

    def measured(self) -> dict[str, JSON]:
        per_variant: dict[str, JSON] = {
            d.label: dict(max_abs_z=d.max_abs_z, max_abs_gap=d.max_abs_gap) for d in self.variants
        }
        return dict(
            available=True,
            n_probabilities=self.n_points,
            fraction_within_4_stderr=self.within,
            max_abs_z=self.max_z,
            family_wise_z_bound=self.z_crit,
            expected_dynamics_end_gap=self.dynamics_end_gap,
            per_variant=per_variant,
        )

    def json(self) -> dict[str, JSON]:
        variants: list[JSON] = [dict(vars(d)) | dict(algo=dict(vars(d.algo))) for d in self.variants]
        return dict(
            beta=BETA,
            train_config=dict(self.train_config),
            seeds=self.seeds,
            variants=variants,
            points=dict(vars(self.points)),
            trajectories=dict(vars(self.trajectories)),
        )


def compute(cfg: ReportConfig) -> TrainingData:
    """Train every variant on random problems and the trajectories; compare with the theory engine."""
    require("train", f"report section '{KEY}'")  # without torch the section is skipped, with the install command
    from grpo_align.training import TrainConfig, expected_dynamics, train

    rng = cfg.rng(KEY)
    base_seed = cfg.section_seed(KEY)
    n_contexts = 16 if cfg.quick else 32
    seeds = 1 if cfg.quick else 2
    steps, groups_per_step, lr = (2500 if cfg.quick else 5000), 16, 0.5
    train_cfg: dict[str, float] = dict(steps=steps, groups_per_step=groups_per_step, lr=lr)

    per_variant: list[VariantRow] = []
    n_batches = TrainConfig().n_batches  # every run's own, below
    all_z: list[np.ndarray] = []
    all_pred: list[np.ndarray] = []
    all_mean: list[np.ndarray] = []
    all_se: list[np.ndarray] = []
    all_key: list[np.ndarray] = []
    for v, (ckey, label, fields, kind) in enumerate(VARIANTS):
        problem = random_problem(rng, kind, n_contexts)
        algo = GRPO(beta=BETA, **fields)
        zs: list[np.ndarray] = []
        gaps: list[np.ndarray] = []
        ses: list[np.ndarray] = []
        autocorr: list[float] = []
        for s in range(seeds):
            cfg.status(f"{label} (seed {s + 1}/{seeds})")
            res = train(
                problem,
                algo,
                TrainConfig(seed=base_seed + 1000 * v + s, steps=steps, groups_per_step=groups_per_step, lr=lr),
            )
            predicted, pred = res.predicted, res.predicted_policy
            if predicted is None or pred is None:
                raise RuntimeError(f"{label}: the trainer returned no prediction")
            if not np.all(np.asarray(predicted.success)):
                raise RuntimeError(
                    f"{label}: the theory engine did not solve the random problem: "
                    + next(ctx.message for ctx in predicted if not ctx.success)
                )
            mask = problem.ref > 0
            zs.append(np.asarray(res.z)[mask])
            gaps.append(np.asarray(res.gap)[mask])
            ses.append(np.asarray(res.stderr)[mask])
            autocorr.append(float(res.batch_autocorrelation))
            n_batches = res.config.n_batches
            all_pred.append(pred[mask])
            all_mean.append(np.asarray(res.mean_policy)[mask])
            all_se.append(np.asarray(res.stderr)[mask])
            all_key.append(np.full(int(mask.sum()), v))
        z = np.concatenate(zs)
        all_z.append(z)
        per_variant.append(
            VariantRow(
                key=ckey,
                label=label,
                algo=algo,
                n=int(z.size),
                max_abs_gap=float(np.max(np.abs(np.concatenate(gaps)))),
                median_stderr=float(np.median(np.concatenate(ses))),
                max_abs_z=float(np.max(np.abs(z))),
                within=float(np.mean(np.abs(z) <= WITHIN)),
                autocorrelation=float(np.mean(autocorr)),
            )
        )
    z_all = np.concatenate(all_z)
    n_points = int(z_all.size)
    # grpo_align.verify's rule, as train and lm judge: Student t with n_batches - 1 degrees of freedom
    z_crit = family_wise_bound(n_points, n_batches - 1, FAMILY_ALPHA)
    max_z = float(np.max(np.abs(z_all)))
    within = float(np.mean(np.abs(z_all) <= WITHIN))

    # ---- trajectories: one binary question, expected dynamics against stochastic runs
    cfg.status("trajectories")
    p0, g_traj, n_runs = 0.1, 4, 4 if cfg.quick else 8
    traj_algo = GRPO(group_size=g_traj, beta=TRAJ_BETA)
    traj_steps, traj_lr = 300, 0.2
    # n_runs identical contexts are n_runs independent runs in one batched call
    stoch = train(
        binary_problem([p0] * n_runs),
        traj_algo,
        TrainConfig(
            steps=traj_steps,
            groups_per_step=4,
            lr=traj_lr,
            seed=base_seed + 99,
            record_every=1,
            n_batches=10,
            tail_fraction=0.5,
        ),
    )
    dyn = expected_dynamics(binary_problem([p0]), traj_algo, lr=traj_lr, steps=traj_steps)
    p_star = float(np.asarray(stationary_policy(binary_problem([p0]), traj_algo).policy).reshape(-1)[0])
    stoch_p = np.asarray(stoch.trajectory)[..., 0]  # (R, runs)
    stoch_steps = stoch.record_steps
    dyn_p = dyn[0].trajectory[:, 0]
    dyn_end_gap = abs(float(dyn_p[-1]) - p_star)

    pred_c, mean_c, se_c, key_c = map(np.concatenate, (all_pred, all_mean, all_se, all_key))
    rows: list[list[Cell]] = [
        [
            f"{i + 1}. {d.label}",
            d.n,
            d.max_abs_gap,
            d.median_stderr,
            d.max_abs_z,
            d.within,
            d.autocorrelation,
        ]
        for i, d in enumerate(per_variant)
    ]
    rows.append(
        [
            "all",
            n_points,
            max(d.max_abs_gap for d in per_variant),
            float(np.median(np.concatenate(all_se))),
            max_z,
            within,
            math.nan,
        ]
    )
    table = Table(
        "training-vs-theory",
        [
            "variant",
            "probabilities",
            "max |gap|",
            "median stderr",
            "max |gap|/stderr",
            f"fraction within {WITHIN:g} s.e.",
            "batch autocorrelation",
        ],
        rows,
        f"β = {BETA}; {n_contexts} random contexts per variant and seed, {seeds} seed(s); TrainConfig(steps={train_cfg['steps']}, "
        f"groups_per_step={train_cfg['groups_per_step']}, lr={train_cfg['lr']}, optimizer sgd); stderr by batch means over the "
        "second half of each run.",
    )
    return TrainingData(
        train_config=train_cfg,
        n_contexts=n_contexts,
        seeds=seeds,
        variants=tuple(per_variant),
        points=Points(variant=key_c, predicted=pred_c, trained=mean_c, stderr=se_c),
        z=tuple(all_z),
        max_z=max_z,
        z_crit=z_crit,
        within=within,
        trajectories=Trajectories(
            p0=p0,
            group_size=g_traj,
            beta=TRAJ_BETA,
            lr=traj_lr,
            steps=stoch_steps,
            stochastic=stoch_p,
            expected=dyn_p,
            stationary=p_star,
        ),
        dynamics_end_gap=dyn_end_gap,
        tables=(table,),
    )


def verdict(data: TrainingData) -> Verdict:
    """max |z| under the family-wise bound, WITHIN_SHARE within WITHIN s.e., the dynamics on the fixed point."""
    passed = (
        within_bound(data.max_z, data.z_crit) and data.within >= WITHIN_SHARE and data.dynamics_end_gap < DYNAMICS_TOL
    )
    return Verdict(
        passed,
        f"{data.within:.1%} of {data.n_points} trained probabilities within {WITHIN:g} standard errors of the "
        f"prediction; max |gap|/stderr = {data.max_z:.2f} (family-wise bound {data.z_crit:.2f} at α = "
        f"{FAMILY_ALPHA:g}); max |gap| = {max(d.max_abs_gap for d in data.variants):.4f}; expected dynamics ends "
        f"{data.dynamics_end_gap:.1e} from the stationary p.",
    )


def render(data: TrainingData) -> list[FigureOut]:
    """Trained against predicted, the z-scores per variant, and the trajectories."""
    pts, tr = data.points, data.trajectories
    pred_c, mean_c, se_c, key_c = pts.predicted, pts.trained, pts.stderr, pts.variant
    n_points, all_z, z_crit, max_z = data.n_points, data.z, data.z_crit, data.max_z
    stoch_steps, stoch_p, dyn_p, p_star = tr.steps, tr.stochastic, tr.expected, tr.stationary
    p0, g_traj, traj_lr = tr.p0, tr.group_size, tr.lr
    # ---- figure
    fig, axes = new_figure(11.5, 4.0, ncols=3, gridspec_kw=dict(width_ratios=[1, 1.1, 1.1]))
    ax = axes[0, 0]
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1)
    for v, (ckey, label, _, _) in enumerate(VARIANTS):
        sel = key_c == v
        ax.errorbar(
            pred_c[sel],
            mean_c[sel],
            yerr=2 * se_c[sel],
            fmt="o",
            ms=2.5,
            color=color(ckey),
            elinewidth=0.8,
            label=f"{v + 1}. {label}",
        )
    ax.set_xlabel("predicted stationary π(o) (theory)")
    ax.set_ylabel("trained π(o) (tail average, ±2 s.e.)")
    ax.set_title(f"{n_points} probabilities, {len(VARIANTS)} variants")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6.8, loc="upper left", handletextpad=0.2, borderaxespad=0.3)

    ax = axes[0, 1]
    for v, (ckey, label, _, _) in enumerate(VARIANTS):
        z = all_z[v]
        jitter = np.linspace(-0.3, 0.3, z.size)
        ax.plot(v + jitter, z, "o", color=color(ckey), ms=2.5, alpha=0.8, label=label)
    for lim, style in ((WITHIN, "--"), (z_crit, ":")):
        ax.axhline(lim, color="0.4", ls=style, lw=1)
        ax.axhline(-lim, color="0.4", ls=style, lw=1)
    ax.set_xticks(range(len(VARIANTS)), [str(i + 1) for i in range(len(VARIANTS))])
    ax.set_xlabel("variant (numbered as in the left legend)")
    ax.set_ylabel("(trained − predicted) / stderr")
    ax.set_title(f"z-scores: ±{WITHIN:g} dashed, family-wise ±{z_crit:.2f} dotted")
    ax.set_ylim(-max(z_crit, max_z) * 1.15, max(z_crit, max_z) * 1.15)

    ax = axes[0, 2]
    for r in range(stoch_p.shape[1]):
        ax.plot(
            stoch_steps,
            stoch_p[:, r],
            color=color("G=4"),
            lw=0.7,
            alpha=0.45,
            label="stochastic GRPO runs" if r == 0 else None,
        )
    ax.plot(stoch_steps, stoch_p.mean(axis=1), color=color("G=8"), lw=1.4, label=f"mean of {stoch_p.shape[1]} runs")
    ax.plot(np.arange(dyn_p.size), dyn_p, color=color("rlhf"), lw=1.6, ls="--", label="expected dynamics")
    ax.axhline(p_star, color=color("G=inf"), lw=1.2, label=f"stationary p = {p_star:.4f}")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("probability of the correct answer")
    ax.set_title(f"binary, p₀ = {p0}, G = {g_traj}, β = 0.5, lr {traj_lr}")
    ax.legend(loc="lower right", fontsize=7.5)

    return [
        FigureOut(
            "trained-vs-predicted",
            fig,
            "Left: trained (tail average) against predicted probabilities, every "
            "variant. Middle: the gaps in units of their standard errors. Right: stochastic GRPO runs, their "
            "mean and the expected dynamics on one binary question.",
        )
    ]
