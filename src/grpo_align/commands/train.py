"""``grpo-align train FILE.toml``: train tabular GRPO and compare with the predicted policy.

Reads the same file as ``solve`` (``grpo_align.io_toml``) plus an optional ``[train]``
table of ``TrainConfig`` fields::

    [train]
    steps = 1500
    groups_per_step = 64
    lr = 2.0
    checkpoint_every = 100

Every ``[[algorithm]]`` is trained in turn with a progress bar. ``--out DIR`` (default
``runs/<file name>``) receives, each written atomically, ``trajectory-<i>.jsonl`` (one
line per recorded step: step, policy, metrics) and ``summary.jsonl`` (one line per
algorithm: spec, config, predicted and trained policies, standard errors), plus
``checkpoint-<i>.pt`` every ``checkpoint_every`` steps; ``--resume`` continues from them
and ends with the same numbers as an uninterrupted run. The command ends by printing, per
algorithm, the gap between the tail-averaged policy and the predicted stationary policy
with its standard error. Exit status 0, or 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from grpo_align.errors import InputError
from grpo_align.extras import require
from grpo_align.files import atomic_write_jsonl
from grpo_align.io_toml import load_problem_toml

#: contexts printed as tables; every context is in the summary file
MAX_CONTEXTS_SHOWN = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="problem file (TOML, as for solve) with an optional [train] table")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default runs/<file name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    parser.add_argument("--steps", type=int, default=None, help="override [train] steps")
    parser.add_argument("--seed", type=int, default=None, help="override [train] seed")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="override [train] checkpoint_every")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    # torch is imported here, not at module level: `grpo-align solve` must not pay for it
    require("train", "grpo-align train")
    from grpo_align.training import TrainConfig, train

    spec = load_problem_toml(args.file, extra_tables=("train",))
    table = dict(spec.options.get("train") or {})
    for key in ("steps", "seed", "checkpoint_every"):
        value = getattr(args, key)
        if value is not None:
            table[key] = value
    config = TrainConfig.from_dict(table)
    out = args.out if args.out is not None else Path("runs") / args.file.stem
    if out.exists() and not out.is_dir():
        raise InputError("--out", f"{out} is a file; expected a directory")
    out.mkdir(parents=True, exist_ok=True)

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 140, stderr=False)
    summaries = []
    for i, (name, algo) in enumerate(spec.algorithms):
        ckpt = out / f"checkpoint-{i}.pt"
        if not args.resume:
            ckpt.unlink(missing_ok=True)  # a fresh run never picks up an old checkpoint
        with _progress(console, args.quiet) as progress:
            task = progress.add_task(name, total=config.steps, info="")

            def callback(step: int, metrics: dict[str, float], task: Any = task, progress: Progress = progress) -> None:
                progress.update(
                    task,
                    completed=step,
                    info=f"loss {metrics['losses/loss']:+.4f} clip {metrics['charts/clip_fraction']:.3f} "
                    f"reward {metrics['charts/reward']:.3f}",
                )

            result = train(
                spec.problem,
                algo,
                config,
                callback=callback,
                checkpoint_path=ckpt if config.checkpoint_every else None,
                resume=args.resume,
            )
        atomic_write_jsonl(out / f"trajectory-{i}.jsonl", _trajectory_lines(result))
        summaries.append(
            {"index": i, "name": name, "algorithm": asdict(algo), "config": config.to_dict(), **result.summary()}
        )
        _print_result(console, spec, name, result)
    atomic_write_jsonl(out / "summary.jsonl", summaries)
    console.print(f"wrote {out}/summary.jsonl and trajectory-*.jsonl")
    return 0


def _progress(console: Console, quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        disable=quiet,
    )


def _trajectory_lines(result: Any) -> Iterable[dict[str, Any]]:
    metrics = result.metrics
    for step, policy in zip(result.record_steps, result.trajectory, strict=True):
        line: dict[str, Any] = {"step": int(step), "policy": np.asarray(policy).tolist()}
        if step > 0:
            line.update({name: float(values[step - 1]) for name, values in metrics.items()})
        yield line


def _print_result(console: Console, spec: Any, name: str, result: Any) -> None:
    problem = spec.problem
    names = spec.options["names"]
    n_outputs = spec.options["n_outputs"]
    for c, ctx in enumerate(result):
        if c == MAX_CONTEXTS_SHOWN:
            console.print(f"({len(result) - MAX_CONTEXTS_SHOWN} more contexts in summary.jsonl)")
            break
        title = f"{name}" + (f", context {c + 1}" if len(result) > 1 else "")
        table = Table(title=title, title_justify="left")
        for col in ("output", "reference", "predicted", "trained (tail mean)", "stderr", "gap", "gap/stderr"):
            table.add_column(col, justify="right" if col != "output" else "left")
        for o in range(n_outputs[c]):
            table.add_row(
                names[c][o],
                f"{problem.ref[c, o]:.6f}",
                f"{ctx.predicted[o]:.6f}",
                f"{ctx.mean_policy[o]:.6f}",
                f"{ctx.stderr[o]:.2e}",
                f"{ctx.gap[o]:+.2e}",
                f"{ctx.z[o]:+.2f}",
            )
        console.print(table)
    z, gap, se = result.z, result.gap, result.stderr
    worst = np.unravel_index(np.argmax(np.abs(z)), z.shape)
    console.print(
        f"{name}: gap to the predicted policy ({result.predicted_status[worst[0]]}) "
        f"max |gap| = {float(np.max(np.abs(gap))):.2e}; "
        f"at the largest |gap|/stderr the gap is {gap[worst]:+.2e} with stderr {se[worst]:.2e} "
        f"({float(z[worst]):+.2f} stderr); batch autocorrelation {result.batch_autocorrelation:+.2f}; "
        f"{result.outputs_per_second:,.0f} sampled outputs/s"
    )
