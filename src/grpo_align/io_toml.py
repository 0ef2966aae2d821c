"""Problems and algorithm specifications from TOML files (``grpo-align solve FILE.toml``).

Schema (README "TOML files"; ``examples/*.toml`` are commented instances)::

    title = "optional one-line description"

    [problem]
    ref = [0.3, 0.7]              # reference policy; a list of lists is a batch of contexts
    rewards = [1.0, 0.0]          # exactly one of: rewards (deterministic), success
                                  # (Bernoulli), levels + dist (general K x L), win_prob
                                  # (pairwise preferences, G = 2 only)
    names = ["correct", "wrong"]  # optional output names
    renormalize = false           # optional: divide by sums instead of rejecting them

    [[algorithm]]                 # one or more
    name = "GRPO, G = 8"          # optional
    preset = "trl"                # optional: start from GRPO.preset(...)
    group_size = 8                # any GRPO field overrides the preset (inf: G -> infinity)
    beta = 0.5

Unknown keys are errors that name the key and the allowed ones. Every error is in the
file's words: the key's path (``problem.rewards``, ``algorithm[2].beta``, tables and rows
counted from 1) and TOML values (``true``, ``inf``, ``"text"``). The file must be a regular
UTF-8 file of at most ``files.MAX_INPUT_BYTES`` (a byte-order mark is skipped;
``read_toml``, which ``grpo-align predict --config FILE.toml`` uses too). Parsing produces
the same ``Problem`` and ``GRPO`` objects the Python API takes; nothing downstream
re-parses.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

from grpo_align.errors import InputError
from grpo_align.files import read_text_file
from grpo_align.theory import GRPO, PRESETS, Problem

__all__ = [
    "ALGORITHM_KEYS",
    "PROBLEM_KEYS",
    "TOP_LEVEL_KEYS",
    "ProblemFile",
    "load_problem_toml",
    "parse_algorithm",
    "parse_problem",
    "read_toml",
]

#: Keys of ``[problem]``; of the reward keys exactly one kind must be given.
PROBLEM_KEYS = ("ref", "rewards", "success", "levels", "dist", "win_prob", "names", "renormalize", "sequences")
REWARD_KINDS = {"rewards": ("rewards",), "success": ("success",), "dist": ("levels", "dist"), "win_prob": ("win_prob",)}
GRPO_FIELDS = tuple(f.name for f in fields(GRPO))
#: Keys of each ``[[algorithm]]`` table.
ALGORITHM_KEYS = ("name", "preset", *GRPO_FIELDS)
#: Top-level keys every file may have (callers may allow more tables, see ``load_problem_toml``).
TOP_LEVEL_KEYS = ("title", "problem", "algorithm")


class ProblemFile(NamedTuple):
    """A parsed problem file; unpacks as ``problem, algorithms, options``.

    ``algorithms`` is a list of (name, GRPO). ``options`` holds ``title``, ``kind`` (which
    reward key was used: "rewards", "success", "dist" or "win_prob"), ``names`` (output
    names per context), ``n_outputs`` (real outputs per context, before ragged padding),
    ``presets`` (the preset each algorithm started from, or None), ``source`` (the path)
    and any extra top-level tables the caller allowed, unvalidated.
    """

    problem: Problem
    algorithms: list[tuple[str, GRPO]]
    options: dict[str, Any]


@dataclass(frozen=True)
class _Where:
    """Names a place in the file for error messages, e.g. ``algorithm[1].beta``."""

    prefix: str

    def __call__(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            # a key that is not bare is shown quoted, as the file writes it (and on one line)
            shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key[:40], ensure_ascii=False)
            raise InputError(f"{where}.{shown}" if where else shown, f"unknown key; allowed: {', '.join(allowed)}")


def toml_value(value: Any) -> str:
    """``value`` as the TOML file writes it, for messages: ``true`` (not ``True``), ``inf``,
    ``"text"``; arrays and tables by kind, and very long values shortened."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value if len(value) <= 40 else value[:37] + "...")
        return f"the string {text}"
    if isinstance(value, int):
        digits = str(abs(value))
        return str(value) if len(digits) <= 20 else f"an integer of {len(digits)} digits"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__} ({value})"  # dates and times


