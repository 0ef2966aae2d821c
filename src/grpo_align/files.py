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

Folders: ``check_folder`` says whether a path is a folder or can be made one (naming what
is in the way: a file, a device, ...); ``folder_lock`` holds an exclusive ``flock`` on
``FOLDER/.lock`` while a run lasts, so a second run on the same folder stops at once with
an ``InputError`` (the kernel drops the lock when the process ends, however it ends). Under
that lock, ``staged_outputs`` writes a set of files into a hidden staging folder inside the
target folder and moves the set into place together: each file with ``os.replace``, with
``SIGINT`` and ``SIGTERM`` held back for those few renames, so an interrupt leaves the old
set or the new one, never a mix, and no staging folder behind. (A crash or ``SIGKILL`` in
the middle of the renames can still mix them; the staging folder it leaves is removed by
the next run.)

Reading: ``read_regular_file`` reads regular files only, up to a size limit, so a FIFO or
``/dev/zero`` given as an input cannot hang or exhaust memory.

JSON: ``to_jsonable`` is the one conversion of results to plain JSON values. NaN becomes
``null`` and the infinities the strings ``"inf"`` / ``"-inf"``, so every file is strict
JSON (``allow_nan=False``) and a reader can tell "undefined" from "unbounded".
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from grpo_align.errors import InputError

__all__ = [
    "LOCK_FILE",
    "MAX_INPUT_BYTES",
    "STAGING_PREFIX",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_write_text",
    "check_folder",
    "check_target",
    "folder_lock",
    "json_dumps",
    "read_regular_file",
    "staged_outputs",
    "to_jsonable",
]

#: permissions of every written file: readable by all, writable by the owner
FILE_MODE = 0o644

#: largest input file read: problem files are a few KiB; the bound stops a mistaken path
MAX_INPUT_BYTES = 16 * 2**20

#: the lock file of a run folder (``folder_lock``)
LOCK_FILE = ".lock"

#: name prefix of the staging folders inside an output folder (``staged_outputs``)
STAGING_PREFIX = ".staging-"

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


def _what(mode: int) -> str:
    """What a node is, for messages: "a file" or what ``_kind`` says."""
    return "a file" if stat.S_ISREG(mode) else _kind(mode)


def check_folder(path: PathLike, field: str) -> Path:
    """``path`` as a Path, if it is a folder (links followed) or could be created as one.

    Nothing is created. Raises ``InputError`` on ``field`` for an empty path, for a path
    that exists as anything but a folder (a file, a device, ...), and for one whose nearest
    existing ancestor is not a folder (``/dev/full/x``), naming what is in the way.
    Permissions are left to the ``OSError`` of creating it.
    """
    if os.fspath(path) == "":
        raise InputError(field, "empty path; give a folder")
    folder = Path(path)
    for node in (folder, *folder.parents):
        try:
            mode = os.stat(node).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue  # not there (or under a non-folder): look further up
        if stat.S_ISDIR(mode):
            return folder
        if node == folder:
            raise InputError(field, f"{folder} is {_what(mode)}; expected a folder")
        raise InputError(field, f"{folder} cannot be created: {node} is {_what(mode)}; expected a folder")
    return folder


@contextmanager
def folder_lock(path: PathLike, field: str) -> Iterator[Path]:
    """Create the folder ``path`` and hold an exclusive lock on ``path/.lock`` meanwhile.

    The lock is ``flock``: the kernel drops it when the process ends, however it ends, so
    a killed run never leaves a stale lock. A second holder (another process, or another
    ``folder_lock`` in this one) gets an ``InputError`` on ``field`` at once instead of
    racing the first for the same files. ``check_folder`` runs first. Without ``fcntl``
    (not POSIX) there is no lock.
    """
    folder = check_folder(path, field)
    folder.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(folder / LOCK_FILE, flags, FILE_MODE)
    except OSError as exc:
        if not (exc.errno == errno.ELOOP and os.path.islink(folder / LOCK_FILE)):
            raise _naming(exc, folder) from exc  # no permission to write there, ...
        raise InputError(
            str(folder / LOCK_FILE), "exists and is a symbolic link; only regular files are written: remove it"
        ) from None
    try:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            fcntl = None  # type: ignore[assignment]
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(
                    field, f"{folder} is in use by another grpo-align run; wait for it or choose another folder"
                ) from None
        yield folder
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold ``SIGINT`` and ``SIGTERM`` back until the block ends, then deliver them.

    Only in the main thread (the only one that receives Python's signal handlers); a
    signal whose handler was not set from Python is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is None or handler == signal.SIG_IGN:
            continue
        previous[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for held, handler in previous.items():
            signal.signal(held, handler)
        for received in dict.fromkeys(pending):
            signal.raise_signal(received)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the renames) to disk, where the system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def staged_outputs(folder: PathLike, names: Iterable[str]) -> Iterator[Path]:
    """Yield a hidden staging folder inside ``folder``; on a clean exit move its files into place.

    Hold ``folder_lock(folder)`` around it. ``names`` are every file the set can hold, in
    the order they are moved (put the one that marks a finished run last). Each target is
    checked up front and again just before the move (``check_target``: only regular files
    are replaced). On a clean exit each staged name replaces its namesake in ``folder``
    and the names not staged are removed from it (left there, an earlier run's file would
    sit beside this run's), with ``SIGINT`` and ``SIGTERM`` held back until the set is in
    place. On any exception (``KeyboardInterrupt`` included) the staging folder is removed
    and ``folder`` keeps the old set. Staging folders a killed run left are removed first.
    """
    folder = Path(folder)
    names = tuple(names)
    for name in names:
        check_target(folder / name)
    for left in folder.glob(STAGING_PREFIX + "*"):
        if left.is_dir() and not left.is_symlink():
            shutil.rmtree(left, ignore_errors=True)
    try:
        stage = Path(tempfile.mkdtemp(dir=folder, prefix=STAGING_PREFIX))
    except OSError as exc:
        raise _naming(exc, folder) from exc
    try:
        yield stage
        staged = [name for name in names if os.path.lexists(stage / name)]
        with _signals_held():
            for name in names:
                check_target(folder / name)  # a link may have appeared while the run ran
            for name in staged:
                os.replace(stage / name, folder / name)
            for name in names:
                if name not in staged:
                    (folder / name).unlink(missing_ok=True)
            _fsync_folder(folder)
            shutil.rmtree(stage, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


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
