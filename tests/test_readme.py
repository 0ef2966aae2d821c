"""The README's marked blocks (``<!-- run: COMMAND -->``) show what their command prints now.

``python3 tasks.py readme`` rewrites them from real runs; this test reruns each command and
fails when the README has drifted. Numbers are compared to 1e-6 relative (and 1e-12
absolute, for residuals at the level of rounding, which vary with the platform's
arithmetic); all other text exactly, trailing spaces aside.

Long runs (docs/lm.md) store their data beside the docs (``<!-- data: PATH ... -->``) and
show a table printed from it (``<!-- table: COMMAND -->``): the default suite reprints each
table from the stored data and compares exactly, so a hand edit fails; ``-m slow`` reruns
the long run and compares its numbers with the stored ones within 3 standard errors.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _tasks():
    spec = importlib.util.spec_from_file_location("tasks", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TASKS = _tasks()
BLOCKS = [b for name in TASKS.RUN_BLOCK_FILES for b in TASKS.readme_blocks((ROOT / name).read_text())]
TABLES = [b for name in TASKS.RUN_BLOCK_FILES for b in TASKS.table_blocks((ROOT / name).read_text())]
DATA = [m for name in TASKS.RUN_BLOCK_FILES for m in TASKS.data_marks((ROOT / name).read_text())]
#: the stored `grpo-align lm --quick` run and the command that prints its table in docs/lm.md
LM_QUICK = "docs/data/lm-quick.json"
LM_QUICK_TABLE = f"grpo-align lm --from-summary {LM_QUICK} --markdown"


def _split(text: str) -> tuple[list[str], list[float]]:
    """The text with every number replaced by '#', and the numbers."""
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    joined = "\n".join(lines)
    return NUMBER.sub("#", joined).split("\n"), [float(x) for x in NUMBER.findall(joined)]


def test_readme_has_a_marked_block():
    assert BLOCKS, "README.md has no <!-- run: ... --> block"
    assert BLOCKS[0][0] == "grpo-align solve examples/binary.toml"


@pytest.mark.parametrize(("command", "shown"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_readme_block_matches_a_fresh_run(command, shown):
    fresh = TASKS.run_readme_command(command, sys.executable, dict(os.environ))
    shown_text, shown_numbers = _split(shown)
    fresh_text, fresh_numbers = _split(fresh)
    assert fresh_text == shown_text, f"README block for {command!r} drifted: run python3 tasks.py readme"
    assert len(fresh_numbers) == len(shown_numbers)
    for a, b in zip(shown_numbers, fresh_numbers, strict=True):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12), (command, a, b)


def test_split_catches_a_changed_number():
    text, numbers = _split("G=8 | 0.853564 |  \nresidual 3.9e-17")
    assert text == ["G=# | # |", "residual #"] and numbers == [8.0, 0.853564, 3.9e-17]
    assert not math.isclose(0.853564, 0.853565, rel_tol=1e-6, abs_tol=1e-12)


def test_docs_lm_tables_are_generated_from_stored_runs():
    text = (ROOT / "docs/lm.md").read_text()
    marks = {path: (file, cmd) for path, file, cmd in TASKS.data_marks(text)}
    assert marks[LM_QUICK] == ("summary.json", "grpo-align lm --quick --seed 0 --no-plots --out {out}")
    assert LM_QUICK_TABLE in [cmd for cmd, _ in TASKS.table_blocks(text)]
    # the sequence experiment's tables come from its stored summary, not from typing
    assert marks["docs/data/lm-sequences.json"] == (
        "sequences.json",
        "grpo-align lm --task sequences --seed 0 --no-plots --out {out}",
    )
    assert "grpo-align lm --from-summary docs/data/lm-sequences.json --markdown" in dict(TASKS.table_blocks(text))
    for cmd, _ in TABLES:  # every table is printed from data some mark regenerates
        assert any(path in cmd for path, _, _ in DATA), cmd


@pytest.mark.parametrize(("command", "shown"), TABLES, ids=[b[0] for b in TABLES])
def test_table_block_is_what_its_command_prints(command, shown):
    fresh = TASKS.run_readme_command(command, sys.executable, dict(os.environ))
    assert fresh.rstrip("\n") == shown.rstrip("\n"), f"table for {command!r} drifted: run python3 tasks.py readme"


def _markdown_rows(table: str) -> list[dict[str, str]]:
    """The cells of a Markdown table by header, the alignment row skipped."""
    lines = [line.replace("\\|", "¦") for line in table.strip().splitlines()]  # an escaped | inside a cell
    head, _, *rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return [dict(zip(head, row, strict=True)) for row in rows]


def test_lm_quick_table_shows_the_stored_numbers():
    # read against the JSON directly (not through the command's formatting): 4 decimals shown
    shown = _markdown_rows(dict(TABLES)[LM_QUICK_TABLE])
    stored = json.loads((ROOT / LM_QUICK).read_text())
    assert len(shown) == len(stored) == 3
    columns = {"GRPO prediction": "mae", "RLHF pooling": "mae_rlhf", "reference": "mae_reference", "stderr": "stderr"}
    for row, run in zip(shown, stored, strict=True):
        assert (float(row["beta"]), int(row["G"]), int(row["steps"])) == (run["beta"], run["group_size"], run["steps"])
        assert run["algo"]["beta"] == run["beta"] and run["algo"]["group_size"] == run["group_size"]
        for head, key in columns.items():
            assert abs(float(row[head]) - run[key]) <= 5e-5, (head, row[head], run[key])


def _sequence_runs_disagree(stored: dict, fresh: dict) -> list[str]:
    """Where a fresh sequence summary (``grpo-align lm --task sequences``) differs from the
    stored one beyond its noise: the settings, the questions and the predictions must be
    equal (to 1e-9: the same reference model), each measured answer within 3 times the
    larger of the two runs' standard errors of it."""
    if stored["config"] != fresh["config"] or [r["name"] for r in stored["runs"]] != [r["name"] for r in fresh["runs"]]:
        return ["settings differ"]
    problems = []
    for name, pred in stored["predicted"].items():
        if not np.allclose(pred, fresh["predicted"][name], atol=1e-9):
            problems.append(f"prediction {name}")
    for a, b in zip(stored["runs"], fresh["runs"], strict=True):
        tol = 3 * np.maximum(np.asarray(a["stderr"]), np.asarray(b["stderr"]))
        gap = np.abs(np.asarray(a["measured"]) - np.asarray(b["measured"]))
        if np.any(gap > tol):
            problems.append(f"run {a['name']}: measured differs by up to {gap.max():.4f}")
    return problems


