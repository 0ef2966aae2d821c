"""Errors raised on bad input.

Every message names the offending field and what is expected, on one line, so the CLI can
print it as it is and exit with status 2.
"""

from __future__ import annotations

__all__ = ["ConvergenceError", "InputError"]


class InputError(ValueError):
    """Bad input: the message names the field and the fix."""

    def __init__(self, field: str, expected: str) -> None:
        self.field = field
        self.expected = expected
        super().__init__(f"{field}: {expected}")


class ConvergenceError(RuntimeError):
    """An iterative computation stopped at its iteration cap without meeting its tolerance.

    Raised instead of returning the last iterate, so that no caller takes an unconverged
    value for the answer (the closed forms are test oracles).
    """
