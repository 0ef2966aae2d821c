"""The site's Markdown sources, checked without building the site.

A ``|`` inside inline maths in a table row ends the table cell (Python-Markdown splits the
row before arithmatex sees the formula): the formula is cut in pieces and the row loses its
last columns, with no build warning. Inside a table, maths writes ``\\lvert``/``\\rvert`` or
``\\|`` instead.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: inline maths as arithmatex reads it: \( ... \) or $ ... $ (not $$)
INLINE_MATH = re.compile(r"\\\((?P<a>.+?)\\\)|(?<![\\$])\$(?!\$)(?P<b>[^$]+?)(?<!\\)\$")
#: a pipe that is not escaped
BARE_PIPE = re.compile(r"(?<!\\)\|")


def table_math_with_pipes(text: str) -> list[str]:
    """The formulas in table rows of ``text`` that hold an unescaped ``|``."""
    found = []
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        for match in INLINE_MATH.finditer(re.sub(r"`[^`]*`", "", line)):
            formula = match.group("a") or match.group("b")
            if BARE_PIPE.search(formula):
                found.append(formula)
    return found


def test_detector_finds_a_pipe_in_table_maths():
    assert table_math_with_pipes(r"| `abs` | \(|x|\) | sign |") == ["|x|"]
    assert table_math_with_pipes(r"| a | $1/\sum_j |o_j|$ | b |") == [r"1/\sum_j |o_j|"]
    assert table_math_with_pipes(r"| a | \(\lvert x\rvert\) | \(\mathrm{KL}(p\,\|\,q)\) |") == []
    assert table_math_with_pipes(r"outside a table \(|x|\) is fine") == []


def test_no_table_cell_splits_a_formula():
    pages = sorted((ROOT / "docs").rglob("*.md"))
    assert pages
    bad = {str(p.relative_to(ROOT)): f for p in pages if (f := table_math_with_pipes(p.read_text()))}
    assert not bad, bad