def in_toml_words(text: str) -> str:
    """A message of the Python API in the words of a TOML file: ``inf`` for ``math.inf``,
    ``renormalize = true``, and row indices counted from 1 like the file's tables."""
    text = text.replace("math.inf", "inf").replace("pass renormalize=True", "set renormalize = true")
    return text


def _field_from_1(field: str) -> str:
    """``ref[0]`` (a Python index) -> ``ref[1]`` (the first row, as a reader counts)."""
    return re.sub(r"\[(\d+)\]", lambda m: f"[{int(m.group(1)) + 1}]", field)


#: the deepest nesting any key takes: levels + dist of a batch is a list of lists of lists
MAX_DEPTH = 3


def _numbers(value: Any, name: str, depth: tuple[int, ...]) -> Any:
    """Check that ``value`` is a (nested) list of numbers at one of the list depths given.

    TOML would let ``true`` or strings slip into a numpy array; they are rejected here with
    the field named. Nesting deeper than any field takes stops the walk at once.
    """

    def depth_of(v: Any, level: int) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, float, list)):
            raise InputError(name, f"expected numbers, got {toml_value(v)}")
        if isinstance(v, (int, float)):
            return 0
        if level >= MAX_DEPTH:
            raise InputError(name, f"arrays nested more than {MAX_DEPTH} deep; expected {_shapes(depth)} of numbers")
        if not v:
            raise InputError(name, "expected a non-empty list of numbers")
        inner = {depth_of(x, level + 1) for x in v}
        if len(inner) != 1:
            raise InputError(name, "mixes numbers and lists; expected a list of numbers or a list of lists")
        return 1 + inner.pop()

    d = depth_of(value, 0)
    if d not in depth:
        raise InputError(name, f"expected {_shapes(depth)} of numbers")
    return value


def _shapes(depth: tuple[int, ...]) -> str:
    shapes = {0: "a number", 1: "a list", 2: "a list of lists", 3: "a list of lists of lists"}
    return " or ".join(shapes[x] for x in depth)


def _reprefix(exc: InputError, where: _Where) -> InputError:
    """An error of the Python API (field ``rewards``) as one about the file (``problem.rewards``).

    Indexed fields count from 1 in the file: ``sequences[0]`` is ``problem.sequences[1]``,
    also where the message names another entry of the same field (``... is a prefix of
    sequences[1]`` becomes ``problem.sequences[2]``).
    """
    base = re.escape(re.sub(r"\[.*", "", exc.field))
    expected = re.sub(rf"\b{base}(?:\[\d+\])+", lambda m: where(_field_from_1(m.group(0))), exc.expected)
    return InputError(where(_field_from_1(exc.field)), in_toml_words(expected))


def parse_problem(table: Any) -> tuple[Problem, dict[str, Any]]:
    """``[problem]`` -> (Problem, {"kind", "names", "n_outputs"}). Errors name ``problem.KEY``."""
    where = _Where("problem")
    if not isinstance(table, dict):
        raise InputError("problem", "expected a [problem] table")
    _check_keys(table, PROBLEM_KEYS, "problem")
    if "ref" not in table:
        raise InputError("problem.ref", "missing; expected the reference policy (a list of probabilities)")
    kinds = [k for k, keys in REWARD_KINDS.items() if any(key in table for key in keys)]
    if len(kinds) != 1:
        given = ", ".join(k for k in ("rewards", "success", "levels", "dist", "win_prob") if k in table) or "none"
        raise InputError(
            "problem", f"expected exactly one of rewards, success, levels + dist, win_prob (given: {given})"
        )
    kind = kinds[0]
    for key in REWARD_KINDS[kind]:
        if key not in table:
            raise InputError(where(key), f"missing; {' + '.join(REWARD_KINDS[kind])} go together")
    renormalize = table.get("renormalize", False)
    if not isinstance(renormalize, bool):
        raise InputError("problem.renormalize", f"expected true or false, got {toml_value(renormalize)}")

    ref = _numbers(table["ref"], "problem.ref", (1, 2))
    batched = isinstance(ref[0], list)
    n_outputs = [len(r) for r in ref] if batched else [len(ref)]
    row_depth = 2 if batched else 1
    # every value is checked (errors name problem.KEY) before the Problem is built
    if kind == "rewards":
        rewards = _numbers(table["rewards"], "problem.rewards", (row_depth,))
    elif kind == "success":
        success = _numbers(table["success"], "problem.success", (row_depth,))
    elif kind == "dist":
        levels = _numbers(table["levels"], "problem.levels", (1, 2) if batched else (1,))
        dist = _numbers(table["dist"], "problem.dist", (row_depth + 1,))
        if batched and not isinstance(levels[0], list):
            levels = [levels] * len(ref)  # one level vector shared by every context
    else:
        win = _numbers(table["win_prob"], "problem.win_prob", (row_depth + 1,))
    sequences = _sequences(table.get("sequences"), n_outputs, batched, kind)
    try:
        if kind == "rewards":
            problem = Problem.from_rewards(ref, rewards, renormalize=renormalize, sequences=sequences)
        elif kind == "success":
            problem = Problem.from_bernoulli(ref, success, renormalize=renormalize, sequences=sequences)
        elif kind == "dist":
            problem = Problem(ref, levels, dist, renormalize=renormalize, sequences=sequences)
        else:
            problem = Problem.from_preference(ref, win, renormalize=renormalize)
    except InputError as exc:
        raise _reprefix(exc, where) from None
    names = _output_names(table.get("names"), n_outputs, batched)
    return problem, {"kind": kind, "names": names, "n_outputs": n_outputs}


