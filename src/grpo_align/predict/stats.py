"""Per-prompt statistics files: read in chunks, validate, and turn into columns.

A STATS file has one row per prompt: a ``prompt_id`` and one of

* ``n`` and ``correct``: completions sampled from the reference model and how many were right;
* ``p0``: the reference model's probability of a correct answer, given directly;
* ``rewards``: the list of the sampled completions' rewards (an empirical reward distribution).

When a file has several of these, ``n`` + ``correct`` wins over ``p0``, and ``p0`` over
``rewards`` (``StatsChunk.kind`` says which was read). Formats: JSON Lines (``.jsonl``,
``.ndjson``, also gzipped), CSV (``.csv``, ``.tsv``, also gzipped; a ``rewards`` cell holds
a JSON list or numbers separated by spaces or semicolons), Parquet (``.parquet``, ``.pq``)
and a Hugging Face ``datasets`` folder (``Dataset.save_to_disk``). The last two need the
``data`` extra (pyarrow, datasets).

The format is the last suffix's, before an optional ``.gz`` (``my.tsv.backup.csv`` is
comma-separated). Every file is read in chunks of ``chunk_size`` rows, so a file larger
than memory streams through; text goes through ``files.TextLines`` and ``files.read_csv``
(regular UTF-8 files only, a byte-order mark dropped, a line at most
``files.MAX_LINE_BYTES``, gzip errors with their fix, a column or key twice refused) and
Parquet through ``files.open_regular_file``. Counts are whole numbers up to ``MAX_COUNT``
= 2**53, compared exactly before any conversion to float. Bad input raises a one-line
``InputError`` naming the file, the row (the 1-based line for JSON Lines and CSV, the
1-based row otherwise) and the column.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grpo_align.errors import InputError
from grpo_align.extras import require
from grpo_align.files import TextLines, loads_json, open_regular_file, primed, read_csv

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FORMATS",
    "KINDS",
    "MAX_COUNT",
    "StatsChunk",
    "StatsReader",
    "detect_format",
    "open_stats",
]

#: rows read, solved and written at a time
DEFAULT_CHUNK_SIZE = 100_000

#: largest n or correct: 2**53, the largest integer up to which every integer is a float64
MAX_COUNT = 2**53

#: the input kinds, in order of precedence, with the columns each needs
KINDS: dict[str, tuple[str, ...]] = {"counts": ("n", "correct"), "p0": ("p0",), "rewards": ("rewards",)}

FORMATS = ("jsonl", "csv", "parquet", "datasets")

_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}

_MISSING = object()


@dataclass(frozen=True)
class StatsChunk:
    """One chunk of validated rows (columns as arrays, one entry per prompt).

    Attributes
    ----------
    kind : {"counts", "p0", "rewards"}
    prompt_id : list of str
    rows : ndarray of int
        The 1-based line (JSON Lines, CSV) or row (Parquet, datasets) of each prompt.
    n : ndarray of float
        Sampled completions (NaN for kind "p0"; the number of rewards for "rewards").
    correct : ndarray of float
        Correct completions (NaN unless kind is "counts").
    p0 : ndarray of float
        The ``p0`` column (NaN unless kind is "p0": ``estimate`` computes the others).
    rewards : list of ndarray or None
        The sampled rewards of each prompt (kind "rewards" only).
    """

    kind: str
    prompt_id: list[str]
    rows: np.ndarray
    n: np.ndarray
    correct: np.ndarray
    p0: np.ndarray
    rewards: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.prompt_id)


def detect_format(path: Path) -> str:
    """The format of ``path`` from its suffix (a folder is a ``datasets`` folder)."""
    if path.is_dir():
        return "datasets"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InputError(
            str(path),
            "unknown format; expected .jsonl, .csv, .parquet (optionally .gz for the first two) "
            "or a folder written by datasets' save_to_disk",
        )
    if fmt == "parquet" and path.suffix.lower() == ".gz":
        raise InputError(str(path), "a Parquet file compresses itself; expected .parquet, not .parquet.gz")
    return fmt


# ---------------------------------------------------------------------------- row sources
def _jsonl_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    with TextLines(path) as lines:
        for line in lines:
            if not line.strip():
                continue
            where = f"{path}, line {lines.line_no}"
            row = loads_json(line, where, "expected one object per line", position=False)
            if not isinstance(row, dict):
                raise InputError(where, f"expected a JSON object, got {type(row).__name__}")
            yield lines.line_no, row


def _csv_rows(rows: Iterator[tuple[int, dict[str, str]]]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for line_no, row in rows:
        # an empty cell is a missing value (CSV has no null)
        cells = {k: v for k, v in row.items() if v.strip()}
        if cells:
            yield line_no, cells


def _arrow_rows(batches: Iterator[Any]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    row_no = 0
    for batch in batches:
        for row in batch.to_pylist():
            row_no += 1
            yield row_no, {k: v for k, v in row.items() if v is not None}


def _parquet_columns_and_rows(
    path: Path, chunk_size: int
) -> tuple[list[str], Iterator[tuple[int, Mapping[str, Any]]], int]:
    require("data", "reading Parquet", "pyarrow")
    import pyarrow.parquet as pq

    fh = open_regular_file(path)  # a FIFO or device: refused, not read
    try:
        pf = pq.ParquetFile(fh)
    except Exception as exc:  # pyarrow raises its own error types for a file that is no Parquet
        fh.close()
        raise InputError(str(path), f"not a readable Parquet file ({str(exc).splitlines()[0]})") from None

    def batches() -> Generator[Any, None, None]:
        with fh:
            yield None  # primed: from here on the generator owns the file
            yield from pf.iter_batches(batch_size=chunk_size)

    return list(pf.schema_arrow.names), _arrow_rows(primed(batches())), pf.metadata.num_rows


def _datasets_columns_and_rows(
    path: Path, chunk_size: int
) -> tuple[list[str], Iterator[tuple[int, Mapping[str, Any]]], int]:
    require("data", "reading a datasets folder", "pyarrow", "datasets")
    import datasets

    _check_regular_files(path)
    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise InputError(str(path), "is a folder but no datasets save_to_disk output (no dataset_info.json)") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if len(splits) != 1:
            raise InputError(
                str(path), f"holds the splits {', '.join(splits)}; pass one split's folder, e.g. {path / splits[0]}"
            )
        ds = ds[splits[0]]
    table = ds.with_format("arrow")
    batches = (table[i : i + chunk_size] for i in range(0, len(ds), chunk_size))
    return list(ds.column_names), _arrow_rows(batches), len(ds)


def _check_regular_files(folder: Path, depth: int = 2) -> None:
    """Refuse a FIFO, device or socket (links followed) in a datasets folder or its split folders."""
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if depth > 1:
                _check_regular_files(entry, depth - 1)
        elif entry.exists():  # a dangling link: datasets says what it misses
            open_regular_file(entry).close()


# ---------------------------------------------------------------------------- values
def _where(path: Path, fmt: str, row: int, column: str) -> str:
    unit = "line" if fmt in ("jsonl", "csv") else "row"
    return f"{path}, {unit} {row}, column {column}"


def _number(value: Any, where: str) -> float:
    """A finite number from a JSON/Arrow value or a CSV cell."""
    if isinstance(value, bool):
        raise InputError(where, f"expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise InputError(where, f"expected a number, got {value.strip()[:40]!r}") from None
    elif isinstance(value, numbers.Real):
        try:
            out = float(value)
        except OverflowError:  # an integer past float's range (JSON has no bound)
            raise InputError(where, "expected a finite number, got an integer above 1.8e308") from None
    else:
        raise InputError(where, f"expected a number, got {type(value).__name__}")
    if not math.isfinite(out):
        raise InputError(where, f"expected a finite number, got {out}")
    return out


def _whole(value: Any) -> int | None:
    """``value`` as an exact integer when it is written as one (an int, or a CSV cell of digits)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,40}", value.strip()):
        return int(value.strip())
    return None


