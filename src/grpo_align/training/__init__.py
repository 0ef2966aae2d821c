"""Training: GRPO on tabular softmax policies (torch), checked against the theory engine."""

from grpo_align.training.config import OPTIMIZERS, TrainConfig
from grpo_align.training.dynamics import expected_dynamics, expected_gradient
from grpo_align.training.loss import AGGREGATIONS, LossOutput, grpo_loss
from grpo_align.training.results import DynamicsResult, TrainResult, class_masses, reward_classes
from grpo_align.training.tabular import TabularPolicy, train

__all__ = [
    "AGGREGATIONS",
    "OPTIMIZERS",
    "DynamicsResult",
    "LossOutput",
    "TabularPolicy",
    "TrainConfig",
    "TrainResult",
    "class_masses",
    "expected_dynamics",
    "expected_gradient",
    "grpo_loss",
    "reward_classes",
    "train",
]
