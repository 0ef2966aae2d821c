"""``grpo-align reproduce``: every finding of the paper reproduced, plotted and verified.

Each section module (``binary``, ``pooling``, ...) has ``KEY``, ``TITLE`` and
``build(cfg) -> SectionResult``; ``runner`` runs them and writes the HTML page, its
Markdown twin, the figures, the data and ``summary.json``.
"""

from grpo_align.report.model import FigureOut, ReportConfig, SectionResult, SectionSpec, Table, Verdict
from grpo_align.report.runner import SECTIONS, ReportOutcome, build_report, resolve_sections

__all__ = [
    "SECTIONS",
    "FigureOut",
    "ReportConfig",
    "ReportOutcome",
    "SectionResult",
    "SectionSpec",
    "Table",
    "Verdict",
    "build_report",
    "resolve_sections",
]
