"""The ``GRPO`` a run trains, from a preset name, a grpo-align TOML file or a trainer's config.

``load_spec(path_or_preset, overrides)`` is the one entry point:

* a preset name (``GRPO.presets``: paper, trl, verl, openrlhf, dr_grpo, rloo);
* a ``.toml`` file with one ``[algorithm]`` table (or one ``[[algorithm]]``) of GRPO fields,
  read as ``grpo-align solve`` reads its file (``io_toml.read_toml``: a regular UTF-8 file,
  a byte-order mark accepted; ``[problem]`` and ``[train]`` tables are ignored);
* a trainer's config file (``.yaml``, ``.yml``, ``.json``): parsed to a dict and mapped by
  the mapping of its trainer (TRL, verl or OpenRLHF), given or detected, through
  ``grpo_align.mappings.read_trainer_config``; an OpenRLHF flags file likewise.

``overrides`` (``beta``, ``group_size``, any GRPO field) are applied last, so
``--preset trl --beta 0.04`` and "this config, but beta = 0.1" both work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from grpo_align.errors import InputError
from grpo_align.mappings import TRAINERS, MappingReport, read_trainer_config
from grpo_align.theory import GRPO, PRESETS

__all__ = [
    "SpecSource",
    "load_spec",
    "load_spec_with_source",
]

GRPO_FIELDS = tuple(f.name for f in fields(GRPO))


@dataclass(frozen=True)
class SpecSource:
    """Where a ``GRPO`` came from, for ``summary.json``.

    Attributes
    ----------
    kind : {"preset", "toml", "trainer"}
    name : str
        The preset name, or the path of the file.
    trainer : str or None
        The trainer whose config was mapped ("trl"), for kind "trainer".
    overrides : dict
        The fields set on top.
    mapping : MappingReport or None
        The trainer mapping's own report where it provides one (``describe_<trainer>_mapping``).
    """

    kind: str
    name: str
    trainer: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    mapping: MappingReport | None = None


def _toml_spec(path: Path) -> GRPO:
    from grpo_align.io_toml import parse_algorithm, read_toml

    data = read_toml(path)  # as solve reads it: a regular UTF-8 file, a byte-order mark dropped
    table = data.get("algorithm")
    if isinstance(table, list):
        if len(table) != 1:
            raise InputError(f"{path}: algorithm", f"has {len(table)} [[algorithm]] tables; expected exactly one")
        table = table[0]
    if not isinstance(table, dict):
        raise InputError(f"{path}: algorithm", "missing; expected an [algorithm] table of GRPO fields")
    return parse_algorithm(table)[1]


def _check_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(GRPO_FIELDS))
    if unknown:
        raise InputError("overrides", f"unknown field(s) {', '.join(unknown)}; expected GRPO fields")
    return {k: v for k, v in overrides.items() if v is not None}


def load_spec_with_source(
    path_or_preset: str | Path, overrides: Mapping[str, Any] | None = None, trainer: str | None = None
) -> tuple[GRPO, SpecSource]:
    """``load_spec`` and where the spec came from (see the module docstring)."""
    extra = _check_overrides(overrides or {})
    name = str(path_or_preset)
    path = Path(path_or_preset)
    if trainer is not None and trainer not in TRAINERS:
        raise InputError("--trainer", f"unknown {trainer!r}; expected one of {', '.join(TRAINERS)}")
    if not path.exists() and name in PRESETS:
        if trainer is not None:
            raise InputError("--trainer", "applies to a config file, not to a preset")
        return GRPO.preset(name, **extra), SpecSource("preset", name, overrides=extra)
    if not path.exists():
        raise InputError("--config", f"{name!r} is neither a file nor a preset ({', '.join(PRESETS)})")
    if path.is_dir():
        raise InputError("--config", f"{path} is a directory; expected a config file or a preset name")
    if path.suffix.lower() == ".toml":
        algo = _toml_spec(path)
        return algo.replace(**extra), SpecSource("toml", str(path), overrides=extra)
    report = read_trainer_config(path, trainer)
    return report.algo.replace(**extra), SpecSource("trainer", str(path), report.trainer, extra, report)


def load_spec(path_or_preset: str | Path, overrides: Mapping[str, Any] | None = None) -> GRPO:
    """The ``GRPO`` a preset name or a config file specifies, with ``overrides`` applied.

    Examples
    --------
    >>> load_spec("trl", {"beta": 0.04})
    GRPO(group_size=8, beta=0.04, normalization='shift_scale', ddof=1, eps=0.0001, penalty='k2', aggregation='constant', penalty_in='loss')
    """
    return load_spec_with_source(path_or_preset, overrides)[0]


def parse_group_size(text: str) -> float:
    """``--group-size``: an integer, or ``inf`` for the G -> infinity limit."""
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        return int(text)
    except ValueError:
        raise InputError("--group-size", f"expected an integer >= 2 or 'inf', got {text!r}") from None
