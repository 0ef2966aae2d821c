"""Does training match the theory? The one rule, for ``train``, ``lm``, the report and TRL runs.

A run's measurement is a tail mean (the Polyak average over the last steps) with a
batch-means standard error from ``n_batches`` batch means (``training.stats``). The rule:

* z-scores: ``z = (measured - predicted) / stderr`` per output (``z_scores``; 0 where the
  gap and the standard error both vanish, +-inf where only the standard error does, which
  fails any bound);
* under a right prediction each z is a Student-t variable with ``n_batches - 1`` degrees of
  freedom (the standard error is estimated from ``n_batches`` nearly independent, nearly
  normal batch means: Flegal & Jones 2010). A normal quantile would treat the estimated
  error as known and, with 20 batches, reject a right prediction far more often than the
  stated rate; the t quantile is the honest one;
* family-wise bound: every |z| of the family (all outputs of all runs judged together) at
  most the two-sided t quantile at level ``alpha / N`` (Bonferroni over the N z-scores,
  ``family_wise_bound``), so the chance that a right prediction fails is at most ``alpha``
  (``ALPHA`` = 1e-3 unless a caller says otherwise). ``z_verdict`` applies it.

The sequence experiment (``grpo-align lm --task sequences`` and its TRL twin) adds one
condition (``sequence_summary``): every run nearer its own prediction than any other
setting's, by more than its mean standard error.

Base layer: numpy and scipy only (no torch), so a stored summary is judged and printed
without the training extras; ``commands/`` only parses and prints what this module decides.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grpo_align.errors import InputError

__all__ = [
    "ALPHA",
    "SUMMARY_KIND",
    "ZVerdict",
    "family_wise_bound",
    "sequence_run_passes",
    "sequence_summary",
    "setting_name",
    "within_bound",
    "z_scores",
    "z_verdict",
]

#: family-wise false-alarm rate of every verdict when the prediction is right
ALPHA = 1e-3
#: the ``kind`` field that marks a sequence-experiment summary
SUMMARY_KIND = "lm-sequences"


def z_scores(gap: Any, stderr: Any) -> np.ndarray:
    """``gap / stderr`` per output: 0 where both vanish, +-inf (the gap's sign) where only
    ``stderr`` does."""
    gap = np.asarray(gap, dtype=float)
    stderr = np.asarray(stderr, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            stderr > 0, gap / np.where(stderr > 0, stderr, 1.0), np.where(gap == 0, 0.0, np.copysign(np.inf, gap))
        )


def family_wise_bound(n_tests: int, dof: int, alpha: float = ALPHA) -> float:
    """Two-sided Student-t quantile with ``dof`` degrees of freedom at level ``alpha / n_tests``.

    Each z-score is a tail-mean error over a batch-means standard error estimated from
    ``dof + 1`` batch means, a t variable with ``dof`` degrees of freedom when the batches
    are independent and normal; Bonferroni over ``n_tests`` keeps the family-wise level at
    ``alpha``.
    """
    from scipy import stats

    if n_tests < 1 or dof < 1:
        raise InputError("n_tests/dof", f"expected positive integers, got {n_tests}, {dof}")
    return float(stats.t.isf(alpha / (2 * n_tests), dof))


def within_bound(max_abs_z: float, bound: float) -> bool:
    """The comparison of every verdict: the largest |z| at most the bound (NaN fails)."""
    return bool(max_abs_z <= bound)


@dataclass(frozen=True)
class ZVerdict:
    """The family-wise test of a family of z-scores (``z_verdict``)."""

    n_tests: int
    dof: int
    alpha: float
    bound: float
    max_abs_z: float
    #: index of the member (in the order given) holding the largest |z|
    worst: int
    passed: bool

    @property
    def rule(self) -> str:
        return (
            f"family-wise bound {self.bound:.2f} at alpha = {self.alpha:g} over {self.n_tests} outputs "
            f"(two-sided Student t, {self.dof} degrees of freedom, Bonferroni)"
        )


def z_verdict(members: Iterable[Any], n_batches: int, alpha: float = ALPHA) -> ZVerdict:
    """Judge a family of z-scores (one array per run) with ``n_batches`` batch means each.

    ``n_tests`` counts every z of every member (at least 1); a member without any z counts
    |z| = 0.
    """
    zs = [np.abs(np.asarray(z, dtype=float)).ravel() for z in members]
    n_tests = int(sum(z.size for z in zs))
    bound = family_wise_bound(max(n_tests, 1), n_batches - 1, alpha)
    worst_each = [float(np.max(z)) if z.size else 0.0 for z in zs]
    worst = int(np.argmax(worst_each)) if worst_each else 0
    max_abs_z = worst_each[worst] if worst_each else 0.0
    return ZVerdict(
        n_tests=n_tests,
        dof=n_batches - 1,
        alpha=alpha,
        bound=bound,
        max_abs_z=max_abs_z,
        worst=worst,
        passed=within_bound(max_abs_z, bound),
    )


def setting_name(algo: Any) -> str:
    """Short name of a setting: its aggregation, or ``<penalty>_in_reward`` when the penalty
    sits in the reward (the aggregation then weighs no penalty and, with a shift
    normalisation and k1, does not move the end point: THEORY.md 10.7)."""
    if algo.penalty_in == "reward":
        return f"{algo.penalty}_in_reward"
    return str(algo.aggregation)


def sequence_summary(
    *,
    trainer: str,
    config: Mapping[str, Any],
    questions: Sequence[Mapping[str, Any]],
    predicted: Mapping[str, np.ndarray],
    runs: Sequence[Mapping[str, Any]],
    n_batches: int,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """The summary JSON of a sequence experiment, with every run's errors and the verdict.

    Parameters
    ----------
    trainer : "grpo_align" (``train_lm``) or "trl" (TRL's ``GRPOTrainer``).
    config : the settings of the experiment (plain JSON values).
    questions : per question ``prompt``, ``candidates``, ``rewards``, ``reference``.
    predicted : setting name -> (C, K) predicted answer distribution (before training).
    runs : per run ``name`` (its setting: a key of ``predicted``), ``algo``, ``measured``
        (C, K), ``stderr`` (C, K), ``other`` (C,), and any further fields (kept).
    n_batches : batches of the standard error (its degrees of freedom + 1).
    """
    names = list(predicted)
    out_runs = []
    n_tests = sum(np.asarray(r["measured"]).size for r in runs)
    bound = family_wise_bound(max(1, n_tests), n_batches - 1, alpha)
    for run in runs:
        if run["name"] not in predicted:
            raise InputError("runs", f"run {run['name']!r} has no prediction; expected one of {names}")
        measured = np.asarray(run["measured"], dtype=float)
        stderr = np.asarray(run["stderr"], dtype=float)
        mae = {n: float(np.mean(np.abs(measured - predicted[n]))) for n in names}
        z = {n: z_scores(measured - predicted[n], stderr) for n in names}  # a zero stderr: an infinite z
        own = run["name"]
        others = [n for n in names if n != own]
        mean_se = float(np.mean(stderr))
        margin = min((mae[n] for n in others), default=math.inf) - mae[own]
        max_z = float(np.max(np.abs(z[own])))
        out_runs.append(
            {
                **{k: v for k, v in run.items() if k not in ("measured", "stderr")},
                "measured": measured,
                "stderr": stderr,
                "mae": mae,
                "max_abs_z": {n: float(np.max(np.abs(z[n]))) for n in names},
                "z": z[own],
                "mean_stderr": mean_se,
                "margin": margin,
                "within_bound": within_bound(max_z, bound),
                "separated": bool(margin > mean_se),
            }
        )
    return {
        "kind": SUMMARY_KIND,
        "trainer": trainer,
        "config": dict(config),
        "questions": [dict(q) for q in questions],
        "predicted": {n: np.asarray(p) for n, p in predicted.items()},
        "runs": out_runs,
        "verdict": {
            "alpha": alpha,
            "tests": n_tests,
            "dof": n_batches - 1,
            "bound": bound,
            "rule": (
                f"every |z| against the run's own prediction below {bound:.2f} (two-sided Student-t, "
                f"{n_batches - 1} degrees of freedom, Bonferroni over {n_tests} z-scores, family-wise alpha {alpha:g}), "
                "and every run's mean error to its own prediction smaller than to any other setting's "
                "by more than its mean standard error"
            ),
            "pass": all(r["within_bound"] and r["separated"] for r in out_runs),
        },
    }


def sequence_run_passes(run: Mapping[str, Any], bound: float) -> bool:
    """One stored run of a sequence summary against the bound: within it and separated."""
    max_z = float(np.max(np.abs(np.asarray(run["z"], dtype=float))))
    return within_bound(max_z, bound) and float(run["margin"]) > float(run["mean_stderr"])
