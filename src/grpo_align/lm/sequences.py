"""Answers of different token lengths with a shared prefix: predict, train, measure.

The task (``task.build_sequence_task``) answers yes/no questions with ``yes`` / the long
answer (``LONG_ANSWER``, ``yes indeed it is true``) / ``no``: token lengths 2 / 6 / 2 (with
<eos>), ``yes`` shared by two answers; the reference's answer frequencies are designed
(``YES_MASSES``, ``NO_MASSES``) where the aggregations' end points differ most. The
model is autoregressive, so its answer distribution is a tree policy (THEORY.md section
10.1) and the end point depends on the aggregation and on where the penalty sits
(sections 10.2-10.7). Each end point is predicted before training with
``ga.stationary_policy`` on a ``Problem`` whose ``sequences`` are the tokenizer's ids of the
answers, then measured with ``train_lm`` (the shared loss, ``algo.aggregation``,
``algo.penalty_in``).

The prediction is over the three answers, renormalised: the "anything else" mass (junk
completions, reward 0) is kept small by fitting the reference to labels without junk, and
is reported with the measurement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grpo_align.errors import InputError
from grpo_align.files import atomic_write_json, atomic_write_text, json_dumps, to_jsonable
from grpo_align.lm.model import ModelConfig, build_model, save_pretrained
from grpo_align.lm.probs import AnswerProbabilities, answer_ids, answer_probabilities
from grpo_align.lm.sft import SFTConfig, supervised_finetune
from grpo_align.lm.task import LONG_ANSWER, Task, build_sequence_task, sequence_labels, sequence_task_words
from grpo_align.lm.tokenizer import build_tokenizer
from grpo_align.lm.trainer import LMTrainConfig, train_lm
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO
from grpo_align.theory.stationary import stationary_policy
from grpo_align.verify import sequence_summary, setting_name

__all__ = [
    "SEQUENCE_RUNS",
    "SequenceExperimentConfig",
    "SequenceRun",
    "build_sequence_reference",
    "load_or_fit_reference",
    "predict_settings",
    "run_sequence_experiment",
    "sequence_problem",
    "sequence_task",
]

#: the settings compared: the three aggregations (k3 in the loss) and k1 in the reward
SEQUENCE_RUNS: tuple[GRPO, ...] = (
    GRPO(group_size=4, beta=0.5, aggregation="sequence_mean"),
    GRPO(group_size=4, beta=0.5, aggregation="group_token_mean"),
    GRPO(group_size=4, beta=0.5, aggregation="constant"),
    GRPO(group_size=4, beta=0.5, normalization="shift", penalty="k1", penalty_in="reward"),
)

#: reference answer frequencies (yes, long answer, no) of the "yes" questions and of the
#: "no" questions, cycled: where the aggregations' predicted end points differ most
#: (docs/lm.md: a small yes mass on "yes" questions, a large one on "no" questions)
YES_MASSES: tuple[tuple[float, float, float], ...] = ((0.15, 0.15, 0.7), (0.2, 0.1, 0.7))
NO_MASSES: tuple[tuple[float, float, float], ...] = ((0.5, 0.3, 0.2), (0.3, 0.5, 0.2))


def sequence_problem(tokenizer, task: Task, probs: AnswerProbabilities) -> Problem:
    """One batched ``Problem`` over the candidates, with ``sequences`` = their token ids.

    pi_ref is the reference model's candidate probabilities renormalised over the
    candidates; each output's token tuple is its words' ids then <eos> (THEORY.md 10.1),
    so answers sharing a first word share a prefix in the tree.
    """
    kinds = {len(q.candidates) for q in task.questions}
    if len(kinds) != 1:
        raise InputError("task", "expected the same number of candidates for every question")
    ref = probs.probs / probs.probs.sum(axis=1, keepdims=True)
    seqs = [[tuple(answer_ids(tokenizer, c)) for c in q.candidates] for q in task.questions]
    rewards = [list(q.rewards) for q in task.questions]
    return Problem.from_rewards(ref, rewards, sequences=seqs)


#: how each setting is trained (docs/lm.md): 3000 steps at lr 5e-4 (2e-3 collapsed the long
#: answer), decaying to a fifth over the averaged last half, 4 groups of G per question per
#: step (a quarter of the gradient noise: the noise-induced bias of the tail average fell
#: from 0.007 to 0.003), a record every 5 steps and 10 batch means (9 degrees of freedom)
SEQUENCE_TRAIN = LMTrainConfig(
    steps=3000,
    lr=5e-4,
    tail_fraction=0.5,
    lr_final=0.2,
    eval_every=5,
    n_batches=10,
    max_new_tokens=6,
    groups_per_question=4,
)


@dataclass(frozen=True)
class SequenceExperimentConfig:
    """Task size, model, supervised phase and the GRPO runs of the sequence experiment."""

    n_questions: int = 8
    n_labels: int = 20
    seed: int = 0
    long_answer: str = LONG_ANSWER
    yes_masses: tuple[tuple[float, float, float], ...] = YES_MASSES
    no_masses: tuple[tuple[float, float, float], ...] = NO_MASSES
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    train: LMTrainConfig = field(default_factory=lambda: SEQUENCE_TRAIN)
    runs: tuple[GRPO, ...] = SEQUENCE_RUNS


@dataclass(frozen=True)
class SequenceRun:
    """One run: predicted and measured answer distributions (C, 3), over the candidates.

    ``measured`` is the tail average renormalised over the candidates; ``stderr`` the
    batch-means standard error of the raw tail average; ``other`` the mean "anything
    else" mass over the tail (outside the prediction).
    """

    algo: GRPO
    reference: np.ndarray
    predicted: np.ndarray
    measured: np.ndarray
    stderr: np.ndarray
    other: np.ndarray
    success: bool
    batch_autocorrelation: float = float("nan")
    seconds: float = 0.0

    @property
    def name(self) -> str:
        """The setting's name (``verify.setting_name``)."""
        return setting_name(self.algo)

    def record(self) -> dict[str, Any]:
        """The run's entry of the summary (``verify.sequence_summary``)."""
        return {
            "name": self.name,
            "algo": self.algo,
            "measured": self.measured,
            "stderr": self.stderr,
            "other": self.other,
            "batch_autocorrelation": self.batch_autocorrelation,
            "seconds": self.seconds,
        }

    @property
    def mean_abs_error(self) -> float:
        return float(np.mean(np.abs(self.measured - self.predicted)))

    @property
    def mean_stderr(self) -> float:
        return float(np.mean(self.stderr))


