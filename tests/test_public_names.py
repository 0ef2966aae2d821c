"""Tests reach the project through public names only (issue 19): no test imports a name
that starts with an underscore from ``grpo_align``, reads one off a ``grpo_align`` module,
or monkeypatches one, so internals can move without rewriting the suite. Dunder names
(``__version__``) are public.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str) -> list[str]:
    """``line: name`` for every private grpo_align name the source reaches."""
    tree = ast.parse(source)
    modules: set[str] = set()  # local names bound to grpo_align modules
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "grpo_align":
                    modules.add(alias.asname or alias.name.split(".")[0])
                    found += [f"{node.lineno}: {alias.name}" for part in alias.name.split(".") if _private(part)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "grpo_align":
            for alias in node.names:
                if _private(alias.name) or any(_private(p) for p in (node.module or "").split(".")):
                    found.append(f"{node.lineno}: {node.module}.{alias.name}")
                else:
                    modules.add(alias.asname or alias.name)  # a module or a public object
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"{node.lineno}: {base.id}...{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("setattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value.rsplit(".", 1)[-1])
        ):
            found.append(f"{node.lineno}: {node.func.attr}(..., {node.args[1].value!r})")
    return sorted(found, key=lambda f: int(f.split(":")[0]))


def test_no_test_reaches_a_private_name() -> None:
    offenders = {
        path.name: uses
        for path in sorted(TESTS.glob("*.py"))
        if path.name != Path(__file__).name and (uses := private_uses(path.read_text()))
    }
    assert offenders == {}


def test_the_checker_sees_each_way_in() -> None:
    src = (
        "from grpo_align.theory.stationary.batch import _take\n"
        "import grpo_align.theory.stationary.batch as bt\n"
        "bt._take(1)\n"
        "from grpo_align.predict import engine\n"
        "engine.kl_to_reference(1)\n"
        "monkeypatch.setattr(engine, '_HIDDEN', 1)\n"
        "from grpo_align import __version__\n"
    )
    assert private_uses(src) == [
        "1: grpo_align.theory.stationary.batch._take",
        "3: bt..._take",
        "6: setattr(..., '_HIDDEN')",
    ]
