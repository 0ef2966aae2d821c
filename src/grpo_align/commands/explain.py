"""``grpo-align explain CONFIG``: what a trainer's config trains, setting by setting.

Reads a TRL ``GRPOConfig`` (YAML/JSON), verl's trainer YAML or OpenRLHF's flags
(``grpo_align.mappings.read_trainer_config``; the trainer is detected or given with
``--trainer``), prints the mapping table, then what the config optimises in words and the
predicted accuracy of a binary prompt (reward 1 for the correct answer, 0 otherwise) at a
few reference pass rates p0 (THEORY.md sections 5-6). Exit 0; 2 on bad input or a refused
setting (one line naming it); 1 when a prediction's solve fails.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from grpo_align.commands.console import StdoutConsole
from grpo_align.errors import InputError
from grpo_align.mappings import TRAINERS, MappingReport, read_trainer_config
from grpo_align.theory import GRPO, Problem, stationary_policy

#: verl and OpenRLHF clamp k3 at 10: the clamp binds where log(pi_ref/pi) > this
#: (exp(x) - x - 1 = 10), and a one-token answer's penalty gradient is then 0
K3_CLAMP_LOG_RATIO = 2.610868638

#: reference pass rates of the binary prompt whose end point is predicted by default
DEFAULT_P0 = (0.1, 0.3, 0.5, 0.7)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="trainer config: TRL GRPOConfig YAML/JSON, verl YAML, OpenRLHF flags")
    parser.add_argument(
        "--trainer", choices=TRAINERS, default=None, help="the trainer (default: detected from the keys)"
    )
    parser.add_argument(
        "--p0",
        type=float,
        nargs="+",
        default=list(DEFAULT_P0),
        help="reference pass rates of a binary prompt to predict (default 0.1 0.3 0.5 0.7)",
    )
    parser.add_argument("--no-predict", action="store_true", help="print the mapping and the words only")
    parser.add_argument(
        "--brief", action="store_true", help="leave out the table of every setting; print the spec, notes and words"
    )


def normalization_words(algo: GRPO) -> str:
    """The advantage normalisation in words (THEORY.md section 2)."""
    if algo.normalization == "shift_scale":
        std = "sample std" if algo.ddof == 1 else "population std"
        return f"shift_scale ({std}, eps {algo.eps:g})"
    return {
        "shift": "shift (r - mean, no std)",
        "rloo": "rloo (r minus the mean of the others)",
        "raw": "raw rewards",
    }[algo.normalization]


def objective_words(algo: GRPO) -> str:
    """What the specification optimises, in one sentence (THEORY.md sections 3, 5 and 10)."""
    if algo.penalty_in == "reward":
        return _reward_penalty_words(algo) + _aggregation_words(algo)
    if not algo.regularised:
        why = "beta = 0" if algo.beta == 0 else "the k1 penalty has zero expected gradient"
        return f"{why}: no interior end point, mass goes to the best reward class (THEORY.md section 5)"
    head = (
        f"G = {algo.group_size}, {normalization_words(algo)}, {algo.penalty} penalty in the loss at beta {algo.beta:g}"
    )
    pull = {
        "k3": "the group preference P_G against a reverse-KL pull KL(pi_ref || pi): "
        "pi(o) = pi_ref(o) / (1 - (P_G(o|pi) - Pbar) / beta), an equilibrium, not a maximum",
        "k2": "the group preference P_G against a direct-KL pull KL(pi || pi_ref): "
        "pi(o) proportional to pi_ref(o) exp(P_G(o|pi) / beta), logarithmic pooling of P_G",
        "kl": "the group preference P_G against a direct-KL pull KL(pi || pi_ref): "
        "pi(o) proportional to pi_ref(o) exp(P_G(o|pi) / beta), logarithmic pooling of P_G",
        "abs": "the group preference P_G against a total-variation-like pull sign(log pi/pi_ref)",
    }[algo.penalty]
    return f"{head}: maximises {pull}" + _aggregation_words(algo)


def _reward_penalty_words(algo: GRPO) -> str:
    """The penalty subtracted from the reward before the group normalisation (THEORY.md 10.7)."""
    head = (
        f"G = {algo.group_size}, {normalization_words(algo)}, beta {algo.beta:g} x {algo.penalty} of the "
        "sequence log-ratio subtracted from each reward before the group normalisation"
    )
    if algo.beta == 0:
        return f"{head}: beta = 0, no interior end point, mass goes to the best reward class (THEORY.md section 5)"
    if algo.normalization in ("shift", "rloo", "raw") and algo.penalty == "k1":
        return (
            f"{head}: maximises RLHF's objective E r - beta KL(pi || pi_ref): "
            "pi(o) proportional to pi_ref(o) exp(r(o) / beta), logarithmic pooling of the expected rewards"
        )
    if algo.normalization == "shift_scale":
        return (
            f"{head}: the std scaling makes the expected gradient jump where modified rewards tie, so end points "
            "can be sliding-mode equilibria (THEORY.md section 10); with deterministic rewards and k1 they are "
            "RLHF's logarithmic pooling"
        )
    return f"{head}: a regularised reward whose end point the engine solves exactly (THEORY.md section 10)"


def _aggregation_words(algo: GRPO) -> str:
    """Where the loss aggregation matters (THEORY.md section 10.7)."""
    return (
        f"; aggregation {algo.aggregation} moves the end point only for answers of several tokens "
        "with shared prefixes or different lengths"
    )


def binary_predictions(algo: GRPO, p0s: list[float]) -> list[tuple[float, float, str, str]]:
    """(p0, predicted p, status, message) for a binary prompt at each p0 (the general solver)."""
    out = []
    for p0 in p0s:
        if not 0.0 < p0 < 1.0:
            raise InputError("--p0", f"expected pass rates strictly between 0 and 1, got {p0:g}")
        res = stationary_policy(Problem.from_rewards(ref=[p0, 1.0 - p0], rewards=[1.0, 0.0]), algo)[0]
        out.append((p0, float(res.policy[0]), res.status if res.success else "failed", res.message))
    return out


def clamp_binds(report: MappingReport, p0: float, p: float) -> bool:
    """Whether the trainer's k3 clamp at 10 binds at the binary end point p (one-token answers)."""
    if report.trainer not in ("verl", "openrlhf") or report.algo.penalty != "k3" or not report.algo.regularised:
        return False
    ratios = [p0 / p if p > 0 else math.inf, (1 - p0) / (1 - p) if p < 1 else math.inf]
    return max(math.log(x) for x in ratios) > K3_CLAMP_LOG_RATIO


