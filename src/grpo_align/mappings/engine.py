"""The ``GRPO`` fields the mappings record but the engine does not model yet.

Trainers aggregate per-token losses in different ways and some put the penalty in the
reward (THEORY.md section 10). The engine gains ``GRPO(aggregation=..., penalty_in=...)``
next; until then the mappings record both in ``MappingReport.aggregation`` and in their
rows, and refuse a penalty in the reward by name.

Wiring them in is one edit: set ``ENGINE_HAS_AGGREGATION_AND_PENALTY_IN = True`` below.
``engine_fields`` then passes both to ``GRPO`` and ``refuse_penalty_in_reward`` stops
refusing.
"""

from __future__ import annotations

from typing import Any

from grpo_align.errors import InputError

__all__ = [
    "AGGREGATIONS",
    "ENGINE_HAS_AGGREGATION_AND_PENALTY_IN",
    "PENALTY_PLACEMENTS",
    "engine_fields",
    "refuse_penalty_in_reward",
]

# ---------------------------------------------------------------------------------------
# THE ONE EDIT: True once ``GRPO`` has the fields ``aggregation`` and ``penalty_in``.
ENGINE_HAS_AGGREGATION_AND_PENALTY_IN = False
# ---------------------------------------------------------------------------------------

#: per-token weights: 1/|o_i| (GRPO), 1/sum_j |o_j| over the group (DAPO paper), or one
#: normaliser for the whole batch (Dr. GRPO; a batch-wide token count in the many-groups limit)
AGGREGATIONS = ("sequence_mean", "group_token_mean", "constant")

#: where beta k(o) acts: a term of the loss, or subtracted from the reward before the
#: group normalisation
PENALTY_PLACEMENTS = ("loss", "reward")


def engine_fields(aggregation: str, penalty_in: str) -> dict[str, Any]:
    """The keyword arguments for ``GRPO`` that carry ``aggregation`` and ``penalty_in``.

    Empty while the engine lacks the fields (atomic answers: the aggregation does not move
    the end point, THEORY.md section 10); both once ``ENGINE_HAS_AGGREGATION_AND_PENALTY_IN``.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}")
    if penalty_in not in PENALTY_PLACEMENTS:
        raise ValueError(f"unknown penalty placement {penalty_in!r}")
    if not ENGINE_HAS_AGGREGATION_AND_PENALTY_IN:
        return {}
    return {"aggregation": aggregation, "penalty_in": penalty_in}


def refuse_penalty_in_reward(key: str, value: Any, how: str) -> None:
    """Raise ``InputError`` naming ``key`` while the engine cannot put the penalty in the reward."""
    if ENGINE_HAS_AGGREGATION_AND_PENALTY_IN:
        return
    raise InputError(
        key,
        f"{value!r} {how}; the engine models the penalty in the reward (GRPO penalty_in='reward') "
        "in a coming version: put the penalty in the loss to predict this run now",
    )
