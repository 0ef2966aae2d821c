"""Answers of different token lengths with a shared prefix: predict, train, measure.

The task (``task.build_sequence_task``) answers yes/no questions with ``yes`` / ``yes
indeed`` / ``no``: token lengths 2 / 3 / 2 (with <eos>), ``yes`` shared by two answers. The
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

from dataclasses import dataclass, field

import numpy as np

from grpo_align.errors import InputError
from grpo_align.lm.model import ModelConfig, build_model
from grpo_align.lm.probs import AnswerProbabilities, answer_ids, answer_probabilities
from grpo_align.lm.sft import SFTConfig, supervised_finetune
from grpo_align.lm.task import Task, build_sequence_task, noisy_labels, task_words
from grpo_align.lm.tokenizer import build_tokenizer
from grpo_align.lm.trainer import LMTrainConfig, train_lm
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO
from grpo_align.theory.stationary import stationary_policy

__all__ = [
    "SEQUENCE_RUNS",
    "SequenceExperimentConfig",
    "SequenceRun",
    "build_sequence_reference",
    "run_sequence_experiment",
    "sequence_problem",
]

#: the settings compared: the three aggregations (k3 in the loss) and k1 in the reward
SEQUENCE_RUNS: tuple[GRPO, ...] = (
    GRPO(group_size=4, beta=0.3, aggregation="sequence_mean"),
    GRPO(group_size=4, beta=0.3, aggregation="group_token_mean"),
    GRPO(group_size=4, beta=0.3, aggregation="constant"),
    GRPO(group_size=4, beta=0.3, normalization="shift", penalty="k1", penalty_in="reward"),
)


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


@dataclass(frozen=True)
class SequenceExperimentConfig:
    """Task size, model, supervised phase and the GRPO runs of the sequence experiment."""

    n_questions: int = 8
    n_labels: int = 40
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    train: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(steps=1500, max_new_tokens=3))
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

    @property
    def mean_abs_error(self) -> float:
        return float(np.mean(np.abs(self.measured - self.predicted)))

    @property
    def mean_stderr(self) -> float:
        return float(np.mean(self.stderr))


def build_sequence_reference(config: SequenceExperimentConfig = SequenceExperimentConfig()):
    """(task, tokenizer, reference model) of the sequence experiment: the model fitted to
    labels spread over [0.2, 0.8] without junk, so "anything else" stays small."""
    task = build_sequence_task(config.n_questions, seed=config.seed)
    tokenizer = build_tokenizer(task_words())
    reference = build_model(tokenizer, config.model, seed=config.seed)
    labels = noisy_labels(task, config.n_labels, low=0.2, high=0.8, junk_rate=0.0, seed=config.seed)
    supervised_finetune(reference, tokenizer, task, labels, config.sft)
    return task, tokenizer, reference


def run_sequence_experiment(config: SequenceExperimentConfig = SequenceExperimentConfig()) -> list[SequenceRun]:
    """Fit the reference, predict every run's end point, train each run, measure it."""
    import copy

    task, tokenizer, reference = build_sequence_reference(config)
    probs = answer_probabilities(reference, tokenizer, task)
    problem = sequence_problem(tokenizer, task, probs)
    out = []
    for algo in config.runs:
        pred = stationary_policy(problem, algo)  # before training
        res = train_lm(copy.deepcopy(reference), reference, tokenizer, task, algo, config.train)
        mean = res.mean_policy[:, :-1]
        out.append(
            SequenceRun(
                algo=algo,
                reference=problem.ref.copy(),
                predicted=np.asarray(pred.policy),
                measured=mean / mean.sum(axis=1, keepdims=True),
                stderr=res.stderr[:, :-1],
                other=res.mean_policy[:, -1],
                success=bool(np.all(pred.success)),
            )
        )
    return out
