"""``grpo-align solve FILE.toml``: stationary policies of GRPO variants, side by side.

Reads a problem and one or more algorithms (``grpo_align.io_toml``), solves each with
``stationary_policy`` and prints, per context, the reference policy, every algorithm's
stationary policy and RLHF's logarithmic pooling, then each solve's status. ``--out``
writes everything as JSON. Exit status: 0 when every solve succeeded, 1 when one failed
(its message is printed), 2 on bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from grpo_align.commands.console import StdoutConsole
from grpo_align.errors import InputError
from grpo_align.files import atomic_write_json, check_target, to_jsonable
from grpo_align.io_toml import ProblemFile, load_problem_toml
from grpo_align.theory import GRPO, StationaryResult, StationaryRoot, rlhf_policy, stationary_policy

#: Tables of other commands' files that ``solve`` accepts and leaves alone.
SHARED_TABLES = ("train",)

#: Contexts shown as tables by default; the rest are summarised (all are in --out).
DEFAULT_MAX_CONTEXTS = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="problem file (TOML; see examples/ and the README)")
    parser.add_argument("--out", type=Path, default=None, help="also write every result to this JSON file")
    parser.add_argument("--precision", type=int, default=6, help="decimals printed (default 6)")
    parser.add_argument(
        "--max-contexts",
        type=int,
        default=DEFAULT_MAX_CONTEXTS,
        help=f"for a batch, print at most this many contexts' tables (default {DEFAULT_MAX_CONTEXTS})",
    )


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.precision <= 15:
        raise InputError("--precision", f"expected an integer from 0 to 15, got {args.precision}")
    if args.max_contexts < 1:
        raise InputError("--max-contexts", f"expected an integer >= 1, got {args.max_contexts}")
    if args.out is not None:
        check_out_path(args.out)  # before the solve, so a typo costs nothing
        if args.out.exists() and args.file.exists() and args.out.samefile(args.file):
            raise InputError("--out", f"{args.out} is the problem file itself; choose another name")
    # a file written for `grpo-align train` solves as it is: its [train] table is not used here
    spec = load_problem_toml(args.file, extra_tables=SHARED_TABLES)
    results = [stationary_policy(spec.problem, algo) for _, algo in spec.algorithms]
    rlhf_beta = rlhf_beta_of(spec)
    # RLHF with the context axis, like the stationary results beside it
    rlhf = np.reshape(rlhf_policy(spec.problem, rlhf_beta), spec.problem.ref.shape) if rlhf_beta is not None else None

    console = StdoutConsole(highlight=False, width=None if sys.stdout.isatty() else 160)
    print_results(console, spec, results, rlhf, rlhf_beta, args.precision, args.max_contexts)
    if args.out is not None:
        write_json_atomic(args.out, to_json(spec, results, rlhf, rlhf_beta))
        console.print(f"wrote {escape(str(args.out))}")

    failed = [
        (name, c, ctx.message)
        for (name, _), res in zip(spec.algorithms, results, strict=True)
        for c, ctx in enumerate(res)
        if not ctx.success
    ]
    for name, c, msg in failed:
        where = f" (context {c + 1})" if spec.problem.batched else ""
        print(f"error: {name}{where}: {msg}", file=sys.stderr)
    return 1 if failed else 0


def rlhf_beta_of(spec: ProblemFile) -> float | None:
    """RLHF is shown at the first algorithm's beta, when it is positive and rewards exist."""
    beta = spec.algorithms[0][1].beta
    if beta > 0 and not spec.problem.is_preference:
        return beta
    return None


# ---------------------------------------------------------------------------- table
def _reward_column(spec: ProblemFile) -> tuple[str, np.ndarray] | None:
    """The column that says what each output earns: reward, success probability or E[r]."""
    problem = spec.problem
    if problem.is_preference:
        return None
    kind = spec.options["kind"]
    header = {"rewards": "reward", "success": "success", "dist": "E[reward]"}[kind]
    return header, problem.expected_reward()


