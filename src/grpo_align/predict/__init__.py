"""Predict a real run: per-prompt statistics and a trainer's config in, per-prompt end points out.

``stats`` reads STATS files (JSON Lines, CSV, Parquet, datasets folders) in validated
chunks; ``estimate`` turns sampled counts into p0 and its Jeffreys interval; ``engine``
solves every prompt of a chunk as one batched problem; ``config`` loads the ``GRPO``
(preset, TOML or a trainer's config); ``outputs`` and ``html`` write the results;
``pipeline.run_predict`` ties them together (``grpo-align predict``).
"""

from grpo_align.predict.config import SpecSource, load_spec, load_spec_with_source
from grpo_align.predict.engine import COLUMNS, EndPoints, binary_end_points, predict_chunk, reward_end_points
from grpo_align.predict.estimate import jeffreys_interval, jeffreys_mean
from grpo_align.predict.pipeline import PredictSummary, planner, run_predict
from grpo_align.predict.stats import StatsChunk, StatsReader, open_stats

__all__ = [
    "COLUMNS",
    "EndPoints",
    "PredictSummary",
    "SpecSource",
    "StatsChunk",
    "StatsReader",
    "binary_end_points",
    "jeffreys_interval",
    "jeffreys_mean",
    "load_spec",
    "load_spec_with_source",
    "open_stats",
    "planner",
    "predict_chunk",
    "reward_end_points",
    "run_predict",
]
