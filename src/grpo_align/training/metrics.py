"""The metric names of every trainer, namespaced as in cleanRL / TRL logs.

``losses/...`` are the terms of the GRPO loss, ``charts/...`` what the run looks like
(rewards, clipping, learning rate, distance to the prediction), ``time/...`` wall-clock
measurements. Stored per-step metrics hold no ``time/`` entries, so a resumed run
stores exactly the metrics of an uninterrupted one; progress callbacks receive them.
"""

from __future__ import annotations

__all__ = [
    "CLIP_FRACTION",
    "DISTINCT",
    "LEARNING_RATE",
    "LOSS",
    "PENALTY",
    "POLICY_LOSS",
    "PREDICTION_GAP",
    "P_CORRECT",
    "REWARD",
    "SECONDS",
    "TABULAR_METRICS",
    "TOKENS",
]

LOSS = "losses/loss"
"""the minimised loss (first inner iteration of the step)"""
POLICY_LOSS = "losses/policy"
"""its clipped-surrogate part"""
PENALTY = "losses/penalty"
"""its penalty estimate (before the factor beta)"""
CLIP_FRACTION = "charts/clip_fraction"
"""share of clipped ratios, mean over the inner iterations"""
REWARD = "charts/reward"
"""mean sampled reward"""
LEARNING_RATE = "charts/learning_rate"
"""learning rate of the step"""
DISTINCT = "charts/distinct_completions"
"""distinct (question, completion) rows scored in the step (LM)"""
TOKENS = "charts/tokens"
"""completion tokens in the step (LM)"""
P_CORRECT = "charts/p_correct"
"""mean exact probability of the correct answer (LM, at evaluation steps)"""
PREDICTION_GAP = "charts/prediction_gap"
"""mean |P(correct) - predicted| (TRL callback)"""
SECONDS = "time/seconds"
"""wall-clock seconds since the run (or its resumption) started"""

#: per-step arrays of a tabular run (``TrainResult.metrics``)
TABULAR_METRICS = (LOSS, POLICY_LOSS, PENALTY, CLIP_FRACTION, REWARD)