def test_sequence_runs_disagree_flags_a_moved_answer():
    run = {"name": "constant", "measured": [[0.5, 0.3, 0.2]], "stderr": [[0.01, 0.01, 0.01]]}
    stored = {"config": {"steps": 3}, "predicted": {"constant": [[0.5, 0.3, 0.2]]}, "runs": [run]}
    near = {**stored, "runs": [{**run, "measured": [[0.52, 0.28, 0.2]]}]}
    far = {**stored, "runs": [{**run, "measured": [[0.54, 0.26, 0.2]]}]}
    assert _sequence_runs_disagree(stored, near) == []
    assert _sequence_runs_disagree(stored, far) != []
    assert _sequence_runs_disagree(stored, {**stored, "config": {"steps": 4}}) != []
    assert _sequence_runs_disagree(stored, {**stored, "predicted": {"constant": [[0.4, 0.4, 0.2]]}}) != []


def test_lm_sequences_table_shows_the_stored_numbers():
    # read against the JSON directly (not through the command's formatting): 4 decimals shown
    path = "docs/data/lm-sequences.json"
    table = dict(TABLES)[f"grpo-align lm --from-summary {path} --markdown"]
    shown = _markdown_rows(table.split("\n\n")[0])
    stored = json.loads((ROOT / path).read_text())
    assert [row["run"] for row in shown] == [run["name"] for run in stored["runs"]] and len(shown) == 4
    for row, run in zip(shown, stored["runs"], strict=True):
        for name, value in run["mae"].items():
            assert abs(float(row[f"vs {name}"].strip("*")) - value) <= 5e-5, (run["name"], name)
        assert abs(float(row["mean stderr"]) - run["mean_stderr"]) <= 5e-5
        # the verdict cell is the rule applied to the stored numbers
        max_z = max(abs(float(z)) for zs in run["z"] for z in zs)
        ok = max_z < stored["verdict"]["bound"] and run["margin"] > run["mean_stderr"]
        assert row["verdict"] == ("pass" if ok else "fail")


