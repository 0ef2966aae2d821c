"""Hugging Face TRL: a callback that measures, during ``GRPOTrainer.train()``, the gap to
the predicted stationary policy, and a runner that trains a ``GRPO`` specification with
TRL's ``GRPOTrainer``.

The mapping between ``GRPOConfig`` and ``GRPO`` is ``grpo_align.mappings.trl`` (pure
Python); this module needs trl (and transformers) installed.
"""

from __future__ import annotations

from grpo_align.extras import require

require("trl", "grpo_align.integrations.trl")

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grpo_align.errors import InputError
from grpo_align.mappings.trl import TRL_AGGREGATION, grpo_from_trl, trl_aggregation, trl_kwargs_from_grpo
from grpo_align.theory.spec import GRPO
from grpo_align.training.metrics import PREDICTION_GAP
from grpo_align.training.stats import tail_statistics

__all__ = ["TRL_AGGREGATION", "PredictionGapCallback", "TRLRunResult", "run_trl_experiment", "trl_aggregation"]


try:  # the callback needs transformers; importing this module for the names alone does not
    import transformers as _transformers

    _Base: Any = _transformers.TrainerCallback
except ImportError:  # pragma: no cover - exercised only without transformers
    _Base = object


@dataclass
class GapRecord:
    step: int
    gap: float
    """mean over probe questions of |P(correct) - predicted|"""
    correct: list[float] = field(repr=False)