@dataclass(frozen=True)
class _Column:
    """One column of a results table: header, one cell per row, numbers right-aligned."""

    header: str
    cells: list[str]
    numeric: bool = True


def _table(title: str | None, columns: Sequence[_Column], dim_rows: frozenset[int] = frozenset()) -> Table:
    # user strings (names, titles) go in as Text: rich would read "[a]" in them as markup
    table = Table(title=Text(title) if title else None, title_justify="left")
    for col in columns:
        # numbers never wrap (a wrapped number reads as two); words may
        table.add_column(Text(col.header), justify="right" if col.numeric else "left", no_wrap=col.numeric)
    for r in range(len(columns[0].cells)):
        table.add_row(*[Text(col.cells[r]) for col in columns], style="dim" if r in dim_rows else None)
    return table


def print_columns(
    console: Console,
    title: str | None,
    keys: Sequence[_Column],
    values: Sequence[_Column],
    dim_rows: frozenset[int] = frozenset(),
) -> None:
    """Print ``keys`` + ``values`` as one table, or, when that is wider than the console,
    as several tables that repeat the key columns and share the value columns out: every
    number is printed whole, whatever the width (rich would otherwise cut cells with "…").
    A value column too wide even alone is printed as lines instead."""
    start = 0
    while start < len(values):
        end = start + 1
        while end < len(values) and _fits(console, _table(title, [*keys, *values[start : end + 1]], dim_rows)):
            end += 1
        part = title
        if title and (start > 0 or end < len(values)):
            part = f"{title} (columns {start + 1}-{end} of {len(values)})"
        table = _table(part, [*keys, *values[start:end]], dim_rows)
        if _fits(console, table) or _renders_whole(console, table):
            console.print(table)
        else:
            _print_stacked(console, part, keys, values[start])
        start = end


def _print_stacked(console: Console, title: str | None, keys: Sequence[_Column], column: _Column) -> None:
    """One value column as lines, ``output (key values): value``, for consoles too narrow for a table."""
    if title:
        console.print(Text(title))
    console.print(Text(f"{column.header}:"))
    for r, value in enumerate(column.cells):
        extra = ", ".join(f"{k.header} {k.cells[r]}" for k in keys[1:] if k.cells[r])
        console.print(Text(f"  {keys[0].cells[r]}" + (f" ({extra})" if extra else "") + f": {value}"))


def _renders_whole(console: Console, renderable: Table) -> bool:
    """Whether rich prints ``renderable`` at the console's width without cutting a cell
    (cut cells end in "…"; cells only wrap at spaces otherwise)."""
    buffer = io.StringIO()
    Console(width=console.width, file=buffer, color_system=None, highlight=False).print(renderable)
    return "…" not in buffer.getvalue()


def _natural(console: Console, table: Table) -> Measurement:
    """The table's (minimum, maximum) width with no console limit: rich clamps its own
    measure to the console width, which would hide that a table does not fit."""
    return Measurement.get(console, console.options.update_width(10**6), table)


def _fits(console: Console, table: Table) -> bool:
    """Whether ``table`` fits without wrapping a single cell."""
    return _natural(console, table).maximum <= console.width


