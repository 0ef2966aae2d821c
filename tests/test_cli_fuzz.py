"""Fuzz ``grpo-align solve`` with random TOML documents near the real schema.

Whatever the document (wrong types, wrong shapes, deep nesting, unknown keys, odd
strings, broken syntax), the command ends with status 0, 1 (a solve failed) or 2 (bad
input, one line), never with a traceback or an internal error.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpo_align.cli import main
from grpo_align.theory.spec import NORMALIZATIONS, PENALTIES, PRESETS


# ---------------------------------------------------------------------- a small TOML writer
def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON's escapes are TOML basic-string escapes for these strings
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_document(doc: dict[str, Any]) -> str:
    """Scalars and arrays first, then [tables], then [[arrays of tables]]."""
    lines, tables, arrays = [], [], []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            arrays.append((key, value))
        else:
            lines.append(f"{json.dumps(key)} = {toml_value(value)}")
    for key, table in tables:
        lines.append(f"[{json.dumps(key)}]")
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
    for key, items in arrays:
        for table in items:
            lines.append(f"[[{json.dumps(key)}]]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- strategies
text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters='"\\'), max_size=12)
odd = st.one_of(
    st.booleans(),
    text,
    st.sampled_from([0, -1, 10**400, 2**63 - 1, math.inf, -math.inf, math.nan, 1e308, 5e-324]),
    st.just([]),
    st.just({}),
)
prob = st.floats(0, 1, allow_nan=False)
number = st.one_of(prob, st.floats(-3, 3, allow_nan=False), st.integers(-2, 3))


def rarely(n: int) -> st.SearchStrategy[bool]:
    """True about once in ``n`` draws (False first, so examples shrink to valid documents)."""
    return st.sampled_from([False] * (n - 1) + [True])


def nested(depth: int) -> st.SearchStrategy[Any]:
    """A list nested ``depth`` deep (or a number at depth 0)."""
    if depth == 0:
        return number
    return st.lists(nested(depth - 1), min_size=1, max_size=4)


field_value = st.one_of(nested(1), nested(2), nested(3), odd, st.integers(0, 40).map(lambda d: _deep(d)))


def _deep(depth: int) -> Any:
    value: Any = 0.5
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def problem_table(draw: st.DrawFn) -> dict[str, Any]:
    k = draw(st.integers(1, 4))
    batched = draw(st.booleans())
    c = draw(st.integers(1, 3)) if batched else 1

    def row(values: st.SearchStrategy[Any]) -> Any:
        rows = [draw(st.lists(values, min_size=k, max_size=k)) for _ in range(c)]
        return rows if batched else rows[0]

    ref_rows = []
    for _ in range(c):
        w = draw(st.lists(st.floats(0.01, 1), min_size=k, max_size=k))
        ref_rows.append([x / sum(w) for x in w])
    table: dict[str, Any] = {"ref": ref_rows if batched else ref_rows[0]}
    kinds = ["rewards", "success", "dist", "win_prob"] * 3 + ["none", "two"]
    kind = draw(st.sampled_from(kinds))
    if kind in ("rewards", "two"):
        table["rewards"] = row(st.sampled_from([0.0, 0.5, 1.0, 2.0]))
    if kind in ("success", "two"):
        table["success"] = row(prob)
    if kind == "dist":
        n_levels = draw(st.integers(1, 3))
        table["levels"] = draw(st.lists(st.floats(-2, 2), min_size=n_levels, max_size=n_levels, unique=True))
        dists = []
        for _ in range(c):
            ctx = []
            for _ in range(k):
                w = draw(st.lists(st.floats(0.01, 1), min_size=n_levels, max_size=n_levels))
                ctx.append([x / sum(w) for x in w])
            dists.append(ctx)
        table["dist"] = dists if batched else dists[0]
    if kind == "win_prob":
        mats = []
        for _ in range(c):
            m = [[0.0] * k for _ in range(k)]
            for i in range(k):
                for j in range(i + 1, k):
                    m[i][j] = draw(prob)
                    m[j][i] = 1 - m[i][j]
            mats.append(m)
        table["win_prob"] = mats if batched else mats[0]
    if draw(rarely(2)):
        table["names"] = draw(st.lists(text, min_size=k, max_size=k))
    if draw(rarely(5)):
        table["renormalize"] = draw(st.one_of(st.booleans(), odd))
    # corrupt one field now and then: wrong type, wrong shape, deep nesting, unknown key
    if draw(rarely(6)):
        key = draw(st.sampled_from([*table, "speed", "Ref", "a\nb", "rewards", "levels"]))
        table[key] = draw(field_value)
    return table


@st.composite
def algorithm_table(draw: st.DrawFn) -> dict[str, Any]:
    table: dict[str, Any] = {}
    if draw(rarely(4)):
        table["preset"] = draw(st.sampled_from([*PRESETS, "bogus"]))
    table["group_size"] = draw(st.sampled_from([2, 3, 4, 8, 12, math.inf, 1, 0]))
    table["beta"] = draw(st.one_of(st.sampled_from([0.0, 0.05, 0.1, 0.5, 1.0, 4.0]), st.floats(-1, 10)))
    for key, values in (
        ("normalization", st.sampled_from([*NORMALIZATIONS, "bogus"])),
        ("penalty", st.sampled_from([*PENALTIES, "k4"])),
        ("ddof", st.integers(-1, 2)),
        ("eps", st.sampled_from([0.0, 1e-6, 1e-4, 0.1, -1.0])),
        ("name", text),
    ):
        if draw(rarely(3)):
            table[key] = draw(values)
    if draw(rarely(8)):
        key = draw(st.sampled_from([*table, "lr", "Beta"]) if table else st.just("lr"))
        table[key] = draw(odd)
    return table


@st.composite
def document(draw: st.DrawFn) -> str:
    doc: dict[str, Any] = {}
    if draw(rarely(3)):
        doc["title"] = draw(odd) if draw(rarely(10)) else draw(text)
    if not draw(rarely(10)):
        doc["problem"] = draw(problem_table())
    else:
        doc["problem"] = draw(odd)
    n_algorithms = draw(st.sampled_from([1, 2, 3, 1, 2, 0]))
    if n_algorithms:
        doc["algorithm"] = [draw(algorithm_table()) for _ in range(n_algorithms)]
    if draw(rarely(10)):
        doc["train"] = draw(st.one_of(odd, st.just({"steps": 10})))
    if draw(rarely(20)):
        doc[draw(text)] = draw(odd)
    rendered = toml_document(doc)
    # now and then break the syntax or start with a byte-order mark
    change = draw(st.sampled_from(["none"] * 18 + ["break", "bom"]))
    if change == "break":
        at = draw(st.integers(0, len(rendered)))
        rendered = rendered[:at] + draw(st.sampled_from(["[", "]", "=", '"', "\n[[", "{", "\x00"])) + rendered[at:]
    elif change == "bom":
        rendered = "\ufeff" + rendered
    return rendered


# CI runs derandomized (tests/conftest.py); locally every run draws new documents
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document())
def test_random_documents_never_trace_back(doc):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.toml"
        path.write_text(doc, encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["solve", str(path), "--out", str(Path(tmp) / "out.json")])
    message = err.getvalue()
    assert status in (0, 1, 2), (status, message, doc)
    assert "Traceback" not in message + out.getvalue() and "internal error" not in message, (message, doc)
    if status == 2:
        assert len(message.strip().splitlines()) == 1, (message, doc)
        assert message.startswith("error: "), (message, doc)
