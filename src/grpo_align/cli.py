"""The ``grpo-align`` command line: one subcommand per module in ``grpo_align.commands``.

Bad input (an ``InputError``, a missing file, malformed TOML) and a missing optional extra
(``MissingExtraError``, whose line ends in the ``pip install`` command) print one line and
exit with status 2, never a traceback. The command modules import only light packages at
module level, so building the parser loads no torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from grpo_align.errors import InputError

#: subcommand -> module in grpo_align.commands defining ``add_arguments(parser)`` and ``run(args)``
COMMANDS = {
    "solve": "Stationary policies of GRPO variants for a problem in a TOML file",
    "train": "Train a tabular policy with GRPO and compare with the predicted stationary policy",
    "reproduce": "Reproduce every finding of the paper as an HTML/Markdown report",
    "lm": "GRPO on a tiny causal language model, predicted before training",
    "predict": "Per-prompt end points of a run: per-prompt statistics and a trainer config in",
    "measure": "Sample a model's per-prompt rewards and write the STATS file that predict reads",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grpo-align",
        description="What policy does GRPO converge to? Exact stationary policies (arXiv:2502.18548).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"grpo_align.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _version() -> str:
    from grpo_align import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: file not found: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
