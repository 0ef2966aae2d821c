"""Writing files: atomically, and JSON through one sanitiser.

Every writer puts its data in a temporary file with a unique name in the target folder,
flushes it to disk (``fsync``) and moves it into place with ``os.replace``. A reader thus
sees the old file or the new one, never half of one, and an interrupted write (an
exception, ``KeyboardInterrupt``) removes its temporary file and leaves the old content.
Files are created with mode 0644 (``mkstemp`` makes them private; results are meant to
be read).

Only regular files are written: a target that exists as a symbolic link, a device, a FIFO
or a folder is refused (``InputError``) rather than replaced, so ``--out /dev/full`` or a
link planted in an output folder is never clobbered. An ``OSError`` while writing (no
permission, disk full) is re-raised naming the target, not the temporary file.

Reading: ``read_regular_file`` reads regular files only, up to a size limit, so a FIFO or
``/dev/zero`` given as an input cannot hang or exhaust memory.

JSON: ``to_jsonable`` is the one conversion of results to plain JSON values. NaN becomes
``null`` and the infinities the strings ``"inf"`` / ``"-inf"``, so every file is strict
JSON (``allow_nan=False``) and a reader can tell "undefined" from "unbounded".
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from grpo_align.errors import InputError

__all__ = [
    "MAX_INPUT_BYTES",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_write_text",
    "check_target",
    "json_dumps",
    "read_regular_file",
    "to_jsonable",
]

#: permissions of every written file: readable by all, writable by the owner
FILE_MODE = 0o644

#: largest input file read: problem files are a few KiB; the bound stops a mistaken path
MAX_INPUT_BYTES = 16 * 2**20

PathLike = str | os.PathLike[str]


def _kind(mode: int) -> str:
    """What a non-regular file is, for messages."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_target(path: PathLike) -> Path:
    """``path`` as a Path, if writing it would create or replace a regular file.

    Raises ``InputError`` naming the path when it exists as anything else (a symbolic
    link, even to a regular file, a device, a FIFO, a socket or a folder): ``os.replace``
    would replace that node itself.
    """
    target = Path(path)
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return target
    if not stat.S_ISREG(mode):
        raise InputError(
            str(target), f"exists and is {_kind(mode)}; only regular files are written: choose another name"
        )
    return target


def _naming(exc: OSError, target: Path) -> OSError:
    """The same error about ``target`` (not the temporary file, or no file at all)."""
    if exc.errno is None:
        return exc
    return OSError(exc.errno, exc.strerror, str(target))  # OSError(errno, ...) picks the subclass


def read_regular_file(path: PathLike, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path``, refusing anything else or anything larger.

    Opened non-blocking, so that opening a FIFO returns at once; a FIFO, device or folder
    raises ``InputError``, as does a file over ``max_bytes`` (checked while reading too,
    for files that grow; default ``MAX_INPUT_BYTES``). A missing or unreadable file
    raises the ``OSError`` of ``open``.
    """
    max_bytes = MAX_INPUT_BYTES if max_bytes is None else max_bytes
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(str(path), f"is {_kind(info.st_mode)}; expected a regular file")
        too_big = InputError(str(path), f"is larger than {max_bytes // 2**20} MiB; expected a problem file")
        if info.st_size > max_bytes:
            raise too_big
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(2**20, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise too_big
        return b"".join(chunks)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``.

    For writers that need a file name (``torch.save``, ``Figure.savefig``). The parent
    folder is created. On any exception (``KeyboardInterrupt`` included) the temporary
    file is removed and ``path`` keeps its old content. A target that exists and is not a
    regular file raises ``InputError`` (``check_target``); an ``OSError`` is re-raised
    naming ``path``.
    """
    target = check_target(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise _naming(exc, target) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # the writer may have closed the file without flushing it to disk
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        check_target(target)  # it may have appeared while we wrote
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _naming(exc, target) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_dumps(obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """Strict JSON of ``to_jsonable(obj)`` (no NaN or Infinity tokens)."""
    return json.dumps(to_jsonable(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def atomic_write_json(path: PathLike, obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> None:
    """Write ``obj`` as JSON (through ``to_jsonable``), with a final newline, atomically."""
    atomic_write_text(path, json_dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


def atomic_write_jsonl(path: PathLike, records: Iterable[Any]) -> None:
    """Write one JSON value per line (JSON Lines), atomically."""
    atomic_write_text(path, "".join(json_dumps(r, indent=None) + "\n" for r in records))


def _float(v: float) -> float | str | None:
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (dict, list, str, int, float, bool, None).

    numpy scalars and arrays become Python numbers and (nested) lists; a complex number or
    array becomes ``{"real": ..., "imag": ...}``; dataclasses become dicts of their fields;
    tuples lists; mapping keys strings; paths and other objects their ``str``. NaN becomes
    ``None`` and the infinities ``"inf"`` / ``"-inf"``.
    """
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _float(float(obj))
    if isinstance(obj, (complex, np.complexfloating)):
        return {"real": _float(float(obj.real)), "imag": _float(float(obj.imag))}
    if isinstance(obj, np.ndarray):
        if np.iscomplexobj(obj):
            return {"real": to_jsonable(obj.real.tolist()), "imag": to_jsonable(obj.imag.tolist())}
        return to_jsonable(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return str(obj)
