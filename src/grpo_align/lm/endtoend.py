"""Measure, predict, train: the ``measure -> predict -> train`` path checked on the built-in task.

1. Measure: sample ``n`` completions per question from the reference model
   (``lm.measure.sample_rewards``, the code ``grpo-align measure`` runs) and count the
   correct ones.
2. Predict: each question's end point with the ``predict`` engine
   (``predict.engine.binary_end_points``) from the Jeffreys estimate of p0 and at the ends
   of its 95% interval (``predict.estimate``); and from the exact p0 (teacher forcing,
   ``lm.probs.answer_probabilities``). A question of the built-in task has one correct
   candidate and reward 0 for everything else, so all wrong outputs form one reward class
   (THEORY.md section 5) and the binary end point is exact for it.
3. Train: the project's LM trainer (``lm.trainer.train_lm``) or TRL's ``GRPOTrainer``
   (``integrations.trl.measure_predict_train_trl``, which passes its trainer in) with the
   same ``GRPO`` spec, and measure each question's end point exactly: P(correct) by teacher
   forcing, averaged over the run's tail, with a batch-means standard error.
4. Compare, per question:

   * exact p0: ``|measured - predicted_exact|`` against the training's standard error;
   * sampled p0: whether ``predicted_low <= measured <= predicted_high``. The end point
     increases with p0, so this interval holds f(p0) exactly when the Jeffreys interval
     holds p0: its coverage is the Jeffreys interval's frequentist coverage at the true
     p0, computed exactly from the binomial (``expected_coverage``), up to what the
     training's noise moves when the interval is not much wider than the standard error.
     The number of covered questions is then a sum of independent Bernoulli variables
     (Poisson binomial) with those probabilities (``coverage_pvalue``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grpo_align.errors import InputError
from grpo_align.lm.experiment import LMExperimentConfig, build_reference, predict
from grpo_align.lm.measure import DEFAULT_BATCH_SIZE, builtin_prompts, exact_match, sample_rewards
from grpo_align.lm.probs import answer_probabilities
from grpo_align.lm.task import ANSWER_TOKENS
from grpo_align.lm.trainer import train_lm
from grpo_align.predict.engine import binary_end_points
from grpo_align.predict.estimate import INTERVAL_LEVEL, jeffreys_interval, jeffreys_mean
from grpo_align.theory.spec import GRPO

__all__ = [
    "EndToEndConfig",
    "EndToEndResult",
    "coverage_pvalue",
    "jeffreys_coverage",
    "measure_predict_train",
]

TRAINERS = ("grpo_align", "trl")


@dataclass(frozen=True)
class EndToEndConfig:
    """The task, reference and training (``experiment``), the spec trained, the sampling."""

    experiment: LMExperimentConfig = field(default_factory=LMExperimentConfig.quick)
    """task, model, supervised phase and LM trainer settings (its ``runs`` are not used)"""
    algo: GRPO = field(default_factory=lambda: GRPO(group_size=8, beta=0.5))
    """the GRPO spec predicted and trained"""
    n: int = 16
    """completions sampled per question to estimate p0"""
    sample_seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE
    trainer: str = "grpo_align"
    """'grpo_align' (``train_lm``) or 'trl' (TRL's GRPOTrainer, needs the trl extra)"""
    trl_steps: int = 300

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise InputError("n", f"expected an integer >= 1, got {self.n!r}")
        if self.trainer not in TRAINERS:
            raise InputError("trainer", f"unknown {self.trainer!r}; expected one of {', '.join(TRAINERS)}")
        if not isinstance(self.algo, GRPO) or self.algo.is_limit:
            raise InputError("algo", "expected a grpo_align.GRPO with a finite group size")


@dataclass(frozen=True)
class EndToEndResult:
    """Per question (arrays of length C) and the summary numbers.

    Attributes
    ----------
    p0_exact : reference P(correct) by teacher forcing.
    correct : correct completions among ``n`` sampled.
    p0, p0_low, p0_high : Jeffreys mean and 95% interval from the counts.
    predicted_exact : end point from ``p0_exact`` (predict engine).
    predicted_full : the same from the full answer distribution (``lm.experiment.predict``,
        every candidate and "anything else"): an independent route to ``predicted_exact``.
    predicted, predicted_low, predicted_high : end points from ``p0``, ``p0_low``, ``p0_high``.
    measured, stderr : trained P(correct), tail mean and its standard error.
    expected_coverage : probability that the Jeffreys interval from ``n`` samples holds
        ``p0_exact`` (exact binomial sum).
    """

    config: EndToEndConfig = field(repr=False)
    p0_exact: np.ndarray = field(repr=False)
    correct: np.ndarray = field(repr=False)
    p0: np.ndarray = field(repr=False)
    p0_low: np.ndarray = field(repr=False)
    p0_high: np.ndarray = field(repr=False)
    predicted_exact: np.ndarray = field(repr=False)
    predicted_full: np.ndarray = field(repr=False)
    predicted: np.ndarray = field(repr=False)
    predicted_low: np.ndarray = field(repr=False)
    predicted_high: np.ndarray = field(repr=False)
    measured: np.ndarray = field(repr=False)
    stderr: np.ndarray = field(repr=False)
    expected_coverage: np.ndarray = field(repr=False)
    seconds: float = 0.0

    @property
    def covered(self) -> np.ndarray:
        """Questions whose measured end point lies in the predicted interval."""
        return (self.predicted_low <= self.measured) & (self.measured <= self.predicted_high)

    @property
    def p0_covered(self) -> np.ndarray:
        """Questions whose exact p0 lies in the Jeffreys interval (training plays no part)."""
        return (self.p0_low <= self.p0_exact) & (self.p0_exact <= self.p0_high)

    @property
    def coverage(self) -> float:
        return float(self.covered.mean())

    @property
    def mae_exact(self) -> float:
        """mean |measured - predicted_exact|"""
        return float(np.abs(self.measured - self.predicted_exact).mean())

    @property
    def mae_sampled(self) -> float:
        """mean |measured - predicted| (the prediction from the sampled p0)"""
        return float(np.abs(self.measured - self.predicted).mean())

    @property
    def mae_reference(self) -> float:
        """mean |measured - p0_exact|: how far training moved P(correct)"""
        return float(np.abs(self.measured - self.p0_exact).mean())

    @property
    def mean_stderr(self) -> float:
        return float(self.stderr.mean())

    def summary(self) -> dict[str, Any]:
        """The headline numbers, as plain JSON values."""
        return {
            "questions": len(self.p0_exact),
            "n": self.config.n,
            "trainer": self.config.trainer,
            "algo": self.config.algo,
            "mae_exact": self.mae_exact,
            "mae_sampled": self.mae_sampled,
            "mae_reference": self.mae_reference,
            "mean_stderr": self.mean_stderr,
            "coverage": self.coverage,
            "covered": int(self.covered.sum()),
            "p0_covered": int(self.p0_covered.sum()),
            "expected_covered": float(self.expected_coverage.sum()),
            "coverage_pvalue": coverage_pvalue(int(self.covered.sum()), self.expected_coverage),
            "level": INTERVAL_LEVEL,
            "seconds": self.seconds,
        }

    def __repr__(self) -> str:
        return (
            f"EndToEndResult(questions={len(self.p0_exact)}, n={self.config.n}, trainer={self.config.trainer}, "
            f"mae_exact={self.mae_exact:.4f}, mean_stderr={self.mean_stderr:.4f}, "
            f"covered={int(self.covered.sum())}/{len(self.p0_exact)} (expected {self.expected_coverage.sum():.1f}))"
        )


def jeffreys_coverage(p: np.ndarray, n: int, level: float = INTERVAL_LEVEL) -> np.ndarray:
    """P(Jeffreys interval from Binomial(n, p) counts holds p), per entry of ``p``.

    Sum over k = 0..n of Binom(k; n, p) for the k whose interval contains p.
    """
    from scipy.stats import binom

    p = np.asarray(p, dtype=float)
    k = np.arange(n + 1)
    low, high = jeffreys_interval(np.full(n + 1, n), k, level)
    inside = (low[None, :] <= p[:, None]) & (p[:, None] <= high[None, :])
    return np.sum(binom.pmf(k[None, :], n, p[:, None]) * inside, axis=1)


def coverage_pvalue(covered: int, probs: np.ndarray) -> float:
    """Two-sided p-value of ``covered`` successes among independent Bernoulli(probs).

    The Poisson-binomial distribution by convolution; the p-value is
    min(1, 2 min(P(X <= covered), P(X >= covered))).
    """
    pmf = np.array([1.0])
    for q in np.asarray(probs, dtype=float):
        pmf = np.convolve(pmf, [1.0 - q, q])
    low = float(pmf[: covered + 1].sum())
    high = float(pmf[covered:].sum())
    return min(1.0, 2.0 * min(low, high))


def _train_ours(config: EndToEndConfig, task, tokenizer, reference, out: Path | None) -> tuple[np.ndarray, np.ndarray]:
    policy = copy.deepcopy(reference)
    for p in policy.parameters():
        p.requires_grad_(True)
    run_dir = out / "train" if out is not None else None
    result = train_lm(policy, reference, tokenizer, task, config.algo, config.experiment.train, out_dir=run_dir)
    idx, ci = np.arange(len(task)), task.correct_index()
    return result.mean_policy[idx, ci], result.stderr[idx, ci]


#: how a trainer other than the project's is run: ``(config, out_dir or None) -> (measured, stderr)``
TrainEndPoints = Callable[[EndToEndConfig, Path | None], tuple[np.ndarray, np.ndarray]]


def measure_predict_train(
    config: EndToEndConfig = EndToEndConfig(),
    out_dir: str | Path | None = None,
    train: TrainEndPoints | None = None,
) -> EndToEndResult:
    """Run the four steps of the module docstring on the built-in task; ``out_dir`` caches the reference.

    ``train`` runs step 3 for ``config.trainer == "trl"``: this module sits below the
    integrations and imports no TRL, so a TRL run goes through
    ``grpo_align.integrations.trl.measure_predict_train_trl``, which passes its trainer here.
    """
    import time

    if config.trainer == "trl" and train is None:
        raise InputError(
            "trainer",
            "'trl' runs through grpo_align.integrations.trl.measure_predict_train_trl(config, out_dir)",
        )

    start = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else None
    exp = config.experiment
    task, tokenizer, reference = build_reference(exp, out)
    probs = answer_probabilities(reference, tokenizer, task)
    p0_exact = probs.correct(task)

    # 1. measure, as `grpo-align measure` does
    prompts = builtin_prompts(task)
    rewards = sample_rewards(
        reference,
        tokenizer,
        prompts,
        exact_match("answer"),
        config.n,
        max_new_tokens=ANSWER_TOKENS,
        batch_size=config.batch_size,
        seed=config.sample_seed,
    )
    correct = rewards.sum(axis=1)
    n = np.full(len(task), config.n)

    # 2. predict, as `grpo-align predict` does for counts; and from the exact p0
    p0 = jeffreys_mean(n, correct)
    low, high = jeffreys_interval(n, correct)
    size = len(task)
    ends = binary_end_points(np.concatenate([p0, low, high, p0_exact]), config.algo)
    failed = [m for s, m in zip(ends.status, ends.message, strict=True) if s == "failed"]
    if failed:
        raise InputError("algo", f"no end point for {config.algo}: {failed[0]}")
    pred = ends.predicted
    idx, ci = np.arange(size), task.correct_index()
    full = predict(task, probs, config.algo).grpo[idx, ci]

    # 3. train and measure the end point
    if config.trainer == "trl":
        assert train is not None
        measured, stderr = train(config, out)
    else:
        measured, stderr = _train_ours(config, task, tokenizer, reference, out)

    return EndToEndResult(
        config=config,
        p0_exact=p0_exact,
        correct=correct,
        p0=p0,
        p0_low=low,
        p0_high=high,
        predicted_exact=pred[3 * size :],
        predicted_full=full,
        predicted=pred[:size],
        predicted_low=pred[size : 2 * size],
        predicted_high=pred[2 * size : 3 * size],
        measured=np.asarray(measured, dtype=float),
        stderr=np.asarray(stderr, dtype=float),
        expected_coverage=jeffreys_coverage(p0_exact, config.n),
        seconds=time.perf_counter() - start,
    )
