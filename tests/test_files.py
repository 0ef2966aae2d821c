"""grpo_align.files: atomic writes and the one JSON sanitiser."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from grpo_align import files
from grpo_align.errors import InputError
from grpo_align.files import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    read_regular_file,
    to_jsonable,
)
from grpo_align.theory.spec import GRPO


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_creates_folder_and_mode_0644(tmp_path):
    target = tmp_path / "a" / "b.txt"
    old = os.umask(0o077)  # a strict umask must not make results private either
    try:
        atomic_write_text(target, "hello")
    finally:
        os.umask(old)
    assert target.read_text() == "hello"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert _leftovers(target.parent) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_write_keeps_old_content_and_no_temp_file(tmp_path, error):
    target = tmp_path / "x.json"
    atomic_write_bytes(target, b"old")
    with pytest.raises(error), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a fi")
        raise error
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_interrupted_serialisation_leaves_old_content(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})

    class Boom:
        def __str__(self) -> str:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(target, {"a": Boom()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert _leftovers(tmp_path) == []


def test_atomic_path_for_writers_that_need_a_name(tmp_path):
    target = tmp_path / "fig.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"data")
        assert not target.exists()  # nothing is visible before the block ends
    assert target.read_bytes() == b"data"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_temp_names_are_unique(tmp_path):
    target = tmp_path / "x"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b
        a.write_bytes(b"a")
        b.write_bytes(b"b")
    assert target.read_bytes() == b"a"  # the outer block finishes last


def test_to_jsonable_numpy_dataclasses_and_non_finite():
    @dataclasses.dataclass
    class Point:
        x: float
        tags: tuple[str, ...]

    value = {
        "f": np.float32(0.5),
        "i": np.int64(3),
        "b": np.bool_(True),
        "arr": np.array([[1.0, np.nan], [np.inf, -np.inf]]),
        "c": np.array([1 + 2j]),
        "z": 1j,
        "dc": Point(math.inf, ("a", "b")),
        "spec": GRPO(group_size=math.inf, beta=0.5),
        "path": Path("a") / "b",
        1: None,
    }
    out = to_jsonable(value)
    assert out["f"] == 0.5 and out["i"] == 3 and out["b"] is True
    assert out["arr"] == [[1.0, None], ["inf", "-inf"]]
    assert out["c"] == {"real": [1.0], "imag": [2.0]}
    assert out["z"] == {"real": 0.0, "imag": 1.0}
    assert out["dc"] == {"x": "inf", "tags": ["a", "b"]}
    assert out["spec"]["group_size"] == "inf" and out["spec"]["beta"] == 0.5
    assert out["path"] == str(Path("a") / "b") and out["1"] is None
    json.dumps(out, allow_nan=False)  # strict JSON


def test_json_and_jsonl_files_are_strict(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"v": np.array([np.nan, 1.0])})
    assert json.loads((tmp_path / "a.json").read_text()) == {"v": [None, 1.0]}
    assert (tmp_path / "a.json").read_text().endswith("\n")
    atomic_write_jsonl(tmp_path / "b.jsonl", [{"s": 1}, {"s": np.float64(np.inf)}])
    lines = (tmp_path / "b.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"s": 1}, {"s": "inf"}]


def _non_regular(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "real.txt").write_text("keep\n")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    return {
        "symbolic link": tmp_path / "link.txt",
        "symbolic link ": tmp_path / "dangling.txt",
        "FIFO": tmp_path / "fifo",
        "folder": tmp_path / "folder",
        "device": Path("/dev/null"),
    }


def test_only_regular_files_are_written(tmp_path):
    for kind, path in _non_regular(tmp_path).items():
        before = os.lstat(path)
        with pytest.raises(InputError, match=kind.strip()):
            atomic_write_text(path, "new\n")
        after = os.lstat(path)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode), kind  # the node itself is kept
    assert (tmp_path / "real.txt").read_text() == "keep\n"
    assert not (tmp_path / "nowhere.txt").exists() and _leftovers(tmp_path) == []


def test_os_errors_name_the_target_not_the_temporary_file(tmp_path, monkeypatch):
    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    (tmp_path / "x.json").write_text("old\n")
    with pytest.raises(OSError) as info:
        atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert info.value.errno == 28 and info.value.filename == str(tmp_path / "x.json")
    assert (tmp_path / "x.json").read_text() == "old\n" and _leftovers(tmp_path) == []


def test_read_regular_file_refuses_other_files_and_large_ones(tmp_path):
    for kind, path in _non_regular(tmp_path).items():
        if kind.startswith("symbolic link"):
            continue  # reading follows links: a link to a regular file is that file
        with pytest.raises(InputError, match=kind):
            read_regular_file(path)  # returns at once for a FIFO: opened non-blocking
    assert read_regular_file(tmp_path / "link.txt") == b"keep\n"
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "dangling.txt")
    (tmp_path / "big").write_bytes(b"x" * 101)
    assert read_regular_file(tmp_path / "big", max_bytes=101) == b"x" * 101
    with pytest.raises(InputError, match="larger than"):
        read_regular_file(tmp_path / "big", max_bytes=100)
    with pytest.raises(InputError, match="device"):
        read_regular_file("/dev/zero")
