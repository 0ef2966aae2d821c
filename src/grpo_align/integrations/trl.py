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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grpo_align.errors import InputError
from grpo_align.mappings.trl import TRL_AGGREGATION, grpo_from_trl, trl_aggregation, trl_kwargs_from_grpo
from grpo_align.theory.spec import AGGREGATIONS, GRPO  # AGGREGATIONS: what a sequence run is compared with
from grpo_align.training.metrics import PREDICTION_GAP
from grpo_align.training.stats import tail_statistics

__all__ = [
    "TRL_AGGREGATION",
    "PredictionGapCallback",
    "TRLRunResult",
    "TRLSequenceResult",
    "dapo_finite_batch_shift",
    "grpo_config",
    "measure_predict_train_trl",
    "run_trl_experiment",
    "run_trl_sequence_experiment",
    "trl_aggregation",
]


try:  # the callback needs transformers; importing this module for the names alone does not
    import transformers as _transformers

    _Base: Any = _transformers.TrainerCallback
except ImportError:  # pragma: no cover - exercised only without transformers
    _Base = object


@dataclass
class GapRecord:
    step: int
    gap: float
    """mean over probe questions of |P(correct) - predicted| (or, with a predicted
    distribution per question, over questions and candidates of |measured - predicted|,
    measured renormalised over the candidates)"""
    correct: list[float] = field(repr=False)
    probs: list[list[float]] = field(default_factory=list, repr=False)
    """pi(candidate | question), (C, K), not renormalised"""


