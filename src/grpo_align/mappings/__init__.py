"""Mappings between trainers' configurations and the ``GRPO`` specification.

Pure Python: each module reads and writes a trainer's settings by name, without importing
the trainer. ``trl``: Hugging Face TRL's ``GRPOConfig``.
"""

from grpo_align.mappings.trl import grpo_from_trl, trl_kwargs_from_grpo

__all__ = ["grpo_from_trl", "trl_kwargs_from_grpo"]
