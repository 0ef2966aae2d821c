"""``grpo-align predict``'s output folder.

Issue 18 item 2: an empty input (a header without rows, an empty Parquet file) is a
one-line exit 2 that touches nothing, as an empty JSON Lines file already was.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
from pathlib import Path

import pytest

from grpo_align.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "pass_rates.jsonl"
OUTPUTS = ("predictions.csv", "predictions.parquet", "summary.json", "index.html")

#: a second input, told apart from the example by its prompt count
NEW_ROWS = [{"prompt_id": f"n{i}", "p0": p} for i, p in enumerate([0.1, 0.3, 0.5, 0.7, 0.9])]


def _predict(stats: Path, out: Path | str, *flags: str) -> int:
    return main(
        ["predict", str(stats), "--preset", "paper", "--out", str(out), "--quiet", "--planner-prompts", "0", *flags]
    )


def _snapshot(folder: Path) -> dict[str, object]:
    """Every entry of ``folder`` (hidden ones included): a file's bytes, a link's target."""
    entries: dict[str, object] = {}
    for path in sorted(folder.iterdir()):
        if path.is_symlink():
            entries[path.name] = ("link", os.readlink(path))
        elif path.is_dir():
            entries[path.name] = ("folder", _snapshot(path))
        else:
            entries[path.name] = path.read_bytes()
    return entries


def _new_input(tmp_path: Path) -> Path:
    path = tmp_path / "new.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in NEW_ROWS))
    return path


@pytest.fixture
def earlier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A folder holding a complete earlier run of the 32-prompt example."""
    out = tmp_path / "out"
    assert _predict(EXAMPLE, out) == 0
    capsys.readouterr()
    assert all((out / name).is_file() for name in OUTPUTS)
    return out


def _run_of(folder: Path) -> dict[str, object]:
    """Which run each output comes from: its prompt count (None where it is absent)."""
    runs: dict[str, object] = {}
    csv_path = folder / "predictions.csv"
    if csv_path.exists():
        with csv_path.open(newline="") as fh:
            runs["predictions.csv"] = sum(1 for _ in csv.DictReader(fh))
    else:
        runs["predictions.csv"] = None
    pq_path = folder / "predictions.parquet"
    if pq_path.exists():
        import pyarrow.parquet as pq

        runs["predictions.parquet"] = pq.read_metadata(pq_path).num_rows
    else:
        runs["predictions.parquet"] = None
    summary = folder / "summary.json"
    runs["summary.json"] = json.loads(summary.read_text())["prompts"] if summary.exists() else None
    page = folder / "index.html"
    if page.exists():
        match = re.search(r"<tr><th>prompts</th><td class='num'>(\d+)</td>", page.read_text())
        runs["index.html"] = int(match.group(1)) if match else "unreadable"
    else:
        runs["index.html"] = None
    return runs


# ---------------------------------------------------------------------------- item 2: empty input
def _empty_inputs(tmp_path: Path) -> dict[str, Path]:
    paths = {"header-only CSV": tmp_path / "empty.csv", "header-only CSV.gz": tmp_path / "empty.csv.gz"}
    paths["header-only CSV"].write_text("prompt_id,n,correct\n")
    paths["header-only CSV.gz"].write_bytes(gzip.compress(b"prompt_id,p0\n"))
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return paths
    schema = pa.schema([("prompt_id", pa.string()), ("n", pa.int64()), ("correct", pa.int64())])
    pq.write_table(schema.empty_table(), tmp_path / "empty.parquet")
    paths["empty Parquet"] = tmp_path / "empty.parquet"
    return paths


@pytest.mark.parametrize("kind", ["header-only CSV", "header-only CSV.gz", "empty Parquet"])
def test_an_empty_input_is_one_line_and_touches_nothing(tmp_path, capsys, earlier, kind):
    paths = _empty_inputs(tmp_path)
    if kind not in paths:
        pytest.skip("pyarrow is not installed")
    before = _snapshot(earlier)
    assert _predict(paths[kind], earlier) == 2
    assert capsys.readouterr().err == f"error: {paths[kind]}: has no rows; expected one row per prompt\n"
    assert _snapshot(earlier) == before
    # a folder that does not exist yet is not created
    assert _predict(paths[kind], tmp_path / "fresh") == 2
    assert not (tmp_path / "fresh").exists()
