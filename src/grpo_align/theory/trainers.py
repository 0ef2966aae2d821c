"""Constants of the trainers' own code that a ``GRPO`` specification carries.

One home for each: ``theory.spec.PRESETS`` and the trainer mappings (``mappings.trl``,
``mappings.verl``, ``mappings.openrlhf``) both read them here, so a preset and the mapping
of a trainer's default config cannot disagree. Each cites the release and the line of the
trainer's source it was read in.
"""

from __future__ import annotations

__all__ = ["OPENRLHF_EPS", "TRL_EPS", "VERL_EPS"]

#: what TRL 1.16.0 adds to the group's std before dividing (grpo_trainer.py:2787)
TRL_EPS = 1e-4

#: what verl 0.9.1's compute_grpo_outcome_advantage adds to the group's std (core_algos.py:272, 326)
VERL_EPS = 1e-6

#: what OpenRLHF 0.11.2's group_norm adds to the group's std (experience_maker.py:274; the same in 0.9.10)
OPENRLHF_EPS = 1e-9
