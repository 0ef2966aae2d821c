"""``grpo-align lm [--quick] [--out DIR]``: GRPO on a tiny causal LM, predicted before training.

Fits a reference model to noisy labels, predicts every question's stationary answer
distribution for a few GRPO specifications (or the one given by --preset / --beta /
--group-size), trains each with GRPO, and prints predicted against
measured (mean absolute error of the correct answer's probability, beside RLHF's
logarithmic pooling and the reference). Writes DIR/summary.json, DIR/experiment.json,
DIR/runs/*/questions.json and the figures. An interrupted run resumes from its checkpoints.

``--markdown`` prints the table as a Markdown table instead (the docs' tables are this
output); ``--from-summary FILE`` trains nothing and prints the table of a ``summary.json``
an earlier run wrote (no torch needed).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from grpo_align.commands.lm_sequences import is_sequence_summary, sequence_markdown

#: the table's columns: header, summary.json key, format (one row per run)
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("beta", "beta", "g"),
    ("G", "group_size", "d"),
    ("steps", "steps", "d"),
    ("GRPO prediction", "mae", ".4f"),
    ("RLHF pooling", "mae_rlhf", ".4f"),
    ("reference", "mae_reference", ".4f"),
    ("stderr", "stderr", ".4f"),
    ("max error", "max_abs_error", ".4f"),
)

#: most torch threads (as ``TrainConfig.threads``; kept here so that --help loads no torch)
MAX_THREADS = 256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        choices=("answers", "sequences"),
        default="answers",
        help="answers: one-word answers (default); sequences: 'yes' / 'yes indeed it is true' / 'no', "
        "answers of different lengths with a shared prefix, under each aggregation and k1 in the reward "
        "(writes sequences.json, or trl_sequences.json with --trl)",
    )
    parser.add_argument("--quick", action="store_true", help="three runs of 1500 steps (about 3 minutes on 2 cores)")
    parser.add_argument("--out", type=Path, default=Path("lm-results"), help="output directory (default lm-results)")
    parser.add_argument("--steps", type=int, default=None, help="GRPO steps per run (overrides the preset)")
    parser.add_argument("--seed", type=int, default=0, help="seed of task, labels, model and sampler")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest for this tiny model)")
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    parser.add_argument(
        "--trl",
        action="store_true",
        help="train with TRL's GRPOTrainer instead (needs the trl extra; runs data-parallel under torchrun)",
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="train one GRPO specification, a named preset (paper, trl, verl, openrlhf, dr_grpo, rloo); "
        "--beta and --group-size override its fields",
    )
    parser.add_argument("--beta", type=float, default=None, help="train one run with this penalty weight")
    parser.add_argument("--group-size", type=int, default=None, help="train one run with this group size G")
    parser.add_argument(
        "--markdown", action="store_true", help="print the result table as Markdown (what the docs' tables are)"
    )
    parser.add_argument(
        "--from-summary",
        type=Path,
        default=None,
        metavar="FILE",
        help="train nothing: print the table of a summary.json that an earlier run wrote",
    )


def run(args: argparse.Namespace) -> int:
    from grpo_align.errors import InputError
    from grpo_align.extras import require

    if args.from_summary is not None:
        data = read_summary_file(args.from_summary)
        if is_sequence_summary(data):
            print(sequence_markdown(data, args.from_summary), end="")
            return 0
        rows = read_summary(args.from_summary, data)
        print(markdown_table(rows) if args.markdown else _plain_table(rows), end="")
        return 0

    if not 1 <= args.threads <= MAX_THREADS:
        # torch allocates per thread: 100000 would exhaust memory before anything runs
        raise InputError("--threads", f"expected an integer from 1 to {MAX_THREADS}, got {args.threads}")
    # (our runs also need a tail long enough for its standard error: the run's config says
    # how many steps that takes, in one line, when it is built)
    if args.steps is not None and args.steps < 1:
        raise InputError("--steps", f"expected an integer >= 1, got {args.steps}")
    if args.seed < 0:
        raise InputError("--seed", f"expected an integer >= 0, got {args.seed}")

    algo = grpo_from_flags(args)
    if args.task == "sequences" and (algo is not None or args.quick):
        flag = "--quick" if args.quick else "--preset/--beta/--group-size"
        raise InputError(flag, "--task sequences trains its own settings (docs/lm.md); drop " + flag)
    # one line with the install command instead of an ImportError deep inside a run
    if args.trl:
        require("trl", "grpo-align lm --trl")
    else:
        require("lm", "grpo-align lm")
    import torch

    if args.task == "sequences":
        torch.set_num_threads(args.threads)
        return _run_sequences(args)
    if args.trl:
        torch.set_num_threads(args.threads)
        return _run_trl(args, algo)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from grpo_align.lm.experiment import LMExperimentConfig, run_experiment

    config = LMExperimentConfig.quick() if args.quick else LMExperimentConfig.full()
    train = _with_steps(config.train, args.steps)
    config = replace(config, seed=args.seed, train=replace(train, seed=args.seed))
    if algo is not None:
        config = replace(config, runs=(algo,))
    torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    start = time.perf_counter()
    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:

        def progress(name: str, step: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=step)

        result = run_experiment(config, args.out, progress=progress, plots=not args.no_plots)
    if args.markdown:
        print(markdown_table([summary_row(s) for s in result.summaries]), end="")
        Console(stderr=True, highlight=False).print(_wrote(args, result, start))
        return 0
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    table = Table(
        title=f"GRPO on a {result.parameters:,}-parameter causal LM, {len(result.reference.other)} questions: "
        "mean |measured - predicted| of P(correct answer)"
    )
    for col, _, _ in TABLE_COLUMNS:
        table.add_column(col, justify="right")
    for s in result.summaries:
        table.add_row(*table_cells(summary_row(s)))
    out.print(table)
    out.print(_wrote(args, result, start))
    return 0


def _wrote(args: argparse.Namespace, result: Any, start: float) -> str:
    return (
        f"wrote {args.out / 'summary.json'}"
        + "".join(f", {f}" for f in result.figures)
        + f" ({time.perf_counter() - start:.0f} s)"
    )


def summary_row(summary: Any) -> dict[str, Any]:
    """The table's fields of one ``RunSummary`` (as summary.json stores them)."""
    return {key: getattr(summary, key) for _, key, _ in TABLE_COLUMNS}