class PredictionGapCallback(_Base):
    """Every ``every`` steps, measure the probe questions' exact answer probabilities (by
    teacher forcing, answers of any token length) and log the mean gap to the predicted
    stationary policy.

    ``predicted_correct`` is either (C,), the correct answer's predicted probability (from
    ``grpo_align.lm.experiment.predict`` with ``grpo_from_trl(args)``), or (C, K), the
    predicted distribution over each question's K candidates (``lm.sequences``: answers
    sharing a reward, so no single "correct" one); the gap is then over every candidate,
    the measurement renormalised over the candidates. Records are kept in ``history`` and,
    with ``path``, appended as JSON lines; the gap is also added to the trainer's logs as
    ``charts/prediction_gap``.
    """

    def __init__(
        self,
        tokenizer,
        task,
        predicted_correct: Sequence[float] | np.ndarray,
        every: int = 10,
        path: str | Path | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        if every < 1:
            raise InputError("every", f"expected an integer >= 1, got {every!r}")
        self.tokenizer, self.task, self.every = tokenizer, task, every
        self.predicted = np.asarray(predicted_correct, dtype=float)
        if self.predicted.shape not in ((len(task),), (len(task), task.max_candidates)):
            raise InputError(
                "predicted_correct",
                f"expected {len(task)} values (one per probe question) or a ({len(task)}, "
                f"{task.max_candidates}) distribution over the candidates",
            )
        self.path = Path(path) if path is not None else None
        self.progress = progress
        self.history: list[GapRecord] = []

    def measure(self, model, step: int) -> GapRecord:
        from grpo_align.lm.probs import answer_probabilities

        probs = answer_probabilities(model, self.tokenizer, self.task)
        correct = probs.correct(self.task)
        if self.predicted.ndim == 1:
            gap = float(np.abs(correct - self.predicted).mean())
        else:
            gap = float(np.abs(_renormalised(probs.probs) - self.predicted).mean())
        rec = GapRecord(step=step, gap=gap, correct=correct.tolist(), probs=probs.probs.tolist())
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
        if self.progress is not None:
            self.progress(state.global_step)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.history:
            logs[PREDICTION_GAP] = self.history[-1].gap
        return control

    def tail_mean(self, fraction: float = 0.3, n_batches: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Mean P(correct) over the last ``fraction`` of the records, and its batch-means stderr.

        At least two records; with fewer records than ``n_batches`` every record is a batch.
        """
        return _tail(np.array([r.correct for r in self.history]), fraction, n_batches)

    def tail_distribution(self, fraction: float = 0.3, n_batches: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tail mean of pi(candidate | question) renormalised over the candidates (C, K),
        the batch-means stderr of the raw tail mean (C, K), and the mean "anything else"
        mass (C,): the convention of ``lm.sequences.SequenceRun``."""
        mean, se = _tail(np.array([r.probs for r in self.history]), fraction, n_batches)
        return _renormalised(mean), se, 1.0 - mean.sum(axis=1)


def _renormalised(probs: np.ndarray) -> np.ndarray:
    return probs / probs.sum(axis=-1, keepdims=True)


def _tail(recs: np.ndarray, fraction: float, n_batches: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the last ``fraction`` of the records (at least two) and its batch-means stderr."""
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
    max_abs_error: float = float("nan")
    """largest |measured - predicted| of P(correct) over the questions"""


def grpo_config(
    out: Path,
    spec_kwargs: dict[str, Any],
    *,
    n_ctx: int,
    max_completion_length: int,
    steps: int,
    learning_rate: float,
    seed: int,
    decay_steps: int = 0,
    lr_final: float = 1.0,
):
    """The CPU ``GRPOConfig`` of a run: the spec's keys plus one group per question per step.

    The learning rate warms up over 20 steps; with ``decay_steps`` it then decays linearly
    over the last ``decay_steps`` to ``learning_rate * lr_final`` (``train_lm``'s schedule),
    else it stays constant."""
    import dataclasses
    import os

    from trl import GRPOConfig

    num_generations = spec_kwargs["num_generations"]
    # one group per question per step, whatever the number of processes (torchrun / accelerate)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if (n_ctx * num_generations) % world:
        raise InputError(
            "processes", f"{n_ctx} questions x {num_generations} generations must divide among {world} processes"
        )
    # older TRL has no use_bias_correction_kl: only the plain k3 term exists there
    has_correction = any(f.name == "use_bias_correction_kl" for f in dataclasses.fields(GRPOConfig))
    spec_kwargs = dict(spec_kwargs)
    if not has_correction and spec_kwargs.pop("use_bias_correction_kl"):
        raise InputError("penalty", "this TRL has no use_bias_correction_kl: expected penalty='k3'")
    return GRPOConfig(
        output_dir=str(out / "trl"),
        use_cpu=True,
        bf16=False,
        fp16=False,
        report_to="none",
        seed=seed,
        **spec_kwargs,
        max_completion_length=max_completion_length,
        per_device_train_batch_size=n_ctx * num_generations // world,
        gradient_accumulation_steps=1,
        learning_rate=learning_rate,
        **(
            dict(
                lr_scheduler_type="warmup_stable_decay",
                lr_scheduler_kwargs={"num_decay_steps": decay_steps, "min_lr_ratio": lr_final, "decay_type": "linear"},
            )
            if decay_steps
            else dict(lr_scheduler_type="constant_with_warmup")
        ),
        warmup_steps=20,
        max_grad_norm=1.0,
        max_steps=steps,
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        disable_dropout=True,
        dataloader_num_workers=0,
    )


def _train_on_task(args: Any, task: Any, tokenizer: Any, model_dir: Path, callback: Any, copies: int = 1) -> float:
    """Train TRL's GRPOTrainer from ``model_dir`` on the task's prompts (reward: the task's
    own answer check); returns the seconds spent in ``train()``.

    ``copies``: each prompt appears that many times in the dataset, so that a batch of one
    epoch (``per_device_train_batch_size`` = copies x questions x G) holds that many
    independent groups per question (``LMTrainConfig.groups_per_question``)."""
    import time

    from datasets import Dataset
    from trl import GRPOTrainer

    rows = [{"prompt": q.prompt, "question": i} for i, q in enumerate(task.questions)]
    dataset = Dataset.from_list(rows * copies)

    def reward(prompts, completions, question, **kwargs):
        return [task.questions[int(q)].reward(text) for q, text in zip(question, completions, strict=False)]

    trainer = GRPOTrainer(
        model=str(model_dir),
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
    return seconds


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
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")

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
    args = grpo_config(
        out, spec_kwargs, n_ctx=n_ctx, max_completion_length=2, steps=steps, learning_rate=learning_rate, seed=seed
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
    seconds = _train_on_task(args, task, tokenizer, ref_dir, callback)
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
        max_abs_error=float(np.abs(measured - pred.grpo[idx, ci]).max()),
    )


#: the specification ``run_trl_sequence_experiment`` trains: TRL's default loss_type "dapo"
#: (aggregation ``constant``), beta and G of ``lm.sequences.SEQUENCE_RUNS``, and the plain k3
#: penalty (``use_bias_correction_kl=False``), as our runs
DEFAULT_TRL_SEQUENCE_ALGO = GRPO.preset("trl", beta=0.5, group_size=4, penalty="k3")


@dataclass(frozen=True)
class TRLSequenceResult:
    """TRL's end point on the sequence task against each aggregation's prediction.

    ``predicted[a]`` (C, K) is the stationary policy of ``algo.replace(aggregation=a)``
    over the candidates; ``measured`` the tail mean renormalised over the candidates,
    ``stderr`` the batch-means standard error of the raw tail mean, ``other`` the mean
    "anything else" mass (outside the prediction). ``trl_settings`` are the config's
    values of the keys that fix the specification (``loss_type`` included), read back
    from the ``GRPOConfig`` that trained. ``finite_batch_shift`` is the first-order size of
    the batch-token normaliser's effect (``dapo_finite_batch_shift``).
    """

    algo: GRPO
    trl_settings: dict[str, Any]
    reference: np.ndarray
    predicted: dict[str, np.ndarray]
    measured: np.ndarray
    stderr: np.ndarray
    other: np.ndarray
    groups_per_batch: int
    finite_batch_shift: float
    steps: int
    seconds: float
    history: list[GapRecord] = field(repr=False)

    def mae(self, aggregation: str | None = None) -> float:
        """Mean over questions and candidates of |measured - predicted[aggregation]|
        (default: the aggregation trained)."""
        return float(np.mean(np.abs(self.measured - self.predicted[aggregation or self.algo.aggregation])))

    @property
    def mean_stderr(self) -> float:
        return float(np.mean(self.stderr))

    @property
    def nearest(self) -> str:
        """The aggregation whose prediction the measurement is nearest."""
        return min(self.predicted, key=self.mae)


def dapo_finite_batch_shift(predicted: dict[str, np.ndarray], groups_per_batch: int) -> float:
    """First-order size of the end-point shift of TRL's "dapo" from ``constant`` (mean over
    questions and candidates).

    "dapo" weights every token of group c by 1 / (N_c + N_rest): N_c the group's own
    token count, N_rest the other groups'. Linearised around N_c = n (its mean), the
    weight's dependence on N_c is -(N_c - n) / N^2 with N = n + N_rest: a share n / N ~ 1 / K
    (K groups per batch) of the dependence of ``group_token_mean``'s 1 / N_c, the rest being
    ``constant``'s. To first order the expected gradient is the mixture (1 - 1/K) constant +
    (1/K) group_token_mean, whose root lies 1/K of the way from ``constant``'s end point to
    ``group_token_mean``'s (THEORY.md eq. 10.2: the aggregation weights). With one group
    per batch "dapo" is ``group_token_mean``; K -> infinity gives ``constant``.
    """
    if groups_per_batch < 1:
        raise InputError("groups_per_batch", f"expected an integer >= 1, got {groups_per_batch!r}")
    gap = np.abs(predicted["group_token_mean"] - predicted["constant"])
    return float(gap.mean() / groups_per_batch)


def run_trl_sequence_experiment(
    out_dir: str | Path,
    algo: GRPO = DEFAULT_TRL_SEQUENCE_ALGO,
    *,
    steps: int = 3000,
    learning_rate: float = 5e-4,
    every: int = 5,
    seed: int = 0,
    tail_fraction: float = 0.5,
    lr_final: float = 0.2,
    n_batches: int = 10,
    groups_per_question: int = 4,
    experiment: Any = None,
    progress: Callable[[int], None] | None = None,
) -> TRLSequenceResult:
    """Train TRL's ``GRPOTrainer`` on the sequence task (``lm.sequences``: ``yes`` / the
    long answer / ``no``) and compare its end point with every aggregation's prediction.

    ``algo.aggregation`` ``constant`` trains TRL's default ``loss_type`` ("dapo": the config
    is built from ``trl_kwargs_from_grpo(algo)`` without its ``loss_type`` and must read back
    as "dapo"); ``sequence_mean`` trains ``loss_type="grpo"``. Either way the config must
    read back as ``algo`` (``grpo_from_trl``) before anything is trained.
    ``max_completion_length`` is the longest answer's token count (its <eos> included). The
    end points are predicted, before training, by ``stationary_policy`` on
    ``lm.sequences.sequence_problem`` of the reference, for ``algo`` under each aggregation;
    "dapo" is ``constant`` in the many-groups limit, and ``finite_batch_shift`` states its
    finite-batch effect with ``groups_per_question`` groups per question per step (each
    prompt that many times in the dataset, ``train_lm``'s ``groups_per_question``). The learning rate decays
    linearly over the averaged tail to ``learning_rate * lr_final`` (as ``train_lm``'s).
    The measurement is the tail mean of the exact candidate probabilities (teacher
    forcing, every ``every`` steps) with ``n_batches`` batch means.
    """
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from grpo_align.lm.probs import answer_ids, answer_probabilities
    from grpo_align.lm.sequences import (
        SequenceExperimentConfig,
        load_or_fit_reference,
        sequence_problem,
        sequence_task,
    )
    from grpo_align.theory.stationary import stationary_policy

    if not isinstance(algo, GRPO) or algo.aggregation not in ("constant", "sequence_mean"):
        raise InputError(
            "aggregation",
            "TRL trains 'constant' (its default loss_type 'dapo', many-groups limit) or 'sequence_mean' "
            f"(loss_type 'grpo'); expected a GRPO with one of them, got {getattr(algo, 'aggregation', algo)!r}",
        )
    spec_kwargs = trl_kwargs_from_grpo(algo)
    if algo.aggregation == "constant":
        del spec_kwargs["loss_type"]  # TRL's default
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = experiment if experiment is not None else SequenceExperimentConfig()
    probe, probe_tok = sequence_task(config)
    longest = max(len(answer_ids(probe_tok, c)) for q in probe.questions for c in q.candidates)
    args = grpo_config(
        out,
        spec_kwargs,
        n_ctx=config.n_questions * groups_per_question,
        max_completion_length=longest,
        steps=steps,
        learning_rate=learning_rate,
        seed=seed,
        decay_steps=round(steps * tail_fraction),
        lr_final=lr_final,
    )
    expected_loss = "dapo" if algo.aggregation == "constant" else "grpo"
    if args.loss_type != expected_loss:
        raise AssertionError(f"expected loss_type {expected_loss!r}, the config has {args.loss_type!r}")
    trained = grpo_from_trl(args)
    if trained != algo:  # the mapping must be exact both ways, or the prediction is for another spec
        raise AssertionError(f"GRPOConfig trains {trained}, not {algo}")
    settings = {k: getattr(args, k) for k in (*trl_kwargs_from_grpo(algo), "max_completion_length")}
    with args.main_process_first(desc="reference model"):
        task, tokenizer, reference = load_or_fit_reference(config, out)
    problem = sequence_problem(tokenizer, task, answer_probabilities(reference, tokenizer, task))
    predicted = {}
    for agg in AGGREGATIONS:  # before training
        res = stationary_policy(problem, algo.replace(aggregation=agg))
        if not np.all(res.success):
            raise AssertionError(f"no stationary policy for aggregation {agg!r}: {res.message}")
        predicted[agg] = np.asarray(res.policy)
    gap_path = out / "trl_sequence_gap.jsonl"
    if args.process_index == 0:
        gap_path.unlink(missing_ok=True)
    callback = PredictionGapCallback(
        tokenizer, task, predicted[algo.aggregation], every=every, path=gap_path, progress=progress
    )
    seconds = _train_on_task(args, task, tokenizer, out / "reference", callback, copies=groups_per_question)
    measured, se, other = callback.tail_distribution(tail_fraction, n_batches=n_batches)
    return TRLSequenceResult(
        algo=algo,
        trl_settings=settings,
        reference=problem.ref.copy(),
        predicted=predicted,
        measured=measured,
        stderr=se,
        other=other,
        groups_per_batch=config.n_questions * groups_per_question,
        finite_batch_shift=dapo_finite_batch_shift(predicted, config.n_questions * groups_per_question),
        steps=steps,
        seconds=seconds,
        history=callback.history,
    )


#: the TRL sequence runs of ``grpo-align lm --trl --task sequences``: TRL's scaling, the
#: plain k3 penalty at beta 0.5, G 4 (the settings of ``lm.sequences.SEQUENCE_RUNS``), under
#: TRL's default loss_type "dapo" (``constant``) and under "grpo" (``sequence_mean``)
TRL_SEQUENCE_RUNS: tuple[GRPO, ...] = (
    GRPO.preset("trl", beta=0.5, group_size=4, penalty="k3", aggregation="sequence_mean"),
    GRPO.preset("trl", beta=0.5, group_size=4, penalty="k3", aggregation="constant"),
)


def run_trl_sequence_summary(
    out_dir: str | Path,
    *,
    steps: int | None = None,
    seed: int = 0,
    runs: Sequence[GRPO] = TRL_SEQUENCE_RUNS,
    experiment: Any = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Train each of ``runs`` with TRL's ``GRPOTrainer`` on the sequence task and write the
    summary ``out_dir/trl_sequences.json`` (``verify.sequence_summary``:
    per run and answer the measurement, its standard error, z-scores against every
    aggregation's prediction, and the verdict); returns its path.

    Each finished run is stored in ``out_dir/runs/trl_<aggregation>/result.json`` with the
    settings it was run with; a rerun with the same settings reuses it (an interrupted
    experiment resumes at the run it stopped in). ``progress(name, step, steps)`` after
    every step.
    """
    import os

    from grpo_align.files import atomic_write_json, to_jsonable
    from grpo_align.verify import sequence_summary

    n_steps = 3000 if steps is None else steps
    out = Path(out_dir)
    entries, predicted, reference, questions = [], None, None, None
    for algo in runs:
        name = algo.aggregation
        run_dir = out / "runs" / f"trl_{name}"
        stamp = to_jsonable({"algo": algo, "steps": n_steps, "seed": seed, "experiment": experiment})
        stored = run_dir / "result.json"
        if stored.exists() and json.loads(stored.read_text()).get("stamp") == stamp:
            entry = json.loads(stored.read_text())
        else:
            cb = (lambda step, _n=name: progress(f"trl {_n}", step, n_steps)) if progress is not None else None
            res = run_trl_sequence_experiment(
                run_dir, algo, steps=n_steps, seed=seed, experiment=experiment, progress=cb
            )
            entry = to_jsonable(
                {
                    "stamp": stamp,
                    "name": name,
                    "algo": algo,
                    "loss_type": res.trl_settings["loss_type"],
                    "measured": res.measured,
                    "stderr": res.stderr,
                    "other": res.other,
                    "finite_batch_shift": res.finite_batch_shift if name == "constant" else 0.0,
                    "seconds": res.seconds,
                    "steps": res.steps,
                    "predicted": res.predicted,
                    "reference": res.reference,
                }
            )
            if int(os.environ.get("RANK", "0")) == 0:
                atomic_write_json(stored, entry)
        if predicted is None:
            predicted = {k: np.asarray(v) for k, v in entry["predicted"].items()}
            reference = np.asarray(entry["reference"])
        entries.append({k: v for k, v in entry.items() if k not in ("stamp", "predicted", "reference")})
    assert predicted is not None and reference is not None
    from grpo_align.lm.sequences import SequenceExperimentConfig, sequence_task

    config = experiment if experiment is not None else SequenceExperimentConfig()
    task, _ = sequence_task(config)
    questions = [
        {"prompt": q.prompt, "candidates": list(q.candidates), "rewards": list(q.rewards), "reference": reference[c]}
        for c, q in enumerate(task.questions)
    ]
    summary = sequence_summary(
        trainer="trl",
        config={"experiment": to_jsonable(config), "steps": n_steps, "seed": seed, "learning_rate": 5e-4},
        questions=questions,
        predicted=predicted,
        runs=entries,
        n_batches=10,
    )
    path = out / "trl_sequences.json"
    if int(os.environ.get("RANK", "0")) == 0:
        atomic_write_json(path, summary)
    return path


def train_trl_end_points(config: Any, out: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Step 3 of ``lm.endtoend`` with TRL's ``GRPOTrainer``: each question's P(correct), the
    tail mean and its batch-means standard error, for an ``EndToEndConfig``."""
    import tempfile

    folder = out / "trl" if out is not None else Path(tempfile.mkdtemp(prefix="grpo-align-trl-"))
    train = config.experiment.train
    res = run_trl_experiment(
        folder,
        config.algo,
        steps=config.trl_steps,
        learning_rate=train.lr,
        seed=train.seed,
        experiment=config.experiment,
    )
    # the tail as PredictionGapCallback.tail_mean takes it (last 30% of the records, 5 batches)
    records = np.array([r.correct for r in res.history])
    tail = records[-max(2, int(np.ceil(len(records) * 0.3))) :]
    stats = tail_statistics(tail, max(2, min(5, len(tail))))
    return stats.mean, stats.stderr


def measure_predict_train_trl(config: Any, out_dir: str | Path | None = None) -> Any:
    """``lm.endtoend.measure_predict_train`` with ``config.trainer == "trl"``: measure and
    predict as there, train with TRL's ``GRPOTrainer`` (``train_trl_end_points``)."""
    from grpo_align.lm.endtoend import measure_predict_train

    return measure_predict_train(config, out_dir, train=train_trl_end_points)
