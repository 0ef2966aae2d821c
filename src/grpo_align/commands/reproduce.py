"""``grpo-align reproduce``: every finding of the paper as an HTML/Markdown report with verdicts.

Exit status 0 when no verdict fails (a section whose optional extra is missing is skipped,
with the install command, and does not count as a failure), 1 when any fails, 2 on bad input.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape

#: section numbers and keys for --help, kept here so that building the CLI does not import
#: the report (matplotlib, scipy.stats); tests/test_report.py checks it against SECTIONS
SECTION_KEYS = (
    "1=binary, 2=paper-figures, 3=pooling, 4=reverse-kl, 5=pairwise, 6=large-groups, 7=variants, 8=direct-kl, "
    "9=basins, 10=training, 11=practice, 12=lm, 13=predict, 14=limits, 15=sequences"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    keys = SECTION_KEYS
    parser.add_argument("--out", default="report", metavar="DIR", help="output folder (default: report)")
    parser.add_argument(
        "--quick", action="store_true", help="fewer grid points, problems and seeds (within 2 minutes on 2 cores)"
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"only these sections, by key or number: {keys}")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0); same seed, same data files")


def run(args: argparse.Namespace) -> int:
    from grpo_align.report.runner import build_report

    console = Console(stderr=True)
    outcome = build_report(args.out, quick=args.quick, only=args.only, seed=args.seed, console=console)
    n_pass = sum(s.verdict.passed for s in outcome.sections)
    style = "green" if outcome.passed else "red"
    skipped = ""
    if outcome.skipped:
        hints = [h for h in dict.fromkeys(str(s.measured.get("install", "")) for s in outcome.skipped) if h]
        names = ", ".join(s.key for s in outcome.skipped)
        skipped = escape(f", {len(outcome.skipped)} skipped ({names}; {' and '.join(hints)})")
    console.print(
        f"[{style}]{n_pass} of {len(outcome.sections)} findings verified{skipped}[/{style}] in {outcome.seconds:.0f} s; "
        f"report: {escape(str(outcome.out / 'index.html'))} (also report.md, summary.json, figures/, data/)",
        highlight=False,
    )
    return 0 if outcome.passed else 1
