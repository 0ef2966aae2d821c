"""What a report section is: a claim, figures, tables, the data behind them and a verdict."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, Union

import numpy as np

__all__ = [
    "JSON",
    "STATUSES",
    "FigureOut",
    "ReportConfig",
    "SectionData",
    "SectionResult",
    "SectionSpec",
    "Table",
    "Verdict",
]

#: a table cell: a number (numpy scalars included) or text
Cell: TypeAlias = float | int | str | np.generic

#: what a section's data files hold: numbers, strings, arrays and nestings of them
JSON: TypeAlias = Union[float, int, bool, str, np.ndarray, "list[JSON]", "tuple[JSON, ...]", "dict[str, JSON]", None]


@dataclass(frozen=True)
class ReportConfig:
    """Settings shared by every section.

    quick : fewer grid points, problems and seeds (the whole report within two minutes
        on 2 cores); seed : base seed, each section derives its own from it and its name,
        so ``--only`` does not change a section's numbers.
    """

    quick: bool = False
    seed: int = 0
    #: called with a short status line while a section runs (progress display)
    status: Callable[[str], None] = field(default=lambda _msg: None, repr=False, compare=False)

    def rng(self, section: str) -> np.random.Generator:
        """The section's random generator: a function of (seed, section name) only."""
        return np.random.default_rng([self.seed, zlib.crc32(section.encode())])

    def section_seed(self, section: str) -> int:
        """An integer seed for a section's trainer runs, derived like ``rng``."""
        return int(self.rng(section).integers(2**31 - 1))


@dataclass
class FigureOut:
    """A matplotlib figure to write as ``figures/<section>-<name>.png`` and ``.svg``."""

    name: str
    figure: Any  # matplotlib.figure.Figure
    caption: str
    alt: str = ""


@dataclass(frozen=True)
class Table:
    """A small table: ``rows`` hold numbers or strings, formatted by the writers."""

    name: str
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""


#: the three outcomes of a section
STATUSES = ("passed", "failed", "skipped")


@dataclass
class Verdict:
    """Outcome of a section's claim, with the measured numbers (or why nothing was) in words.

    ``Verdict(True, text)`` passed, ``Verdict(False, text)`` failed; ``Verdict.skip(text)``
    marks a section whose optional extra is not installed: nothing was measured, which is
    neither a pass nor a failure (``reproduce`` still exits 0).
    """

    passed: bool
    text: str
    skipped: bool = False

    def __post_init__(self) -> None:
        if self.passed and self.skipped:
            raise ValueError("a skipped verdict cannot have passed")

    @classmethod
    def skip(cls, text: str) -> Verdict:
        """A section that did not run (its extra is missing); ``text`` says how to install it."""
        return cls(False, text, skipped=True)

    @property
    def status(self) -> str:
        """One of ``STATUSES``: passed, failed or skipped."""
        return "skipped" if self.skipped else "passed" if self.passed else "failed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def label(self) -> str:
        """PASS, FAIL or SKIP: the badge of the HTML/Markdown page and the console line."""
        return {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[self.status]

    def __repr__(self) -> str:
        return f"Verdict({self.label}: {self.text})"


class SectionData(Protocol):
    """What a section's ``compute`` returns: a frozen dataclass of numbers and arrays.

    ``measured()`` gives the numbers the verdict rests on (summary.json), ``json()`` the data
    behind every figure (data/<key>.json); ``tables`` are data too, computed with the rest.
    Nothing here needs matplotlib: a section's ``render`` turns it into figures.
    """

    @property
    def tables(self) -> tuple[Table, ...]: ...

    def measured(self) -> dict[str, JSON]: ...

    def json(self) -> dict[str, JSON]: ...


@dataclass
class SectionResult:
    """One finding, reproduced: written as an HTML/Markdown section, JSON and CSV data."""

    key: str
    number: int
    title: str
    claim: str
    verdict: Verdict
    figures: list[FigureOut] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    #: the numbers the verdict rests on (summary.json)
    measured: dict[str, JSON] = field(default_factory=dict)
    #: the data behind every figure (data/<key>.json); None for a section that did not compute
    data: SectionData | None = None
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"SectionResult({self.number}. {self.key}: {self.verdict!r}, figures={len(self.figures)}, tables={len(self.tables)})"


@dataclass(frozen=True)
class SectionSpec:
    """A registered section: its key (for ``--only``), number (given by the runner), title, claim and stages.

    ``compute`` measures (no matplotlib), ``verdict`` judges the data (pure), ``render``
    draws its figures; ``claim`` is the claim text, a function of the data where it depends on it.
    """

    key: str
    number: int
    title: str
    claim: str | Callable[[Any], str]
    compute: Callable[[ReportConfig], SectionData]
    verdict: Callable[[Any], Verdict]
    render: Callable[[Any], list[FigureOut]]
    notes: tuple[str, ...] = ()

    def claim_text(self, data: SectionData) -> str:
        """The claim, filled in from the data where it depends on it."""
        return self.claim if isinstance(self.claim, str) else self.claim(data)


def max_abs(a: Any, b: Any) -> float:
    """max |a - b| over all entries (nan-aware: a NaN anywhere gives inf, never a pass)."""
    d = np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
    if d.size == 0:
        return 0.0
    return math.inf if np.any(~np.isfinite(d)) else float(np.max(d))
