"""Predict from sampled pass rates, then train: ``measure -> predict -> train`` on the built-in task.

What a user of ``grpo-align measure`` and ``grpo-align predict`` does, checked end to end by
``grpo_align.lm.endtoend.measure_predict_train``: sample n completions per question from the
reference model and count the correct ones; predict each question's end point from the
Jeffreys estimate of its pass rate and at the ends of its 95% interval (and, as a control,
from the exact pass rate by teacher forcing); train the model with the same GRPO spec and
measure each question's end point exactly.

Two rules, both from the module docstring of ``lm.endtoend``:

* exact p0: the mean |measured - predicted| is within ``WITHIN_STDERR`` mean standard errors
  of the training (batch means over the tail), while training moved P(correct) by more than
  ``MOVED_STDERR`` standard errors (so predicting "no change" fails);
* sampled p0: the end point increases with p0, so the predicted interval holds the end
  point exactly when the Jeffreys interval holds p0. The number of covered questions is a
  Poisson-binomial variable whose probabilities are the interval's exact coverage at each
  question's p0; its two-sided p-value must exceed ``ALPHA``.

--quick runs the small setting of the tests (12 questions, a one-layer model, 600 steps);
the full report the built-in task of ``grpo-align measure`` (24 questions, 1500 steps). torch
runs on one thread, as in the "lm" section. Needs the ``lm`` extra; skipped without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from grpo_align.extras import require
from grpo_align.report.model import JSON, Cell, FigureOut, ReportConfig, Table, Verdict
from grpo_align.report.style import color, new_figure
from grpo_align.theory.spec import GRPO

KEY = "predict"
TITLE = "Predicting a trained language model's end points from sampled pass rates"
#: exact-p0 prediction: mean |error| at most this many mean standard errors
WITHIN_STDERR = 3.0
#: training must move P(correct) by more than this many mean standard errors
MOVED_STDERR = 10.0
#: two-sided p-value of the covered count below which the coverage is rejected
ALPHA = 1e-3
#: the predict engine's binary end point against the full answer-distribution solve
ROUTES_TOL = 1e-9
ALGO = GRPO(group_size=8, beta=0.5)
SAMPLES = 16

CLAIM = (
    "Sampling 16 completions per question from a real (tiny) GPT-2 and predicting with grpo-align predict gives "
    "each question's GRPO end point before training: an interval from the pass rate's 95% Jeffreys interval and a "
    "point from the exact pass rate. Rules tested after training the model with GRPO (β = 0.5, G = 8): the mean "
    f"|measured − predicted| from the exact pass rate is at most {WITHIN_STDERR:g} × the training's mean standard "
    f"error, while training moved P(correct) by more than {MOVED_STDERR:g} standard errors; the number of questions "
    "whose measured end point falls inside its predicted interval is consistent with the interval's exact coverage "
    f"(two-sided Poisson-binomial p-value above {ALPHA:g}); the predict engine's binary end point equals the full "
    f"answer-distribution solve to {ROUTES_TOL:g}."
)

NOTES = (
    "The quick report runs the small setting of the tests (12 questions, a one-layer model, 600 training steps); "
    "the full report the built-in task of grpo-align measure (24 questions, 1500 steps).",
)


@dataclass(frozen=True)
class PredictData:
    """Per question (arrays of length C) and the summary of one measure -> predict -> train run."""

    p0_exact: np.ndarray
    correct: np.ndarray
    p0_low: np.ndarray
    p0_high: np.ndarray
    predicted_exact: np.ndarray
    predicted_full: np.ndarray
    predicted: np.ndarray
    predicted_low: np.ndarray
    predicted_high: np.ndarray
    end_point: np.ndarray
    stderr: np.ndarray
    expected_coverage: np.ndarray
    #: two-sided Poisson-binomial p-value of the covered count (``lm.endtoend.coverage_pvalue``)
    pvalue: float
    n: int
    steps: int
    config: dict[str, JSON]
    tables: tuple[Table, ...]

    @property
    def covered(self) -> np.ndarray:
        return (self.predicted_low <= self.end_point) & (self.end_point <= self.predicted_high)

    @property
    def mae_exact(self) -> float:
        return float(np.abs(self.end_point - self.predicted_exact).mean())

    @property
    def mae_sampled(self) -> float:
        return float(np.abs(self.end_point - self.predicted).mean())

    @property
    def mae_reference(self) -> float:
        return float(np.abs(self.end_point - self.p0_exact).mean())

    @property
    def mean_stderr(self) -> float:
        return float(self.stderr.mean())

    @property
    def routes_gap(self) -> float:
        d = np.abs(self.predicted_exact - self.predicted_full)
        return float(d.max()) if d.size and np.all(np.isfinite(d)) else float("inf")

    def measured(self) -> dict[str, JSON]:
        return dict(
            available=True,
            questions=int(self.end_point.size),
            n=self.n,
            steps=self.steps,
            mae_exact=self.mae_exact,
            mean_stderr=self.mean_stderr,
            mae_sampled=self.mae_sampled,
            mae_reference=self.mae_reference,
            covered=int(self.covered.sum()),
            expected_covered=float(self.expected_coverage.sum()),
            coverage_pvalue=self.pvalue,
            routes_gap=self.routes_gap,
        )

    def json(self) -> dict[str, JSON]:
        return dict(
            rule=dict(within_stderr=WITHIN_STDERR, moved_stderr=MOVED_STDERR, alpha=ALPHA, routes_tol=ROUTES_TOL),
            config=dict(self.config),
            p0_exact=self.p0_exact,
            correct=self.correct,
            p0_low=self.p0_low,
            p0_high=self.p0_high,
            predicted_exact=self.predicted_exact,
            predicted_full=self.predicted_full,
            predicted=self.predicted,
            predicted_low=self.predicted_low,
            predicted_high=self.predicted_high,
            end_point=self.end_point,
            stderr=self.stderr,
            expected_coverage=self.expected_coverage,
        )


def endtoend_config(cfg: ReportConfig) -> Any:
    """The ``EndToEndConfig`` of the section: the tests' small setting with --quick, the built-in task else."""
    from dataclasses import replace

    from grpo_align.lm.endtoend import EndToEndConfig
    from grpo_align.lm.experiment import LMExperimentConfig
    from grpo_align.lm.model import ModelConfig
    from grpo_align.lm.sft import SFTConfig
    from grpo_align.lm.trainer import LMTrainConfig

    if cfg.quick:
        # tests/test_measure.py's SMALL: 12 questions, a one-layer model fitted for 150 steps
        exp = LMExperimentConfig(
            n_binary=6,
            n_choice=6,
            model=ModelConfig(n_layer=1, n_embd=32, n_head=2),
            sft=SFTConfig(steps=150, lr=1e-2),
            train=LMTrainConfig(steps=600, lr=3e-3, eval_every=5),
        )
    else:
        exp = LMExperimentConfig.quick()
    exp = replace(exp, seed=cfg.seed, train=replace(exp.train, seed=cfg.seed, checkpoint_every=0))
    return EndToEndConfig(experiment=exp, algo=ALGO, n=SAMPLES, sample_seed=cfg.seed)


