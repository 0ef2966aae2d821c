"""The README's marked blocks (``<!-- run: COMMAND -->``) show what their command prints now.

``python3 tasks.py readme`` rewrites them from real runs; this test reruns each command and
fails when the README has drifted. Numbers are compared to 1e-6 relative (and 1e-12
absolute, for residuals at the level of rounding, which vary with the platform's
arithmetic); all other text exactly, trailing spaces aside.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
from pathlib import Path

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
