"""Writing files: atomically, and JSON through one sanitiser.

Every writer puts its data in a temporary file with a unique name in the target folder,
flushes it to disk (``fsync``) and moves it into place with ``os.replace``. A reader thus
sees the old file or the new one, never half of one, and an interrupted write (an
exception, ``KeyboardInterrupt``) removes its temporary file and leaves the old content.
Files are created with mode 0644 (``mkstemp`` makes them private; results are meant to
be read).

JSON: ``to_jsonable`` is the one conversion of results to plain JSON values. NaN becomes
``null`` and the infinities the strings ``"inf"`` / ``"-inf"``, so every file is strict
JSON (``allow_nan=False``) and a reader can tell "undefined" from "unbounded".
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_write_text",
    "json_dumps",
    "to_jsonable",
]

#: permissions of every written file: readable by all, writable by the owner
FILE_MODE = 0o644

PathLike = str | os.PathLike[str]


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``.

    For writers that need a file name (``torch.save``, ``Figure.savefig``). The parent
    folder is created. On any exception (``KeyboardInterrupt`` included) the temporary
    file is removed and ``path`` keeps its old content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # the writer may have closed the file without flushing it to disk
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
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
