"""Every failure path gives one line and a documented exit status, never a traceback.

One table row per hostile case: the command line (run in-process through ``cli.main``)
or the Python call, what it must exit with or raise, and words the one line must hold.
Cases that need a broken environment (no permission, a full disk) are simulated at the
system call that fails, since the tests run as root, where ``chmod`` does not deny; the
real ``chmod`` variants run where the user is not root.
"""

from __future__ import annotations

import errno
import gzip
import os
import shlex
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import grpo_align as ga
from grpo_align import cli, files
from grpo_align.cli import main
from grpo_align.commands import solve as solve_cmd
from grpo_align.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
BINARY = ROOT / "examples" / "binary.toml"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

#: file descriptors a case's setup holds open (another run's lock) until its command ran
HELD_FDS: list[int] = []

PROBLEM = "[problem]\nref = [0.3, 0.7]\nrewards = [1.0, 0.0]\n"
ALGO = "[[algorithm]]\ngroup_size = 4\nbeta = 0.5\n"
SMALL_TRAIN = "[train]\nsteps = 40\ngroups_per_step = 8\nlr = 1.0\nn_batches = 4\ncheckpoint_every = 10\n"


@dataclass
class Case:
    """A command line; ``setup(tmp_path, monkeypatch)`` writes files and returns the argv."""

    setup: Callable[[Path, pytest.MonkeyPatch], list[str]]
    status: int
    words: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    check: Callable[[Path], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _file(tmp: Path, text: str | bytes, name: str = "p.toml") -> Path:
    path = tmp / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _solve(text: str | bytes, *flags: str) -> Callable[[Path, pytest.MonkeyPatch], list[str]]:
    return lambda tmp, mp: ["solve", str(_file(tmp, text)), *flags]


def _train(text: str, *flags: str) -> Callable[[Path, pytest.MonkeyPatch], list[str]]:
    return lambda tmp, mp: ["train", str(_file(tmp, text)), "--out", str(tmp / "run"), "--quiet", *flags]


# ---------------------------------------------------------------------- setups with side effects
def _unreadable_input(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    path = _file(tmp, PROBLEM + ALGO)
    real_open = os.open

    def deny(p: Any, flags: int, *a: Any, **kw: Any) -> int:
        if Path(p) == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_open(p, flags, *a, **kw)

    mp.setattr(files.os, "open", deny)
    return ["solve", str(path)]


def _read_only_out(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    def deny(*a: Any, dir: Any = None, **kw: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(str(dir), ".x.json.abcd.tmp"))

    mp.setattr(tempfile, "mkstemp", deny)
    return ["solve", str(BINARY), "--out", str(tmp / "x.json")]


def _disk_full(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "x.json").write_text("old\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    mp.setattr(files.os, "fsync", full)
    return ["solve", str(BINARY), "--out", str(tmp / "x.json")]


def _old_content_no_temp(tmp: Path) -> None:
    assert (tmp / "x.json").read_text() == "old\n"
    assert not list(tmp.glob(".*.tmp"))


def _symlink_out(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (tmp / "real.json").write_text("keep\n")
    (tmp / "link.json").symlink_to(tmp / "real.json")
    return ["solve", str(BINARY), "--out", str(tmp / "link.json")]


def _symlink_kept(tmp: Path) -> None:
    assert (tmp / "link.json").is_symlink() and (tmp / "real.json").read_text() == "keep\n"


def _dev_full_kept(tmp: Path) -> None:
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)


def _fifo(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    os.mkfifo(tmp / "pipe.toml")
    return ["solve", str(tmp / "pipe.toml")]


def _too_big(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    mp.setattr(files, "MAX_INPUT_BYTES", 1000)
    return ["solve", str(_file(tmp, PROBLEM + ALGO + "#" * 2000 + "\n"))]


def _truncated_checkpoint(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    argv = ["train", str(_file(tmp, PROBLEM + ALGO + SMALL_TRAIN)), "--out", str(tmp / "run"), "--quiet"]
    assert main(argv) in (0, 1)
    ckpt = tmp / "run" / "checkpoint-0.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    return [*argv, "--resume"]


def _existing_run(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    argv = ["train", str(_file(tmp, PROBLEM + ALGO + SMALL_TRAIN)), "--out", str(tmp / "run"), "--quiet"]
    assert main(argv) in (0, 1)
    return argv


def _existing_run_overwrite(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    return [*_existing_run(tmp, mp), "--overwrite"]


def _locked_folder(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    import fcntl

    (tmp / "run").mkdir()
    fd = os.open(tmp / "run" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another run holds the folder (a second open file description)
    HELD_FDS.append(fd)  # closed after the command ran
    return ["train", str(_file(tmp, PROBLEM + ALGO + SMALL_TRAIN)), "--out", str(tmp / "run"), "--quiet"]


def _small_memory(text: str, *flags: str) -> Callable[[Path, pytest.MonkeyPatch], list[str]]:
    def setup(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
        from grpo_align.training import tabular

        mp.setattr(tabular, "memory_limit", lambda: 8 * 2**30)  # the same verdict on every machine
        return _train(text, *flags)(tmp, mp)

    return setup


def _internal_error(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    def broken(*a: Any, **kw: Any) -> Any:
        raise ZeroDivisionError("float division by zero")

    mp.setattr(solve_cmd, "stationary_policy", broken)
    return ["solve", str(BINARY)]


def _predict(name: str, content: str | bytes, *flags: str) -> Callable[[Path, pytest.MonkeyPatch], list[str]]:
    """``predict`` of a STATS file ``name`` holding ``content``."""
    return lambda tmp, mp: [
        "predict",
        str(_file(tmp, content, name)),
        "--preset",
        "trl",
        "--out",
        str(tmp / "o"),
        *flags,
    ]


def _explain(name: str, content: str | bytes) -> Callable[[Path, pytest.MonkeyPatch], list[str]]:
    return lambda tmp, mp: ["explain", str(_file(tmp, content, name)), "--no-predict", "--brief"]


def _huge_parquet_count(tmp: Path, mp: pytest.MonkeyPatch) -> list[str]:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"prompt_id": ["a"], "n": pa.array([2**63 - 1], pa.int64()), "correct": [1]})
    pq.write_table(table, tmp / "s.parquet")
    return ["predict", str(tmp / "s.parquet"), "--preset", "trl", "--out", str(tmp / "o")]


STATS = "prompt_id,n,correct\na,4,1\n"
DEEP = "[problem]\nref = " + "[" * 2000 + "]" * 2000 + "\nrewards = [1]\n" + ALGO
BIG_INT = "1" + "0" * 400

CASES: dict[str, Case] = {
    # ---- input files
    "missing input": Case(lambda tmp, mp: ["solve", str(tmp / "nope.toml")], 2, ("file not found", "nope.toml")),
    "unreadable input": Case(_unreadable_input, 2, ("p.toml", "Permission denied")),
    "folder as input": Case(lambda tmp, mp: ["solve", str(tmp)], 2, ("is a folder", "regular file")),
    "FIFO as input": Case(_fifo, 2, ("pipe.toml", "FIFO", "regular file")),
    "/dev/zero as input": Case(lambda tmp, mp: ["solve", "/dev/zero"], 2, ("/dev/zero", "device")),
    "input over the size limit": Case(_too_big, 2, ("larger than",)),
    "UTF-8 byte-order mark": Case(_solve(b"\xef\xbb\xbf" + (PROBLEM + ALGO).encode()), 0),
    "not UTF-8": Case(_solve(b"\xff\xfe[problem]"), 2, ("not a UTF-8 text file",)),
    "nested 2000 deep": Case(_solve(DEEP), 2, ("nested too deeply",)),
    "nested 5 deep": Case(_solve(PROBLEM.replace("[0.3, 0.7]", "[[[[[0.3]]]]]") + ALGO), 2, ("problem.ref",)),
    "key with a line break": Case(_solve(PROBLEM + '"a\\nb" = 1\n' + ALGO), 2, ("problem.", "unknown key")),
    # ---- predict and explain inputs (issue 18; the cases that could hang are in test_inputs.py)
    "STATS not UTF-8": Case(
        _predict("s.csv", b"prompt_id,n,correct\na,4,\xff\n"), 2, ("byte offset 24", "save it as UTF-8")
    ),
    "STATS .gz not gzip": Case(_predict("s.csv.gz", STATS), 2, ("is not gzip-compressed", "drop the .gz suffix")),
    "STATS .csv.gz truncated": Case(
        _predict("s.csv.gz", gzip.compress(STATS.encode() * 40)[:-20]), 2, ("truncated", "copy the file")
    ),
    "STATS cell over csv's limit": Case(
        _predict("s.csv", 'prompt_id,rewards\na,"' + "1 " * 70_000 + '"\n'), 2, ("131072", "JSON Lines")
    ),
    "STATS column twice": Case(_predict("s.csv", "prompt_id,n,correct,n\na,4,1,5\n"), 2, ("column 'n' appears twice",)),
    "STATS key twice": Case(
        _predict("s.jsonl", '{"prompt_id": "a", "p0": 0.1, "p0": 0.2}\n'), 2, ("key 'p0' appears twice",)
    ),
    "STATS count 1e20": Case(_predict("s.csv", "prompt_id,n,correct\na,1e20,1\n"), 2, ("column n", "2**53")),
    "Parquet count 2**63-1": Case(_huge_parquet_count, 2, ("row 1, column n", "9223372036854775807", "2**53")),
    "explain YAML not UTF-8": Case(_explain("c.yaml", b"beta: 0.1 # \xff\n"), 2, ("c.yaml", "byte offset 12")),
    "explain YAML key twice": Case(
        _explain("c.yaml", "beta: 0.1\nbeta: 0.2\n"), 2, ("line 2", "key 'beta' appears twice")
    ),
    "explain YAML alias bomb": Case(
        _explain(
            "c.yaml",
            "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
            + "".join(f"{k}: &{k} [{', '.join([f'*{j}'] * 9)}]\n" for j, k in zip("abcdefgh", "bcdefghi", strict=True)),
        ),
        2,
        ("c.yaml", "expands to more than 100000 values"),
    ),
    "explain flags only a comment": Case(_explain("run.flags", "# --init_kl_coef 0.01\n"), 2, ("holds no settings",)),
    "explain JSON with a BOM": Case(_explain("c.json", b"\xef\xbb\xbf" + b'{"beta": 0.1}'), 0),
    # ---- values, in the file's words
    "true for a number": Case(
        _solve(PROBLEM.replace("[1.0, 0.0]", "[true, 0.0]") + ALGO),
        2,
        ("problem.rewards", "got true"),
        ("True", "problem.problem"),
    ),
    "renormalize not a bool": Case(
        _solve(PROBLEM + "renormalize = 1\n" + ALGO), 2, ("problem.renormalize", "true or false")
    ),
    "sum off, TOML fix": Case(
        _solve(PROBLEM.replace("0.7", "0.8") + ALGO),
        2,
        ("problem.ref", "renormalize = true"),
        ("renormalize=True",),
    ),
    "wrong length, no batch axis": Case(
        _solve(PROBLEM.replace("[1.0, 0.0]", "[1.0, 0.0, 2.0]") + ALGO),
        2,
        ("problem.rewards", "(2,)", "(3,)"),
        ("(1, 2)", "(1, 3)", "problem.problem"),
    ),
    "ragged row counted from 1": Case(
        _solve("[problem]\nref = [[0.3, 0.7], [1.0]]\nsuccess = [[0.5, 0.1], [0.5, 0.5]]\n" + ALGO),
        2,
        ("problem.success[2]", "2 values for 1 outputs"),
    ),
    "second algorithm counted from 1": Case(
        _solve(PROBLEM + ALGO + "[[algorithm]]\ngroup_size = 1\n"), 2, ("algorithm[2].group_size", ">= 2", "inf")
    ),
    "G as a string": Case(
        _solve(PROBLEM + '[[algorithm]]\ngroup_size = "inf"\n'), 2, ("algorithm[1].group_size", '"inf"')
    ),
    "G = 10**400": Case(
        _solve(PROBLEM + f"[[algorithm]]\ngroup_size = {BIG_INT}\n"),
        2,
        ("algorithm[1].group_size", "401 digits"),
        ("math.inf",),
    ),
    "beta = 10**400": Case(
        _solve(PROBLEM + f"[[algorithm]]\nbeta = {BIG_INT}\n"), 2, ("algorithm[1].beta", "finite number")
    ),
    "ddof = true": Case(_solve(PROBLEM + "[[algorithm]]\nddof = true\n"), 2, ("algorithm[1].ddof", "got true")),
    # ---- --out and files
    "--out into a read-only folder": Case(_read_only_out, 2, ("x.json", "Permission denied"), (".tmp",)),
    "disk full": Case(_disk_full, 2, ("x.json", "No space left on device"), check=_old_content_no_temp),
    "--out /dev/full": Case(
        lambda tmp, mp: ["solve", str(BINARY), "--out", "/dev/full"],
        2,
        ("--out", "/dev/full", "device"),
        check=_dev_full_kept,
    ),
    "--out a symlink": Case(_symlink_out, 2, ("symbolic link",), check=_symlink_kept),
    "--out the input file": Case(
        lambda tmp, mp: ["solve", str(_file(tmp, PROBLEM + ALGO)), "--out", str(tmp / "p.toml")],
        2,
        ("--out", "problem file itself"),
        check=lambda tmp: (tmp / "p.toml").read_text().startswith("[problem]") or pytest.fail("input replaced"),
    ),
    "--out a folder": Case(lambda tmp, mp: ["solve", str(BINARY), "--out", str(tmp)], 2, ("--out", "directory")),
    "names with markup": Case(
        _solve(PROBLEM + 'names = ["[/]", "[a]"]\n' + '[[algorithm]]\nname = "[bold]G[/bold]"\nbeta = 0.5\n'),
        0,
        extra={"stdout": ("[/]", "[a]", "[bold]G[/bold]")},
    ),
    # ---- command line
    "bad flag value": Case(lambda tmp, mp: ["solve", str(BINARY), "--precision", "x"], 2, ("--precision",)),
    "unknown flag": Case(lambda tmp, mp: ["solve", str(BINARY), "--colour"], 2, ("--colour",)),
    "internal error": Case(_internal_error, 3, ("internal error", "ZeroDivisionError", "please report")),
    # ---- train: [train] values and sizes
    "train = 5": Case(_train("train = 5\n" + PROBLEM + ALGO), 2, ("train", "expected a [train] table")),
    "threads = 100000": Case(_train(PROBLEM + ALGO + "[train]\nthreads = 100000\n"), 2, ("train.threads", "256")),
    "[train] value true": Case(_train(PROBLEM + ALGO + "[train]\nlr = true\n"), 2, ("train.lr", "got true")),
    "[train] bad value named": Case(_train(PROBLEM + ALGO + "[train]\nlr = -1\n"), 2, ("train.lr",)),
    "--steps bad": Case(_train(PROBLEM + ALGO, "--steps", "0"), 2, ("--steps",)),
    "G 1e5": Case(
        _small_memory(PROBLEM + "[[algorithm]]\ngroup_size = 100000\nbeta = 0.5\n[train]\ngroups_per_step = 1000\n"),
        2,
        ("algorithm[1].group_size", "GiB", "limit"),
    ),
    "groups_per_step 1e8": Case(
        _small_memory(PROBLEM + ALGO + "[train]\ngroups_per_step = 100000000\n"),
        2,
        ("train.groups_per_step", "GiB", "limit"),
    ),
    "groups_per_step 1e8 as a float": Case(
        _train(PROBLEM + ALGO + "[train]\ngroups_per_step = 1e8\n"), 2, ("train.groups_per_step", "integer")
    ),
    "steps 1e12": Case(_small_memory(PROBLEM + ALGO + "[train]\nsteps = 1000000000000\n"), 2, ("train.steps", "GiB")),
    "G = inf in train": Case(
        _train(PROBLEM + "[[algorithm]]\ngroup_size = inf\nbeta = 0.5\n"), 2, ("algorithm[1].group_size", "finite")
    ),
    # ---- train: run folders
    "truncated checkpoint with --resume": Case(_truncated_checkpoint, 2, ("--resume", "cannot be read")),
    "--resume without checkpoint": Case(_train(PROBLEM + ALGO + SMALL_TRAIN, "--resume"), 2, ("no checkpoint",)),
    "--resume, no checkpoints written": Case(
        _train(PROBLEM + ALGO + "[train]\nsteps = 40\nn_batches = 4\n", "--resume"), 2, ("checkpoint_every = 0",)
    ),
    "folder holds another run": Case(_existing_run, 2, ("holds another run", "--overwrite")),
    "--overwrite replaces it": Case(_existing_run_overwrite, 0, extra={"status_in": (0, 1)}),
    "folder in use": Case(_locked_folder, 2, ("in use by another",)),
    "--out a file for train": Case(
        lambda tmp, mp: ["train", str(_file(tmp, PROBLEM + ALGO)), "--out", str(_file(tmp, "x", "f.txt"))],
        2,
        ("--out", "is a file"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_cli_case(name, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    monkeypatch.delenv("GRPO_ALIGN_DEBUG", raising=False)
    argv = case.setup(tmp_path, monkeypatch)
    capsys.readouterr()  # drop what the setup printed
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse
        status = int(exc.code or 0)
    finally:
        while HELD_FDS:
            os.close(HELD_FDS.pop())
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert status in case.extra.get("status_in", (case.status,)), (status, err)
    if case.status != 0:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        for word in case.words:
            assert word in lines[0], (word, lines[0])
        for word in case.absent:
            assert word not in lines[0], (word, lines[0])
    for word in case.extra.get("stdout", ()):
        assert word in out, (word, out)
    if case.check is not None:
        case.check(tmp_path)


def test_debug_env_shows_the_traceback(tmp_path, monkeypatch):
    argv = _internal_error(tmp_path, monkeypatch)
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        main(argv)


@pytest.mark.skipif(IS_ROOT, reason="chmod does not deny root; the simulated rows above cover it")
def test_real_permissions(tmp_path, capsys):
    path = _file(tmp_path, PROBLEM + ALGO)
    path.chmod(0)
    assert main(["solve", str(path)]) == 2
    assert "Permission denied" in capsys.readouterr().err
    path.chmod(0o644)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["solve", str(path), "--out", str(ro / "x.json")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "x.json" in err[0] and ".tmp" not in err[0]
    finally:
        ro.chmod(0o755)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_dev_full_is_enospc_through_the_writer(tmp_path, monkeypatch):
    """The writer's disk-full path with a real ENOSPC: its temporary file is /dev/full."""
    monkeypatch.setattr(files, "check_target", lambda p: Path(p))

    def to_dev_full(*a: Any, **kw: Any) -> tuple[int, str]:
        return os.open("/dev/full", os.O_WRONLY), "/dev/full"

    monkeypatch.setattr(tempfile, "mkstemp", to_dev_full)
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: None)  # never remove the device
    with pytest.raises(OSError) as info:
        files.atomic_write_text(tmp_path / "x.txt", "x" * 10000)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "x.txt")
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)


# ---------------------------------------------------------------------- the Python API
API_CASES: dict[str, tuple[Callable[[], Any], str, str]] = {
    "from_rewards nested 3 deep": (lambda: ga.Problem.from_rewards([[[0.3, 0.7]]], [[[1, 0]]]), "ref", "nested 3"),
    "from_bernoulli nested 3 deep": (lambda: ga.Problem.from_bernoulli([[[0.3, 0.7]]], [0.5, 0.5]), "ref", "nested"),
    "rewards nested 3 deep": (lambda: ga.Problem.from_rewards([0.3, 0.7], [[[1, 0]]]), "rewards", "nested"),
    "wrong length, no batch axis": (lambda: ga.Problem.from_rewards([0.3, 0.7], [1, 0, 3]), "rewards", "(2,)"),
    "ragged rewards row": (
        lambda: ga.Problem.from_rewards([[0.3, 0.7], [1.0]], [[1, 0], [1, 0]]),
        "rewards[1]",
        "2 values for 1",
    ),
    "GRPO(group_size=10**400)": (lambda: ga.GRPO(group_size=10**400), "group_size", "401 digits"),
    "GRPO(group_size=2**53 + 1)": (lambda: ga.GRPO(group_size=2**53 + 1), "group_size", "2**53"),
    "GRPO(beta=10**400)": (lambda: ga.GRPO(beta=10**400), "beta", "finite"),
    "GRPO(eps=10**400)": (lambda: ga.GRPO(eps=-(10**400)), "eps", "finite"),
    "GRPO(ddof=True)": (lambda: ga.GRPO(ddof=True), "ddof", "0"),
    "TrainConfig(threads=100000)": (lambda: _train_config(threads=100000), "threads", "256"),
    "TrainConfig(lr=10**400)": (lambda: _train_config(lr=10**400), "lr", "digits"),
    "TrainConfig.from_dict names the table": (
        lambda: _train_config_from({"steps": 0}),
        "train.steps",
        ">= 1",
    ),
    "train with groups_per_step 1e8": (
        lambda: _train_run(groups_per_step=10**8),
        "groups_per_step",
        "GiB",
    ),
}


def _train_config(**kw: Any) -> Any:
    from grpo_align.training import TrainConfig

    return TrainConfig(**kw)


def _train_config_from(table: dict[str, Any]) -> Any:
    from grpo_align.training import TrainConfig

    return TrainConfig.from_dict(table)


def _train_run(**kw: Any) -> Any:
    from grpo_align.training import TrainConfig, tabular, train

    real = tabular.memory_limit
    tabular.memory_limit = lambda: 8 * 2**30  # type: ignore[assignment]
    try:
        return train(ga.Problem.from_rewards([0.3, 0.7], [1, 0]), ga.GRPO(group_size=8), TrainConfig(**kw))
    finally:
        tabular.memory_limit = real  # type: ignore[assignment]


@pytest.mark.parametrize("name", list(API_CASES))
def test_api_case(name):
    call, field_name, words = API_CASES[name]
    with pytest.raises(InputError) as info:
        call()
    assert info.value.field == field_name
    assert words in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------- train: verdict and interruption
def test_train_verdict_line_and_exit_status(tmp_path, capsys):
    path = _file(tmp_path, PROBLEM + ALGO + "[train]\nsteps = 400\ngroups_per_step = 16\nlr = 1.0\n")
    assert main(["train", str(path), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("verdict: within tolerance")
    # far too few, far too small steps: the policy is still near pi_ref, far from the prediction
    path = _file(tmp_path, PROBLEM + ALGO + "[train]\nsteps = 100\ngroups_per_step = 16\nlr = 0.001\n")
    assert main(["train", str(path), "--out", str(tmp_path / "b"), "--quiet"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("verdict: outside tolerance") and "max |gap|/stderr" in last


def test_interrupted_run_prints_the_command_that_resumes_it(tmp_path, monkeypatch, capsys):
    from grpo_align import training

    path = _file(tmp_path, PROBLEM + ALGO + SMALL_TRAIN)
    out = tmp_path / "run dir"  # a space: the printed command must quote it
    original = training.train

    def crashing(*args: Any, callback: Any = None, **kw: Any) -> Any:
        def crash(step: int, metrics: dict[str, float]) -> None:
            callback(step, metrics)
            if step == 25:
                raise KeyboardInterrupt

        return original(*args, callback=crash, **kw)

    monkeypatch.setattr(training, "train", crashing)
    assert main(["train", str(path), "--out", str(out), "--quiet", "--seed", "3"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resume with: " in err[0]
    command = shlex.split(err[0].split("resume with: ", 1)[1])
    assert command[:2] == ["grpo-align", "train"] and command[-1] == "--resume"
    assert command[command.index("--out") + 1] == str(out) and command[command.index("--seed") + 1] == "3"
    monkeypatch.setattr(training, "train", original)
    assert main(command[1:]) in (0, 1)  # the printed command itself finishes the run
    assert (out / "summary.jsonl").exists()


def test_one_line_escapes_control_characters():
    assert cli.one_line("a\nb\tc\x1b[31m") == "a\\nb\\tc\\x1b[31m"
