"""The README's two commands (``tasks.py``) and CI's use of them, checked without installing anything."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _first_code_block() -> list[str]:
    block = re.search(r"```\w*\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def test_readme_first_block_is_the_two_commands():
    assert _first_code_block() == ["python3 tasks.py report", "python3 tasks.py test"]


def test_ci_runs_the_readme_test_command_and_lint():
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert any(line.startswith("python3 tasks.py test") for line in commands)
    assert any(line.startswith("python3 tasks.py lint") for line in commands)


def test_tasks_uses_the_standard_library_only():
    tree = ast.parse((ROOT / "tasks.py").read_text())
    names = {a.name.partition(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.partition(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names - {"__future__"} <= set(sys.stdlib_module_names), names


def test_tasks_without_a_command_prints_usage_and_installs_nothing(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tasks.py")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "python3 tasks.py report" in proc.stderr and "python3 tasks.py test" in proc.stderr
    proc = subprocess.run([sys.executable, str(ROOT / "tasks.py"), "lint", "x"], capture_output=True, text=True)
    assert proc.returncode == 2 and "takes no arguments" in proc.stderr


def test_install_key_follows_pyproject_and_the_torch_pin(monkeypatch):
    spec = importlib.util.spec_from_file_location("tasks", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    key = tasks.install_key()
    assert key == tasks.install_key()
    monkeypatch.setattr(tasks, "TORCH", "torch==2.2.0")
    assert tasks.install_key() != key
    monkeypatch.setattr(tasks, "TORCH_INDEX", "https://download.pytorch.org/whl/cpu")
    assert tasks.install_key() != key
    env = tasks.job_env()
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1" and env["MPLBACKEND"] == "Agg"
    assert "PYTHONPATH" not in env and env["PATH"].startswith(str(tasks.VENV))
