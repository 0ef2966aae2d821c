"""What a trainer's configuration trains: the record every trainer mapping returns.

A mapping reads a trainer's settings by name and returns a ``MappingReport``: the ``GRPO``
specification it trains, and one row per setting saying which value was used, where it
came from (given, the trainer's default, or absent from the trainer's release) and what it
maps to. ``grpo-align explain`` prints it. Also the value readers the mappings share, so
that every mapping refuses bad values with the same one-line ``InputError``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from grpo_align.errors import InputError
from grpo_align.theory.spec import GRPO

__all__ = ["SOURCES", "MappingReport", "MappingRow", "read_flag", "read_int", "read_real"]

#: where a row's value came from
SOURCES = ("given", "default", "absent")


@dataclass(frozen=True)
class MappingRow:
    """One trainer setting: the value used, where it came from, and what it maps to.

    Attributes
    ----------
    key : str
        The trainer's name for the setting (as in its config file).
    value : object
        The value the mapping used.
    source : {"given", "default", "absent"}
        ``given``: in the user's config; ``default``: the trainer's default (the table
        checked against ``MappingReport.checked_version``); ``absent``: the field does not
        exist in the trainer release that built the config object, whose behaviour is used.
    maps_to : str
        The ``GRPO`` field it sets, or why it does not change the end point.
    where : str
        Where the trainer's source reads the setting (file:line of the checked release).
    """

    key: str
    value: Any
    source: str
    maps_to: str
    where: str = ""

    @property
    def defaulted(self) -> bool:
        """True when the user did not give the value."""
        return self.source != "given"


@dataclass(frozen=True)
class MappingReport:
    """What a trainer's configuration trains, setting by setting.

    Attributes
    ----------
    trainer : str
        ``"trl"``, ``"verl"`` or ``"openrlhf"``.
    checked_version : str
        The trainer release whose source the mapping's table was checked against.
    seen_version : str or None
        The release that built the config object; None for a plain mapping (a file).
    algo : GRPO
        The specification the configuration trains.
    aggregation : str
        How the trainer aggregates per-token losses: ``algo.aggregation``
        (``sequence_mean``, ``group_token_mean``, ``constant``; THEORY.md section 10.2).
    rows : tuple of MappingRow
        Every setting the mapping read, and every setting the user gave.
    notes : tuple of str
        Facts about the mapping that are not one setting's (versions assumed, reward scale).
    """

    trainer: str
    checked_version: str
    seen_version: str | None
    algo: GRPO
    aggregation: str
    rows: tuple[MappingRow, ...]
    notes: tuple[str, ...] = ()

    def row(self, key: str) -> MappingRow:
        """The row of one setting (``KeyError`` when the mapping has none)."""
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(key)

    def lines(self) -> list[str]:
        """Plain-text lines: the specification, one line per setting, then the notes."""
        built = (
            "a config file" if self.seen_version is None else f"a config object of {self.trainer} {self.seen_version}"
        )
        out = [f"{built} (mapping checked against {self.trainer} {self.checked_version}) trains {self.algo}"]
        out += [f"  {r.key} = {r.value!r} ({r.source}): {r.maps_to}" for r in self.rows]
        out += [f"  note: {n}" for n in self.notes]
        return out


def weight_decay_text(key: str, weight_decay: float) -> tuple[str, str | None]:
    """What a decoupled weight decay maps to, and the note it needs (None for 0).

    Every trainer treats it alike: a pull of the weights toward zero is a parameter-space
    regulariser, not a term of the policy objective, so the engine cannot model it; it is
    accepted with a note rather than refused because verl's own default (0.01) has it and a
    user's real run is what they want predicted. Its effect shrinks with the learning rate
    times the decay per step; set it to 0 for a run the prediction describes exactly.
    """
    if weight_decay < 0:
        raise InputError(key, f"expected a weight decay >= 0, got {weight_decay:g}")
    if weight_decay == 0:
        return "0: no pull toward zero weights", None
    return (
        f"{weight_decay:g}: a pull toward zero weights, not modelled",
        f"{key} = {weight_decay:g} (decoupled weight decay) pulls the weights toward zero, which the engine does not "
        "model: the prediction ignores it (set it to 0 for a run the prediction describes exactly)",
    )


def read_real(key: str, value: Any) -> float:
    """A finite real number; numeric strings (YAML 1.1 reads ``1e-3`` as a string) accepted."""
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 2**53:  # beyond exact floats: no setting here is that large
            raise InputError(key, f"expected a number below 2**53, got {value}")
        return float(value)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InputError(key, f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(key, f"expected a finite number, got {value!r}")
    return float(value)


def read_int(key: str, value: Any) -> int:
    """An integer (an integral float or numeric string accepted)."""
    if isinstance(value, int) and not isinstance(value, bool):
        read_real(key, value)  # the size check
        return int(value)
    x = read_real(key, value)
    if x != int(x):
        raise InputError(key, f"expected an integer, got {value!r}")
    return int(x)


def read_flag(key: str, value: Any) -> bool:
    """A boolean; the strings ``true`` / ``false`` (any case) accepted."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InputError(key, f"expected true or false, got {value!r}")
