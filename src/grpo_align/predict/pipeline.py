"""``predict``: a STATS file and a ``GRPO`` in, per-prompt end points and a page out.

The file streams through in chunks: read a chunk, solve its prompts as one batch, append
its rows to ``predictions.csv`` (and ``.parquet``). Only running sums and a uniform random
sample of at most ``SAMPLE_SIZE`` prompts (for the figures and the planner) are kept, so
memory does not grow with the file (the ids are kept to catch duplicates).

The outputs of one run land together or not at all. The input's header and first chunk
are read before anything is written, so an empty or malformed start leaves the output
folder as it was (not even created). The run then holds the folder's lock
(``grpo_align.files.folder_lock``, the one ``train`` holds: a second run on the same
folder stops at once), writes every output into a hidden staging folder inside it, and
moves the set (``OUTPUTS``) into place together once it is complete
(``grpo_align.files.staged_outputs``): an interrupt or an error at any point leaves the
earlier run's complete set or this run's, and an output this run does not write (the page
under ``html=False``, the Parquet twin without pyarrow) is removed rather than left beside
another run's files.

Prompts whose solve failed have no results (NaN) and stay out of the means; the summary
says how many failed and how many prompts the means are over (``means_over``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from grpo_align.errors import InputError
from grpo_align.files import atomic_write_json, atomic_write_text, check_folder, folder_lock, staged_outputs
from grpo_align.predict.config import SpecSource
from grpo_align.predict.engine import binary_end_points, predict_chunk, reward_end_points
from grpo_align.predict.outputs import PredictionWriter, parquet_available
from grpo_align.predict.stats import DEFAULT_CHUNK_SIZE, StatsReader
from grpo_align.theory import GRPO
from grpo_align.theory.stationary import ROOT_CHOICE_RULE

__all__ = [
    "OUTPUTS",
    "PLANNER_BETAS",
    "PLANNER_GROUPS",
    "SAMPLE_SIZE",
    "PredictSummary",
    "Sample",
    "means_note",
    "planner",
    "run_predict",
]

#: prompts kept (uniformly at random) for the figures
SAMPLE_SIZE = 20_000
#: prompts of that sample the planner solves at every (G, beta)
DEFAULT_PLANNER_PROMPTS = 200
#: the planner's grid: beta on a log scale, and these group sizes beside the config's own
PLANNER_BETAS = tuple(float(b) for b in np.geomspace(1e-3, 10.0, 13))
PLANNER_GROUPS = (2, 4, 8, 16)
SEED = 0

#: every file a run can write, in the order they are moved into place (the summary last)
OUTPUTS = ("predictions.csv", "predictions.parquet", "index.html", "summary.json")


@dataclass
class Sample:
    """A uniform random sample of prompts: bottom-k of independent uniform keys.

    Holds the figures' columns and what the planner needs to solve the prompts again
    (p0 for binary prompts, the rewards otherwise).
    """

    size: int
    keys: np.ndarray = field(default_factory=lambda: np.empty(0))
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    rewards: list[np.ndarray] = field(default_factory=list)

    NAMES = ("p0", "p0_low", "p0_high", "predicted", "predicted_low", "predicted_high", "rlhf", "kl")

    def add(self, keys: np.ndarray, columns: dict[str, Any], rewards: list[np.ndarray] | None) -> None:
        merged = np.concatenate([self.keys, keys])
        cols = {
            name: np.concatenate([self.columns.get(name, np.empty(0)), np.asarray(columns[name], dtype=float)])
            for name in self.NAMES
        }
        all_rewards = [*self.rewards, *(rewards or [])]
        keep = np.argsort(merged, kind="stable")[: self.size]
        self.keys = merged[keep]
        self.columns = {name: c[keep] for name, c in cols.items()}
        self.rewards = [all_rewards[i] for i in keep] if all_rewards else []

    def __len__(self) -> int:
        return int(self.keys.size)


@dataclass
class PredictSummary:
    """What ``summary.json`` holds (plus the sample and the planner for the page)."""

    data: dict[str, Any]
    sample: Sample
    planner: dict[str, Any] | None
    failed: list[tuple[str, str]]


def _source_json(source: SpecSource) -> dict[str, Any]:
    return dataclasses.asdict(source) if dataclasses.is_dataclass(source) else dict(source)


def planner(
    sample: Sample, kind: str, algo: GRPO, prompts: int, betas: tuple[float, ...] = PLANNER_BETAS
) -> dict[str, Any]:
    """Mean end point and mean KL over ``prompts`` sampled prompts against beta, for several G.

    The groups are ``PLANNER_GROUPS`` and the config's own G; beta runs over ``betas`` and
    the config's own beta (where positive). Each (G, beta) is one batched solve with the
    config's other fields.
    """
    take = min(prompts, len(sample))
    groups = sorted({*PLANNER_GROUPS, algo.group_size}, key=lambda g: (g == math.inf, g))
    grid = sorted({*betas, *([algo.beta] if algo.beta > 0 else [])})
    mean_pred = np.full((len(groups), len(grid)), np.nan)
    mean_kl = np.full((len(groups), len(grid)), np.nan)
    p0 = sample.columns["p0"][:take] if take else np.empty(0)
    rewards = sample.rewards[:take]
    for i, g in enumerate(groups):
        for j, b in enumerate(grid):
            variant = algo.replace(group_size=g, beta=b)
            if take == 0:
                continue
            out = reward_end_points(rewards, variant)[1] if kind == "rewards" else binary_end_points(p0, variant)
            ok = np.array([s != "failed" for s in out.status])
            if ok.any():
                mean_pred[i, j] = float(np.mean(out.predicted[ok]))
                mean_kl[i, j] = float(np.mean(out.kl[ok]))
    return {
        "prompts": take,
        "groups": groups,
        "betas": grid,
        "mean_predicted": mean_pred,
        "mean_kl": mean_kl,
        "config": {"group_size": algo.group_size, "beta": algo.beta},
    }


def means_note(data: dict[str, Any]) -> str | None:
    """The line saying which prompts the means are over, where some solves failed (else None)."""
    failed, prompts = data["failed"], data["prompts"]
    if not failed:
        return None
    if failed == prompts:
        return "no means: the solve failed for every prompt (status 'failed' in predictions.csv)"
    return f"means over {data['means_over']} of {prompts} prompts ({failed} failed, left out)"


def run_predict(
    stats: str | Path,
    algo: GRPO,
    source: SpecSource,
    out_dir: str | Path,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    planner_prompts: int = DEFAULT_PLANNER_PROMPTS,
    parquet: bool | None = None,
    on_chunk: Callable[[int, int | None], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    html: bool = True,
) -> PredictSummary:
    """Predict every prompt of ``stats`` under ``algo``; write predictions, summary and page.

    ``on_start(total_rows or None)`` and ``on_chunk(rows_done, total_rows or None)`` report
    progress. Returns the summary (its ``failed`` lists prompts whose solve failed). The
    outputs replace an earlier run's in ``out_dir`` all together (see the module
    docstring). Raises ``InputError`` on the field ``out_dir`` where that is not a folder
    or is in use by another run, and on the file where it has no rows.
    """
    start = time.perf_counter()
    out = check_folder(out_dir, "out_dir")
    reader = StatsReader(stats, chunk_size)
    chunks = iter(reader)
    first = next(chunks, None)  # an empty input is refused before anything is written
    if first is None:
        raise InputError(str(stats), "has no rows; expected one row per prompt")
    total = reader.total_rows()
    parquet = parquet_available() if parquet is None else parquet
    with folder_lock(out, "out_dir"), staged_outputs(out, OUTPUTS) as stage:
        if on_start is not None:
            on_start(total)
        rng = np.random.default_rng(SEED)
        sample = Sample(SAMPLE_SIZE)
        sums = {name: 0.0 for name in ("p0", "predicted", "predicted_low", "predicted_high", "rlhf", "kl")}
        status_counts: dict[str, int] = {}
        failed: list[tuple[str, str]] = []
        rows = 0
        with PredictionWriter(stage, parquet) as writer:
            for chunk in itertools.chain([first], chunks):
                cols = predict_chunk(chunk, algo)
                writer.write(cols)  # type: ignore[arg-type]
                rows += len(chunk)
                ok = np.array([s != "failed" for s in cast(list[str], cols["status"])])
                for name in sums:
                    sums[name] += float(np.sum(np.asarray(cols[name], dtype=float)[ok]))
                for pid, status, message in zip(cols["prompt_id"], cols["status"], cols["message"], strict=True):  # type: ignore[call-overload]
                    status_counts[status] = status_counts.get(status, 0) + 1
                    if status == "failed":
                        failed.append((pid, message))
                sample.add(rng.random(len(chunk)), cols, chunk.rewards)
                if on_chunk is not None:
                    on_chunk(rows, total)
        plan = planner(sample, reader.kind, algo, planner_prompts) if planner_prompts > 0 else None
        means_over = rows - len(failed)
        means = {f"mean_{k}": (v / means_over if means_over else math.nan) for k, v in sums.items()}
        if reader.kind != "counts":
            means["mean_predicted_low"] = means["mean_predicted_high"] = math.nan
        if algo.beta == 0:
            means["mean_rlhf"] = math.nan
        data: dict[str, Any] = {
            "prompts": rows,
            **means,
            "status": status_counts,
            "failed": len(failed),
            "means_over": means_over,
            "input": {"path": str(stats), "format": reader.format, "kind": reader.kind},
            "quantity": "p(correct)" if reader.kind != "rewards" else "mean reward",
            "spec": dataclasses.asdict(algo),
            "source": _source_json(source),
            "root_rule": f"{ROOT_CHOICE_RULE} (every root counted in 'roots')",
            "interval": "95% equal-tailed Jeffreys interval, Beta(correct + 1/2, n - correct + 1/2)"
            if reader.kind == "counts"
            else None,
            "sample": {"prompts": len(sample), "of": rows},
            "planner": plan,
            "outputs": ["predictions.csv", *(["predictions.parquet"] if writer.parquet else []), "summary.json"]
            + (["index.html"] if html else []),
        }
        summary = PredictSummary(data, sample, plan, failed)
        if html:
            from grpo_align.predict.html import render_page

            atomic_write_text(stage / "index.html", render_page(summary, algo, reader.kind))
        data["seconds"] = time.perf_counter() - start
        atomic_write_json(stage / "summary.json", data)
    return summary
