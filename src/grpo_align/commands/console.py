"""The rich Console the commands print their results through."""

from __future__ import annotations

from rich.console import Console


class StdoutConsole(Console):
    """A Console whose broken pipe reaches ``cli.main`` as ``BrokenPipeError``.

    rich's own handler turns a closed pipe (``grpo-align solve ... | head``) into
    ``SystemExit(1)``, the status of a failed solve; ``cli.main`` answers a broken pipe with
    141 (128 + SIGPIPE) like any other command whose reader went away.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError("stdout closed by its reader")
