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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from grpo_align.errors import InputError
from grpo_align.files import atomic_write_json, to_jsonable
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
    # a file written for `grpo-align train` solves as it is: its [train] table is not used here
    spec = load_problem_toml(args.file, extra_tables=SHARED_TABLES)
    results = [stationary_policy(spec.problem, algo) for _, algo in spec.algorithms]
    rlhf_beta = rlhf_beta_of(spec)
    # RLHF with the context axis, like the stationary results beside it
    rlhf = np.reshape(rlhf_policy(spec.problem, rlhf_beta), spec.problem.ref.shape) if rlhf_beta is not None else None

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    print_results(console, spec, results, rlhf, rlhf_beta, args.precision, args.max_contexts)
    if args.out is not None:
        write_json_atomic(args.out, to_json(spec, results, rlhf, rlhf_beta))
        console.print(f"wrote {args.out}")

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
        console.print(f"[bold]{spec.options['title']}[/bold]")
    policies = [r.policy for r in results]
    reward = _reward_column(spec)
    n_ctx = problem.n_contexts
    fmt = f"{{:.{precision}f}}"
    shown = min(n_ctx, max_contexts)
    for c in range(shown):
        k = spec.options["n_outputs"][c]
        title = f"context {c + 1} of {n_ctx}" if problem.batched else None
        table = Table(title=title, title_justify="left")
        table.add_column("output", no_wrap=True)
        if reward is not None:
            table.add_column(reward[0], justify="right", no_wrap=True)
        table.add_column("reference", justify="right", no_wrap=True)
        for name, _ in spec.algorithms:
            table.add_column(name, justify="right", no_wrap=True)
        if rlhf is not None:
            table.add_column(f"RLHF beta={rlhf_beta:g}", justify="right", no_wrap=True)
        for o in range(k):
            row = [spec.options["names"][c][o]]
            if reward is not None:
                row.append(f"{reward[1][c, o]:g}")
            row.append(fmt.format(problem.ref[c, o]))
            row += [fmt.format(p[c, o]) for p in policies]
            if rlhf is not None:
                row.append(fmt.format(rlhf[c, o]))
            table.add_row(*row)
        if reward is not None:
            # the mean reward each policy earns: the quantity RLHF trades against its KL
            r = reward[1][c]
            row = ["mean reward", "", fmt.format(problem.ref[c] @ r)]
            row += [fmt.format(p[c] @ r) for p in policies]
            if rlhf is not None:
                row.append(fmt.format(rlhf[c] @ r))
            table.add_row(*row, style="dim", end_section=False)
        console.print(table)
        for (name, _), res in zip(spec.algorithms, results, strict=False):
            roots = res.roots[c]
            if len(roots) > 1:
                console.print(_roots_table(name, roots, spec.options["names"][c][:k], fmt))
    if shown < n_ctx:
        console.print(f"... {n_ctx - shown} more contexts not shown (--max-contexts; all are in --out)")
    console.print(_status_table(spec, results))


def _roots_table(name: str, roots: Sequence[StationaryRoot], names: list[str], fmt: str) -> Table:
    """Every stationary policy of one algorithm in one context, with its stability."""
    table = Table(title=f"{name}: {len(roots)} stationary policies", title_justify="left")
    table.add_column("output", no_wrap=True)
    words = {True: "stable", False: "unstable", None: "stability unknown"}
    for i, root in enumerate(roots):
        table.add_column(f"root {i + 1} ({words[root.stable]})", justify="right", no_wrap=True)
    for o, out_name in enumerate(names):
        table.add_row(out_name, *[fmt.format(r.policy[o]) for r in roots])
    return table


def _roots_summary(roots: Sequence[StationaryRoot]) -> str:
    """'1' or e.g. '3 (stable, unstable, stable)'."""
    if len(roots) <= 1:
        return str(len(roots))
    words = {True: "stable", False: "unstable", None: "stability unknown"}
    return f"{len(roots)} ({', '.join(words[r.stable] for r in roots)})"


def _status_table(spec: ProblemFile, results: list[StationaryResult]) -> Table:
    problem = spec.problem
    table = Table(title="solver", title_justify="left")
    table.add_column("algorithm", no_wrap=True)
    table.add_column("G beta normalization ddof eps penalty")
    if problem.batched:
        table.add_column("context", justify="right")
    table.add_column("status")
    table.add_column("residual", justify="right", no_wrap=True)
    table.add_column("roots")
    table.add_column("message")
    for (name, algo), res in zip(spec.algorithms, results, strict=False):
        fields = _spec_text(algo)
        # identical contexts collapse into one row, so a batch stays short
        rows: dict[tuple[str, str, str], list[int]] = {}
        for c, ctx in enumerate(res):
            key = (ctx.status, _roots_summary(ctx.roots), ctx.message)
            rows.setdefault(key, []).append(c)
        for (status, root_text, message), ctxs in rows.items():
            style = "red" if status == "failed" else None
            worst = max(float(res.residual[c]) for c in ctxs)
            row = [name, fields]
            if problem.batched:
                row.append(_ranges(ctxs))
            row += [status, f"{worst:.1e}", root_text, message]
            table.add_row(*row, style=style)
    return table


def _spec_text(algo: GRPO) -> str:
    g = "inf" if algo.is_limit else str(algo.group_size)
    return f"{g} {algo.beta:g} {algo.normalization} {algo.ddof} {algo.eps:g} {algo.penalty}"


def _ranges(indices: list[int]) -> str:
    """1-based context numbers as ranges: [0, 1, 2, 5] -> '1-3, 6'."""
    parts: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:  # type: ignore[list-item]
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


def _root_json(root: StationaryRoot) -> dict[str, Any]:
    return {
        "policy": root.policy,
        "mixture": root.mixture,
        "multiplier": root.multiplier,
        "residual": root.residual,
        "stable": root.stable,
        "eigenvalues": root.eigenvalues,
    }


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
    if problem.is_preference:
        prob["win_prob"] = problem.squeeze(problem.win_prob)
    else:
        prob["levels"] = problem.squeeze(problem.levels)
        prob["dist"] = problem.squeeze(problem.dist)
        prob["expected_reward"] = problem.squeeze(problem.expected_reward())
    algorithms = []
    for (name, algo), preset, res in zip(spec.algorithms, spec.options["presets"], results, strict=False):
        roots = [[_root_json(r) for r in ctx] for ctx in res.roots]
        algorithms.append(
            {
                "name": name,
                "preset": preset,
                "spec": _algo_json(algo),
                "policy": res.policy,
                "success": res.success,
                "status": res.status,
                "residual": res.residual,
                "nit": res.nit,
                "message": res.message,
                "roots": roots,
            }
        )
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
    """The directory of ``path`` must exist and ``path`` must not be a directory."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError("--out", f"directory {path.parent} does not exist")
    if path.is_dir():
        raise InputError("--out", f"{path} is a directory; expected a file name")
    return path.parent


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as strict JSON to ``path`` atomically (``grpo_align.files``)."""
    check_out_path(path)
    atomic_write_json(path, data)