def table_cells(row: dict[str, Any]) -> list[str]:
    """One run's cells, formatted as ``TABLE_COLUMNS`` says."""
    return [format(int(row[key]) if fmt == "d" else float(row[key]), fmt) for _, key, fmt in TABLE_COLUMNS]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The runs as a Markdown table: a header, then one line per run, numbers right-aligned.

    Parameters
    ----------
    rows : list of dict
        One entry per run with the keys of ``TABLE_COLUMNS`` (summary.json's entries).
    """
    lines = [
        "| " + " | ".join(head for head, _, _ in TABLE_COLUMNS) + " |",
        "|" + "---:|" * len(TABLE_COLUMNS),
    ]
    lines += ["| " + " | ".join(table_cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _plain_table(rows: list[dict[str, Any]]) -> str:
    """The runs as aligned plain-text columns (``--from-summary`` without ``--markdown``)."""
    cells = [[head for head, _, _ in TABLE_COLUMNS], *(table_cells(row) for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(TABLE_COLUMNS))]
    return "".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + "\n" for r in cells)


def read_summary_file(path: Path) -> Any:
    """The parsed JSON of a summary file (``--from-summary``), refused in one line when
    unreadable or not JSON."""
    from grpo_align.errors import InputError
    from grpo_align.files import loads_json, read_text_file

    expected = "a summary written by grpo-align lm --out DIR"
    try:
        # a FIFO, a device or a folder, a file not UTF-8 or not JSON: each its InputError
        return loads_json(read_text_file(path, expected=expected), str(path), f"expected {expected}")
    except OSError as exc:
        raise InputError("--from-summary", f"{expected}; cannot read {path}: {exc.strerror or exc}") from None
    except InputError as exc:
        raise InputError("--from-summary", str(exc)) from None


def read_summary(path: Path, data: Any = None) -> list[dict[str, Any]]:
    """The runs of a ``summary.json`` written by ``grpo-align lm --out DIR`` (a list of run entries).

    ``data``: the file's parsed JSON when already read.

    Raises
    ------
    InputError
        Naming ``--from-summary`` when the file is unreadable, not JSON, or an entry lacks
        one of the table's keys.
    """
    from grpo_align.errors import InputError

    expected = "a summary.json written by grpo-align lm --out DIR"
    if data is None:
        data = read_summary_file(path)
    if isinstance(data, dict) and "processes" in data:  # trl_summary.json of grpo-align lm --trl: one run
        data = [data]
    if not isinstance(data, list) or not data:
        raise InputError("--from-summary", f"{expected} (a non-empty list of runs); {path} holds something else")
    for i, row in enumerate(data):
        missing = [key for _, key, _ in TABLE_COLUMNS if not isinstance(row, dict) or key not in row]
        if missing:
            raise InputError("--from-summary", f"{expected}; entry {i} of {path} lacks {', '.join(missing)}")
        try:
            table_cells(row)
        except (TypeError, ValueError):
            raise InputError("--from-summary", f"{expected}; entry {i} of {path} has a non-numeric field") from None
    return data


def grpo_from_flags(args: argparse.Namespace) -> Any:
    """The one GRPO specification the flags ask for, or None (the experiment's own runs)."""
    from grpo_align.errors import InputError
    from grpo_align.theory.spec import GRPO

    fields: dict[str, Any] = {}
    if args.beta is not None:
        fields["beta"] = args.beta
    if args.group_size is not None:
        fields["group_size"] = args.group_size
    if args.preset is None and not fields:
        return None
    try:
        if args.preset is not None:
            return GRPO.preset(args.preset, **fields)
        return GRPO(**{"beta": 0.5, "group_size": 8, **fields})
    except InputError as exc:
        flag = {"beta": "--beta", "group_size": "--group-size"}.get(exc.field, "--preset")
        raise InputError(flag, exc.expected) from None


def _run_trl(args: argparse.Namespace, algo: Any) -> int:
    import os

    from grpo_align.errors import InputError
    from grpo_align.files import atomic_write_json
    from grpo_align.integrations.trl import DEFAULT_TRL_ALGO, run_trl_experiment

    if algo is None:
        algo = DEFAULT_TRL_ALGO
    if not algo.beta > 0:
        raise InputError(
            "--beta", f"expected > 0 (TRL's default 0 leaves no interior stationary policy), got {algo.beta}"
        )
    steps = args.steps if args.steps is not None else (300 if args.quick else 600)
    res = run_trl_experiment(args.out, algo, steps=steps, seed=args.seed)
    if int(os.environ.get("RANK", "0")) == 0:
        summary = dict(
            beta=res.algo.beta,
            group_size=int(res.algo.group_size),
            mae=res.mae,
            mae_rlhf=res.mae_rlhf,
            mae_reference=res.mae_reference,
            stderr=res.stderr,
            max_abs_error=res.max_abs_error,
            questions=len(res.history[-1].correct),
            steps=res.steps,
            seconds=res.seconds,
            algo=res.algo,
            processes=int(os.environ.get("WORLD_SIZE", "1")),
        )
        atomic_write_json(args.out / "trl_summary.json", summary)
        print(
            f"TRL GRPOTrainer, {res.algo}: mean |measured - predicted| P(correct) = {res.mae:.4f} "
            f"(RLHF pooling {res.mae_rlhf:.4f}, reference {res.mae_reference:.4f}, stderr {res.stderr:.4f}), "
            f"{res.steps} steps in {res.seconds:.0f} s; wrote {args.out / 'trl_summary.json'}"
        )
    return 0


def _progress_bar():
    """A rich progress bar on stderr with one line per run (``progress(name, step, total)``)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def progress(name: str, step: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total)
        bar.update(tasks[name], completed=step)

    return bar, progress


def _run_sequences(args: argparse.Namespace) -> int:
    """``--task sequences``: train each setting (or TRL's, with ``--trl``), write the summary, print its tables."""
    from rich.console import Console

    start = time.perf_counter()
    bar, progress = _progress_bar()
    with bar:
        if args.trl:
            from grpo_align.integrations.trl import run_trl_sequence_summary

            path = run_trl_sequence_summary(args.out, steps=args.steps, seed=args.seed, progress=progress)
        else:
            from grpo_align.lm.sequences import SequenceExperimentConfig, run_sequence_experiment

            config = SequenceExperimentConfig()
            train = _with_steps(config.train, args.steps)
            config = replace(config, seed=args.seed, train=replace(train, seed=args.seed))
            run_sequence_experiment(config, args.out, progress=progress)
            path = args.out / "sequences.json"
    data = read_summary_file(path)
    print(sequence_markdown(data, path), end="")
    Console(stderr=True, highlight=False).print(f"wrote {path} ({time.perf_counter() - start:.0f} s)")
    return 0 if data["verdict"]["pass"] else 1


def _with_steps(train: Any, steps: int | None) -> Any:
    """The run's train config with ``--steps``; a tail too short for its standard error is
    reported against the flag."""
    from grpo_align.errors import InputError

    if steps is None:
        return train
    try:
        return replace(train, steps=steps)
    except InputError as exc:
        if exc.field != "steps":
            raise
        raise InputError("--steps", exc.expected) from None