class PredictionGapCallback(_Base):
    """Every ``every`` steps, measure the probe questions' exact answer probabilities and
    log the mean gap of the correct answer's probability to the predicted stationary policy.

    ``predicted_correct`` (C,) is the prediction for the probe questions (from
    ``grpo_align.lm.experiment.predict`` with ``grpo_from_trl(args)``). Records are kept
    in ``history`` and, with ``path``, appended as JSON lines; the gap is also added to the
    trainer's logs as ``charts/prediction_gap``.
    """

    def __init__(
        self, tokenizer, task, predicted_correct: Sequence[float], every: int = 10, path: str | Path | None = None
    ) -> None:
        if every < 1:
            raise InputError("every", f"expected an integer >= 1, got {every!r}")
        self.tokenizer, self.task, self.every = tokenizer, task, every
        self.predicted = np.asarray(predicted_correct, dtype=float)
        if self.predicted.shape != (len(task),):
            raise InputError("predicted_correct", f"expected {len(task)} values (one per probe question)")
        self.path = Path(path) if path is not None else None
        self.history: list[GapRecord] = []

    def measure(self, model, step: int) -> GapRecord:
        from grpo_align.lm.probs import answer_probabilities

        probs = answer_probabilities(model, self.tokenizer, self.task)
        correct = probs.correct(self.task)
        rec = GapRecord(step=step, gap=float(np.abs(correct - self.predicted).mean()), correct=correct.tolist())
        self.history.append(rec)
        if self.path is not None and self.write:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(rec.__dict__) + "\n")
        return rec

    #: only the main process writes the file (under ``accelerate launch`` every process measures)
    write: bool = True

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.write = bool(getattr(state, "is_world_process_zero", True))
        if model is not None and not self.history:
            self.measure(model, state.global_step)
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None and state.global_step % self.every == 0:
            self.measure(model, state.global_step)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.history:
            logs[PREDICTION_GAP] = self.history[-1].gap
        return control

    def tail_mean(self, fraction: float = 0.3, n_batches: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Mean P(correct) over the last ``fraction`` of the records, and its batch-means stderr.

        At least two records; with fewer records than ``n_batches`` every record is a batch.
        """
        recs = np.array([r.correct for r in self.history])
        tail = recs[-max(2, math.ceil(len(recs) * fraction)) :]
        stats = tail_statistics(tail, max(2, min(n_batches, len(tail))))
        return stats.mean, stats.stderr


#: the specification ``run_trl_experiment`` trains by default: TRL's scaling with beta = 0.5
#: (TRL's own default 0 leaves no interior stationary policy), the plain k3 penalty, and
#: each sequence's tokens averaged (loss_type "grpo")
DEFAULT_TRL_ALGO = GRPO.preset("trl", beta=0.5, penalty="k3", aggregation="sequence_mean")


@dataclass(frozen=True)
class TRLRunResult:
    """TRL's end point against the prediction for the specification it trained."""

    algo: GRPO
    mae: float
    mae_rlhf: float
    mae_reference: float
    stderr: float
    steps: int
    seconds: float
    history: list[GapRecord] = field(repr=False)


def run_trl_experiment(
    out_dir: str | Path,
    algo: GRPO = DEFAULT_TRL_ALGO,
    *,
    steps: int = 300,
    learning_rate: float = 1e-3,
    loss_type: str | None = None,
    every: int = 10,
    seed: int = 0,
    experiment: Any = None,
) -> TRLRunResult:
    """Train ``algo`` with TRL's ``GRPOTrainer`` (CPU) on the project's task and compare its
    end point with ``predict(task, reference probabilities, algo)``.

    The ``GRPOConfig`` is built from ``trl_kwargs_from_grpo(algo)`` plus the run's knobs
    (steps, learning rate, batch sizes), and ``grpo_from_trl`` of it must give ``algo``
    back before anything is trained. ``loss_type`` None takes the one
    ``trl_kwargs_from_grpo`` writes for ``algo.aggregation``; another must train the same
    aggregation (e.g. "dapo", TRL's default, for ``constant``). The reference model is saved with
    ``save_pretrained`` and passed as a path, because with beta > 0 TRL rebuilds the
    reference model from ``config._name_or_path``.
    """
    import dataclasses
    import os
    import time

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from grpo_align.lm.experiment import LMExperimentConfig, build_reference, predict
    from grpo_align.lm.probs import answer_probabilities

    spec_kwargs = trl_kwargs_from_grpo(algo)
    if loss_type is not None:
        if TRL_AGGREGATION.get(loss_type) != algo.aggregation:
            raise InputError(
                "loss_type",
                f"{loss_type!r} does not train aggregation {algo.aggregation!r}; expected one of "
                + ", ".join(k for k, v in TRL_AGGREGATION.items() if v == algo.aggregation),
            )
        spec_kwargs["loss_type"] = loss_type
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = experiment if experiment is not None else LMExperimentConfig()
    n_ctx = config.n_binary + config.n_choice
    num_generations = spec_kwargs["num_generations"]
    # one group per question per step, whatever the number of processes (torchrun / accelerate)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if (n_ctx * num_generations) % world:
        raise InputError(
            "processes", f"{n_ctx} questions x {num_generations} generations must divide among {world} processes"
        )
    # older TRL has no use_bias_correction_kl: only the plain k3 term exists there
    has_correction = any(f.name == "use_bias_correction_kl" for f in dataclasses.fields(GRPOConfig))
    if not has_correction and spec_kwargs.pop("use_bias_correction_kl"):
        raise InputError("penalty", "this TRL has no use_bias_correction_kl: expected penalty='k3'")
    args = GRPOConfig(
        output_dir=str(out / "trl"),
        use_cpu=True,
        bf16=False,
        fp16=False,
        report_to="none",
        seed=seed,
        **spec_kwargs,
        max_completion_length=2,
        per_device_train_batch_size=n_ctx * num_generations // world,
        gradient_accumulation_steps=1,
        learning_rate=learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=20,
        max_grad_norm=1.0,
        max_steps=steps,
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        disable_dropout=True,
        dataloader_num_workers=0,
    )
    trained = grpo_from_trl(args)
    if trained != algo:  # the mapping must be exact both ways, or the prediction is for another spec
        raise AssertionError(f"GRPOConfig trains {trained}, not {algo}")
    # the main process fits and saves the reference; the others load what it saved
    with args.main_process_first(desc="reference model"):
        task, tokenizer, reference = build_reference(config, out)
    ref_dir = out / "reference"
    ref_probs = answer_probabilities(reference, tokenizer, task)
    pred = predict(task, ref_probs, algo)
    idx, ci = np.arange(n_ctx), task.correct_index()
    if args.process_index == 0:
        (out / "trl_gap.jsonl").unlink(missing_ok=True)
    callback = PredictionGapCallback(tokenizer, task, pred.grpo[idx, ci], every=every, path=out / "trl_gap.jsonl")
    dataset = Dataset.from_list([{"prompt": q.prompt, "question": i} for i, q in enumerate(task.questions)])

    def reward(prompts, completions, question, **kwargs):
        return [task.questions[int(q)].reward(text) for q, text in zip(question, completions, strict=False)]

    trainer = GRPOTrainer(
        model=str(ref_dir),
        reward_funcs=reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[callback],
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.accelerator.wait_for_everyone()
    measured, se = callback.tail_mean()
    return TRLRunResult(
        algo=algo,
        mae=float(np.abs(measured - pred.grpo[idx, ci]).mean()),
        mae_rlhf=float(np.abs(measured - pred.rlhf[idx, ci]).mean()),
        mae_reference=float(np.abs(measured - pred.reference[idx, ci]).mean()),
        stderr=float(se.mean()),
        steps=steps,
        seconds=seconds,
        history=callback.history,
    )