def compute(cfg: ReportConfig) -> PredictData:
    """Measure, predict and train on the built-in task (one torch thread), nothing written to disk."""
    require("lm", f"report section '{KEY}'")  # without transformers the section is skipped, with the install command
    import torch

    from grpo_align.lm.endtoend import coverage_pvalue, measure_predict_train

    config = endtoend_config(cfg)
    cfg.status(f"measure, predict and train ({config.experiment.train.steps} steps)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = measure_predict_train(config, None)
    finally:
        torch.set_num_threads(threads)
    covered = (res.predicted_low <= res.measured) & (res.measured <= res.predicted_high)
    rows: list[list[Cell]] = [
        [f"q{i:02d}", int(res.correct[i]), res.p0_exact[i], res.predicted_low[i], res.predicted_high[i],
         res.predicted_exact[i], res.measured[i], res.stderr[i], "yes" if covered[i] else "no"]
        for i in range(res.measured.size)
    ]  # fmt: skip
    table = Table(
        "questions",
        ["question", f"correct of {config.n}", "exact p0", "predicted low", "predicted high",
         "predicted from exact p0", "measured", "stderr", "inside"],
        rows,
        f"GRPO β = {config.algo.beta:g}, G = {int(config.algo.group_size)}, {config.experiment.train.steps} steps, "
        f"seed {config.experiment.seed}. Predicted low/high: end points at the ends of the 95% Jeffreys interval of "
        "the sampled pass rate; measured: P(correct) by teacher forcing, averaged over the run's tail, with its "
        "batch-means standard error.",
    )  # fmt: skip
    return PredictData(
        p0_exact=np.asarray(res.p0_exact, float),
        correct=np.asarray(res.correct, float),
        p0_low=np.asarray(res.p0_low, float),
        p0_high=np.asarray(res.p0_high, float),
        predicted_exact=np.asarray(res.predicted_exact, float),
        predicted_full=np.asarray(res.predicted_full, float),
        predicted=np.asarray(res.predicted, float),
        predicted_low=np.asarray(res.predicted_low, float),
        predicted_high=np.asarray(res.predicted_high, float),
        end_point=np.asarray(res.measured, float),
        stderr=np.asarray(res.stderr, float),
        expected_coverage=np.asarray(res.expected_coverage, float),
        pvalue=coverage_pvalue(int(covered.sum()), res.expected_coverage),
        n=int(config.n),
        steps=int(config.experiment.train.steps),
        config=dict(
            questions=int(res.measured.size),
            n=int(config.n),
            beta=float(config.algo.beta),
            group_size=int(config.algo.group_size),
            steps=int(config.experiment.train.steps),
            lr=float(config.experiment.train.lr),
            seed=int(config.experiment.seed),
            sample_seed=int(config.sample_seed),
        ),
        tables=(table,),
    )


def rule_failures(data: PredictData) -> list[str]:
    """The rules the run breaks, in words (empty when it passes)."""
    bad = []
    if data.end_point.size == 0:
        return ["no question was measured"]
    if not data.routes_gap <= ROUTES_TOL:
        bad.append(f"the predict engine and the full solve differ by {data.routes_gap:.1e}")
    if not data.mae_exact <= WITHIN_STDERR * data.mean_stderr:
        bad.append(
            f"the exact-p0 prediction is off by {data.mae_exact:.4f}, more than {WITHIN_STDERR:g} × "
            f"{data.mean_stderr:.4f}"
        )
    if not data.mae_reference > MOVED_STDERR * data.mean_stderr:
        bad.append(f"training moved P(correct) by only {data.mae_reference:.4f}")
    if not data.pvalue > ALPHA:
        bad.append(f"the covered count has p-value {data.pvalue:.1e}")
    if not (np.all(data.predicted_low <= data.predicted) and np.all(data.predicted <= data.predicted_high)):
        bad.append("a point prediction lies outside its interval")
    return bad


def verdict(data: PredictData) -> Verdict:
    """Both rules of the module docstring, and the two prediction routes agree."""
    bad = rule_failures(data)
    if data.end_point.size == 0:
        return Verdict(False, "No question was measured.")
    text = (
        f"From the exact pass rate the prediction is off by {data.mae_exact:.4f} on average, against a mean standard "
        f"error of {data.mean_stderr:.4f} (the rule allows {WITHIN_STDERR:g} standard errors); training moved "
        f"P(correct) by {data.mae_reference:.3f}. From {data.n} samples per question the predicted interval held the measured end "
        f"point for {int(data.covered.sum())} of {data.end_point.size} questions, {data.expected_coverage.sum():.1f} "
        f"expected (two-sided p-value {data.pvalue:.2f}); the point prediction is off by {data.mae_sampled:.3f} on "
        f"average. The predict engine and the full answer-distribution solve agree to {data.routes_gap:.1e}."
    )
    if bad:
        text += " Broken: " + "; ".join(bad) + "."
    return Verdict(not bad, text)


def render(data: PredictData) -> list[FigureOut]:
    """Per question, sorted by the exact pass rate: predicted interval, exact-p0 prediction, measured end point."""
    order = np.argsort(data.p0_exact, kind="stable")
    x = np.arange(order.size)
    fig, axes = new_figure(max(6.5, 0.32 * order.size + 2.5), 4.0)
    ax = axes[0, 0]
    lo, hi, mid = data.predicted_low[order], data.predicted_high[order], data.predicted[order]
    ax.errorbar(
        x - 0.12,
        mid,
        yerr=np.vstack([mid - lo, hi - mid]),
        fmt="_",
        ms=8,
        color=color("k3"),
        elinewidth=1.6,
        capsize=3,
        label=f"predicted from {data.n} samples (95% interval)",
    )
    ax.plot(x, data.predicted_exact[order], "x", color=color("rlhf"), ms=6, label="predicted from the exact pass rate")
    inside = data.covered[order]
    ax.errorbar(
        x[inside] + 0.12,
        data.end_point[order][inside],
        yerr=2 * data.stderr[order][inside],
        fmt="o",
        ms=4,
        color=color("shift"),
        elinewidth=0.8,
        label="measured after training (±2 s.e.)",
    )
    if np.any(~inside):
        ax.errorbar(
            x[~inside] + 0.12,
            data.end_point[order][~inside],
            yerr=2 * data.stderr[order][~inside],
            fmt="o",
            ms=5,
            mfc="white",
            color=color("dr_grpo"),
            elinewidth=0.8,
            label="measured, outside the interval",
        )
    ax.plot(x, data.p0_exact[order], ".", color=color("reference"), ms=5, label="reference pass rate")
    ax.set_xticks(x, [f"q{i:02d}" for i in order], rotation=90, fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("question (sorted by the reference pass rate)")
    ax.set_ylabel("P(correct answer)")
    ax.set_title(
        f"{int(data.covered.sum())} of {data.end_point.size} inside, {data.expected_coverage.sum():.1f} expected"
    )
    ax.legend(fontsize=7.5, loc="lower right")
    return [
        FigureOut(
            "intervals",
            fig,
            "Each question's end point predicted before training from the sampled pass rate (bar: the 95% interval; "
            "tick: the Jeffreys mean) and from the exact pass rate (cross), against the end point measured after "
            "GRPO training (dot, ±2 standard errors). Grey: where the question started. A bar misses its dot when "
            "the sampled pass rate's interval misses the exact one (the cross then lies outside the bar too): about "
            "one question in twenty at the 95% level.",
        )
    ]
