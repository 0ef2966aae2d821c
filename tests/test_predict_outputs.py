"""``grpo-align predict``'s output folder: the outputs of one run land together or not at all.

Issue 18: an empty input touches nothing (item 2); a second run on the same folder, a link
planted among the outputs and an interrupt at any point leave one run's complete set, the
old or the new, and no staging leftovers (item 3); failed prompts have empty results and
stay out of the means (item 4); ``--out ""`` and a device as ``--out`` are one-line errors
that say what they are (item 9).

Every run goes through the public entry points: ``cli.main`` or ``run_predict`` (its
``on_start`` / ``on_chunk`` callbacks are where a test acts in the middle of a run).
Interrupts are real ``SIGINT``s, raised at each file replacement of a run in turn.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from grpo_align.cli import main
from grpo_align.errors import InputError
from grpo_align.predict import run_predict
from grpo_align.predict.config import SpecSource
from grpo_align.theory import GRPO

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


# ---------------------------------------------------------------------------- item 3: one set at a time
def test_a_link_among_the_outputs_is_refused_before_anything_is_replaced(tmp_path, capsys, earlier):
    (tmp_path / "elsewhere.json").write_bytes((earlier / "summary.json").read_bytes())
    (earlier / "summary.json").unlink()
    (earlier / "summary.json").symlink_to(tmp_path / "elsewhere.json")
    before = _snapshot(earlier)
    assert _predict(_new_input(tmp_path), earlier) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "summary.json" in err and "symbolic link" in err, err
    assert _snapshot(earlier) == before


def test_a_link_planted_during_the_run_leaves_the_old_set(tmp_path, earlier):
    before = _snapshot(earlier)

    def plant(done: int, total: int | None) -> None:
        (earlier / "index.html").unlink()
        (earlier / "index.html").symlink_to(tmp_path / "nowhere.html")

    with pytest.raises(InputError, match=r"index\.html.*symbolic link"):
        run_predict(_new_input(tmp_path), GRPO.preset("paper"), SpecSource("preset", "paper"), earlier, on_chunk=plant)
    after = _snapshot(earlier)
    assert after.pop("index.html") == ("link", str(tmp_path / "nowhere.html"))
    before.pop("index.html")
    assert after == before  # predictions, Parquet and summary are the earlier run's; no staging left


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_runs(tmp_path, capsys, earlier):
    second: list[tuple[int, str]] = []

    def start_another(total: int | None) -> None:
        second.append((_predict(EXAMPLE, earlier), capsys.readouterr().err))

    run_predict(
        _new_input(tmp_path), GRPO.preset("paper"), SpecSource("preset", "paper"), earlier, on_start=start_another
    )
    assert second == [
        (2, f"error: --out: {earlier} is in use by another grpo-align run; wait for it or choose another folder\n")
    ]
    assert _run_of(earlier) == dict.fromkeys(OUTPUTS, len(NEW_ROWS))


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".lock")


def _count_replaces(monkeypatch: pytest.MonkeyPatch, stats: Path, out: Path) -> int:
    real = os.replace
    calls = [0]

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(os, "replace", counting)
    assert _predict(stats, out) == 0
    monkeypatch.setattr(os, "replace", real)
    return calls[0]


def test_an_interrupt_at_any_replacement_leaves_one_complete_set(tmp_path, capsys, monkeypatch, earlier):
    """SIGINT at the k-th ``os.replace`` of a run, for every k: the old set or the new one."""
    stats = _new_input(tmp_path)
    replaces = _count_replaces(monkeypatch, stats, tmp_path / "count")
    assert replaces >= len(OUTPUTS)
    old = _run_of(earlier)
    seen = set()
    real = os.replace
    for k in range(1, replaces + 1):
        folder = tmp_path / f"k{k}"
        assert _predict(EXAMPLE, folder) == 0
        calls = [0]

        def interrupting(*args, _k=k, _calls=calls, **kwargs):
            _calls[0] += 1
            if _calls[0] == _k:
                signal.raise_signal(signal.SIGINT)
            return real(*args, **kwargs)

        monkeypatch.setattr(os, "replace", interrupting)
        try:
            rc = _predict(stats, folder)
        finally:
            monkeypatch.setattr(os, "replace", real)
        assert rc == 130, (k, capsys.readouterr().err)
        runs = _run_of(folder)
        assert runs in (old, dict.fromkeys(OUTPUTS, len(NEW_ROWS))), (k, runs)
        assert _hidden(folder) == [], k
        seen.add(runs["summary.json"])
    assert seen == {32, len(NEW_ROWS)}  # interrupts before the move and during it were both tried


def test_an_interrupt_while_the_page_is_drawn_leaves_the_old_set(tmp_path, capsys, monkeypatch, earlier):
    from grpo_align.predict import html

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(html, "render_page", interrupted)
    before = _snapshot(earlier)
    assert _predict(_new_input(tmp_path), earlier) == 130
    assert _snapshot(earlier) == before


def test_outputs_this_run_does_not_write_are_removed(tmp_path, capsys, earlier):
    """--no-html: the earlier run's page would describe another run; it goes."""
    assert _predict(_new_input(tmp_path), earlier, "--no-html") == 0
    assert capsys.readouterr().out.rstrip().endswith("summary.json")
    assert _run_of(earlier) == {**dict.fromkeys(OUTPUTS, len(NEW_ROWS)), "index.html": None}


