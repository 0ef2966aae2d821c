"""``grpo-align predict STATS --config CONFIG [--out DIR]``: per-prompt end points of a run.

STATS holds one row per prompt (``prompt_id`` and ``n`` + ``correct``, ``p0`` or
``rewards``; JSON Lines, CSV, Parquet or a datasets folder). CONFIG is a preset name, a
grpo-align TOML file with an ``[algorithm]`` table, or a trainer's config file
(``grpo_align.predict.config``); ``--beta`` and ``--group-size`` override it. Writes
``predictions.csv`` (and ``.parquet`` with pyarrow), ``summary.json`` and ``index.html``
to DIR and prints the headline numbers. The outputs replace an earlier run's in DIR all
together or not at all (``grpo_align.predict.pipeline``): an empty input touches nothing,
a second run on the same DIR stops at once (exit 2), and an interrupt leaves one run's
complete set. Prompts whose solve failed have no results and stay out of the means; the
table says over how many prompts the means are. Exit status: 0, 1 when a prompt's solve
failed, 2 on bad input.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from grpo_align.commands.console import StdoutConsole
from grpo_align.errors import InputError
from grpo_align.files import check_folder

#: inputs with more rows than this get a progress bar
LONG_INPUT = 20_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stats", type=Path, help="per-prompt statistics: .jsonl, .csv, .parquet or a datasets folder")
    parser.add_argument(
        "--config",
        default=None,
        help="a preset name, a grpo-align TOML file ([algorithm] table) or a trainer config (.yaml/.json)",
    )
    parser.add_argument("--preset", default=None, help="a preset name (the same as --config NAME)")
    parser.add_argument("--trainer", default=None, help="the trainer that reads CONFIG (default: detected)")
    parser.add_argument("--beta", type=float, default=None, help="override the penalty weight beta")
    parser.add_argument("--group-size", default=None, help="override G (an integer, or inf)")
    parser.add_argument("--out", default="predict", help="output folder (default ./predict)")
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="rows read, solved and written at a time (default 100000)"
    )
    parser.add_argument(
        "--planner-prompts",
        type=int,
        default=None,
        help="prompts the planner solves at each (G, beta); 0 skips it (default 200)",
    )
    parser.add_argument(
        "--no-html", action="store_true", help="no index.html (an earlier run's page in DIR is removed)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _spec(args: argparse.Namespace) -> tuple[Any, Any]:
    from grpo_align.predict.config import load_spec_with_source, parse_group_size

    if args.config is not None and args.preset is not None:
        raise InputError("--preset", "give --config or --preset, not both")
    target = args.config if args.config is not None else args.preset
    if target is None:
        raise InputError("--config", "missing; expected a config file or a preset name (e.g. --preset trl)")
    overrides: dict[str, Any] = {}
    if args.beta is not None:
        overrides["beta"] = args.beta
    if args.group_size is not None:
        overrides["group_size"] = parse_group_size(args.group_size)
    return load_spec_with_source(target, overrides, args.trainer)


def run(args: argparse.Namespace) -> int:
    from grpo_align.predict.pipeline import DEFAULT_PLANNER_PROMPTS, run_predict
    from grpo_align.predict.stats import DEFAULT_CHUNK_SIZE

    chunk_size = DEFAULT_CHUNK_SIZE if args.chunk_size is None else args.chunk_size
    if chunk_size < 1:
        raise InputError("--chunk-size", f"expected an integer >= 1, got {chunk_size}")
    planner_prompts = DEFAULT_PLANNER_PROMPTS if args.planner_prompts is None else args.planner_prompts
    if planner_prompts < 0:
        raise InputError("--planner-prompts", f"expected an integer >= 0, got {planner_prompts}")
    out = check_folder(args.out, "--out")
    algo, source = _spec(args)  # before reading the data, so a typo costs nothing
    console = StdoutConsole(highlight=False, width=None if sys.stdout.isatty() else 120)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True
    )
    task = progress.add_task("predict", total=None)

    shown = []

    def on_start(total: int | None) -> None:
        if not args.quiet and (total is None or total > LONG_INPUT):
            progress.update(task, total=total)
            progress.start()
            shown.append(True)

    def on_chunk(done: int, total: int | None) -> None:
        progress.update(task, completed=done)

    try:
        summary = run_predict(
            args.stats,
            algo,
            source,
            out,
            chunk_size=chunk_size,
            planner_prompts=planner_prompts,
            on_start=on_start,
            on_chunk=on_chunk,
            html=not args.no_html,
        )
    except InputError as exc:
        if exc.field == "out_dir":  # the API's name for --out
            raise InputError("--out", exc.expected) from None
        raise
    finally:
        if shown:
            progress.stop()
    _print_summary(console, summary.data)
    console.print(f"wrote {', '.join(str(out / f) for f in summary.data['outputs'])}")
    for pid, message in summary.failed[:10]:
        print(f"error: prompt {pid}: {message}", file=sys.stderr)
    if len(summary.failed) > 10:
        print(
            f"error: ... {len(summary.failed) - 10} more failed prompts (status 'failed' in predictions.csv)",
            file=sys.stderr,
        )
    return 1 if summary.failed else 0


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.4f}"
    return str(x)


def _print_summary(console: Console, data: dict[str, Any]) -> None:
    from grpo_align.predict.pipeline import means_note

    spec = data["spec"]
    g = "inf" if spec["group_size"] == math.inf else spec["group_size"]
    source = data["source"]
    console.print(
        f"spec ({source['kind']} {source['name']}): G={g} beta={spec['beta']:g} {spec['normalization']} "
        f"ddof={spec['ddof']} eps={spec['eps']:g} penalty={spec['penalty']} in the {spec['penalty_in']} "
        f"aggregation={spec['aggregation']}"
    )
    q = data["quantity"]
    table = Table(
        title=f"{data['prompts']} prompts from {data['input']['path']} ({data['input']['kind']})", title_justify="left"
    )
    table.add_column("")
    table.add_column("mean", justify="right")
    table.add_row(f"reference {q} (p0)", _fmt(data["mean_p0"]))
    table.add_row(f"predicted {q} at the end point", _fmt(data["mean_predicted"]))
    if data["input"]["kind"] == "counts":
        table.add_row(
            "  at the 95% interval's ends", f"{_fmt(data['mean_predicted_low'])} – {_fmt(data['mean_predicted_high'])}"
        )
    table.add_row(f"RLHF at beta={spec['beta']:g}", _fmt(data["mean_rlhf"]))
    table.add_row("KL(pi || pi_ref), nats", _fmt(data["mean_kl"]))
    console.print(table)
    note = means_note(data)
    if note is not None:
        console.print(note)
    console.print("status: " + ", ".join(f"{k} {v}" for k, v in data["status"].items()))
