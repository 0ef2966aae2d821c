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

from grpo_align.files import atomic_path

__all__ = ["load_checkpoint", "save_checkpoint"]


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """``torch.save(state)`` to ``path`` atomically (a crash never leaves half a file)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint written by ``save_checkpoint`` (tensors and plain values only)."""
    state = torch.load(Path(path), weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a grpo-align checkpoint")
    return state
