"""The import contract of docs/architecture.md: imports go one way, down the layers.

Every module under src/grpo_align is parsed with ``ast`` (no import runs): every ``import``
and ``from ... import`` at any depth (module level, inside functions, under ``try`` or
``TYPE_CHECKING``), relative imports resolved against the module's package, and
``importlib.import_module("...")`` with a literal name. A module may import its own layer
and any layer below; an import of a higher layer fails with the importing ``module:line``.
``theory/`` (and the base layer) never imports torch, transformers or trl, at any depth.

The table ``LAYERS`` is the one source: docs/architecture.md lists the same modules
(``test_architecture_lists_every_module``), and a module the table does not place fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "grpo_align"

#: layer -> module prefixes (dotted, relative to grpo_align; "" is the package's __init__),
#: bottom first. A module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("errors", "files", "extras", "style", "verify")),
    ("theory", ("theory",)),
    ("inputs", ("", "io_toml", "mappings")),
    ("predict", ("predict",)),
    ("training", ("training",)),
    ("lm", ("lm",)),
    ("integrations", ("integrations",)),
    ("report", ("report",)),
    ("commands", ("commands", "cli")),
)
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}
#: heavy libraries the numpy/scipy layers must not import
TORCH_LIBS = ("torch", "transformers", "trl")
TORCH_FREE = ("base", "theory")


def layer_of(module: str) -> str | None:
    """The layer of ``grpo_align[.rest]``, or None outside the package or the table."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    rest = module[len(PACKAGE) + 1 :]
    best: tuple[int, str] | None = None
    for name, prefixes in LAYERS:
        for p in prefixes:
            matches = rest == p or (p and rest.startswith(p + "."))
            if matches and (best is None or len(p) > best[0]):
                best = (len(p), name)
    return best[1] if best else None


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, at any depth."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from grpo_align.x import y` may import the submodule x.y: judge the deeper name
            found += [(node.lineno, f"{target}.{alias.name}" if alias.name != "*" else target) for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def _target_module(name: str) -> str:
    """The module an imported name lives in: its deepest prefix that is a module of the
    package ("" outside the package)."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def _target_layer(name: str) -> str | None:
    """Layer of an imported name (None outside the package)."""
    module = _target_module(name)
    return layer_of(module) if module else None


def test_every_module_has_a_layer():
    missing = [m for m in modules() if layer_of(m) is None]
    assert not missing, f"modules in no layer of LAYERS: {missing}"


def test_no_module_imports_a_higher_layer():
    bad: list[str] = []
    for module, path in modules().items():
        own = layer_of(module)
        assert own is not None
        for line, name in imports(module, path):
            target = _target_layer(name)
            if target is not None and RANK[target] > RANK[own]:
                text = (
                    f"{path.relative_to(SRC.parent)}:{line}: {module} ({own}) imports {_target_module(name)} ({target})"
                )
                bad += [text] if text not in bad else []
    assert not bad, "imports of a higher layer:\n" + "\n".join(bad)


def test_theory_and_base_import_no_torch():
    bad = []
    for module, path in modules().items():
        if layer_of(module) not in TORCH_FREE:
            continue
        for line, name in imports(module, path):
            if name.split(".")[0] in TORCH_LIBS:
                bad.append(f"{path.relative_to(SRC.parent)}:{line}: {module} imports {name}")
    assert not bad, "torch-free layers importing torch, transformers or trl:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "source, module, expected",
    [
        (
            "from grpo_align.commands.lm_sequences import x",
            "grpo_align.lm.sequences",
            "grpo_align.commands.lm_sequences",
        ),
        ("def f():\n    from ..report import style", "grpo_align.predict.html", "grpo_align.report"),
        ("from . import common", "grpo_align.report.training", "grpo_align.report"),
        ("import importlib\nimportlib.import_module('grpo_align.cli')", "grpo_align.theory.spec", "grpo_align.cli"),
    ],
)
def test_the_parser_sees_every_form(tmp_path, source, module, expected):
    """Nested, relative and importlib imports are all found (the checks above rely on it)."""
    path = tmp_path / "m.py"
    path.write_text(source)
    names = [name for _, name in imports(module, path)]
    assert any(n == expected or n.startswith(expected + ".") for n in names), names


def test_a_violation_is_reported_with_module_and_line(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import numpy\n\n\ndef f():\n    from grpo_align.commands import train\n")
    ((line, name),) = [(li, n) for li, n in imports("grpo_align.theory.spec", path) if n.startswith(PACKAGE)]
    assert line == 5 and RANK[_target_layer(name) or ""] > RANK["theory"]


def test_architecture_lists_every_module():
    """docs/architecture.md names every module (as `path/without/suffix`, a package as
    `pkg/__init__` or `pkg/`), so the map cannot fall behind the tree."""
    text = (SRC.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for path in modules().values():
        rel = path.relative_to(SRC / PACKAGE).with_suffix("").as_posix()
        forms = {f"`{rel}`"}
        if path.name == "__init__.py":
            pkg = rel.rpartition("/")[0]
            forms |= {f"`{pkg}/`", f"`{pkg}`"} if pkg else {"`__init__`"}
        if not any(f in text for f in forms):
            missing.append(rel)
    assert not missing, f"docs/architecture.md does not list: {missing}"
