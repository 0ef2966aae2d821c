"""Hugging Face TRL: the GRPO specification a ``GRPOConfig`` trains, and a callback that
measures, during ``GRPOTrainer.train()``, the gap to the predicted stationary policy.

Mapping (checked against TRL 1.16's ``grpo_trainer.py``; docs/lm.md has the table):

* ``num_generations`` -> ``group_size``; ``beta`` -> ``beta`` (TRL's default 0.0 loads no
  reference model and leaves no interior stationary policy: all mass flows to the best
  reward class).
* ``scale_rewards="group"`` (or True): ``(r - mean) / (std + 1e-4)`` with the sample std
  (Bessel) -> ``normalization="shift_scale", ddof=1, eps=1e-4``; ``"none"`` (or False) ->
  ``"shift"``; ``"batch"`` scales by a batch-wide std, which no group-level spec expresses.
* penalty: ``exp(ref - logp) - (ref - logp) - 1`` per token -> ``"k3"``;
  ``use_bias_correction_kl=True`` (the default in TRL 1.16; off in older releases)
  multiplies it by the ratio, whose gradient is that of the direct KL -> ``"kl"`` (same
  stationary policies as ``"k2"``).
* ``loss_type``: "grpo" -> sequence mean, "dapo"/"bnpo" -> token mean, "dr_grpo" ->
  constant (``max_completion_length``). With answers of one length (this project's task)
  the three differ by a constant factor and have the same stationary policies.
* sampling must be exact (temperature 1, top_p 1, top_k 0/None, no min_p, no repetition
  penalty), and nothing may be added to the gradient (entropy bonus, entropy masking).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grpo_align.errors import InputError
from grpo_align.theory.spec import GRPO

__all__ = ["TRL_AGGREGATION", "PredictionGapCallback", "grpo_spec_from_trl", "trl_aggregation"]

#: TRL loss_type -> grpo_loss aggregation
TRL_AGGREGATION = {"grpo": "sequence_mean", "dapo": "token_mean", "bnpo": "token_mean", "dr_grpo": "constant"}


def _get(config: Any, name: str, default: Any) -> Any:
    return getattr(config, name, default)


def trl_aggregation(config: Any) -> str:
    """The ``grpo_loss`` aggregation of a GRPOConfig's ``loss_type``."""
    loss_type = _get(config, "loss_type", "grpo")
    if loss_type not in TRL_AGGREGATION:
        raise InputError(
            "loss_type", f"{loss_type!r} has no counterpart here; expected one of {', '.join(TRL_AGGREGATION)}"
        )
    return TRL_AGGREGATION[loss_type]


def grpo_spec_from_trl(config: Any) -> GRPO:
    """The ``ga.GRPO`` specification a TRL ``GRPOConfig`` trains (attach as ``GRPO.from_trl``).

    Raises ``InputError`` for settings whose stationary policies the engine does not
    describe (batch-scaled rewards, inexact sampling, entropy terms, other loss types).
    Works on any object with GRPOConfig's attribute names; trl need not be installed.
    """
    trl_aggregation(config)
    scale = _get(config, "scale_rewards", "group")
    if scale is True or scale == "group":
        norm = dict(normalization="shift_scale", ddof=1, eps=1e-4)
    elif scale is False or scale == "none":
        norm = dict(normalization="shift", ddof=0, eps=0.0)
    else:
        raise InputError(
            "scale_rewards",
            f"{scale!r} scales by a batch-wide std, which no group-level GRPO spec expresses; use 'group' or 'none'",
        )
    checks = [
        ("temperature", _get(config, "temperature", 1.0) == 1.0, "expected 1.0: the theory samples from pi itself"),
        ("top_p", _get(config, "top_p", 1.0) == 1.0, "expected 1.0 (no nucleus filtering)"),
        ("top_k", _get(config, "top_k", 0) in (0, None), "expected 0 or None (no top-k filtering)"),
        ("min_p", _get(config, "min_p", None) in (0, 0.0, None), "expected None"),
        ("repetition_penalty", _get(config, "repetition_penalty", 1.0) == 1.0, "expected 1.0"),
        (
            "top_entropy_quantile",
            _get(config, "top_entropy_quantile", 1.0) == 1.0,
            "expected 1.0 (every token in the loss)",
        ),
        (
            "entropy_coef",
            not _get(config, "entropy_coef", 0.0),
            "expected 0 (an entropy bonus moves the stationary policy)",
        ),
        ("use_adaptive_entropy", not _get(config, "use_adaptive_entropy", False), "expected False"),
        (
            "multi_objective_aggregation",
            _get(config, "multi_objective_aggregation", "sum_then_normalize") == "sum_then_normalize",
            "expected 'sum_then_normalize' (group normalisation of the summed reward)",
        ),
    ]
    for name, ok, expected in checks:
        if not ok:
            raise InputError(name, f"{expected}; got {_get(config, name, None)!r}")
    penalty = "kl" if _get(config, "use_bias_correction_kl", False) else "k3"
    group = _get(config, "num_generations", 8)
    return GRPO(group_size=int(group), beta=float(_get(config, "beta", 0.0)), penalty=penalty, **norm)


