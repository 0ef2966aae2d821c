"""The optional extras and the one-line error a feature raises when its extra is missing.

``pip install grpo-align`` gives the theory engine, ``solve`` and the report sections that
need no training (numpy, scipy, matplotlib, rich). The rest comes with extras:

======  ===========================================  ==========================================
extra   packages                                     unlocks
======  ===========================================  ==========================================
train   torch                                        ``grpo-align train``, report section
                                                     "training", ``grpo_align.training``
lm      train + transformers, tokenizers             ``grpo-align lm``, report section "lm",
                                                     ``grpo_align.lm``
trl     lm + trl, accelerate, datasets               ``grpo-align lm --trl``,
                                                     ``grpo_align.integrations.trl``
data    pyarrow, datasets, pyyaml                    ``grpo-align predict`` on Parquet, a datasets
                                                     folder or a YAML config
config  pyyaml                                       YAML config files (``grpo-align explain``,
                                                     ``mappings.read_trainer_config``); JSON and
                                                     flags files need nothing
all     all of the above
======  ===========================================  ==========================================

This module imports nothing heavy: it looks the packages up with ``importlib.util.find_spec``
(without importing them), so a partial install (transformers without tokenizers) is caught
before any import fails half-way through a run.
"""

from __future__ import annotations

import importlib.util
import sys

from grpo_align.errors import InputError

__all__ = ["EXTRAS", "MissingExtraError", "install_command", "missing_modules", "require"]

#: extra -> the top-level modules it provides (train, lm, trl: each includes the ones
#: before it; config stands alone)
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch",),
    "lm": ("torch", "transformers", "tokenizers"),
    "trl": ("torch", "transformers", "tokenizers", "trl", "accelerate", "datasets"),
    "data": ("pyarrow", "datasets", "yaml"),
    "config": ("yaml",),
}


def install_command(extra: str) -> str:
    """The pip command that installs ``extra``: ``pip install 'grpo-align[lm]'``."""
    return f"pip install 'grpo-align[{extra}]'"


class MissingExtraError(InputError, ImportError):
    """A feature needs an extra whose packages are not installed.

    Both an ``InputError`` (the CLI prints it as one line, exit 2) and an ``ImportError``
    (``import grpo_align.training`` without torch raises it, and code that guards an
    optional import with ``except ImportError`` keeps working).

    The message is one line, ending in the install command, e.g.
    "grpo-align lm needs the 'lm' extra (transformers): pip install 'grpo-align[lm]'".
    """

    def __init__(self, extra: str, feature: str, missing: tuple[str, ...]) -> None:
        self.extra = extra
        self.feature = feature
        self.missing = missing
        self.hint = install_command(extra)
        self.field = feature
        self.expected = f"needs the '{extra}' extra ({', '.join(missing)})"
        # not InputError's "field: expected" form: the feature reads as the sentence's subject
        ValueError.__init__(self, f"{feature} {self.expected}: {self.hint}")


def _available(module: str) -> bool:
    if module in sys.modules:  # imported already, or blocked (sys.modules[name] = None)
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder refusing the name, or a broken parent package
        return False


def missing_modules(*modules: str) -> tuple[str, ...]:
    """The top-level modules among ``modules`` that cannot be imported (none are imported)."""
    return tuple(m for m in modules if not _available(m))


def require(extra: str, feature: str, *modules: str) -> None:
    """Raise ``MissingExtraError`` unless every module of ``extra`` can be imported.

    Parameters
    ----------
    extra : str
        One of ``EXTRAS`` ("train", "lm", "trl", "data", "config").
    feature : str
        What needs it, as the subject of the message ("grpo-align lm").
    *modules : str
        The modules to check; default: all of the extra's (``EXTRAS[extra]``).
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; expected one of {', '.join(EXTRAS)}")
    missing = missing_modules(*(modules or EXTRAS[extra]))
    if missing:
        raise MissingExtraError(extra, feature, missing)