# ---------------------------------------------------------------------------- item 4: failed prompts
def _failing(monkeypatch: pytest.MonkeyPatch, fails) -> None:
    """Make the solver fail the contexts where ``fails(p0 of the context)`` holds, as it
    does for real: status "failed", success False, a candidate policy (here pi_ref)."""
    from grpo_align.predict import engine

    real = engine.stationary_policy

    def solver(problem, algo):
        res = real(problem, algo)
        bad = np.array([bool(fails(float(p))) for p in problem.ref[:, 0]])
        policy = np.where(bad[:, None], problem.ref, res.policy)
        status = tuple("failed" if b else s for b, s in zip(bad, res.status, strict=True))
        message = tuple("no stationary policy found (test)" if b else m for b, m in zip(bad, res.message, strict=True))
        return dataclasses.replace(res, policy=policy, status=status, message=message, success=res.success & ~bad)

    monkeypatch.setattr(engine, "stationary_policy", solver)


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "predictions.csv").open(newline="") as fh:
        return {row["prompt_id"]: row for row in csv.DictReader(fh)}


def test_failed_prompts_have_no_results_and_stay_out_of_the_means(tmp_path, capsys, monkeypatch):
    _failing(monkeypatch, lambda p: p > 0.6)
    out = tmp_path / "out"
    assert _predict(_new_input(tmp_path), out) == 1
    text = capsys.readouterr().out
    rows = _rows(out)
    ok = [r for r in rows.values() if r["status"] != "failed"]
    assert sorted(r["prompt_id"] for r in rows.values() if r["status"] == "failed") == ["n3", "n4"]
    for row in rows.values():
        if row["status"] == "failed":
            assert (row["predicted"], row["kl"], row["rlhf"]) == ("", "", ""), row
            assert row["p0"] != ""  # the input is still shown
        else:
            assert row["predicted"] != "" and row["kl"] != "" and row["rlhf"] != ""
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["prompts"], summary["failed"], summary["means_over"]) == (5, 2, 3)
    for name in ("p0", "predicted", "kl", "rlhf"):
        assert summary[f"mean_{name}"] == pytest.approx(np.mean([float(r[name]) for r in ok]), abs=1e-12), name
    assert "means over 3 of 5 prompts (2 failed, left out)" in text
    assert (out / "index.html").read_text().count("means over 3 of 5 prompts (2 failed, left out)") == 1


def test_a_run_where_every_prompt_failed_shows_no_mean(tmp_path, capsys, monkeypatch):
    _failing(monkeypatch, lambda p: True)
    out = tmp_path / "out"
    assert _predict(EXAMPLE, out) == 1
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["prompts"], summary["failed"], summary["means_over"]) == (32, 32, 0)
    assert all(
        summary[f"mean_{k}"] is None for k in ("p0", "predicted", "predicted_low", "predicted_high", "kl", "rlhf")
    )
    assert "0.4926" not in text  # the mean p0 of the example, once shown as the prediction
    reason = "no means: the solve failed for every prompt"
    assert reason in text and (out / "index.html").read_text().count(reason) == 1
    rows = _rows(out)
    assert all(r["predicted"] == r["predicted_low"] == r["predicted_high"] == r["kl"] == "" for r in rows.values())


# ---------------------------------------------------------------------------- item 9: --out itself
def test_an_empty_out_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stats = _new_input(tmp_path)
    assert _predict(stats, "") == 2
    assert capsys.readouterr().err == "error: --out: empty path; give a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.jsonl"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("/dev/full", "/dev/full is a device; expected a folder"),
        ("/dev/full/x", "/dev/full/x cannot be created: /dev/full is a device; expected a folder"),
    ],
)
def test_a_device_as_out_is_called_a_device(tmp_path, capsys, out, message):
    assert _predict(_new_input(tmp_path), out) == 2
    assert capsys.readouterr().err == f"error: --out: {message}\n"


def test_a_file_as_out_is_called_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert _predict(_new_input(tmp_path), tmp_path / "f" / "sub") == 2
    assert (
        capsys.readouterr().err
        == f"error: --out: {tmp_path / 'f' / 'sub'} cannot be created: {tmp_path / 'f'} is a file; expected a folder\n"
    )


def test_a_link_at_the_lock_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").symlink_to(tmp_path / "elsewhere")
    assert _predict(_new_input(tmp_path), out) == 2
    assert capsys.readouterr().err == (
        f"error: {out / '.lock'}: exists and is a symbolic link; only regular files are written: remove it\n"
    )
    assert not (tmp_path / "elsewhere").exists() and sorted(p.name for p in out.iterdir()) == [".lock"]
