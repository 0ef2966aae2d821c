"""The ``GRPO`` fields that say how a trainer aggregates tokens and where it puts the penalty.

Trainers aggregate per-token losses in different ways and some put the penalty in the
reward (THEORY.md section 10). ``GRPO(aggregation=..., penalty_in=...)`` models both; the
mappings pass them through ``engine_fields``, which checks the names.
"""

from __future__ import annotations

from typing import Any

from grpo_align.theory.spec import AGGREGATIONS, PENALTY_PLACEMENTS

__all__ = [
    "AGGREGATIONS",
    "ENGINE_HAS_AGGREGATION_AND_PENALTY_IN",
    "PENALTY_PLACEMENTS",
    "engine_fields",
]

#: ``GRPO`` has the fields ``aggregation`` and ``penalty_in`` (kept for code that checks it)
ENGINE_HAS_AGGREGATION_AND_PENALTY_IN = True


def engine_fields(aggregation: str, penalty_in: str) -> dict[str, Any]:
    """The keyword arguments for ``GRPO`` that carry ``aggregation`` and ``penalty_in``.

    ``aggregation``: per-token weights 1/|o_i| (``sequence_mean``), 1/sum_j |o_j| over the
    group (``group_token_mean``) or one normaliser for the whole batch (``constant``; a
    batch-wide token count in the many-groups limit), THEORY.md eq. (10.2).
    ``penalty_in``: ``loss`` or ``reward`` (beta k subtracted from the reward before the
    group normalisation, eq. 10.7).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}")
    if penalty_in not in PENALTY_PLACEMENTS:
        raise ValueError(f"unknown penalty placement {penalty_in!r}")
    return {"aggregation": aggregation, "penalty_in": penalty_in}
