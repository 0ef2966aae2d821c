"""Atomic file writing and the conversions behind the report's files.

Every file is written to a temporary file in the same folder and moved into place with
``os.replace``, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from grpo_align.report.common import fmt
from grpo_align.report.model import FigureOut, Table

__all__ = ["atomic_write", "figure_bytes", "json_bytes", "table_csv_bytes", "to_jsonable"]


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def to_jsonable(obj: Any) -> Any:
    """Numbers, arrays and containers as plain JSON values; NaN and infinities become null/strings."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


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
