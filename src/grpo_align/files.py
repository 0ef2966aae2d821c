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

Reading: every file the project reads (STATS and prompts files, problem TOML, trainer
configs) goes through one set of readers, so one rule holds for all of them. Only regular
files are read: ``open_regular_file`` opens non-blocking and checks what it opened (links
followed), so a FIFO, a device (``/dev/zero``, or a link to it), a socket or a folder is an
``InputError`` at once, never a hang. Text is UTF-8; a leading byte-order mark is dropped
everywhere, and any other byte that is not UTF-8 is an ``InputError`` naming the file, the
line where there is one, and the byte offset, with the fix ("save it as UTF-8").
``read_text_file`` reads a small file whole, up to ``MAX_INPUT_BYTES`` (problem and config
files); ``TextLines`` streams a file of any size line by line (gzip-compressed if ``.gz``),
holding at most ``MAX_LINE_BYTES`` of one line, so an endless line costs bounded memory;
gzip's errors (not gzip, truncated, corrupt) become ``InputError`` with the fix.
``read_csv`` reads CSV through it (``csv_delimiter``: only the last suffix, before
``.gz``, makes a ``.tsv``), refusing a name twice in the header and a cell over the csv
module's ``field_size_limit``; ``loads_json`` refuses a key twice in one object (Python's
``json`` keeps the last without a word).

JSON: ``to_jsonable`` is the one conversion of results to plain JSON values. NaN becomes
``null`` and the infinities the strings ``"inf"`` / ``"-inf"``, so every file is strict
JSON (``allow_nan=False``) and a reader can tell "undefined" from "unbounded".
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import gzip
import json
import math
import os
import shutil
import signal
import stat
import tempfile
import threading
import zlib
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from grpo_align.errors import InputError

__all__ = [
    "LOCK_FILE",
    "MAX_INPUT_BYTES",
    "MAX_LINE_BYTES",
    "STAGING_PREFIX",
    "TextLines",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_write_text",
    "check_folder",
    "check_target",
    "csv_delimiter",
    "decode_utf8",
    "folder_lock",
    "json_dumps",
    "loads_json",
    "open_regular_file",
    "primed",
    "read_csv",
    "read_regular_file",
    "read_text_file",
    "staged_outputs",
    "to_jsonable",
]

#: permissions of every written file: readable by all, writable by the owner
FILE_MODE = 0o644

#: largest input file read whole (problem and config files are a few KiB): the bound stops a
#: mistaken path
MAX_INPUT_BYTES = 16 * 2**20

#: longest line of a file read line by line (a STATS or prompts file, of any length)
MAX_LINE_BYTES = 8 * 2**20

#: bytes read at a time by ``TextLines``
READ_BLOCK = 2**20

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


# ---------------------------------------------------------------------------- reading
def _open_fd(path: PathLike) -> int:
    """A read-only descriptor of the regular file ``path``, refusing anything else at once.

    Opened non-blocking, so that opening a FIFO returns at once; the flag is cleared again
    for the regular file. A FIFO, device, socket or folder raises ``InputError`` (a link is
    followed: a link to ``/dev/zero`` is a device). A missing or unreadable file raises
    the ``OSError`` of ``open``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            via = " (through a symbolic link)" if os.path.islink(path) else ""
            raise InputError(str(path), f"is {_kind(mode)}{via}; expected a regular file")
        try:
            import fcntl
        except ImportError:  # not POSIX: there was no O_NONBLOCK to clear
            pass
        else:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular_file(path: PathLike) -> BinaryIO:
    """``path`` opened for reading in binary, if it is a regular file (see ``_open_fd``).

    For streaming readers (``TextLines``, Parquet): nothing is read yet. A FIFO, device,
    socket or folder raises ``InputError`` without blocking.
    """
    return os.fdopen(_open_fd(path), "rb")


def read_regular_file(
    path: PathLike, max_bytes: int | None = None, expected: str = "a problem or config file"
) -> bytes:
    """The bytes of the regular file ``path``, refusing anything else or anything larger.

    A FIFO, device or folder raises ``InputError`` at once (``open_regular_file``), as
    does a file over ``max_bytes`` (checked while reading too, for files that grow;
    default ``MAX_INPUT_BYTES``); ``expected`` says what the file should have been. A
    missing or unreadable file raises the ``OSError`` of ``open``.
    """
    max_bytes = MAX_INPUT_BYTES if max_bytes is None else max_bytes
    fd = _open_fd(path)
    try:
        too_big = InputError(str(path), f"is larger than {_size(max_bytes)}; expected {expected}")
        if os.fstat(fd).st_size > max_bytes:
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


def _size(n: int) -> str:
    """A byte count in words: "16 MiB", "512 KiB", "100 bytes"."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