def print_results(
    console: Console,
    spec: ProblemFile,
    results: list[StationaryResult],
    rlhf: np.ndarray | None,
    rlhf_beta: float | None,
    precision: int,
    max_contexts: int,
) -> None:
    problem = spec.problem
    if spec.options.get("title"):
        console.print(Text(spec.options["title"], style="bold"))
    policies = [r.policy for r in results]
    reward = _reward_column(spec)
    n_ctx = problem.n_contexts
    fmt = f"{{:.{precision}f}}"
    shown = min(n_ctx, max_contexts)
    for c in range(shown):
        k = spec.options["n_outputs"][c]
        title = f"context {c + 1} of {n_ctx}" if problem.batched else None
        # rows: the outputs, then (with rewards) the mean reward each policy earns, the
        # quantity RLHF trades against its KL
        mean_row = reward is not None
        names = list(spec.options["names"][c][:k]) + (["mean reward"] if mean_row else [])

        def cells(pol: np.ndarray, c: int = c, k: int = k) -> list[str]:
            out = [fmt.format(pol[c, o]) for o in range(k)]
            if reward is not None:
                out.append(fmt.format(pol[c] @ reward[1][c]))
            return out

        keys = [_Column("output", names, numeric=False)]
        if reward is not None:
            keys.append(_Column(reward[0], [f"{reward[1][c, o]:g}" for o in range(k)] + [""]))
        keys.append(_Column("reference", cells(problem.ref)))
        values = [_Column(name, cells(p)) for (name, _), p in zip(spec.algorithms, policies, strict=True)]
        if rlhf is not None:
            values.append(_Column(f"RLHF beta={rlhf_beta:g}", cells(rlhf)))
        print_columns(console, title, keys, values, frozenset({k}) if mean_row else frozenset())
        for (name, _), res in zip(spec.algorithms, results, strict=False):
            roots = res.roots[c]
            if len(roots) > 1:
                _print_roots(console, name, roots, spec.options["names"][c][:k], fmt)
    if shown < n_ctx:
        console.print(f"... {n_ctx - shown} more contexts not shown (--max-contexts; all are in --out)")
    _print_status(console, spec, results)


def _print_roots(console: Console, name: str, roots: Sequence[StationaryRoot], names: list[str], fmt: str) -> None:
    """Every stationary policy of one algorithm in one context, with its stability."""
    words = {True: "stable", False: "unstable", None: "stability unknown"}
    keys = [_Column("output", list(names), numeric=False)]
    values = [
        _Column(f"root {i + 1} ({words[root.stable]})", [fmt.format(root.policy[o]) for o in range(len(names))])
        for i, root in enumerate(roots)
    ]
    print_columns(console, f"{name}: {len(roots)} stationary policies", keys, values)


def _roots_summary(roots: Sequence[StationaryRoot]) -> str:
    """'1' or e.g. '3 (stable, unstable, stable)'."""
    if len(roots) <= 1:
        return str(len(roots))
    words = {True: "stable", False: "unstable", None: "stability unknown"}
    return f"{len(roots)} ({', '.join(words[r.stable] for r in roots)})"


def _status_rows(spec: ProblemFile, results: list[StationaryResult]) -> list[tuple[list[str], bool]]:
    """One row per algorithm and group of contexts with the same outcome; True: failed."""
    rows_out: list[tuple[list[str], bool]] = []
    for (name, algo), res in zip(spec.algorithms, results, strict=False):
        fields = _spec_text(algo)
        # identical contexts collapse into one row, so a batch stays short
        rows: dict[tuple[str, str, str], list[int]] = {}
        for c, ctx in enumerate(res):
            key = (ctx.status, _roots_summary(ctx.roots), ctx.message)
            rows.setdefault(key, []).append(c)
        for (status, root_text, message), ctxs in rows.items():
            worst = max(float(res.residual[c]) for c in ctxs)
            row = [name, fields]
            if spec.problem.batched:
                row.append(_ranges(ctxs))
            row += [status, f"{worst:.1e}", root_text, message]
            rows_out.append((row, status == "failed"))
    return rows_out


