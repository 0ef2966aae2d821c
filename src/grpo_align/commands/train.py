"""``grpo-align train FILE.toml``: train tabular GRPO and compare with the predicted policy.

Reads the same file as ``solve`` (``grpo_align.io_toml``) plus an optional ``[train]``
table of ``TrainConfig`` fields::

    [train]
    steps = 1500
    groups_per_step = 64
    lr = 2.0
    checkpoint_every = 100

Every ``[[algorithm]]`` is trained in turn with a progress bar. ``--out DIR`` (default
``runs/<file name>``) is the run folder. It receives, each written atomically,
``trajectory-<i>.jsonl`` (one line per recorded step: step, policy, metrics) and
``summary.jsonl`` (one line per algorithm: spec, config, predicted and trained policies,
standard errors), plus ``checkpoint-<i>.pt`` every ``checkpoint_every`` steps.

Run folders: a run holds a lock on ``DIR/.lock`` (``flock``), so a second run on the same
folder stops at once. A fresh run refuses a folder that holds another run's files unless
``--overwrite`` (which deletes them first); ``--resume`` continues from the checkpoints,
ends with the same numbers as an uninterrupted run, and refuses a folder without any.
An interrupted run (Ctrl-C) prints the command that resumes it.

Sizes are checked before anything runs: a run that would need more than half of this
machine's memory (``training.check_run_size``) is refused, naming the field to lower.

Verdict: the command ends with one line saying whether every gap between the
tail-averaged policy and the predicted stationary policy is within its tolerance: the
largest |gap| / stderr over every output of every algorithm must not exceed the
family-wise bound at false-alarm rate ``FAMILY_ALPHA`` (Bonferroni over the outputs;
Student t with ``n_batches - 1`` degrees of freedom, since the standard error is a batch
mean's). Exit status 0 within tolerance, 1 outside it (or when a prediction failed),
2 on bad input, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from grpo_align.errors import InputError
from grpo_align.extras import require
from grpo_align.files import atomic_write_jsonl, folder_lock
from grpo_align.io_toml import ProblemFile, load_problem_toml, toml_value
from grpo_align.verify import ALPHA, z_verdict

#: contexts printed as tables; every context is in the summary file
MAX_CONTEXTS_SHOWN = 4

#: false-alarm rate of the verdict when the prediction is right (``grpo_align.verify.ALPHA``, as the report)
FAMILY_ALPHA = ALPHA

#: the files a run writes into its folder (what --overwrite removes)
RUN_FILES = ("summary.jsonl", "trajectory-*.jsonl", "checkpoint-*.pt")

#: command-line flags that override [train] fields
FLAG_OF = {"steps": "--steps", "seed": "--seed", "checkpoint_every": "--checkpoint-every"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="problem file (TOML, as for solve) with an optional [train] table")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/<file name>)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    again.add_argument(
        "--overwrite", action="store_true", help="replace the run already in --out (its files are deleted first)"
    )
    parser.add_argument("--steps", type=int, default=None, help="override [train] steps")
    parser.add_argument("--seed", type=int, default=None, help="override [train] seed")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="override [train] checkpoint_every")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    # torch is imported here, not at module level: `grpo-align solve` must not pay for it
    require("train", "grpo-align train")
    from grpo_align.training import train

    spec = load_problem_toml(args.file, extra_tables=("train",))
    config = train_config(spec, args)
    check_sizes(spec, config, args)
    out = args.out if args.out is not None else Path("runs") / args.file.stem

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 140, stderr=False)
    with run_folder(out):
        prepare_run_folder(out, resume=args.resume, overwrite=args.overwrite, checkpoint_every=config.checkpoint_every)
        summaries, results = [], []
        try:
            for i, (name, algo) in enumerate(spec.algorithms):
                ckpt = out / f"checkpoint-{i}.pt"
                with _progress(console, args.quiet) as progress:
                    task = progress.add_task(escape(name), total=config.steps, info="")

                    def callback(
                        step: int, metrics: dict[str, float], task: Any = task, progress: Progress = progress
                    ) -> None:
                        progress.update(
                            task,
                            completed=step,
                            info=f"loss {metrics['losses/loss']:+.4f} clip {metrics['charts/clip_fraction']:.3f} "
                            f"reward {metrics['charts/reward']:.3f}",
                        )

                    try:
                        result = train(
                            spec.problem,
                            algo,
                            config,
                            callback=callback,
                            checkpoint_path=ckpt if config.checkpoint_every else None,
                            resume=args.resume,
                        )
                    except InputError as exc:
                        if exc.field in ("resume", "checkpoint"):
                            raise InputError("--resume", exc.expected) from None
                        raise
                atomic_write_jsonl(out / f"trajectory-{i}.jsonl", _trajectory_lines(result))
                summaries.append(
                    {
                        "index": i,
                        "name": name,
                        "algorithm": asdict(algo),
                        "config": config.to_dict(),
                        **result.summary(),
                    }
                )
                results.append((name, result))
                _print_result(console, spec, name, result)
        except KeyboardInterrupt:
            print(f"interrupted; {resume_hint(args, out, config.checkpoint_every)}", file=sys.stderr)
            return 130
        atomic_write_jsonl(out / "summary.jsonl", summaries)
    console.print(f"wrote {escape(str(out))}/summary.jsonl and trajectory-*.jsonl")
    passed, line = verdict(results, config.n_batches)
    console.print(Text(line, style="green" if passed else "red"))
    return 0 if passed else 1


# ---------------------------------------------------------------------------- input
def train_config(spec: ProblemFile, args: argparse.Namespace) -> Any:
    """``[train]`` with the command-line overrides, as a ``TrainConfig``; errors name
    ``train.FIELD`` (or the flag that set it) in the file's words."""
    from grpo_align.training import TrainConfig

    table = spec.options.get("train", {})
    if not isinstance(table, dict):
        raise InputError("train", f"expected a [train] table of TrainConfig fields, got {toml_value(table)}")
    table = dict(table)
    for key, value in table.items():
        # TrainConfig has no true/false fields; say so in TOML's words, not Python's
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InputError(f"train.{key}", f"expected a number or a string, got {toml_value(value)}")
    for key in FLAG_OF:
        value = getattr(args, key)
        if value is not None:
            table[key] = value
    try:
        return TrainConfig.from_dict(table)
    except InputError as exc:
        key = exc.field.removeprefix("train.")
        if key in FLAG_OF and getattr(args, key) is not None:
            raise InputError(FLAG_OF[key], exc.expected) from None
        raise