def _runs_disagree(stored: list[dict], fresh: list[dict]) -> list[str]:
    """Where a fresh run's summary differs from the stored one beyond its noise.

    The settings must be equal; each mean error within 3 times the larger of the two
    runs' mean standard errors (a seeded run on the same platform reproduces bit for bit;
    on other arithmetic the sampled trajectory departs and the tail means differ by noise).
    """
    if len(stored) != len(fresh):
        return [f"{len(fresh)} runs, stored {len(stored)}"]
    problems = []
    for a, b in zip(stored, fresh, strict=True):
        settings = ("beta", "group_size", "steps", "questions")
        if [a[k] for k in settings] != [b[k] for k in settings]:
            problems.append(f"settings {[b[k] for k in settings]}, stored {[a[k] for k in settings]}")
            continue
        tol = 3 * max(a["stderr"], b["stderr"])
        for key in ("mae", "mae_rlhf", "mae_reference"):
            if abs(a[key] - b[key]) > tol:
                problems.append(f"beta {a['beta']} G {a['group_size']}: {key} {b[key]:.4f}, stored {a[key]:.4f}")
    return problems


def test_runs_disagree_flags_a_number_beyond_three_standard_errors():
    run = {"beta": 0.5, "group_size": 8, "steps": 1500, "questions": 24, "stderr": 0.002}
    stored = [{**run, "mae": 0.002, "mae_rlhf": 0.08, "mae_reference": 0.4}]
    assert _runs_disagree(stored, [dict(stored[0], mae=0.007)]) == []
    assert _runs_disagree(stored, [dict(stored[0], mae=0.0081)]) != []
    assert _runs_disagree(stored, [dict(stored[0], steps=500)]) != []
    assert _runs_disagree(stored, []) != []


@pytest.mark.slow
@pytest.mark.parametrize(("path", "file", "command"), DATA, ids=[m[0] for m in DATA])
def test_stored_data_matches_a_fresh_run(tmp_path, path, file, command):
    fresh = json.loads(TASKS.run_data_command(command, file, sys.executable, dict(os.environ), tmp_path / "out"))
    stored = json.loads((ROOT / path).read_text())
    if isinstance(stored, dict) and "runs" in stored:  # a sequence summary
        assert _sequence_runs_disagree(stored, fresh) == [], f"{path} drifted: run python3 tasks.py readme"
        return
    # lm --quick stores a list of runs, lm --trl one run (trl_summary.json)
    stored_runs = stored if isinstance(stored, list) else [stored]
    fresh_runs = fresh if isinstance(fresh, list) else [fresh]
    assert _runs_disagree(stored_runs, fresh_runs) == [], f"{path} drifted: run python3 tasks.py readme"


def test_lm_from_summary_prints_plain_columns_and_refuses_bad_files(tmp_path, capsys):
    from grpo_align.cli import main

    assert main(["lm", "--from-summary", LM_QUICK]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["beta", "G", "steps"] and len(lines) == 1 + 3
    bad = {
        "missing.json": None,
        "text.json": "not json",
        "dict.json": json.dumps({"beta": 0.5}),
        "short.json": json.dumps([{"beta": 0.5, "group_size": 8}]),
        "word.json": json.dumps([dict(json.loads((ROOT / LM_QUICK).read_text())[0], mae="low")]),
    }
    for name, content in bad.items():
        if content is not None:
            (tmp_path / name).write_text(content)
        assert main(["lm", "--from-summary", str(tmp_path / name), "--markdown"]) == 2, name
        err = capsys.readouterr().err
        assert "--from-summary" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