def sequence_task(config: SequenceExperimentConfig = SequenceExperimentConfig()):
    """(task, tokenizer) of the sequence experiment (no model fitted)."""
    task = build_sequence_task(config.n_questions, seed=config.seed, long_answer=config.long_answer)
    return task, build_tokenizer(sequence_task_words(task))


def build_sequence_reference(config: SequenceExperimentConfig = SequenceExperimentConfig()):
    """(task, tokenizer, reference model) of the sequence experiment: the model fitted to
    labels of the designed frequencies without junk, so "anything else" stays small."""
    task, tokenizer = sequence_task(config)
    reference = build_model(tokenizer, config.model, seed=config.seed)
    labels = sequence_labels(task, config.n_labels, config.yes_masses, config.no_masses)
    supervised_finetune(reference, tokenizer, task, labels, config.sft)
    return task, tokenizer, reference


def load_or_fit_reference(config: SequenceExperimentConfig, out_dir: Path | None):
    """(task, tokenizer, reference) of the experiment, fitted once and saved to
    ``out_dir/reference`` (reloaded when the stamp of the fit's settings matches)."""
    if out_dir is None:
        return build_sequence_reference(config)
    fields = {k: v for k, v in to_jsonable(config).items() if k in _REFERENCE_FIELDS}
    stamp = json_dumps(fields, sort_keys=True)
    ref_dir = Path(out_dir) / "reference"
    marker = ref_dir / "grpo_align.json"
    if marker.exists() and marker.read_text() == stamp:
        from transformers import AutoModelForCausalLM

        task, tokenizer = sequence_task(config)
        return task, tokenizer, AutoModelForCausalLM.from_pretrained(ref_dir).eval()
    task, tokenizer, reference = build_sequence_reference(config)
    save_pretrained(reference, tokenizer, ref_dir)
    atomic_write_text(marker, stamp)
    return task, tokenizer, reference


