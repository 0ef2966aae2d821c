#!/usr/bin/env python3
"""The project's commands, on a machine with nothing but Python 3.11+ (standard library only).

    python3 tasks.py report [ARGS]   the paper reproduction report: grpo-align reproduce ARGS
    python3 tasks.py test [ARGS]     the test suite: pytest ARGS
    python3 tasks.py lint            ruff format --check, ruff check, mypy
    python3 tasks.py docs            the documentation site: mkdocs build --strict -> site/
    python3 tasks.py readme [--skip-data]
                                     rewrite the marked blocks of README.md and docs/ from real
                                     runs (--skip-data: keep the stored run data, docs/data/*.json,
                                     and only render the tables again)
    python3 tasks.py reference       fit the built-in reference model again and write it, with its
                                     manifest (fingerprint, file hashes), into
                                     src/grpo_align/data/reference (shipped with the package)
    python3 tasks.py setup           only create / update .venv

Each command first makes sure ``.venv`` holds the project with every extra: it creates the
virtual environment when missing, installs torch first (the CPU build, pinned), then
``-e '.[all,test,dev]'`` with the same pin, and writes a stamp so that the next run installs
again only when pyproject.toml (or the torch pin) changed. Then it runs the job with the
venv's Python, offline for the Hugging Face libraries and with matplotlib's file backend.

``docs`` also installs the ``docs`` extra and MathJax (``npm pack mathjax@3``, kept in
``.venv/share/grpo-align-docs``) once, then builds offline: the tutorials are executed, the
CLI and API references generated, MathJax served from the site itself.

Environment:
    GRPO_ALIGN_TORCH        the torch requirement (default torch==2.13.0)
    GRPO_ALIGN_TORCH_INDEX  an index URL for torch alone, for machines whose package index
                            serves CUDA builds: https://download.pytorch.org/whl/cpu
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".grpo-align-install"
TORCH = os.environ.get("GRPO_ALIGN_TORCH", "torch==2.13.0")
TORCH_INDEX = os.environ.get("GRPO_ALIGN_TORCH_INDEX", "")
EXTRAS = ".[all,test,dev]"
DOCS_STAMP = VENV / ".grpo-align-docs-install"
#: MathJax for the site's formulas, from the npm registry, kept beside the venv (docs/hooks.py reads it)
MATHJAX = "mathjax@3"
MATHJAX_DIR = VENV / "share" / "grpo-align-docs"
#: what every job runs under: the LM is built locally (no hub), figures are written to files
JOB_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}

USAGE = __doc__.split("\n\n")[1]


def say(msg: str) -> None:
    print(f"tasks.py: {msg}", file=sys.stderr, flush=True)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def install_key() -> str:
    """What the install depends on: a change in any of these installs again."""
    parts = [(ROOT / "pyproject.toml").read_bytes(), TORCH.encode(), TORCH_INDEX.encode(), EXTRAS.encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def run(cmd: list[str], env: dict[str, str] | None = None) -> int:
    try:
        return subprocess.run(cmd, cwd=ROOT, env=env).returncode
    except KeyboardInterrupt:
        return 130


def check(cmd: list[str]) -> None:
    code = run(cmd)
    if code:
        say(f"failed (exit {code}): {' '.join(cmd)}")
        raise SystemExit(code)


def ensure_venv() -> Path:
    """Create and fill ``.venv`` where it is missing or out of date; returns its Python."""
    python = venv_python()
    key = install_key()
    if python.exists() and STAMP.exists() and STAMP.read_text().strip() == key:
        return python
    if not python.exists():
        if VENV.exists():
            shutil.rmtree(VENV)  # a half-made venv from an interrupted run
        say(f"creating {VENV.name} with {sys.executable}")
        check([sys.executable, "-m", "venv", str(VENV)])
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    # torch first, alone: the pinned CPU build; installed later without the pin, pip would
    # resolve the newest release, a CUDA build of several GB
    say(f"installing {TORCH}" + (f" from {TORCH_INDEX}" if TORCH_INDEX else ""))
    check([*pip, TORCH, *(["--index-url", TORCH_INDEX] if TORCH_INDEX else [])])
    say(f"installing -e '{EXTRAS}' (the package, every extra, pytest, ruff, mypy)")
    check([*pip, "-e", EXTRAS, TORCH])
    STAMP.write_text(key + "\n")
    return python


def ensure_docs(python: Path) -> None:
    """Install the ``docs`` extra and fetch MathJax where missing or out of date."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + MATHJAX.encode()).hexdigest()
    if DOCS_STAMP.exists() and DOCS_STAMP.read_text().strip() == key and any(MATHJAX_DIR.glob("mathjax-*.tgz")):
        return
    say("installing -e '.[docs]' (mkdocs-material, mkdocstrings, mkdocs-jupyter)")
    check([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-e", ".[docs]", TORCH])
    npm = shutil.which("npm")
    if npm is None:
        say("npm not found: install Node.js (apt-get install npm) to fetch MathJax for the docs")
        raise SystemExit(2)
    MATHJAX_DIR.mkdir(parents=True, exist_ok=True)
    for old in MATHJAX_DIR.glob("mathjax-*.tgz"):
        old.unlink()
    say(f"fetching {MATHJAX} (npm pack) into {MATHJAX_DIR.relative_to(ROOT)}")
    check([npm, "pack", MATHJAX, "--silent", "--pack-destination", str(MATHJAX_DIR)])
    DOCS_STAMP.write_text(key + "\n")


#: a README block regenerated by ``tasks.py readme`` and checked by tests/test_readme.py:
#: ``<!-- run: COMMAND -->`` then a console block holding ``$ COMMAND`` and its output
README_BLOCK = re.compile(r"<!-- run: (?P<cmd>[^\n]+?) -->\n```console\n(?P<body>.*?)```\n", re.S)
#: the files whose marked blocks ``tasks.py readme`` rewrites and tests/test_readme.py checks
RUN_BLOCK_FILES = ("README.md", "docs/howto/predict.md", "docs/howto/measure.md", "docs/lm.md")
#: a long run's data stored beside the docs: ``<!-- data: PATH from {out}/FILE after: COMMAND -->``;
#: ``tasks.py readme`` runs COMMAND with ``{out}`` a fresh temporary folder and copies FILE to PATH
#: (tests/test_readme.py reruns it only under ``-m slow``)
DATA_MARK = re.compile(r"<!-- data: (?P<path>\S+) from \{out\}/(?P<file>\S+) after: (?P<cmd>[^\n]+?) -->")
#: a Markdown table that a command prints (from stored data, in seconds), verbatim:
#: ``<!-- table: COMMAND -->``, a blank line, the output, a blank line, ``<!-- /table -->`` (the blank
#: lines end the HTML comment's block, so that every Markdown renderer sees a table)
TABLE_BLOCK = re.compile(r"<!-- table: (?P<cmd>[^\n]+?) -->\n\n(?P<body>.*?)\n<!-- /table -->\n", re.S)
#: the terminal the README's output is rendered for (rich reads COLUMNS)
README_ENV = {"COLUMNS": "110", "NO_COLOR": "1", "TERM": "dumb"}


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """``(command, output)`` of every marked block of the README, in order."""
    blocks = []
    for m in README_BLOCK.finditer(text):
        first, _, output = m.group("body").partition("\n")
        if first != f"$ {m.group('cmd')}":
            raise ValueError(f"README block for {m.group('cmd')!r} must start with '$ {m.group('cmd')}'")
        blocks.append((m.group("cmd"), output))
    return blocks


def run_readme_command(command: str, python: str, env: dict[str, str]) -> str:
    """The stdout of a README command, ``grpo-align`` run as ``python -m grpo_align.cli``."""
    argv = shlex.split(command)
    if argv[0] == "grpo-align":
        argv = [python, "-m", "grpo_align.cli", *argv[1:]]
    proc = subprocess.run(argv, cwd=ROOT, env={**env, **README_ENV}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{command} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def data_marks(text: str) -> list[tuple[str, str, str]]:
    """``(path, file, command)`` of every stored-data mark of a file, in order."""
    marks = []
    for m in DATA_MARK.finditer(text):
        if "{out}" not in m.group("cmd"):
            raise ValueError(f"data mark for {m.group('path')}: its command must write into {{out}}")
        marks.append((m.group("path"), m.group("file"), m.group("cmd")))
    return marks


def table_blocks(text: str) -> list[tuple[str, str]]:
    """``(command, table)`` of every table block of a file, in order."""
    return [(m.group("cmd"), m.group("body")) for m in TABLE_BLOCK.finditer(text)]


def run_data_command(command: str, file: str, python: str, env: dict[str, str], out: Path) -> bytes:
    """Run a data mark's command with ``{out}`` = ``out`` (a fresh folder); the bytes of ``out/file``."""
    run_readme_command(command.replace("{out}", shlex.quote(str(out))), python, env)
    return (out / file).read_bytes()


def rewrite_readme(python: str, env: dict[str, str], *, data: bool = True) -> int:
    """Regenerate the stored data (unless ``data`` is false), then every marked block of ``RUN_BLOCK_FILES``."""
    import tempfile

    for name in RUN_BLOCK_FILES:
        for path, file, cmd in data_marks((ROOT / name).read_text()) if data else []:
            say(f"running {cmd} (a long run) for {path}")
            with tempfile.TemporaryDirectory(prefix="grpo-align-docs-") as tmp:
                fresh = run_data_command(cmd, file, python, env, Path(tmp) / "out")
            (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
            (ROOT / path).write_bytes(fresh)
    for name in RUN_BLOCK_FILES:
        rewrite_blocks(ROOT / name, python, env)
    return 0


def rewrite_blocks(path: Path, python: str, env: dict[str, str]) -> None:
    """Rewrite the marked blocks of one file from fresh runs."""
    text = path.read_text()

    def fresh(m: re.Match[str]) -> str:
        cmd = m.group("cmd")
        say(f"running {cmd}")
        return f"<!-- run: {cmd} -->\n```console\n$ {cmd}\n{run_readme_command(cmd, python, env)}```\n"

    def table(m: re.Match[str]) -> str:
        cmd = m.group("cmd")
        say(f"running {cmd}")
        return f"<!-- table: {cmd} -->\n\n{run_readme_command(cmd, python, env)}\n<!-- /table -->\n"

    new = TABLE_BLOCK.sub(table, README_BLOCK.sub(fresh, text))
    if new != text:
        path.write_text(new)
    count = len(readme_blocks(new)) + len(table_blocks(new))
    say(f"{path.name}: {count} block(s) {'rewritten' if new != text else 'unchanged'}")


def job_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(JOB_ENV)
    # the venv first on PATH (torchrun, the multi-process TRL test); activated as `. .venv/bin/activate` would
    env["PATH"] = os.pathsep.join([str(venv_python().parent), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(VENV)
    for name in ("PYTHONPATH", "MYPYPATH", "PYTHONHOME"):  # the venv's editable install and pyproject's settings only
        env.pop(name, None)
    return env


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036  (this script is what runs on an older Python)
        say(f"needs Python 3.11 or newer, this is {sys.version.split()[0]}")
        return 2
    if not argv or argv[0] not in {"report", "test", "lint", "docs", "readme", "reference", "setup"}:
        print(USAGE, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    skip_data = command == "readme" and args == ["--skip-data"]
    if command in {"lint", "docs", "readme", "reference", "setup"} and args and not skip_data:
        say(f"{command} takes no arguments, got {' '.join(args)}")
        return 2
    python = str(ensure_venv())
    env = job_env()
    if command == "setup":
        return 0
    if command == "report":
        return run([python, "-m", "grpo_align.cli", "reproduce", *args], env)
    if command == "test":
        return run([python, "-m", "pytest", *args], env)
    if command == "docs":
        ensure_docs(Path(python))
        env.update({"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"})  # plugins' banners, not our build
        return run([python, "-m", "mkdocs", "build", "--strict", "--site-dir", "site"], env)
    if command == "readme":
        return rewrite_readme(python, env, data=not skip_data)
    if command == "reference":
        return run(
            [python, "-m", "grpo_align.lm.builtin", str(ROOT / "src" / "grpo_align" / "data" / "reference")], env
        )
    # lint: every check runs, so one run reports all three
    checks = [
        ["ruff", "format", "--check", "."],
        ["ruff", "check", "."],
        ["mypy"],
    ]
    failed = []
    for cmd in checks:
        say(" ".join(cmd))
        if run([python, "-m", *cmd], env):
            failed.append(cmd[0] if cmd[0] == "mypy" else " ".join(cmd[:2]))
    if failed:
        say(f"lint failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
