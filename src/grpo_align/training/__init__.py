"""Training: GRPO on tabular softmax policies (torch), checked against the theory engine."""

from grpo_align.extras import require

# one line with the install command instead of a ModuleNotFoundError from deep inside
require("train", "grpo_align.training")

from grpo_align.training.config import OPTIMIZERS, RunConfig, TrainConfig
from grpo_align.training.dynamics import expected_dynamics, expected_gradient
from grpo_align.training.loss import AGGREGATIONS, LossOutput, grpo_loss
from grpo_align.training.results import (
    DynamicsContext,
    DynamicsResult,
    TrainContext,
    TrainResult,
    class_masses,
    reward_classes,
)
from grpo_align.training.stats import TailStatistics, tail_statistics
from grpo_align.training.tabular import TabularPolicy, train

__all__ = [
    "AGGREGATIONS",
    "OPTIMIZERS",
    "DynamicsContext",
    "DynamicsResult",
    "LossOutput",
    "RunConfig",
    "TabularPolicy",
    "TailStatistics",
    "TrainConfig",
    "TrainContext",
    "TrainResult",
    "class_masses",
    "expected_dynamics",
    "expected_gradient",
    "grpo_loss",
    "reward_classes",
    "tail_statistics",
    "train",
]
