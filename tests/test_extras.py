"""Optional extras: a core without torch, and one line with the install command where one is missing.

The missing-extra paths run in a subprocess whose import system refuses the blocked packages
(a meta-path finder raising ModuleNotFoundError, as on a machine that never installed them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from grpo_align.errors import InputError
from grpo_align.extras import EXTRAS, MissingExtraError, missing_modules, require

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

BLOCKER = """
import sys
BLOCKED = {blocked!r}

class _Uninstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _Uninstalled())
"""


def _python(code: str, *, blocked: tuple[str, ...] = (), cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, "-c", BLOCKER.format(blocked=set(blocked)) + code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def _cli(*args: str, blocked: tuple[str, ...] = (), cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return _python(f"from grpo_align.cli import main; sys.exit(main({list(args)!r}))", blocked=blocked, cwd=cwd)


def test_import_loads_no_torch():
    code = (
        "import grpo_align, grpo_align.extras, grpo_align.io_toml\n"
        "from grpo_align.cli import build_parser; build_parser()\n"
        "import grpo_align.report.runner\n"
        "heavy = sorted({'torch', 'transformers', 'trl'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
        "print('light')"
    )
    proc = _python(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "light", proc.stderr


def test_core_dependencies_name_no_training_library():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("=")[0].split("[")[0].strip().lower() for dep in project["dependencies"]}
    assert names == {"numpy", "scipy", "matplotlib", "rich"}
    extras = project["optional-dependencies"]
    assert extras["train"] == ["torch>=2.2"]
    assert "grpo-align[train]" in extras["lm"] and "grpo-align[lm]" in extras["trl"]
    assert extras["all"] == ["grpo-align[trl,data,config]"]
    assert extras["config"] == ["pyyaml>=6"]  # the module yaml comes from the package pyyaml
    # every module require() checks comes with its extra
    packages = {e: " ".join(extras[e]) for e in EXTRAS}
    assert all(
        m in " ".join(packages[x] for x in ("train", "lm", "trl", "data", "config")) for e in EXTRAS for m in EXTRAS[e]
    )


def test_require_names_what_is_missing(monkeypatch):
    require("train", "x", "sys")  # present: no error
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # transformers without tokenizers
    assert missing_modules("os", "tokenizers") == ("tokenizers",)
    with pytest.raises(MissingExtraError) as info:
        require("lm", "grpo-align lm", "os", "tokenizers")
    assert isinstance(info.value, InputError)
    assert str(info.value) == "grpo-align lm needs the 'lm' extra (tokenizers): pip install 'grpo-align[lm]'"
    assert info.value.extra == "lm" and info.value.missing == ("tokenizers",)
    with pytest.raises(ValueError, match="unknown extra"):
        require("gpu", "x")


def test_train_without_torch_is_one_line_and_exit_2():
    proc = _cli("train", "examples/binary.toml", "--out", "/nonexistent/never-written", blocked=("torch",))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "error: grpo-align train needs the 'train' extra (torch): pip install 'grpo-align[train]'\n"


@pytest.mark.parametrize(
    ("blocked", "args", "message"),
    [
        (
            ("transformers",),
            ("lm", "--quick"),
            "grpo-align lm needs the 'lm' extra (transformers): pip install 'grpo-align[lm]'",
        ),
        (
            ("tokenizers",),
            ("lm", "--quick"),
            "grpo-align lm needs the 'lm' extra (tokenizers): pip install 'grpo-align[lm]'",
        ),
        (
            ("torch", "transformers", "tokenizers"),
            ("lm", "--quick"),
            "grpo-align lm needs the 'lm' extra (torch, transformers, tokenizers): pip install 'grpo-align[lm]'",
        ),
        (
            ("trl",),
            ("lm", "--trl", "--quick"),
            "grpo-align lm --trl needs the 'trl' extra (trl): pip install 'grpo-align[trl]'",
        ),
    ],
)
def test_lm_without_its_extra_is_one_line_and_exit_2(tmp_path, blocked, args, message):
    proc = _cli(*args, "--out", str(tmp_path / "out"), blocked=blocked)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_reproduce_without_extras_skips_and_exits_0(tmp_path):
    out = tmp_path / "report"
    proc = _cli(
        "reproduce", "--quick", "--only", "training", "lm", "--out", str(out), blocked=("torch", "transformers")
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True and summary["skipped"] == ["training", "lm"]
    assert [s["verdict"] for s in summary["sections"]] == ["skip", "skip"]
    assert "pip install 'grpo-align[train]'" in proc.stderr and "pip install 'grpo-align[lm]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_solve_and_lazy_names_without_torch():
    proc = _cli("solve", "examples/binary.toml", blocked=("torch", "transformers", "trl"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    proc = _python("import grpo_align\ngrpo_align.train", blocked=("torch",))
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        "MissingExtraError: grpo_align.train needs the 'train' extra (torch): pip install 'grpo-align[train]'"
    )


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("grpo_align.training", ("torch",), "train"),
        ("grpo_align.lm", ("transformers",), "lm"),
        ("grpo_align.lm", ("tokenizers",), "lm"),
        ("grpo_align.integrations.trl", ("trl",), "trl"),
    ],
)
def test_importing_a_package_without_its_extra_names_the_install(module, blocked, extra):
    # an ImportError (so optional-import guards keep working) whose text is the install line
    code = (
        f"try:\n    import {module}\nexcept ImportError as exc:\n"
        "    print(type(exc).__name__, '|', exc)\nelse:\n    print('imported')\n"
    )
    out = _python(code, blocked=blocked)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("MissingExtraError |"), line
    assert f"pip install 'grpo-align[{extra}]'" in line and "\n" not in line