def decode_utf8(data: bytes, where: str, offset: int = 0, of: str = "") -> str:
    """``data`` decoded as UTF-8, a leading byte-order mark dropped.

    A byte that is not UTF-8 raises ``InputError`` on ``where`` naming it and its byte
    offset in the file (``offset``: where ``data`` starts; ``of``: words after the
    offset, e.g. " of the decompressed text").
    """
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise InputError(
            where,
            f"not a UTF-8 text file (byte 0x{data[exc.start]:02x} at byte offset {offset + exc.start}{of} "
            "is not UTF-8); save it as UTF-8",
        ) from None


def read_text_file(path: PathLike, max_bytes: int | None = None, expected: str = "a problem or config file") -> str:
    """The text of the regular UTF-8 file ``path`` (``read_regular_file``, ``decode_utf8``).

    A byte-order mark is dropped (editors on Windows write one); bytes that are not UTF-8
    raise ``InputError`` naming the file and the byte offset.
    """
    return decode_utf8(read_regular_file(path, max_bytes, expected), str(path))


class TextLines(Iterator[str]):
    """The lines of a text file, streamed: a regular file, UTF-8, gzip-compressed if ``.gz``.

    The file is read in blocks of ``READ_BLOCK`` bytes and split into lines at ``\\n``,
    ``\\r\\n`` or ``\\r``; each line is returned with its line break. A line longer than
    ``max_line_bytes`` (default ``MAX_LINE_BYTES``, the line break included) raises
    ``InputError`` as soon as that many bytes are buffered, so an endless line (a file of
    zeros) costs bounded memory; with ``max_record_bytes`` so does a record of several
    lines (a CSV cell in quotes over line breaks; the caller calls ``start_record`` at
    each record). A leading byte-order mark is dropped. Bytes that are not UTF-8, a file
    named ``.gz`` that is not gzip-compressed, a truncated or corrupt gzip stream: each an
    ``InputError`` naming the file and the fix. Use as a context manager, or call ``close``.

    Attributes
    ----------
    line_no : int
        The 1-based number of the last line returned (0 before the first).
    offset : int
        Bytes (decompressed) before the next line.
    """

    def __init__(self, path: PathLike, max_line_bytes: int | None = None, max_record_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.max_line_bytes = MAX_LINE_BYTES if max_line_bytes is None else max_line_bytes
        self.max_record_bytes = max_record_bytes
        self.gzipped = self.path.suffix.lower() == ".gz"
        self._raw = open_regular_file(path)
        self._fh: Any = gzip.GzipFile(fileobj=self._raw, mode="rb") if self.gzipped else self._raw
        self.line_no = 0
        self.offset = 0
        self._record_start = 0
        self._lines = self._generate()

    def __enter__(self) -> TextLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def __next__(self) -> str:
        return next(self._lines)

    def close(self) -> None:
        try:
            self._fh.close()
        finally:
            self._raw.close()

    def start_record(self) -> None:
        """A record starts at the next line (for ``max_record_bytes``)."""
        self._record_start = self.offset

    def _where(self, line_no: int) -> str:
        return f"{self.path}, line {line_no}"

    def _read(self, size: int) -> bytes:
        path = str(self.path)
        try:
            return self._fh.read(size)
        except gzip.BadGzipFile as exc:
            if not str(exc).startswith("Not a gzipped file"):
                raise InputError(path, f"corrupt gzip data ({exc}); copy the file again or recompress it") from None
            if not self._gzip_magic():
                raise InputError(path, "is not gzip-compressed; decompress it or drop the .gz suffix") from None
            raise InputError(
                path, "has bytes that are not gzip data after its gzip data; recompress the file"
            ) from None
        except EOFError:
            after = f" (after line {self.line_no})" if self.line_no else ""
            raise InputError(path, f"is truncated: its gzip data ends early{after}; copy the file again") from None
        except zlib.error as exc:
            raise InputError(path, f"corrupt gzip data ({exc}); copy the file again or recompress it") from None

    def _gzip_magic(self) -> bool:
        """Whether the file starts as gzip data does (its first two bytes)."""
        if hasattr(os, "pread"):
            return os.pread(self._raw.fileno(), 2, 0) == b"\x1f\x8b"
        return self.line_no > 0  # no pread: data that came out shows it was gzip

    def _too_long(self, line_no: int) -> InputError:
        return InputError(
            self._where(line_no),
            f"is longer than {_size(self.max_line_bytes)}; expected one record per line (is this the right file?)",
        )

    def _generate(self) -> Iterator[str]:
        cap = self.max_line_bytes
        record_cap = self.max_record_bytes
        of = " of the decompressed text" if self.gzipped else ""
        rest = b""
        offset = 0  # of rest's first byte
        line_no = 0
        while True:
            data = self._read(READ_BLOCK)
            buf = rest + data if rest else data
            if offset == 0 and buf.startswith(b"\xef\xbb\xbf"):
                buf, offset = buf[3:], 3
            pieces = buf.splitlines(keepends=True)
            # the last piece may go on in the next block (a "\r" may be half of "\r\n")
            rest = pieces.pop() if data and pieces and not pieces[-1].endswith(b"\n") else b""
            for piece in pieces:
                line_no += 1
                self.line_no = line_no
                if len(piece) > cap:
                    raise self._too_long(line_no)
                try:
                    text = piece.decode("utf-8")
                except UnicodeDecodeError:
                    decode_utf8(piece, self._where(line_no), offset, of)  # raises, naming the byte
                    raise
                offset += len(piece)
                self.offset = offset
                if record_cap is not None and offset - self._record_start > record_cap:
                    raise InputError(
                        self._where(line_no),
                        f'a record runs over {_size(record_cap)} of lines; look for a quote (") that is not closed',
                    )
                yield text
            if len(rest) > cap:
                raise self._too_long(line_no + 1)
            if not data:
                return


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def loads_json(text: str, where: str, expected: str, position: bool = True) -> Any:
    """The JSON value in ``text``, refusing an object that holds a key twice.

    ``json.loads`` would keep the last value of a repeated key without a word. Malformed
    JSON, a repeated key, an integer of over 4300 digits or arrays nested too deeply for
    the parser raise ``InputError`` on ``where`` (``expected`` ends the malformed-JSON
    message; ``position`` adds the line and column).
    """
    try:
        return json.loads(text, object_pairs_hook=_unique_object)
    except _DuplicateKey as exc:
        raise InputError(where, f"key {exc.key!r} appears twice in one object; give each key once") from None
    except json.JSONDecodeError as exc:
        at = f", line {exc.lineno} column {exc.colno}" if position else ""
        raise InputError(where, f"malformed JSON ({exc.msg}{at}); {expected}") from None
    except ValueError as exc:  # an integer past Python's digit limit for int(str)
        raise InputError(where, f"unreadable JSON ({str(exc).splitlines()[0]}); {expected}") from None
    except RecursionError:
        raise InputError(where, f"arrays or objects nested too deeply; {expected}") from None


def csv_delimiter(path: PathLike) -> str:
    """A tab for ``.tsv`` (or ``.tsv.gz``), else a comma: only the last suffix decides.

    ``my.tsv.backup.csv`` is a CSV file.
    """
    name = Path(path).name.lower()
    name = name.removesuffix(".gz")
    return "\t" if name.endswith(".tsv") else ","


def read_csv(
    path: PathLike, max_line_bytes: int | None = None
) -> tuple[list[str] | None, Iterator[tuple[int, dict[str, str]]], TextLines]:
    """The header and the rows of a CSV (or ``.tsv``) file, streamed (``TextLines``).

    Returns ``(header, rows, lines)``: the header's names, stripped (None for an empty
    file), an iterator of ``(line, {name: cell})`` (the 1-based line where the row ends;
    a row of fewer cells lacks the last names; rows with no cells at all are skipped) and
    the ``TextLines`` it reads (close it when done; the iterator closes it at its end).
    A name twice in the header, a row with more cells than the header, a cell over the
    csv module's ``field_size_limit`` and other malformed CSV raise ``InputError``
    naming the file and the line.
    """
    path = Path(path)
    cap = MAX_LINE_BYTES if max_line_bytes is None else max_line_bytes
    lines = TextLines(path, cap, max_record_bytes=cap)
    try:
        reader = csv.reader(lines, delimiter=csv_delimiter(path))
        first = _csv_next(reader, lines)
        header = None if first is None else [name.strip() for name in first]
        if header is not None:
            seen: dict[str, int] = {}
            for i, name in enumerate(header, start=1):
                if name and seen.setdefault(name, i) != i:
                    raise InputError(
                        f"{path}, line {lines.line_no}",
                        f"column {name!r} appears twice in the header (columns {seen[name]} and {i}); "
                        "give each column once",
                    )
    except BaseException:
        lines.close()
        raise

    def rows() -> Generator[Any, None, None]:
        with lines:
            yield None  # primed below: from here on the generator owns the file
            if header is None:
                return
            while (cells := _csv_next(reader, lines)) is not None:
                if not cells:
                    continue
                if len(cells) > len(header):
                    raise InputError(
                        f"{path}, line {reader.line_num}", f"has more cells than the {len(header)} header columns"
                    )
                yield reader.line_num, dict(zip(header, cells, strict=False))

    return header, primed(rows()), lines


def primed(gen: Generator[Any, None, None]) -> Generator[Any, None, None]:
    """``gen`` run to its first ``yield``, whose value is dropped.

    A generator that holds a file in ``with`` closes it when it is collected only once it
    has started; one that opens the file before its first ``yield`` and is primed here
    closes it however it ends, unread included.
    """
    next(gen)
    return gen


def _csv_next(reader: Any, lines: TextLines) -> list[str] | None:
    """The next record of a ``csv.reader`` over ``lines``, or None at the end."""
    lines.start_record()
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        where = f"{lines.path}, line {lines.line_no}"
        limit = csv.field_size_limit()
        if "field larger than field limit" in str(exc):
            raise InputError(
                where,
                f"a cell is longer than {limit} characters (the csv module's limit; is a quote not closed?); "
                "put long reward lists in a JSON Lines file",
            ) from None
        raise InputError(where, f"malformed CSV ({exc})") from None


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
