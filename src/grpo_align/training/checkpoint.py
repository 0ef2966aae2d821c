"""Checkpoints of both trainers: written atomically, read with ``weights_only=True``.

``torch.load(weights_only=True)`` unpickles tensors, containers and plain Python values
only, so a checkpoint cannot run code when it is read. Callers therefore store arrays as
tensors (``torch.from_numpy``) and everything else as dicts, lists, numbers and strings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from grpo_align.errors import InputError
from grpo_align.files import atomic_path, open_regular_file

__all__ = ["load_checkpoint", "save_checkpoint"]


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """``torch.save(state)`` to ``path`` atomically (a crash never leaves half a file)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint written by ``save_checkpoint`` (tensors and plain values only).

    A file that cannot be read as one (truncated, corrupted, or something else) raises
    ``InputError`` naming it, as does a FIFO or a device in its place (never read); ``save_checkpoint`` writes atomically, so this means the
    file was damaged or replaced after it was written.
    """
    try:
        fh = open_regular_file(Path(path))  # a FIFO or a device in the run folder: refused, not read
    except InputError as exc:
        raise InputError("checkpoint", f"{path} {exc.expected}; delete it to start that run afresh") from None
    try:
        with fh:
            state = torch.load(fh, weights_only=True)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # torch raises RuntimeError, pickle errors, EOFError, zipfile errors...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(
            "checkpoint", f"{path} cannot be read ({reason[:120]}); delete it to start that run afresh"
        ) from None
    if not isinstance(state, dict):
        raise InputError("checkpoint", f"{path} is not a grpo-align checkpoint; delete it to start that run afresh")
    return state
