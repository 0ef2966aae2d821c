"""What every trainer mapping shares: the key table, the reader over a config, the refusal.

A trainer module (``trl``, ``verl``, ``openrlhf``) fills one ``KeyTable`` for the release its
source was read in: a ``Key`` per setting that can change what is trained (its default and
where that release's source reads it), and the ``InertKeys`` that do not move the end point
(run and engineering settings). It then reads a config through a ``Reader``, which takes
each key's value or the table's default, records one ``MappingRow`` per key it read, and
refuses in one line (an ``InputError`` naming the key: ``Reader.refuse``, ``KeyTable.unknown``).
``KeyTable.report`` orders the rows as the table does and builds the ``MappingReport``.

Nothing here knows a trainer: the checks, which read keys and refuse what the engine cannot
model, stay in each trainer's module, readable top to bottom with their citations.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from grpo_align.errors import InputError
from grpo_align.mappings.report import MappingReport, MappingRow, read_flag, read_int, read_real
from grpo_align.theory.spec import GRPO

__all__ = ["SAME", "InertKeys", "Key", "KeyTable", "Reader"]


class _Same:
    """The sentinel ``SAME``: "the value the reader would take" (or "the default")."""

    def __repr__(self) -> str:
        return "SAME"


#: ``Key.absent``: a release without the field behaves as the default says;
#: ``Reader.put``: the row shows the value the reader takes for the key
SAME: Any = _Same()


@dataclass(frozen=True)
class Key:
    """A setting that can change what is trained, as one release's source has it.

    Attributes
    ----------
    name : str
        The trainer's name for it (verl: dotted from the config's root; OpenRLHF: the flag
        without ``--``).
    default : object
        The release's default: what the trainer does when the config does not give it.
    where : str
        Where the release's source defines and reads it (``file:line``; the release is the
        table's, ``KeyTable.release``).
    meaning : str
        What it does, in words, where the name does not say (may be empty).
    absent : object
        What a release that lacks the field does (TRL config objects built by older
        releases); ``SAME``: as ``default``.
    """

    name: str
    default: Any
    where: str
    meaning: str = ""
    absent: Any = SAME

    def absent_value(self) -> Any:
        """The behaviour of a release that lacks the field."""
        return self.default if self.absent is SAME else self.absent


@dataclass(frozen=True)
class InertKeys:
    """Keys that do not move the end point: exact names, and prefixes naming subtrees.

    ``names`` match exactly. A ``prefixes`` entry ending in ``.`` matches every key below
    it (``"trainer."``); any other entry matches itself and the keys below it
    (``"algorithm.gamma"`` matches ``algorithm.gamma`` and ``algorithm.gamma.x``, not
    ``algorithm.gamma_x``).
    """

    names: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return key in self.names or any(
            key == p or (p.endswith(".") and key.startswith(p)) or key.startswith(p + ".") for p in self.prefixes
        )


@dataclass(frozen=True)
class KeyTable:
    """One trainer release's keys: those read (``keys``, in the rows' order) and the inert ones.

    Attributes
    ----------
    trainer : str
        ``"trl"``, ``"verl"`` or ``"openrlhf"`` (``MappingReport.trainer``).
    label : str
        The trainer's name in messages (``"TRL"``, ``"verl"``, ``"OpenRLHF"``).
    release : str
        The release whose source the table was read in (``MappingReport.checked_version``).
    keys : Mapping of str to Key
        Every setting that can change what is trained, in the order the report lists them.
    inert : InertKeys
        The settings known not to move the end point.
    shown_prefix : str
        What the key's name is written with in rows and messages (``"--"`` for flags).
    suggest : tuple of str
        Further names a misspelt key may be meant as (aliases, inert names), after ``keys``.
    """

    trainer: str
    label: str
    release: str
    keys: Mapping[str, Key]
    inert: InertKeys = InertKeys()
    shown_prefix: str = ""
    suggest: tuple[str, ...] = ()

    @classmethod
    def of(cls, trainer: str, label: str, release: str, keys: Iterable[Key], **kwargs: Any) -> KeyTable:
        """A table from its keys in order, read-only (a name twice is a bug in the table)."""
        table: dict[str, Key] = {}
        for k in keys:
            if k.name in table:
                raise ValueError(f"{trainer} {release}: key {k.name!r} twice in the table")
            table[k.name] = k
        return cls(trainer, label, release, types.MappingProxyType(table), **kwargs)

    def is_known(self, key: str) -> bool:
        """Read by the mapping, or known not to move the end point."""
        return key in self.keys or key in self.inert

    def shown(self, key: str) -> str:
        """The key as rows and messages write it."""
        return self.shown_prefix + key

    def hint(self, key: str) -> str:
        """`` (did you mean K?)`` with the nearest known name (difflib), or empty."""
        near = difflib.get_close_matches(key, [*self.keys, *self.suggest], n=1)
        if not near:
            return ""
        return f" (did you mean {self.shown(near[0]) if self.shown_prefix else repr(near[0])}?)"

    def unknown(self, key: str, lead: str, reason: str) -> InputError:
        """The refusal of a key the table does not know: ``KEY: {lead} (did you mean ...?): {reason}``."""
        return InputError(self.shown(key), f"{lead}{self.hint(key)}: {reason}")

    def unclassified(self, key: str, reason: str) -> InputError:
        """The refusal of a key neither read nor inert: not classified by this table (its release)."""
        return self.unknown(
            key, f"not classified by this mapping (checked against {self.label} {self.release})", reason
        )

    def refuse_unknown(self, values: Iterable[str], reason: str) -> None:
        """Refuse the first key that is neither read nor inert (``unclassified``)."""
        for key in values:
            if not self.is_known(key):
                raise self.unclassified(key, reason)

    def report(
        self,
        reader: Reader,
        algo: GRPO,
        notes: Iterable[str],
        *,
        seen_version: str | None = None,
    ) -> MappingReport:
        """The ``MappingReport``: the reader's rows in the table's order, then the others by name."""
        order = {self.shown(k): i for i, k in enumerate(self.keys)}
        rows = sorted(reader.rows.values(), key=lambda row: (order.get(row.key, len(order)), row.key))
        return MappingReport(
            trainer=self.trainer,
            checked_version=self.release,
            seen_version=seen_version,
            algo=algo,
            aggregation=algo.aggregation,
            rows=tuple(rows),
            notes=tuple(notes),
        )


@dataclass
class Reader:
    """A config's values read through a ``KeyTable``, and one row per key read.

    Attributes
    ----------
    table : KeyTable
    values : dict
        The config's values by key (the table's names).
    given : set of str
        The keys the user gave (for a mapping read from a file, every key of ``values``).
    absent : set of str
        Table keys the config's release lacks (their ``Key.absent`` behaviour is used).
    rows : dict of str to MappingRow
        What each key read so far maps to, by key.
    """

    table: KeyTable
    values: dict[str, Any]
    given: set[str]
    absent: set[str] = field(default_factory=set)
    rows: dict[str, MappingRow] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        """The given value, else the behaviour of a release without it, else the table's default."""
        if key in self.values:
            return self.values[key]
        spec = self.table.keys[key]
        return spec.absent_value() if key in self.absent else spec.default

    def source(self, key: str) -> str:
        """``given``, ``absent`` or ``default`` (``MappingRow.source``)."""
        return "given" if key in self.given else "absent" if key in self.absent else "default"

    def real(self, key: str) -> float:
        """The key's value as a finite real (``read_real``), refused under its shown name."""
        return read_real(self.table.shown(key), self.get(key))

    def integer(self, key: str) -> int:
        """The key's value as an integer (``read_int``)."""
        return read_int(self.table.shown(key), self.get(key))

    def flag(self, key: str) -> bool:
        """The key's value as a boolean (``read_flag``)."""
        return read_flag(self.table.shown(key), self.get(key))

    def put(self, key: str, maps_to: str, value: Any = SAME) -> None:
        """Record what a key maps to; the row shows ``value`` (default: the value read)."""
        used = self.get(key) if value is SAME else value
        where = self.table.keys[key].where if key in self.table.keys else ""
        self.rows[key] = MappingRow(self.table.shown(key), used, self.source(key), maps_to, where)

    def put_inert(self, maps_to: str) -> None:
        """A row for every given key that the table marks inert and no check has read."""
        for key in sorted(self.given):
            if key in self.table.inert and key not in self.rows:
                self.rows[key] = MappingRow(self.table.shown(key), self.values[key], "given", maps_to)

    def refuse(self, key: str, value: Any, why: str) -> InputError:
        """The one-line refusal of a value: ``KEY: {value!r} {why}`` (raise it)."""
        return InputError(self.table.shown(key), f"{value!r} {why}")