def _sequences(value: Any, n_outputs: list[int], batched: bool, kind: str) -> Any:
    """``problem.sequences``: one token list per output (tokens are strings or integers),
    each ending with its end token, prefix-free (THEORY.md section 10); None when absent."""
    if value is None:
        return None
    if kind == "win_prob":
        raise InputError("problem.sequences", "a pairwise-preference problem has no token sequences")
    if batched:
        raise InputError("problem.sequences", "give sequences for a single context (a batch of contexts has none)")
    if not isinstance(value, list) or len(value) != n_outputs[0]:
        raise InputError("problem.sequences", f"expected a list of {n_outputs[0]} token lists, one per output")
    out = []
    for i, seq in enumerate(value, start=1):
        if not isinstance(seq, list) or not seq:
            raise InputError(f"problem.sequences[{i}]", "expected a non-empty list of tokens")
        for tok in seq:
            if isinstance(tok, bool) or not isinstance(tok, (str, int)):
                raise InputError(f"problem.sequences[{i}]", f"expected tokens as strings or integers, got {tok!r}")
        out.append(tuple(seq))
    return out


def _output_names(value: Any, n_outputs: list[int], batched: bool) -> list[list[str]]:
    """Names per context: given (one list for all contexts, or one per context) or o1, o2, ..."""
    if value is None:
        return [[f"o{i + 1}" for i in range(k)] for k in n_outputs]
    expected = "a list of strings, one per output" + (" (or one such list per context)" if batched else "")
    if not isinstance(value, list) or not value:
        raise InputError("problem.names", f"expected {expected}")
    rows = value if isinstance(value[0], list) else [value] * len(n_outputs)
    if len(rows) != len(n_outputs):
        raise InputError("problem.names", f"has {len(rows)} rows for {len(n_outputs)} contexts; expected {expected}")
    for row, k in zip(rows, n_outputs, strict=False):
        if not isinstance(row, list) or not all(isinstance(s, str) for s in row):
            raise InputError("problem.names", f"expected {expected}")
        if len(row) != k:
            raise InputError("problem.names", f"has {len(row)} names for {k} outputs; expected {expected}")
    return [list(r) for r in rows]


