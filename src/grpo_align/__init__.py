"""grpo-align: the policies GRPO and its variants converge to (Vojnovic & Yun, arXiv:2502.18548).

The theory engine (numpy/scipy) is imported eagerly; the trainers (torch, the ``train``
extra) load on first use, so ``import grpo_align`` loads no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from grpo_align.errors import InputError
from grpo_align.mappings.trl import grpo_from_trl as from_trl
from grpo_align.theory import *  # noqa: F403  (the public API is theory.__all__, re-exported below)
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
    "LossOutput": "grpo_align.training",
    "expected_gradient": "grpo_align.training",
}

# the lazy names stay out of __all__ so that `from grpo_align import *` does not load torch
__all__ = ["InputError", "__version__", "from_trl", *_theory_all]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from grpo_align.extras import require

        require("train", f"grpo_align.{name}")  # one line naming the install command, not a torch ImportError
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'grpo_align' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