def mapping_table(report: MappingReport) -> Table:
    table = Table(
        title=escape(f"{report.trainer} config (mapping checked against {report.trainer} {report.checked_version})")
    )
    for name in ("setting", "value", "source", "maps to", "where"):
        table.add_column(name, overflow="fold")
    for row in report.rows:
        table.add_row(escape(row.key), escape(repr(row.value)), row.source, escape(row.maps_to), escape(row.where))
    return table


def run(args: argparse.Namespace) -> int:
    report = read_trainer_config(args.config, args.trainer)
    console = StdoutConsole(highlight=False, width=None if sys.stdout.isatty() else 160)
    if not args.brief:
        console.print(mapping_table(report))
    console.print(f"trains {escape(repr(report.algo))}")
    console.print(f"aggregation: {escape(report.aggregation)}")
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    console.print(f"optimises: {escape(objective_words(report.algo))}")
    if args.no_predict:
        return 0
    failed = False
    console.print("predicted accuracy of a binary prompt (reward 1 correct, 0 wrong):")
    for p0, p, status, message in binary_predictions(report.algo, list(args.p0)):
        if status == "failed":
            failed = True
            console.print(f"  p0 = {p0:g}: solve failed: {escape(message)}")
        else:
            clamp = clamp_binds(report, p0, p)
            console.print(
                f"  p0 = {p0:g} -> {p:.6f} ({escape(status)})"
                + (f"; {report.trainer}'s k3 clamp binds here for one-token answers: not exact" if clamp else "")
            )
    return 1 if failed else 0
