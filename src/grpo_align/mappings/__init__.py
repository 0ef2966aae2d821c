"""Mappings between trainers' configurations and the ``GRPO`` specification.

Pure Python: each module reads a trainer's settings by name, without importing the
trainer, and returns a ``MappingReport`` (``report``): the ``GRPO`` it trains and one row
per setting. ``trl``: Hugging Face TRL's ``GRPOConfig``.
"""

from grpo_align.mappings.report import MappingReport, MappingRow
from grpo_align.mappings.trl import describe_trl_mapping, grpo_from_trl, trl_kwargs_from_grpo

__all__ = ["MappingReport", "MappingRow", "describe_trl_mapping", "grpo_from_trl", "trl_kwargs_from_grpo"]