#: the configuration fields the reference model depends on (its saved copy's stamp)
_REFERENCE_FIELDS = ("n_questions", "n_labels", "seed", "long_answer", "yes_masses", "no_masses", "model", "sft")


def predict_settings(problem: Problem, runs: Sequence[GRPO]) -> dict[str, np.ndarray]:
    """Each setting's predicted end point (C, K) over the candidates, before any training."""
    out = {}
    for algo in runs:
        pred = stationary_policy(problem, algo)
        if not np.all(pred.success):
            raise InputError("runs", f"no stationary policy for {algo}: {pred.message}")
        out[setting_name(algo)] = np.asarray(pred.policy)
    return out


def question_records(task: Task, problem: Problem) -> list[dict[str, Any]]:
    """Per question: prompt, candidates, rewards and the reference over the candidates."""
    return [
        {"prompt": q.prompt, "candidates": list(q.candidates), "rewards": list(q.rewards), "reference": problem.ref[c]}
        for c, q in enumerate(task.questions)
    ]


def run_sequence_experiment(
    config: SequenceExperimentConfig = SequenceExperimentConfig(),
    out_dir: str | Path | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[SequenceRun]:
    """Fit the reference, predict every run's end point, train each run, measure it.

    With ``out_dir``: the reference is saved to ``out_dir/reference``, each run checkpoints
    in ``out_dir/runs/<setting>/`` (an interrupted experiment resumes), and the summary
    (``verify.sequence_summary``: per run and answer the measurement, its
    standard error and z-scores against every prediction, and the verdict) is written to
    ``out_dir/sequences.json``. ``progress(setting, step, steps)`` after every step.
    """
    import copy

    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    task, tokenizer, reference = load_or_fit_reference(config, out)
    probs = answer_probabilities(reference, tokenizer, task)
    problem = sequence_problem(tokenizer, task, probs)
    predicted = predict_settings(problem, config.runs)  # before training
    runs = []
    for algo in config.runs:
        name = setting_name(algo)
        policy = copy.deepcopy(reference)
        for p in policy.parameters():
            p.requires_grad_(True)
        cb = (lambda step, m, _n=name: progress(_n, step, config.train.steps)) if progress is not None else None
        res = train_lm(
            policy,
            reference,
            tokenizer,
            task,
            algo,
            config.train,
            out_dir=None if out is None else out / "runs" / name,
            progress=cb,
        )
        mean = res.mean_policy[:, :-1]
        runs.append(
            SequenceRun(
                algo=algo,
                reference=problem.ref.copy(),
                predicted=predicted[name],
                measured=mean / mean.sum(axis=1, keepdims=True),
                stderr=res.stderr[:, :-1],
                other=res.mean_policy[:, -1],
                success=True,
                batch_autocorrelation=res.batch_autocorrelation,
                seconds=res.seconds,
            )
        )
    if out is not None:
        summary = sequence_summary(
            trainer="grpo_align",
            config=to_jsonable(config),
            questions=question_records(task, problem),
            predicted=predicted,
            runs=[run.record() for run in runs],
            n_batches=config.train.n_batches,
        )
        atomic_write_json(out / "sequences.json", summary)
    return runs