def parse_algorithm(table: Any, index: int = 1) -> tuple[str, GRPO, str | None]:
    """One ``[[algorithm]]`` table -> (name, GRPO, preset).

    ``index`` is the table's number in the file, counted from 1 as a reader counts; errors
    name ``algorithm[index].KEY``.
    """
    where = _Where(f"algorithm[{index}]")
    if not isinstance(table, dict):
        raise InputError(f"algorithm[{index}]", "expected a table ([[algorithm]])")
    _check_keys(table, ALGORITHM_KEYS, f"algorithm[{index}]")
    preset = table.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise InputError(where("preset"), f"expected a preset name, one of {', '.join(PRESETS)}")
    name = table.get("name")
    if name is not None and not isinstance(name, str):
        raise InputError(where("name"), "expected a string")
    overrides = {k: v for k, v in table.items() if k in GRPO_FIELDS}
    for key in ("normalization", "penalty"):
        if key in overrides and not isinstance(overrides[key], str):
            raise InputError(where(key), "expected a string")
    for key in ("group_size", "beta", "eps", "ddof"):
        value = overrides.get(key)
        if key in overrides and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(where(key), f"expected a number, got {toml_value(value)}")
    try:
        algo = GRPO.preset(preset, **overrides) if preset is not None else GRPO(**overrides)
    except InputError as exc:
        raise _reprefix(exc, where) from None
    return name if name is not None else default_name(algo, preset, overrides), algo, preset


def default_name(algo: GRPO, preset: str | None, overrides: dict[str, Any]) -> str:
    """A short column label: the preset and its overrides, or G and beta plus non-defaults."""
    if preset is not None:
        extra = ", ".join(f"{k}={_fmt(v)}" for k, v in overrides.items())
        return f"{preset} ({extra})" if extra else preset
    label = f"G={_fmt(algo.group_size)} beta={_fmt(algo.beta)}"
    default = GRPO()
    for key in ("normalization", "ddof", "eps", "penalty"):
        if getattr(algo, key) != getattr(default, key):
            label += f" {key}={_fmt(getattr(algo, key))}"
    return label


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value == math.inf:
        return "inf"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def load_problem_toml(path: str | Path, extra_tables: tuple[str, ...] = ()) -> ProblemFile:
    """Read a problem file: (Problem, [(name, GRPO), ...], options).

    ``extra_tables`` names further top-level keys a command accepts (e.g. ``("train",)``);
    they are passed through in ``options`` for that command to validate. A missing or
    unreadable file raises the ``OSError`` of ``open`` (FileNotFoundError, PermissionError);
    a FIFO, device or folder, a file over the size limit, malformed TOML, nesting too deep
    for the parser and every schema violation raise InputError.
    """
    path = Path(path)
    data = read_toml(path)
    _check_keys(data, TOP_LEVEL_KEYS + tuple(extra_tables), "")
    if "problem" not in data:
        raise InputError("problem", "missing; expected a [problem] table")
    title = data.get("title")
    if title is not None and not isinstance(title, str):
        raise InputError("title", "expected a string")
    problem, info = parse_problem(data["problem"])
    tables = data.get("algorithm")
    if tables is None:
        raise InputError("algorithm", "missing; expected at least one [[algorithm]] table")
    if isinstance(tables, dict):
        tables = [tables]  # [algorithm] written as a single table
    if not isinstance(tables, list) or not tables:
        raise InputError("algorithm", "expected one or more [[algorithm]] tables")
    algorithms: list[tuple[str, GRPO]] = []
    presets: list[str | None] = []
    for i, table in enumerate(tables):
        name, algo, preset = parse_algorithm(table, i + 1)
        if problem.is_preference:
            _check_pairwise(algo, i + 1)
        algorithms.append((name, algo))
        presets.append(preset)
    options: dict[str, Any] = {"title": title, "source": str(path), "presets": presets, **info}
    for key in extra_tables:
        if key in data:
            options[key] = data[key]
    return ProblemFile(problem, algorithms, options)


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document in ``path``: a regular UTF-8 file (``files.read_text_file``; a
    byte-order mark is dropped, though TOML does not allow one: editors on Windows write it)."""
    text = read_text_file(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(path), f"malformed TOML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively
        raise InputError(
            str(path), f"arrays or tables nested too deeply; no key takes more than {MAX_DEPTH} levels"
        ) from None


def _check_pairwise(algo: GRPO, index: int) -> None:
    """A win_prob problem defines P_G for G = 2 and shift_scale with eps = 0 only (THEORY.md 7)."""
    if algo.group_size != 2:
        raise InputError(
            f"algorithm[{index}].group_size",
            f"a win_prob problem is defined for G = 2 only, got {_fmt(algo.group_size)}",
        )
    try:
        _ = algo.pairwise_scale
    except InputError as exc:
        raise InputError(f"algorithm[{index}].{exc.field}", exc.expected) from None