def _print_status(console: Console, spec: ProblemFile, results: list[StationaryResult]) -> None:
    """The solver's outcome per algorithm: a table, or one line each where no table fits."""
    headers = ["algorithm", "G beta normalization ddof eps penalty"]
    if spec.problem.batched:
        headers.append("context")
    headers += ["status", "residual", "roots", "message"]
    rows = _status_rows(spec, results)
    table = Table(title="solver", title_justify="left")
    for h in headers:
        table.add_column(h, justify="right" if h in ("context", "residual") else "left", no_wrap=h == "residual")
    for row, failed in rows:
        table.add_row(*[Text(cell) for cell in row], style="red" if failed else None)
    if _fits(console, table) or _renders_whole(console, table):
        console.print(table)  # words may wrap inside cells; none is cut
        return
    # too narrow for the columns' longest words: one paragraph per row instead
    console.print("solver")
    for row, failed in rows:
        text = "; ".join(f"{h}: {v}" for h, v in zip(headers, row, strict=True))
        console.print(Text(f"- {text}"), style="red" if failed else None)


def _spec_text(algo: GRPO) -> str:
    g = "inf" if algo.is_limit else str(algo.group_size)
    text = f"{g} {algo.beta:g} {algo.normalization} {algo.ddof} {algo.eps:g} {algo.penalty}"
    # the section 10 fields, only where they differ from the paper's setting
    if algo.penalty_in == "reward":
        text += " in the reward"
    if algo.aggregation != "sequence_mean":
        text += f" {algo.aggregation}"
    return text


def _ranges(indices: list[int]) -> str:
    """1-based context numbers as ranges: [0, 1, 2, 5] -> '1-3, 6'."""
    parts: list[str] = []
    start = prev = indices[0]
    following: list[int | None] = [*indices[1:], None]
    for i in following:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start + 1}" if start == prev else f"{start + 1}-{prev + 1}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


# ---------------------------------------------------------------------------- JSON
def _algo_json(algo: GRPO) -> dict[str, Any]:
    return dataclasses.asdict(algo)


def to_json(
    spec: ProblemFile, results: list[StationaryResult], rlhf: np.ndarray | None, rlhf_beta: float | None
) -> dict[str, Any]:
    """Everything the table shows and more. The algorithms' fields mirror ``StationaryResult``:
    every one carries the context axis (one entry per context, also for a single context);
    the problem is written in the shape it was given."""
    problem = spec.problem
    prob: dict[str, Any] = {
        "kind": spec.options["kind"],
        "batched": problem.batched,
        "names": spec.options["names"] if problem.batched else spec.options["names"][0],
        "n_outputs": spec.options["n_outputs"] if problem.batched else spec.options["n_outputs"][0],
        "ref": problem.squeeze(problem.ref),
    }
    if problem.win_prob is not None:
        prob["win_prob"] = problem.squeeze(problem.win_prob)
    else:
        prob["levels"] = problem.squeeze(problem.levels)
        prob["dist"] = problem.squeeze(problem.dist)
        prob["expected_reward"] = problem.squeeze(problem.expected_reward())
    algorithms = []
    for (name, algo), preset, res in zip(spec.algorithms, spec.options["presets"], results, strict=False):
        # every field of the result (StationaryResult.to_dict), the problem written once above
        algorithms.append({"name": name, "preset": preset, "spec": _algo_json(algo), **res.to_dict(inputs=False)})
    all_ok = all(bool(np.all(r.success)) for r in results)
    out = {
        "source": spec.options["source"],
        "title": spec.options.get("title"),
        "problem": prob,
        "algorithms": algorithms,
        "rlhf": None if rlhf is None else {"beta": rlhf_beta, "policy": rlhf},
        "success": all_ok,
    }
    return to_jsonable(out)


def check_out_path(path: Path) -> Path:
    """The directory of ``path`` must exist and ``path``, if it exists, must be a regular
    file: a folder, a symbolic link or a device is never replaced."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError("--out", f"directory {path.parent} does not exist")
    if path.is_dir():
        raise InputError("--out", f"{path} is a directory; expected a file name")
    try:
        check_target(path)
    except InputError as exc:
        raise InputError("--out", f"{exc.field} {exc.expected}") from None
    return path.parent


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as strict JSON to ``path`` atomically (``grpo_align.files``)."""
    check_out_path(path)
    atomic_write_json(path, data)
