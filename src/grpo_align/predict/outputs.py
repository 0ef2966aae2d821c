"""Writers of ``predictions.csv`` and ``predictions.parquet``: rows appended chunk by chunk to a
temporary file in the folder given, moved into place atomically when the writer closes
(``grpo_align.files.atomic_path``): a reader never sees half a file, and an interrupted
write leaves the old one. ``predict`` gives its staging folder, whose files then move into
the output folder together with the summary and the page (``grpo_align.predict.pipeline``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from grpo_align.extras import missing_modules
from grpo_align.files import atomic_path
from grpo_align.predict.engine import COLUMNS

__all__ = ["INTEGER_COLUMNS", "PredictionWriter", "format_cell", "parquet_available"]

#: columns written as integers (NaN -> empty)
INTEGER_COLUMNS = ("n", "correct", "roots")
TEXT_COLUMNS = ("prompt_id", "status")


def parquet_available() -> bool:
    """Whether pyarrow is installed (``predictions.parquet`` is written beside the CSV)."""
    return not missing_modules("pyarrow")


def format_cell(column: str, value: Any) -> str:
    """A CSV cell: shortest round-trip repr of a float, an integer, or empty for NaN."""
    if column in TEXT_COLUMNS:
        return str(value)
    x = float(value)
    if math.isnan(x):
        return ""
    if column in INTEGER_COLUMNS:
        return str(int(x))
    return repr(x)


class PredictionWriter:
    """Append chunks of prediction columns; ``close()`` moves the files into place.

    Use as a context manager: on an exception the temporary files are removed.
    """

    def __init__(self, out_dir: Path, parquet: bool | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.parquet = parquet_available() if parquet is None else parquet
        self._stack = ExitStack()
        self._csv_tmp = self._stack.enter_context(atomic_path(self.out_dir / "predictions.csv"))
        self._csv_fh = self._stack.enter_context(self._csv_tmp.open("w", encoding="utf-8", newline=""))
        self._csv = csv.writer(self._csv_fh, lineterminator="\n")
        self._csv.writerow(COLUMNS)
        self._pq_writer: Any = None
        self._pq_tmp: Path | None = None
        if self.parquet:
            self._pq_tmp = self._stack.enter_context(atomic_path(self.out_dir / "predictions.parquet"))
        self.rows = 0

    def _schema(self) -> Any:
        import pyarrow as pa

        types = {c: pa.float64() for c in COLUMNS}
        types.update({"prompt_id": pa.string(), "status": pa.string(), "n": pa.int64(), "correct": pa.int64()})
        types["roots"] = pa.int64()
        return pa.schema([(c, types[c]) for c in COLUMNS])

    def write(self, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> None:
        """Append one chunk (``COLUMNS`` as equal-length sequences)."""
        size = len(columns["prompt_id"])
        cols = [columns[c] for c in COLUMNS]
        for i in range(size):
            self._csv.writerow([format_cell(c, col[i]) for c, col in zip(COLUMNS, cols, strict=True)])
        if self.parquet:
            self._write_parquet(columns)
        self.rows += size

    def _write_parquet(self, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = self._schema()
        arrays = []
        for c in COLUMNS:
            values = columns[c]
            if c in INTEGER_COLUMNS:
                x = np.asarray(values, dtype=float)
                arrays.append(pa.array(np.where(np.isnan(x), 0, x).astype(np.int64), mask=np.isnan(x)))
            elif c in TEXT_COLUMNS:
                arrays.append(pa.array([str(v) for v in values], type=pa.string()))
            else:
                x = np.asarray(values, dtype=float)
                arrays.append(pa.array(x, mask=np.isnan(x)))
        if self._pq_writer is None:
            self._pq_writer = pq.ParquetWriter(str(self._pq_tmp), schema)
        self._pq_writer.write_table(pa.Table.from_arrays(arrays, schema=schema))

    def close(self) -> None:
        if self.parquet and self._pq_writer is None:  # no rows: an empty table still has the schema
            import pyarrow.parquet as pq

            self._pq_writer = pq.ParquetWriter(str(self._pq_tmp), self._schema())
        if self._pq_writer is not None:
            self._pq_writer.close()
        self._csv_fh.flush()
        self._stack.close()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        if self._pq_writer is not None:
            self._pq_writer.close()
        # atomic_path removes the temporary files when the exception passes through it
        self._stack.__exit__(exc_type, exc, tb)
