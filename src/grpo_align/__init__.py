"""grpo-align: the policies GRPO and its variants converge to (Vojnovic & Yun, arXiv:2502.18548).

The theory engine (numpy/scipy) is imported eagerly; the trainers (torch) load on first
use, so ``import grpo_align`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from grpo_align.errors import InputError
from grpo_align.theory import *  # noqa: F401,F403
from grpo_align.theory import __all__ as _theory_all

__version__ = "0.1.0"

#: names served lazily from torch-dependent modules
_LAZY = {
    "train": "grpo_align.training",
    "TrainConfig": "grpo_align.training",
    "TrainResult": "grpo_align.training",
    "expected_dynamics": "grpo_align.training",
    "DynamicsResult": "grpo_align.training",
    "grpo_loss": "grpo_align.training",
}

__all__ = ["InputError", "__version__", *_theory_all, *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'grpo_align' has no attribute {name!r}")