def _count(value: Any, where: str) -> int:
    """A count of completions: a whole number in [0, MAX_COUNT].

    Integers are compared exactly before any conversion to float, so 2**63 - 1 is not
    taken for 2**63 and 1e20 does not wrap around in an int64 column.
    """
    exact = _whole(value)
    if exact is None:
        x = _number(value, where)
        if x <= MAX_COUNT and (x != int(x) or x < 0):
            raise InputError(where, f"expected a whole number >= 0, got {value!r}")
        exact = int(x)
    if exact > MAX_COUNT:
        raise InputError(
            where,
            f"{_shown(value)} is above 2**53 = {MAX_COUNT}, the largest count a float64 holds exactly; "
            "expected a count of sampled completions",
        )
    if exact < 0:
        raise InputError(where, f"expected a whole number >= 0, got {value!r}")
    return exact


def _shown(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else f"a number of {len(text)} characters"


def _reward_list(value: Any, where: str) -> np.ndarray:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):
                raise InputError(where, f"expected a JSON list of numbers, got {text[:40]!r}") from None
        else:
            value = [v for v in text.replace(";", " ").split() if v]
    if not isinstance(value, (list, tuple)):
        raise InputError(where, f"expected a list of rewards, got {type(value).__name__}")
    if not value:
        raise InputError(where, "expected a non-empty list of rewards")
    return np.array([_number(v, f"{where}[{i}]") for i, v in enumerate(value)], dtype=float)


