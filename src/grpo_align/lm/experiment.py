"""Predict, train, measure: GRPO on a tiny causal LM against the theory engine.

1. Build the task and the tokenizer, fit the reference model to noisy labels (``sft``).
2. Read the reference answer probabilities exactly (teacher forcing), "anything else"
   included, and predict every question's stationary answer distribution for each
   GRPO specification of ``config.runs`` with ``ga.stationary_policy`` (one batched ``Problem`` over all questions),
   beside RLHF's logarithmic pooling (``ga.rlhf_policy``) and the reference itself.
3. Train a copy of the reference with each specification (``train_lm``) and measure
   the answer probabilities exactly, averaged over the tail of the run.
4. Report the mean absolute error of the correct answer's probability against each
   prediction; write ``summary.json`` (one entry per run), per-question JSON, figures.

Everything is resumable: the reference model is saved with ``save_pretrained`` and each
run checkpoints in ``DIR/runs/<name>/``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grpo_align.errors import InputError
from grpo_align.files import atomic_path, atomic_write_json, atomic_write_text, to_jsonable
from grpo_align.lm.model import ModelConfig, build_model, count_parameters, save_pretrained
from grpo_align.lm.probs import AnswerProbabilities, answer_probabilities
from grpo_align.lm.sft import SFTConfig, supervised_finetune
from grpo_align.lm.task import Task, build_task, noisy_labels, task_words
from grpo_align.lm.tokenizer import build_tokenizer
from grpo_align.lm.trainer import LMTrainConfig, LMTrainResult, train_lm
from grpo_align.theory.closed_form import rlhf_policy
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO
from grpo_align.theory.stationary import stationary_policy

__all__ = [
    "LMExperimentConfig",
    "Prediction",
    "RunOutcome",
    "RunSummary",
    "build_reference",
    "fit_reference",
    "predict",
    "reference_stamp",
    "reward_problem",
    "run_experiment",
    "run_name",
    "uses_builtin_reference",
]


@dataclass(frozen=True)
class LMExperimentConfig:
    """The whole experiment: task, model, supervised phase, GRPO runs."""

    n_binary: int = 12
    """yes/no questions"""
    n_choice: int = 12
    """three-way multiple-choice questions"""
    n_labels: int = 40
    """noisy labels per question in the supervised phase"""
    seed: int = 0
    """seed of the task, the labels and the model initialisation"""
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    train: LMTrainConfig = field(default_factory=LMTrainConfig)
    runs: tuple[GRPO, ...] = (GRPO(group_size=8, beta=0.5), GRPO(group_size=2, beta=0.5), GRPO(group_size=4, beta=0.25))
    """the GRPO specifications trained, one run each (``GRPO.preset`` gives a trainer's defaults)"""

    def __post_init__(self) -> None:
        runs = tuple(self.runs) if isinstance(self.runs, (list, tuple)) else None
        if not runs:
            raise InputError("runs", "expected a non-empty tuple of grpo_align.GRPO specifications")
        for i, algo in enumerate(runs):
            if not isinstance(algo, GRPO):
                raise InputError(f"runs[{i}]", f"expected a grpo_align.GRPO, got {algo!r}")
            if algo.is_limit:
                raise InputError(f"runs[{i}].group_size", "training needs a finite group size")
        names = [run_name(a) for a in runs]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise InputError("runs", f"the run {dup} appears twice")
        object.__setattr__(self, "runs", runs)

    @classmethod
    def quick(cls) -> LMExperimentConfig:
        """About three minutes on 2 idle cores: three (beta, G) runs of 1500 steps.

        500 steps left G = 2 short of its end point (mean error 0.027 against a standard
        error of 0.017); at 1500 every run's mean error is within 1.3 standard errors.
        """
        return cls(train=LMTrainConfig(steps=1500, lr=1e-3))

    @classmethod
    def full(cls) -> LMExperimentConfig:
        """Six (beta, G) runs of 1500 steps at a smaller learning rate."""
        return cls(
            train=LMTrainConfig(steps=1500, lr=5e-4),
            runs=tuple(GRPO(group_size=g, beta=b) for b in (0.25, 0.5, 1.0) for g in (2, 8)),
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (the GRPO runs as dicts of their fields)."""
        out: dict[str, Any] = to_jsonable(self)
        return out


def run_name(algo: GRPO) -> str:
    """Folder name of a run: beta and G, then every field that differs from ``GRPO()``'s."""
    name = f"beta{algo.beta:g}_G{int(algo.group_size)}"
    default = GRPO()
    if algo.normalization != default.normalization:
        name += f"_{algo.normalization}"
    if algo.ddof != default.ddof:
        name += f"_ddof{algo.ddof}"
    if algo.eps != default.eps:
        name += f"_eps{algo.eps:g}"
    if algo.penalty != default.penalty:
        name += f"_{algo.penalty}"
    return name


def reward_problem(task: Task, probs: AnswerProbabilities) -> Problem:
    """One batched ``Problem``: per question the candidates plus "anything else" (reward 0)."""
    rewards = [[*list(q.rewards), 0.0] for q in task.questions]
    return Problem.from_rewards(probs.ragged(), rewards, renormalize=True)


def _pad(ragged: np.ndarray, task: Task, width: int) -> np.ndarray:
    """(C, K'+1) solver output (ragged rows padded at the end) -> (C, K+1) with "other" last."""
    out = np.zeros((len(task), width + 1))
    for c, q in enumerate(task.questions):
        k = len(q.candidates)
        out[c, :k] = ragged[c, :k]
        out[c, -1] = ragged[c, k]
    return out


@dataclass(frozen=True)
class Prediction:
    """Predicted answer distributions (C, K+1) for one GRPO spec, beside RLHF's and the reference."""

    algo: GRPO
    grpo: np.ndarray
    rlhf: np.ndarray
    reference: np.ndarray
    success: bool
    message: str

    def __repr__(self) -> str:
        return f"Prediction(beta={self.algo.beta}, G={self.algo.group_size}, success={self.success})"


def predict(task: Task, probs: AnswerProbabilities, algo: GRPO) -> Prediction:
    """Stationary answer distributions of every question from the reference probabilities.

    THEORY.md section 5: all outputs with reward 0 (wrong candidates and everything else)
    form one reward class, so the "anything else" mass is treated as one output.
    """
    problem = reward_problem(task, probs)
    res = stationary_policy(problem, algo)
    width = task.max_candidates
    rl = rlhf_policy(problem, algo.beta) if algo.beta > 0 else np.full(problem.ref.shape, np.nan)
    return Prediction(
        algo=algo,
        grpo=_pad(res.policy, task, width),
        rlhf=_pad(np.atleast_2d(rl), task, width),
        reference=_pad(problem.ref, task, width),
        success=bool(np.all(res.success)),
        # the first failure's message, or the first context's when all succeeded
        message=next((ctx.message for ctx in res if not ctx.success), res.message[0]),
    )


@dataclass(frozen=True)
class RunSummary:
    """One run: errors of the correct answer's probability, mean over questions."""

    algo: GRPO
    """the specification trained"""
    beta: float
    group_size: int
    mae: float
    """|measured - GRPO prediction|"""
    mae_rlhf: float
    """|measured - RLHF's logarithmic pooling|"""
    mae_reference: float
    """|measured - reference|"""
    questions: int
    steps: int
    stderr: float
    """mean standard error of the measured probabilities"""
    max_abs_error: float
    seconds: float
    completions_per_second: float

    def __repr__(self) -> str:
        return (
            f"RunSummary(beta={self.beta}, G={self.group_size}, mae={self.mae:.4f}, mae_rlhf={self.mae_rlhf:.4f}, "
            f"mae_reference={self.mae_reference:.4f}, stderr={self.stderr:.4f})"
        )


@dataclass(frozen=True)
class RunOutcome:
    """One run in full: its summary, the prediction it was measured against, the training result."""

    summary: RunSummary
    prediction: Prediction
    result: LMTrainResult

    def __repr__(self) -> str:
        return f"RunOutcome({self.summary!r})"


@dataclass(frozen=True)
class LMExperimentResult:
    summaries: list[RunSummary]
    reference: AnswerProbabilities
    parameters: int
    out_dir: Path
    figures: list[Path] = field(default_factory=list)
    runs: list[RunOutcome] = field(default_factory=list, repr=False)
    """per run, in ``config.runs`` order (the report draws per-question figures from them)"""


def _fingerprint(*parts: Any) -> str:
    """A sha256 of the parts' JSON: equal for equal vocabulary, questions and labels."""
    return hashlib.sha256(json.dumps(to_jsonable(parts), sort_keys=True).encode()).hexdigest()


#: the settings of ``LMExperimentConfig`` that the reference model depends on
REFERENCE_FIELDS = ("n_binary", "n_choice", "n_labels", "seed", "model", "sft")


def reference_stamp(config: LMExperimentConfig, task: Task, tokenizer: Any) -> dict[str, Any]:
    """What a fitted reference model is: its settings and a fingerprint of what the fit is made of.

    The fingerprint covers vocabulary, questions and labels, so a model fitted by an older
    release (same settings, another vocabulary) is never taken for this one.
    """
    labels = noisy_labels(task, config.n_labels, seed=config.seed)
    settings = {k: v for k, v in config.to_json().items() if k in REFERENCE_FIELDS}
    return {**settings, "fingerprint": _fingerprint(sorted(tokenizer.get_vocab().items()), task.prompts, labels)}


def fit_reference(config: LMExperimentConfig):
    """(task, tokenizer, reference model) fitted now (``sft.supervised_finetune``); nothing read or written."""
    task = build_task(config.n_binary, config.n_choice, seed=config.seed)
    tokenizer = build_tokenizer(task_words())
    labels = noisy_labels(task, config.n_labels, seed=config.seed)
    model = build_model(tokenizer, config.model, seed=config.seed)
    supervised_finetune(model, tokenizer, task, labels, config.sft)
    return task, tokenizer, model


def uses_builtin_reference(config: LMExperimentConfig) -> bool:
    """Whether ``config``'s reference is the shipped one (its reference settings are the defaults)."""
    default = LMExperimentConfig().to_json()
    mine = config.to_json()
    return all(mine[k] == default[k] for k in REFERENCE_FIELDS)


def build_reference(config: LMExperimentConfig, out_dir: Path | None = None):
    """(task, tokenizer, reference model).

    With the default reference settings, the model shipped in the package
    (``lm.builtin``: fitted once, the same on every CPU, its files' hashes checked).
    Otherwise fitted once and saved to ``out_dir/reference``, reloaded while its stamp
    (``reference_stamp``) is unchanged. Either way ``out_dir/reference`` holds the model
    after the call (TRL rebuilds its reference model from that folder).
    """
    task = build_task(config.n_binary, config.n_choice, seed=config.seed)
    tokenizer = build_tokenizer(task_words())
    stamp = reference_stamp(config, task, tokenizer)
    ref_dir = out_dir / "reference" if out_dir is not None else None
    if uses_builtin_reference(config):
        from grpo_align.lm.builtin import builtin_manifest, load_builtin_reference

        model = load_builtin_reference(stamp)
        # a folder holding a model fitted here earlier (same settings) is not this one
        stamp = {**stamp, "builtin": builtin_manifest()["files"]["model.safetensors"]}
    else:
        model = None
    stamp_text = json.dumps(stamp, sort_keys=True)
    saved = ref_dir is not None and _read_stamp(ref_dir) == stamp_text
    if model is None:
        if saved:
            from transformers import AutoModelForCausalLM

            assert ref_dir is not None
            return task, tokenizer, AutoModelForCausalLM.from_pretrained(ref_dir).eval()
        _, _, model = fit_reference(config)
    if ref_dir is not None and not saved:
        save_pretrained(model, tokenizer, ref_dir)
        atomic_write_text(ref_dir / "grpo_align.json", stamp_text)
    return task, tokenizer, model


def _read_stamp(ref_dir: Path) -> str | None:
    stamp = ref_dir / "grpo_align.json"
    return stamp.read_text() if stamp.is_file() else None


def summarise(task: Task, pred: Prediction, result: LMTrainResult, steps: int) -> RunSummary:
    idx, ci = np.arange(len(task)), task.correct_index()
    measured = result.mean_policy[idx, ci]
    err = np.abs(measured - pred.grpo[idx, ci])
    return RunSummary(
        algo=pred.algo,
        beta=pred.algo.beta,
        group_size=int(pred.algo.group_size),
        mae=float(err.mean()),
        mae_rlhf=float(np.abs(measured - pred.rlhf[idx, ci]).mean()),
        mae_reference=float(np.abs(measured - pred.reference[idx, ci]).mean()),
        questions=len(task),
        steps=steps,
        stderr=float(result.stderr[idx, ci].mean()),
        max_abs_error=float(err.max()),
        seconds=result.seconds,
        completions_per_second=result.completions_per_second,
    )


def run_experiment(
    config: LMExperimentConfig,
    out_dir: str | Path,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    plots: bool = True,
) -> LMExperimentResult:
    """Run the experiment, writing ``out_dir/summary.json`` and figures; resumes what exists."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task, tokenizer, reference = build_reference(config, out)
    ref_probs = answer_probabilities(reference, tokenizer, task)
    summaries: list[RunSummary] = []
    per_run = []
    for i, algo in enumerate(config.runs):
        pred = predict(task, ref_probs, algo)
        if not pred.success:
            raise InputError(f"runs[{i}]", f"no stationary policy for {algo}: {pred.message}")
        name = run_name(algo)
        policy = copy.deepcopy(reference)
        for p in policy.parameters():
            p.requires_grad_(True)
        cb = (lambda step, m, _n=name: progress(_n, step, config.train.steps)) if progress is not None else None
        result = train_lm(
            policy, reference, tokenizer, task, algo, config.train, out_dir=out / "runs" / name, progress=cb
        )
        summary = summarise(task, pred, result, config.train.steps)
        summaries.append(summary)
        per_run.append((summary, pred, result))
        atomic_write_json(out / "runs" / name / "questions.json", _question_records(task, pred, result))
    atomic_write_json(out / "summary.json", summaries)
    eos_gap = float(1 - ref_probs.eos[ref_probs.valid].min())
    atomic_write_json(
        out / "experiment.json",
        {
            "config": config.to_json(),
            "parameters": count_parameters(reference),
            "reference_correct": ref_probs.correct(task).tolist(),
            "reference_other": ref_probs.other.tolist(),
            "max_eos_gap": eos_gap,
        },
    )
    figures = _plot(task, per_run, out) if plots else []
    return LMExperimentResult(
        summaries=summaries,
        reference=ref_probs,
        parameters=count_parameters(reference),
        out_dir=out,
        figures=figures,
        runs=[RunOutcome(*r) for r in per_run],
    )


def _question_records(task: Task, pred: Prediction, result: LMTrainResult) -> list[dict]:
    recs = []
    for c, q in enumerate(task.questions):
        k = q.correct
        recs.append(
            dict(
                prompt=q.prompt,
                candidates=list(q.candidates),
                correct=q.candidates[k],
                reference=float(pred.reference[c, k]),
                predicted=float(pred.grpo[c, k]),
                rlhf=float(pred.rlhf[c, k]),
                measured=float(result.mean_policy[c, k]),
                stderr=float(result.stderr[c, k]),
                predicted_other=float(pred.grpo[c, -1]),
                measured_other=float(result.mean_policy[c, -1]),
            )
        )
    return recs


def _plot(task: Task, per_run, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx, ci = np.arange(len(task)), task.correct_index()
    n = len(per_run)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2), squeeze=False)
    for ax, (s, pred, res) in zip(axes[0], per_run, strict=False):
        measured, err = res.mean_policy[idx, ci], res.stderr[idx, ci]
        ax.plot([0, 1], [0, 1], color="0.7", lw=1)
        ax.errorbar(
            pred.grpo[idx, ci], measured, yerr=2 * err, fmt="o", ms=4, label=f"GRPO prediction (MAE {s.mae:.3f})"
        )
        ax.plot(pred.rlhf[idx, ci], measured, "x", ms=5, label=f"RLHF pooling (MAE {s.mae_rlhf:.3f})")
        ax.plot(pred.reference[idx, ci], measured, ".", color="0.5", label=f"reference (MAE {s.mae_reference:.3f})")
        ax.set(
            xlabel="predicted P(correct)",
            ylabel="measured P(correct)",
            title=f"beta={s.beta:g}, G={s.group_size}",
            xlim=(0, 1.02),
            ylim=(0, 1.02),
        )
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    scatter = out / "predicted_vs_measured.png"
    with atomic_path(scatter) as tmp:
        fig.savefig(tmp, dpi=110, format="png")  # the temporary name has no .png to infer it from
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for s, pred, res in per_run:
        gap = np.abs(res.trajectory[:, idx, ci] - pred.grpo[idx, ci]).mean(axis=1)
        ax.plot(res.record_steps, gap, label=f"beta={s.beta:g}, G={s.group_size}")
    ax.set(
        yscale="log",
        xlabel="GRPO step",
        ylabel="mean |P(correct) - predicted|",
        title="gap to the predicted stationary policy",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    traj = out / "gap_trajectory.png"
    with atomic_path(traj) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return [scatter, traj]
