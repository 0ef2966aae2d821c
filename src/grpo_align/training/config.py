"""Run configurations: one base (``RunConfig``) and one validation style for both trainers.

``RunConfig`` holds what every GRPO run has (steps, learning rate, inner iterations, clip
range, seed, tail average, checkpoints); ``TrainConfig`` (tabular, the CLI's ``[train]``
table) and ``grpo_align.lm.LMTrainConfig`` add their own fields. Every field is checked on
construction; a bad value raises ``InputError`` naming the field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Self

from grpo_align.errors import InputError

__all__ = ["MAX_THREADS", "OPTIMIZERS", "RunConfig", "TrainConfig", "check_float", "check_int"]

OPTIMIZERS = ("sgd", "adam")

#: most torch threads a run may ask for (more than any CPU here has; a typo like 100000
#: would exhaust memory creating them)
MAX_THREADS = 256


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high] (bools refused), else ``InputError(name, ...)``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"from {low} to {high}"
        raise InputError(name, f"expected an integer {bound}, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    """``repr`` for a message, with huge integers by their number of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def check_float(name: str, value: Any, low: float, high: float = math.inf, *, open_low: bool = False) -> float:
    """``value`` as a finite float in [low, high] (or (low, high]), else ``InputError(name, ...)``."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and _finite(value)
    ok = ok and (value > low if open_low else value >= low) and value <= high
    if not ok:
        bound = f"> {low}" if open_low else f">= {low}"
        raise InputError(
            name,
            f"expected a finite number {bound}"
            + (f" and <= {high}" if high < math.inf else "")
            + f", got {_short(value)}",
        )
    return float(value)


@dataclass(frozen=True)
class RunConfig:
    """Fields every GRPO run has; subclasses change defaults and add their own fields."""

    steps: int = 1000
    """number of GRPO steps (each: sample groups from pi_old, then the inner optimiser steps)"""
    lr: float = 0.1
    """learning rate of the optimiser"""
    inner_iterations: int = 1
    """optimiser steps per sampled batch (GRPO's mu); the clip is active from the second on"""
    clip_eps: float = 0.2
    """clip range low side: rho is clipped to [1 - clip_eps, 1 + clip_eps_high]"""
    clip_eps_high: float | None = None
    """clip range high side (DAPO's clip-higher); None means clip_eps"""
    seed: int = 0
    """seed of the sampling generator (runs are bit-for-bit reproducible)"""
    tail_fraction: float = 0.5
    """fraction of the run at the end over which the policy is Polyak-averaged"""
    n_batches: int = 20
    """batches of the tail for the batch-means standard error"""
    checkpoint_every: int = 0
    """write a checkpoint every this many steps (where the run has a checkpoint file); 0: never"""

    def __post_init__(self) -> None:
        self._set("steps", check_int("steps", self.steps, 1))
        self._set("lr", check_float("lr", self.lr, 0.0, open_low=True))
        self._set("inner_iterations", check_int("inner_iterations", self.inner_iterations, 1))
        self._set("clip_eps", check_float("clip_eps", self.clip_eps, 0.0, 0.999999))
        if self.clip_eps_high is not None:
            self._set("clip_eps_high", check_float("clip_eps_high", self.clip_eps_high, 0.0))
        self._set("seed", check_int("seed", self.seed, 0))
        self._set("tail_fraction", check_float("tail_fraction", self.tail_fraction, 0.0, 1.0, open_low=True))
        self._set("n_batches", check_int("n_batches", self.n_batches, 2))
        self._set("checkpoint_every", check_int("checkpoint_every", self.checkpoint_every, 0))

    def _set(self, name: str, value: Any) -> None:
        # frozen dataclass: validation stores the normalised value (e.g. int -> float)
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], field_prefix: str = "train") -> Self:
        """Build from a mapping (a TOML table); unknown keys are an InputError."""
        if not isinstance(data, dict):
            raise InputError(field_prefix, f"expected a table of {cls.__name__} fields")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(
                f"{field_prefix}.{unknown[0]}", f"unknown field; expected one of {', '.join(sorted(names))}"
            )
        try:
            return cls(**data)
        except InputError as exc:
            raise InputError(f"{field_prefix}.{exc.field}", exc.expected) from None


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """How a tabular GRPO run is carried out (what is trained is the ``GRPO`` spec)."""

    groups_per_step: int = 16
    """groups of G outputs sampled per context per step"""
    optimizer: str = "sgd"
    """'sgd' (plain gradient descent on the loss) or 'adam'"""
    record_every: int = 0
    """store the policy in the trajectory every this many steps; 0: about 1000 points in all"""
    threads: int = 1
    """torch intra-op threads during the run (restored after); 0 keeps torch's setting.
    One is fastest for small batches: thread hand-offs cost more than the arithmetic."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("groups_per_step", check_int("groups_per_step", self.groups_per_step, 1))
        if self.optimizer not in OPTIMIZERS:
            raise InputError("optimizer", f"unknown {self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
        self._set("record_every", check_int("record_every", self.record_every, 0))
        # torch allocates per thread: 100000 threads exhaust memory before a step is run
        self._set("threads", check_int("threads", self.threads, 0, MAX_THREADS))
        if self.tail_steps < self.n_batches:
            raise InputError(
                "tail_fraction",
                f"the tail ({self.tail_steps} steps) must hold at least n_batches = {self.n_batches} steps; "
                "raise steps or tail_fraction",
            )

    @property
    def tail_steps(self) -> int:
        """Steps in the averaged tail: a multiple of n_batches (the first steps are dropped)."""
        n = round(self.tail_fraction * self.steps)
        return (n // self.n_batches) * self.n_batches

    @property
    def record_interval(self) -> int:
        return self.record_every or max(1, self.steps // 1000)