# ---------------------------------------------------------------------------- reader
class StatsReader:
    """Iterate over a STATS file in validated ``StatsChunk``s (see the module docstring).

    Duplicate ``prompt_id`` values are caught across chunks (only the ids are kept).
    """

    def __init__(self, path: str | Path, chunk_size: int = DEFAULT_CHUNK_SIZE, fmt: str | None = None) -> None:
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise InputError("chunk_size", f"expected an integer >= 1, got {chunk_size!r}")
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(2, "No such file or directory", str(self.path))
        self.format = fmt if fmt is not None else detect_format(self.path)
        if self.format not in FORMATS:
            raise InputError("format", f"unknown {self.format!r}; expected one of {', '.join(FORMATS)}")
        self.chunk_size = chunk_size
        self._first_line = 1
        self._total: int | None = None
        self._columns, self._rows = self._open()
        self.kind = self._kind(self._columns)
        self._seen: dict[str, int] = {}

    def _open(self) -> tuple[list[str] | None, Iterator[tuple[int, Mapping[str, Any]]]]:
        """The columns (None where only the first row tells: JSON Lines) and the row iterator."""
        if self.format in ("parquet", "datasets"):
            opener = _parquet_columns_and_rows if self.format == "parquet" else _datasets_columns_and_rows
            columns, rows, self._total = opener(self.path, self.chunk_size)
            return columns, rows
        if self.format == "csv":
            header, rows, lines = read_csv(self.path)
            if header is None:
                lines.close()
                raise InputError(
                    str(self.path), "is empty; expected a header row with prompt_id and n + correct, p0 or rewards"
                )
            return header, _csv_rows(rows)
        rows = _jsonl_rows(self.path)
        first = next(rows, None)
        if first is None:
            raise InputError(str(self.path), "has no rows; expected one JSON object per prompt")

        def chained() -> Iterator[tuple[int, Mapping[str, Any]]]:
            yield first
            yield from rows

        self._first_line = first[0]
        return list(first[1]), chained()

    def _kind(self, columns: list[str] | None) -> str:
        # JSON Lines has no header: the first row's keys stand for it
        where = f"{self.path}, line {self._first_line}" if self.format == "jsonl" else str(self.path)
        cols = set(columns or ())
        if "prompt_id" not in cols:
            raise InputError(
                f"{where}, column prompt_id", f"missing; the columns are {', '.join(sorted(cols)) or 'none'}"
            )
        for kind, needed in KINDS.items():
            if all(c in cols for c in needed):
                return kind
        if "n" in cols or "correct" in cols:
            lacking = "correct" if "n" in cols else "n"
            raise InputError(f"{where}, column {lacking}", "missing; n and correct go together")
        raise InputError(where, "expected the columns n + correct, p0 or rewards beside prompt_id")

    def total_rows(self) -> int | None:
        """Rows in the file: exact for Parquet and datasets, the number of lines (less the
        header) for uncompressed text, None for gzipped text."""
        if self._total is not None or self.path.suffix.lower() == ".gz":
            return self._total
        lines = 0
        with open_regular_file(self.path) as fh:
            while block := fh.read(1 << 20):
                lines += block.count(b"\n")
        return max(lines - (1 if self.format == "csv" else 0), 0)

    def __iter__(self) -> Iterator[StatsChunk]:
        batch: list[tuple[int, Mapping[str, Any]]] = []
        for item in self._rows:
            batch.append(item)
            if len(batch) == self.chunk_size:
                yield self._chunk(batch)
                batch = []
        if batch:
            yield self._chunk(batch)

    def _value(self, row_no: int, row: Mapping[str, Any], column: str) -> tuple[str, Any]:
        where = _where(self.path, self.format, row_no, column)
        value = row.get(column, _MISSING)
        if value is _MISSING or value is None:
            raise InputError(where, "missing value")
        return where, value

    def _chunk(self, batch: list[tuple[int, Mapping[str, Any]]]) -> StatsChunk:
        size = len(batch)
        ids: list[str] = []
        rows = np.empty(size, dtype=np.int64)
        n = np.full(size, np.nan)
        correct = np.full(size, np.nan)
        p0 = np.full(size, np.nan)
        rewards: list[np.ndarray] | None = [] if self.kind == "rewards" else None
        for i, (row_no, row) in enumerate(batch):
            rows[i] = row_no
            where, pid = self._value(row_no, row, "prompt_id")
            if isinstance(pid, bool) or not isinstance(pid, (str, int)):
                raise InputError(where, f"expected a string or an integer, got {type(pid).__name__}")
            pid = str(pid).strip()
            if not pid:
                raise InputError(where, "empty; expected an identifier")
            first = self._seen.setdefault(pid, row_no)
            if first != row_no:
                unit = "line" if self.format in ("jsonl", "csv") else "row"
                raise InputError(
                    where, f"duplicate prompt_id {pid!r} (first at {unit} {first}); expected one row per prompt"
                )
            ids.append(pid)
            if self.kind == "counts":
                where_n, value = self._value(row_no, row, "n")
                n_i = _count(value, where_n)
                if n_i < 1:
                    raise InputError(where_n, "expected at least 1 sampled completion, got 0")
                where_c, value = self._value(row_no, row, "correct")
                c_i = _count(value, where_c)
                if c_i > n_i:
                    raise InputError(where_c, f"{c_i} > n = {n_i}; expected 0 <= correct <= n")
                n[i], correct[i] = n_i, c_i
            elif self.kind == "p0":
                where_p, value = self._value(row_no, row, "p0")
                p = _number(value, where_p)
                if not 0.0 <= p <= 1.0:
                    raise InputError(where_p, f"{p:g} is outside [0, 1]; expected a probability")
                p0[i] = p
            else:
                where_r, value = self._value(row_no, row, "rewards")
                r = _reward_list(value, where_r)
                assert rewards is not None
                rewards.append(r)
                n[i] = r.size
        return StatsChunk(self.kind, ids, rows, n, correct, p0, rewards)


def open_stats(path: str | Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> StatsReader:
    """A ``StatsReader`` over ``path`` (format from the suffix; a folder is a datasets folder)."""
    return StatsReader(path, chunk_size)
