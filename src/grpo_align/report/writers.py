"""The conversions behind the report's files (written atomically by ``grpo_align.files``)."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np

from grpo_align.files import to_jsonable
from grpo_align.report.common import fmt
from grpo_align.report.model import FigureOut, Table

__all__ = ["figure_bytes", "json_bytes", "table_csv_bytes"]


def json_bytes(obj: Any) -> bytes:
    """Deterministic JSON (sorted keys, shortest round-trip floats)."""
    return (json.dumps(to_jsonable(obj), indent=1, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def table_csv_bytes(table: Table) -> bytes:
    """A table as CSV with full-precision numbers (the HTML shows them rounded)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(
            [
                ""
                if (isinstance(v, float) and math.isnan(v))
                else (repr(float(v)) if isinstance(v, (float, np.floating)) else v)
                for v in row
            ]
        )
    return buf.getvalue().encode("utf-8")


def table_text_rows(table: Table) -> list[list[str]]:
    """Rows of a table as display strings."""
    return [[fmt(v) for v in row] for row in table.rows]


def figure_bytes(fig: FigureOut) -> tuple[bytes, bytes]:
    """(PNG, SVG) bytes of a figure, free of dates so reruns give the same files."""
    png, svg = io.BytesIO(), io.BytesIO()
    fig.figure.savefig(png, format="png", metadata={"Software": None})
    fig.figure.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return png.getvalue(), svg.getvalue()
