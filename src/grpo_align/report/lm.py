"""Finding 9: the prediction holds for a real causal language model (``grpo_align.lm``).

A tiny GPT-2 is fitted to noisy labels (the reference); the theory engine predicts every
question's stationary P(correct answer) from the reference's exact answer probabilities
(THEORY.md section 5: wrong answers and "anything else" form one reward class); GRPO then
trains a copy token by token and the measured end point is compared with the prediction,
beside RLHF's logarithmic pooling and the reference itself. The experiment is
``grpo_align.lm.experiment.run_experiment`` itself (docs/lm.md), run in a temporary folder.

Seeded like ``grpo-align lm --seed S`` (task, labels, model and sampler all from the report's
seed), so the full report's table is the one ``grpo-align lm --quick --seed S`` prints.
torch runs on one thread during the section: the tiny model is fastest there and the run is
bit-for-bit reproducible, which the report's identical-data-files promise needs.

Needs the ``lm`` extra (torch, transformers, tokenizers); without it the section is skipped
and its verdict names the install command.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from grpo_align.extras import require
from grpo_align.report.model import JSON, Cell, FigureOut, ReportConfig, Table, Verdict
from grpo_align.report.style import color, new_figure
from grpo_align.theory.spec import GRPO

#: one clearly distinct colour per run (Okabe-Ito): the group-size blues are too close for G 4 against G 8
RUN_COLORS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9")

KEY = "lm"
TITLE = "Language models: the prediction holds for a real causal LM"
WITHIN_STDERR = 3.0
#: absolute slack of the verdict: the fixed point is the sequence-level one up to O(max_eos_gap ~ 1e-3)
#: (docs/lm.md), and a tail average of a still-settling run carries a small bias the stderr does not see
SLACK = 0.005
QUICK_RUNS = (GRPO(group_size=8, beta=0.5),)
QUICK_STEPS = 500
QUICK_LR = 1e-3

CLAIM = (
    "For a real (tiny, about 0.1 M parameters) GPT-2 trained token by token with GRPO on sampled completions, "
    "the theory engine's stationary policy, computed before training from the reference model's exact answer "
    "probabilities, predicts every question's end-point P(correct answer). The rule tested, per run: the mean absolute error "
    "(MAE) over questions of the prediction is at most 3 × the run's mean standard error + 0.005, and smaller "
    "than the MAE of RLHF's logarithmic pooling and of the reference itself."
)

NOTES = (
    "Run times are left out of the data files (they would differ between identical runs); grpo-align lm prints them.",
)


@dataclass(frozen=True)
class LMRun:
    """One GRPO run of the experiment: its summary and, per question, the predictions and the measurement."""

    beta: float
    group_size: int
    steps: int
    mae: float
    mae_rlhf: float
    mae_reference: float
    stderr: float
    max_abs_error: float
    passed: bool
    reference: np.ndarray
    predicted: np.ndarray
    rlhf: np.ndarray
    measured: np.ndarray
    measured_stderr: np.ndarray
    record_steps: np.ndarray
    mean_gap: np.ndarray


@dataclass(frozen=True)
class LMData:
    """Everything the language-model section measured."""

    runs: tuple[LMRun, ...]
    parameters: int
    questions: int
    max_eos_gap: float
    config: dict[str, JSON]
    prompts: list[str]
    tail_start: int
    train_steps: int
    tables: tuple[Table, ...]

    def measured(self) -> dict[str, JSON]:
        runs: dict[str, JSON] = {
            f"beta={r.beta:g}, G={r.group_size}": dict(
                mae=r.mae,
                mae_rlhf=r.mae_rlhf,
                mae_reference=r.mae_reference,
                stderr=r.stderr,
                passed=r.passed,
            )
            for r in self.runs
        }
        return dict(
            available=True,
            parameters=self.parameters,
            questions=self.questions,
            max_eos_gap=self.max_eos_gap,
            runs=runs,
        )

    def json(self) -> dict[str, JSON]:
        return dict(
            rule=dict(within_stderr=WITHIN_STDERR, slack=SLACK),
            config=dict(self.config),
            prompts=list(self.prompts),
            runs=[dict(vars(r)) for r in self.runs],
        )


def experiment_config(cfg: ReportConfig) -> Any:
    """The ``LMExperimentConfig`` of the section: one short run with --quick, else the lm --quick runs."""
    from grpo_align.lm.experiment import LMExperimentConfig

    base = LMExperimentConfig.quick()
    train = base.train
    runs = base.runs
    if cfg.quick:
        train, runs = replace(train, steps=QUICK_STEPS, lr=QUICK_LR), QUICK_RUNS
    # checkpoints would only go to the temporary folder: skip their cost
    return replace(base, seed=cfg.seed, runs=runs, train=replace(train, seed=cfg.seed, checkpoint_every=0))


def _distinct(runs: tuple[GRPO, ...], name: str) -> str:
    """The values of one GRPO field over the runs, in order, each once."""
    return " / ".join(dict.fromkeys(str(getattr(a, name)) for a in runs))


def run_passes(mae: float, mae_rlhf: float, mae_reference: float, stderr: float) -> bool:
    """The verdict rule for one run (stated in the verdict text)."""
    return bool(mae < mae_rlhf and mae < mae_reference and mae <= WITHIN_STDERR * stderr + SLACK)


def compute(cfg: ReportConfig) -> LMData:
    """Run the LM experiment (quick runs) in a temporary folder and collect its predictions and measurements."""
    require("lm", f"report section '{KEY}'")  # without transformers the section is skipped, with the install command
    import torch
    from transformers.utils import logging as hf_logging

    from grpo_align.lm.experiment import run_experiment

    config = experiment_config(cfg)
    steps = config.train.steps
    every = max(1, steps // 20)

    def progress(name: str, step: int, total: int) -> None:
        if step % every == 0 or step == total:
            cfg.status(f"{name} step {step}/{total}")

    cfg.status("fitting the reference model")
    threads, bars = torch.get_num_threads(), hf_logging.is_progress_bar_enabled()
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()  # save_pretrained's tqdm bar would cut through the report's progress display
    try:
        with tempfile.TemporaryDirectory(prefix="grpo-align-lm-") as tmp:
            res = run_experiment(config, tmp, progress=progress, plots=False)
    finally:
        torch.set_num_threads(threads)
        if bars:
            hf_logging.enable_progress_bar()

    ref = res.reference
    task = _task(config)
    idx, ci = np.arange(len(task)), task.correct_index()
    runs: list[LMRun] = []
    for run in res.runs:
        s, pred, tr = run.summary, run.prediction, run.result
        gap = np.abs(tr.trajectory[:, idx, ci] - pred.grpo[idx, ci]).mean(axis=1)
        runs.append(
            LMRun(
                beta=s.beta,
                group_size=s.group_size,
                steps=s.steps,
                mae=s.mae,
                mae_rlhf=s.mae_rlhf,
                mae_reference=s.mae_reference,
                stderr=s.stderr,
                max_abs_error=s.max_abs_error,
                passed=run_passes(s.mae, s.mae_rlhf, s.mae_reference, s.stderr),
                reference=pred.reference[idx, ci],
                predicted=pred.grpo[idx, ci],
                rlhf=pred.rlhf[idx, ci],
                measured=tr.mean_policy[idx, ci],
                measured_stderr=tr.stderr[idx, ci],
                record_steps=tr.record_steps,
                mean_gap=gap,
            )
        )
    eos_gap = float(1 - ref.eos[ref.valid].min())
    rows: list[list[Cell]] = [
        [r.beta, r.group_size, r.steps, r.mae, r.mae_rlhf, r.mae_reference, r.stderr] for r in runs
    ]
    table = Table(
        "runs",
        ["β", "G", "steps", "MAE GRPO prediction", "MAE RLHF pooling", "MAE reference", "mean stderr"],
        rows,
        f"{res.parameters:,}-parameter GPT-2, {idx.size} questions (yes/no and three-way), seed {config.seed}; Adam lr "
        f"{config.train.lr:g}, normalisation {_distinct(config.runs, 'normalization')}, "
        f"penalty {_distinct(config.runs, 'penalty')}; MAE = mean over questions "
        f"of |measured − predicted| P(correct); measured = average of the last {config.train.tail_fraction:.0%} of "
        "the run's exact probabilities, stderr by batch means.",
    )
    return LMData(
        runs=tuple(runs),
        parameters=int(res.parameters),
        questions=int(idx.size),
        max_eos_gap=eos_gap,
        config=config.to_json(),
        prompts=[q.prompt for q in task.questions],
        tail_start=int(config.train.tail_start),
        train_steps=int(steps),
        tables=(table,),
    )


def verdict(data: LMData) -> Verdict:
    """Every run's MAE below RLHF's and the reference's, and within WITHIN_STDERR standard errors + SLACK."""
    runs = data.runs
    passed = bool(runs) and all(r.passed for r in runs)
    if not runs:
        return Verdict(False, "No run was measured.")
    worst = min(runs, key=lambda r: WITHIN_STDERR * r.stderr + SLACK - r.mae)
    return Verdict(
        passed,
        f"{sum(r.passed for r in runs)} of {len(runs)} runs pass the rule (MAE of the prediction at most "
        f"{WITHIN_STDERR:g} × mean standard error + {SLACK:g}, and below the MAE of RLHF's pooling and of the "
        "reference). "
        + " ".join(
            f"With β = {r.beta:g} and G = {r.group_size} the prediction's MAE is {r.mae:.4f} against a bound of "
            f"{WITHIN_STDERR * r.stderr + SLACK:.4f}, RLHF's {r.mae_rlhf:.4f} and the reference's {r.mae_reference:.4f}."
            for r in runs
        )
        + f" The run closest to its bound is β = {worst.beta:g}, G = {worst.group_size}.",
    )


