"""``grpo-align reproduce``: every finding of the paper reproduced, plotted and verified.

Each section module (``binary``, ``pooling``, ...) has ``KEY``, ``TITLE``, ``CLAIM`` and three
stages: ``compute(cfg)`` measures and returns a frozen dataclass of numbers, arrays and tables
(no matplotlib), ``verdict(data)`` judges it (pure) and ``render(data)`` draws its figures.
``runner`` numbers the sections (the order of ``MODULES``; the only place numbers come from),
assembles each ``SectionResult`` and writes the HTML page, its Markdown twin, the figures,
the data and ``summary.json``.
"""

from grpo_align.report.model import FigureOut, ReportConfig, SectionData, SectionResult, SectionSpec, Table, Verdict
from grpo_align.report.runner import SECTIONS, ReportOutcome, build_report, resolve_sections

__all__ = [
    "SECTIONS",
    "FigureOut",
    "ReportConfig",
    "ReportOutcome",
    "SectionData",
    "SectionResult",
    "SectionSpec",
    "Table",
    "Verdict",
    "build_report",
    "resolve_sections",
]
