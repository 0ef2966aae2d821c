"""The ``grpo-align`` command line: one subcommand per module in ``grpo_align.commands``.

Exit statuses (README "Exit status"):

- 0: done, and every solve succeeded (``train``: every gap within its tolerance);
- 1: a solve failed or a verdict did not pass (the reason is printed);
- 2: bad input or an environment problem: an ``InputError`` (a wrong value, a malformed
  or unreadable file, an output target that is not a regular file), a missing optional
  extra (the line ends in the ``pip install`` command), an ``OSError`` (no permission,
  disk full), a run too large for this machine's memory, or bad command-line flags;
- 3: an internal error, which is a bug: one line asking for a report;
- 130: interrupted (Ctrl-C).

Every error is one line on stderr, never a traceback; ``GRPO_ALIGN_DEBUG=1`` re-raises
unexpected exceptions so that their traceback is shown. The command modules import only
light packages at module level, so building the parser loads no torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from grpo_align.errors import InputError

#: subcommand -> module in grpo_align.commands defining ``add_arguments(parser)`` and ``run(args)``
COMMANDS = {
    "solve": "Stationary policies of GRPO variants for a problem in a TOML file",
    "train": "Train a tabular policy with GRPO and compare with the predicted stationary policy",
    "reproduce": "Reproduce every finding of the paper as an HTML/Markdown report",
    "lm": "GRPO on a tiny causal language model, predicted before training",
    "predict": "Per-prompt end points of a run: per-prompt statistics and a trainer config in",
    "explain": "What a TRL, verl or OpenRLHF config trains: the mapping, in words, with predictions",
    "measure": "Sample a model's per-prompt rewards and write the STATS file that predict reads",
}

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: 128 + SIGPIPE, what a shell reports for a command whose reader closed the pipe
EXIT_BROKEN_PIPE = 141

#: set to 1 to see the traceback of an unexpected exception instead of the one-line report
DEBUG_ENV = "GRPO_ALIGN_DEBUG"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: MESSAGE (see grpo-align ... --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT, f"error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="grpo-align",
        description="What policy does GRPO converge to? Exact stationary policies (arXiv:2502.18548).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"grpo_align.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _version() -> str:
    from grpo_align import __version__

    return __version__


def one_line(text: str) -> str:
    """``text`` on one line: line breaks and other control characters shown escaped."""
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


def describe_os_error(exc: OSError) -> str:
    """``PATH: reason`` for an OSError (no permission, disk full, not a folder, ...)."""
    reason = exc.strerror or type(exc).__name__
    if exc.filename is not None:
        target = os.fsdecode(exc.filename)
        if exc.filename2 is not None:
            target += f" -> {os.fsdecode(exc.filename2)}"
        return f"{target}: {reason}"
    return reason


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_INPUT
    try:
        return int(args._run(args) or 0)
    except InputError as exc:  # MissingExtraError included
        return _fail(str(exc))
    except BrokenPipeError:
        # the reader went away (`grpo-align solve ... | head`): stop quietly, as cat does;
        # stdout is pointed at devnull so the interpreter's final flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except FileNotFoundError as exc:
        if exc.filename is None:
            return _fail(describe_os_error(exc))
        return _fail(f"file not found: {os.fsdecode(exc.filename)}")
    except OSError as exc:
        return _fail(describe_os_error(exc))
    except MemoryError:
        return _fail("out of memory; make the problem or the run smaller")
    except RecursionError:
        return _fail("input nested too deeply")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        detail = one_line(f"{type(exc).__name__}: {exc}")[:300]
        print(
            f"internal error: {detail} (please report it, with the input; {DEBUG_ENV}=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _fail(message: str) -> int:
    print(f"error: {one_line(message)}", file=sys.stderr)
    return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
