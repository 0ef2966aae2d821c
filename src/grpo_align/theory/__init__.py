"""The theory engine: pure numpy/scipy, no torch."""

from grpo_align.errors import ConvergenceError
from grpo_align.theory.closed_form import (
    binary_direct_kl_g2_policy,
    binary_g2_policy,
    binary_limit_policy,
    binary_policy,
    binary_preference,
    binary_shift_policy,
    nash_policy,
    pairwise_policy,
    rlhf_policy,
)
from grpo_align.theory.preference import (
    MonteCarloPreference,
    group_advantages,
    level_preference,
    preference,
    preference_limit,
    preference_monte_carlo,
)
from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO, NORMALIZATIONS, PENALTIES, PRESETS
from grpo_align.theory.stationary import (
    METHODS,
    StationaryContext,
    StationaryResult,
    StationaryRoot,
    WorkLimitError,
    applicable_methods,
    estimate_work,
    penalty_coefficient,
    reward_classes,
    stationarity_residual,
    stationary_policy,
)

__all__ = [
    "GRPO",
    "METHODS",
    "NORMALIZATIONS",
    "PENALTIES",
    "PRESETS",
    "ConvergenceError",
    "MonteCarloPreference",
    "Problem",
    "StationaryContext",
    "StationaryResult",
    "StationaryRoot",
    "WorkLimitError",
    "applicable_methods",
    "binary_direct_kl_g2_policy",
    "binary_g2_policy",
    "binary_limit_policy",
    "binary_policy",
    "binary_preference",
    "binary_shift_policy",
    "estimate_work",
    "group_advantages",
    "level_preference",
    "nash_policy",
    "pairwise_policy",
    "penalty_coefficient",
    "preference",
    "preference_limit",
    "preference_monte_carlo",
    "reward_classes",
    "rlhf_policy",
    "stationarity_residual",
    "stationary_policy",
]