def check_sizes(spec: ProblemFile, config: Any, args: argparse.Namespace) -> None:
    """Every algorithm's run fits in memory (``check_run_size``), checked before the first starts."""
    from grpo_align.training.tabular import check_run_size

    for i, (_, algo) in enumerate(spec.algorithms):
        try:
            check_run_size(spec.problem, algo, config)
        except InputError as exc:
            if exc.field == "group_size":
                raise InputError(f"algorithm[{i + 1}].group_size", exc.expected) from None
            if exc.field in FLAG_OF and getattr(args, exc.field) is not None:
                raise InputError(FLAG_OF[exc.field], exc.expected) from None
            raise InputError(f"train.{exc.field}", exc.expected) from None


# ---------------------------------------------------------------------------- run folder
@contextmanager
def run_folder(out: Path) -> Iterator[None]:
    """Create ``out`` and hold an exclusive lock on ``out/.lock`` while the run lasts.

    ``grpo_align.files.folder_lock`` (the lock ``predict`` holds on its folder too): a
    second run on the same folder gets an ``InputError`` at once instead of racing the
    first for the same files, and a killed run never leaves a stale lock.
    """
    with folder_lock(out, "--out"):
        yield


def run_files(out: Path) -> list[Path]:
    """The files of a run in ``out`` (summary, trajectories, checkpoints)."""
    return sorted(p for pattern in RUN_FILES for p in out.glob(pattern))


def prepare_run_folder(out: Path, *, resume: bool, overwrite: bool, checkpoint_every: int) -> None:
    """Refuse to mix two runs in one folder; clear it for ``overwrite``; check ``resume``."""
    existing = run_files(out)
    if resume:
        if not checkpoint_every:
            raise InputError(
                "--resume", "this run writes no checkpoints (checkpoint_every = 0); set checkpoint_every to resume"
            )
        if not list(out.glob("checkpoint-*.pt")):
            raise InputError("--resume", f"no checkpoint in {out}; run without --resume to start afresh")
        return
    if existing and not overwrite:
        names = ", ".join(p.name for p in existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise InputError(
            "--out",
            f"{out} holds another run ({names}); pass --overwrite to replace it, --resume to continue it, "
            "or choose another folder",
        )
    for path in existing:
        path.unlink()


def resume_hint(args: argparse.Namespace, out: Path, checkpoint_every: int) -> str:
    """What to type to continue an interrupted run (or why it cannot be continued)."""
    if not checkpoint_every:
        return (
            "this run writes no checkpoints (checkpoint_every = 0), so it cannot be resumed; "
            "rerun with --overwrite, and set checkpoint_every to make runs resumable"
        )
    words = ["grpo-align", "train", str(args.file), "--out", str(out)]
    for key, flag in FLAG_OF.items():
        if getattr(args, key) is not None:
            words += [flag, str(getattr(args, key))]
    if args.quiet:
        words.append("--quiet")
    return "resume with: " + shlex.join([*words, "--resume"])


# ---------------------------------------------------------------------------- output
def verdict(results: list[tuple[str, Any]], n_batches: int) -> tuple[bool, str]:
    """(passed, the verdict line): ``grpo_align.verify.z_verdict`` over every output of every
    algorithm (the outputs the reference supports), worded for the terminal."""
    failed = [name for name, res in results if res.predicted is None or not np.all(res.predicted.success)]
    if failed:
        return False, f"verdict: no prediction to compare for {', '.join(failed)} (the solve failed; see above)"
    v = z_verdict([np.asarray(res.z)[res.problem.ref > 0] for _, res in results], n_batches, FAMILY_ALPHA)
    rule = f"family-wise bound {v.bound:.2f} at alpha = {v.alpha:g} over {v.n_tests} outputs"
    if v.passed:
        return True, f"verdict: within tolerance: max |gap|/stderr = {v.max_abs_z:.2f} <= {rule}"
    return False, f"verdict: outside tolerance: max |gap|/stderr = {v.max_abs_z:.2f} ({results[v.worst][0]}) > {rule}"


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
        table = Table(title=Text(title), title_justify="left")
        for col in ("output", "reference", "predicted", "trained (tail mean)", "stderr", "gap", "gap/stderr"):
            table.add_column(col, justify="right" if col != "output" else "left", no_wrap=col != "output")
        for o in range(n_outputs[c]):
            table.add_row(
                Text(names[c][o]),
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
        Text(
            f"{name}: gap to the predicted policy ({result.predicted_status[worst[0]]}) "
            f"max |gap| = {float(np.max(np.abs(gap))):.2e}; "
            f"at the largest |gap|/stderr the gap is {gap[worst]:+.2e} with stderr {se[worst]:.2e} "
            f"({float(z[worst]):+.2f} stderr); batch autocorrelation {result.batch_autocorrelation:+.2f}; "
            f"{result.outputs_per_second:,.0f} sampled outputs/s"
        )
    )
