"""A stored sequence-experiment summary parsed and printed: ``grpo-align lm --from-summary FILE``.

Pure Python and numpy (no torch): a stored run's tables print without the ``lm`` extra.
The summary and its verdict are built by ``grpo_align.verify.sequence_summary`` (the one
rule of "training matches the theory": z-scores, the family-wise Student-t bound over
``n_batches - 1`` degrees of freedom, the separation from the other settings; docs/lm.md,
"Answers of different lengths with a shared prefix"); this module checks a parsed file
has what the tables read and writes the Markdown. ``ALPHA``, ``SUMMARY_KIND``,
``family_wise_bound``, ``sequence_summary`` and ``setting_name`` are re-exported from
``grpo_align.verify``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from grpo_align.errors import InputError
from grpo_align.verify import (
    ALPHA,
    SUMMARY_KIND,
    family_wise_bound,
    sequence_run_passes,
    sequence_summary,
    setting_name,
)

__all__ = [
    "ALPHA",
    "SUMMARY_KIND",
    "family_wise_bound",
    "is_sequence_summary",
    "sequence_markdown",
    "sequence_summary",
    "setting_name",
]


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
        ok = sequence_run_passes(run, bound)
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