def render(data: LMData) -> list[FigureOut]:
    """Predicted against measured per question, and the gap to the prediction during training."""
    runs, n_runs = data.runs, len(data.runs)
    # ---- figures
    fig, axes = new_figure(min(3.8 * n_runs, 11.5), 3.9, ncols=n_runs)
    for ax, r in zip(axes[0], runs, strict=False):
        ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1)
        ax.plot(
            r.reference,
            r.measured,
            ".",
            color=color("reference"),
            ms=5,
            label=f"reference (MAE {r.mae_reference:.3f})",
        )
        ax.plot(r.rlhf, r.measured, "x", color=color("rlhf"), ms=5, label=f"RLHF pooling (MAE {r.mae_rlhf:.3f})")
        ax.errorbar(
            r.predicted,
            r.measured,
            yerr=2 * r.measured_stderr,
            fmt="o",
            ms=3.5,
            color=RUN_COLORS[0],
            elinewidth=0.8,
            label=f"GRPO prediction (MAE {r.mae:.4f})",
        )
        ax.set_xlabel("predicted P(correct) (before training)")
        ax.set_ylabel("measured P(correct) (tail average, ±2 s.e.)")
        ax.set_title(f"β = {r.beta:g}, G = {r.group_size}, {r.steps} steps")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower right", fontsize=7.5)
    scatter = FigureOut(
        "predicted-vs-measured",
        fig,
        f"Measured end-point P(correct answer) of each of the {data.questions} questions against three predictions made "
        "before training: GRPO's stationary policy (theory engine), RLHF's logarithmic pooling and the reference. "
        "On the diagonal means predicted exactly.",
    )
    fig, axes = new_figure(7.0, 3.8)
    ax = axes[0, 0]
    ax.axvspan(data.tail_start, data.train_steps, color="0.92", lw=0, label="averaged tail")
    for i, r in enumerate(runs):
        col = RUN_COLORS[i % len(RUN_COLORS)]
        # the instantaneous gap carries the sampling noise of each step; the verdict judges the
        # tail average, whose MAE (thick) is what the dotted bound applies to
        ax.plot(r.record_steps, np.maximum(r.mean_gap, 1e-5), color=col, lw=0.9, alpha=0.6)
        ax.plot(
            [data.tail_start, data.train_steps],
            [r.mae, r.mae],
            color=col,
            lw=3,
            label=f"β = {r.beta:g}, G = {r.group_size}: tail-average MAE {r.mae:.4f}",
        )
        bound = WITHIN_STDERR * r.stderr + SLACK
        ax.plot([data.tail_start, data.train_steps], [bound, bound], color=col, ls=":", lw=1.5)
    ax.plot([], [], color="0.4", lw=0.9, label="gap at each step (before averaging)")
    ax.plot([], [], color="0.4", ls=":", lw=1.5, label="verdict bound on the tail-average MAE")
    ax.set_yscale("log")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean |P(correct) − predicted|")
    ax.set_title("gap to the predicted stationary policy")
    ax.legend(fontsize=7.5)
    trajectory = FigureOut(
        "gap-trajectory",
        fig,
        "Thin: mean over questions of the distance between the model's exact P(correct) at each step and the "
        "predicted end point; it includes each step's sampling noise, so it may sit above the bound. Thick: the MAE "
        "of the tail average, which the verdict compares with the dotted bound (3 × mean standard error + 0.005).",
    )

    return [scatter, trajectory]


def _task(config: Any) -> Any:
    """The experiment's task: a pure function of the config, built as ``run_experiment`` builds it."""
    from grpo_align.lm.task import build_task

    return build_task(config.n_binary, config.n_choice, seed=config.seed)
