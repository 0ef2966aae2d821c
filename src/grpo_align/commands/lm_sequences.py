"""The sequence experiment's summary: per-answer z-scores, the verdict, the Markdown tables.

Pure Python and numpy (no torch): ``grpo-align lm --from-summary FILE`` prints a stored
run's tables without the ``lm`` extra. ``lm.sequences.run_sequence_experiment`` and the
TRL sequence run (``integrations.trl``) write the summary with ``sequence_summary``.

The verdict (docs/lm.md, "Answers of different lengths with a shared prefix"):

* z-scores: ``z = (measured - predicted) / stderr`` per question and answer, ``stderr`` the
  batch-means standard error of the tail mean (``training.stats.tail_statistics``) with
  ``n_batches - 1`` degrees of freedom;
* every run's |z| against its own prediction below the family-wise bound: the two-sided
  Student-t quantile at ``alpha / N`` (Bonferroni over the N z-scores of all runs), with
  ``n_batches - 1`` degrees of freedom;
* every run nearer its own prediction than any other setting's: the mean absolute error to
  the nearest other prediction exceeds the one to its own by more than the run's mean
  standard error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from grpo_align.errors import InputError

__all__ = [
    "ALPHA",
    "SUMMARY_KIND",
    "family_wise_bound",
    "is_sequence_summary",
    "sequence_markdown",
    "sequence_summary",
    "setting_name",
]

#: family-wise level of the verdict
ALPHA = 1e-3
#: the ``kind`` field that marks a sequence-experiment summary
SUMMARY_KIND = "lm-sequences"


def setting_name(algo: Any) -> str:
    """Short name of a setting: its aggregation, or ``<penalty>_in_reward`` when the penalty
    sits in the reward (the aggregation then weighs no penalty and, with a shift
    normalisation and k1, does not move the end point: THEORY.md 10.7)."""
    if algo.penalty_in == "reward":
        return f"{algo.penalty}_in_reward"
    return str(algo.aggregation)


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
    return float(stats.t.ppf(1 - alpha / (2 * n_tests), dof))


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
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero stderr: an infinite z, refused by the bound
            z = {n: ((measured - predicted[n]) / stderr) for n in names}
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
                "within_bound": bool(max_z < bound),
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


def is_sequence_summary(data: Any) -> bool:
    """Whether a parsed summary file is a sequence-experiment summary."""
    return isinstance(data, dict) and data.get("kind") == SUMMARY_KIND


def _check(data: Mapping[str, Any], path: Any) -> None:
    """Refuse a sequence summary missing what the tables read (one-line error)."""
    expected = "a summary written by grpo-align lm --task sequences"
    try:
        names = list(data["predicted"])
        n_q = len(data["questions"])
        for q in data["questions"]:
            assert len(q["candidates"]) == len(q["reference"]) == len(q["rewards"])
        for run in data["runs"]:
            assert run["name"] in names
            assert np.asarray(run["measured"], dtype=float).shape == np.asarray(run["stderr"], dtype=float).shape
            assert len(run["measured"]) == n_q
            for n in names:
                float(run["mae"][n])
            float(run["mean_stderr"])
        float(data["verdict"]["bound"])
    except (KeyError, TypeError, ValueError, AssertionError):
        raise InputError("--from-summary", f"{expected}; {path} lacks a field or has a malformed one") from None


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def sequence_markdown(data: Mapping[str, Any], path: Any = "the summary") -> str:
    """Two Markdown tables of a sequence summary: the runs against every prediction, then
    every answer's reference, predictions and measurements.

    Table 1, one row per run: mean |measured - predicted| against each setting's prediction
    (the run's own in bold), its mean standard error, max |z| against its own prediction,
    the margin to the nearest other prediction, and the verdict. Table 2, one row per
    question and answer: reward, reference, each setting's prediction, and each run's
    measurement with its standard error and z-score.
    """
    _check(data, path)
    names = list(data["predicted"])
    runs = data["runs"]
    verdict = data["verdict"]
    bound = float(verdict["bound"])
    head = ["run", *(f"vs {n}" for n in names), "mean stderr", "max \\|z\\|", "margin", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for run in runs:
        cells = [run["name"]]
        for n in names:
            cell = _f(float(run["mae"][n]), 4)
            cells.append(f"**{cell}**" if n == run["name"] else cell)
        max_z = float(np.max(np.abs(np.asarray(run["z"], dtype=float))))
        ok = max_z < bound and float(run["margin"]) > float(run["mean_stderr"])
        cells += [
            _f(float(run["mean_stderr"]), 4),
            f"{max_z:.1f}",
            _f(float(run["margin"]), 4),
            "pass" if ok else "fail",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    table1 = "\n".join(lines) + "\n"

    head2 = ["question", "answer", "reward", "reference", *(f"pred. {n}" for n in names)]
    head2 += [f"run {r['name']} (z)" for r in runs]
    lines = ["| " + " | ".join(head2) + " |", "|---:|---|" + "---:|" * (len(head2) - 2)]
    for c, q in enumerate(data["questions"]):
        for k, cand in enumerate(q["candidates"]):
            cells = [str(c), cand, f"{float(q['rewards'][k]):g}", _f(float(q["reference"][k]))]
            cells += [_f(float(data["predicted"][n][c][k])) for n in names]
            for run in runs:
                m, se = float(run["measured"][c][k]), float(run["stderr"][c][k])
                cells.append(f"{_f(m)} ± {_f(se, 4)} ({float(run['z'][c][k]):+.1f})")
            lines.append("| " + " | ".join(cells) + " |")
    table2 = "\n".join(lines) + "\n"
    tail = f"Verdict: {'pass' if verdict['pass'] else 'fail'}; rule: {verdict['rule']}.\n"
    return table1 + "\n" + tail + "\n" + table2