try:  # the callback needs transformers; the spec mapping above does not
    from transformers import TrainerCallback as _Base
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
    ``grpo_align.lm.experiment.predict`` with ``grpo_spec_from_trl(args)``). Records are kept
    in ``history`` and, with ``path``, appended as JSON lines; the gap is also added to the
    trainer's logs as ``grpo_align/gap``.
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
            logs["grpo_align/gap"] = self.history[-1].gap
        return control

    def tail_mean(self, fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
        """Mean P(correct) over the last ``fraction`` of the records, and its batch-means stderr."""
        recs = np.array([r.correct for r in self.history])
        tail = recs[-max(2, math.ceil(len(recs) * fraction)) :]
        if len(tail) < 2:
            return tail.mean(0), np.full(tail.shape[1:], np.nan)
        batches = np.array_split(tail, min(5, len(tail)))
        means = np.stack([b.mean(0) for b in batches])
        return tail.mean(0), means.std(0, ddof=1) / math.sqrt(len(means))


@dataclass(frozen=True)
class TRLRunResult:
    """TRL's end point against the prediction for the spec its config maps to."""

    spec: GRPO
    mae: float
    mae_rlhf: float
    mae_reference: float
    stderr: float
    steps: int
    seconds: float
    history: list[GapRecord] = field(repr=False)


def run_trl_experiment(
    out_dir: str | Path,
    *,
    steps: int = 300,
    beta: float = 0.5,
    num_generations: int = 8,
    learning_rate: float = 1e-3,
    loss_type: str = "grpo",
    use_bias_correction_kl: bool = False,
    every: int = 10,
    seed: int = 0,
    experiment=None,
) -> TRLRunResult:
    """Train the project's reference model with TRL's ``GRPOTrainer`` (CPU) and compare its
    end point with ``predict(task, reference probabilities, grpo_spec_from_trl(config))``.

    The reference model is saved with ``save_pretrained`` and passed as a path, because with
    beta > 0 TRL rebuilds the reference model from ``config._name_or_path``.
    """
    import os
    import time

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from grpo_align.lm.experiment import LMExperimentConfig, build_reference, predict
    from grpo_align.lm.probs import answer_probabilities

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = experiment if experiment is not None else LMExperimentConfig()
    n_ctx = config.n_binary + config.n_choice
    # one group per question per step, whatever the number of processes (torchrun / accelerate)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if (n_ctx * num_generations) % world:
        raise InputError(
            "processes", f"{n_ctx} questions x {num_generations} generations must divide among {world} processes"
        )
    import dataclasses

    extra = {}
    if any(f.name == "use_bias_correction_kl" for f in dataclasses.fields(GRPOConfig)):
        extra["use_bias_correction_kl"] = use_bias_correction_kl
    elif use_bias_correction_kl:
        raise InputError("use_bias_correction_kl", "this TRL has no such option")
    args = GRPOConfig(
        output_dir=str(out / "trl"),
        use_cpu=True,
        bf16=False,
        fp16=False,
        report_to="none",
        seed=seed,
        beta=beta,
        num_generations=num_generations,
        loss_type=loss_type,
        scale_rewards="group",
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        **extra,
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
    # the main process fits and saves the reference; the others load what it saved
    with args.main_process_first(desc="reference model"):
        task, tokenizer, reference = build_reference(config, out)
    ref_dir = out / "reference"
    ref_probs = answer_probabilities(reference, tokenizer, task)
    spec = grpo_spec_from_trl(args)
    pred = predict(task, ref_probs, spec)
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
        spec=spec,
        mae=float(np.abs(measured - pred.grpo[idx, ci]).mean()),
        mae_rlhf=float(np.abs(measured - pred.rlhf[idx, ci]).mean()),
        mae_reference=float(np.abs(measured - pred.reference[idx, ci]).mean()),
        stderr=float(se.mean()),
        steps=steps,
        seconds=seconds,
        history=callback.history,
    )
