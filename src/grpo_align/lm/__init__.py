"""GRPO on a tiny causal language model (transformers), predicted before training.

Needs the ``lm`` extra (transformers, tokenizers). See docs/lm.md.
"""

from grpo_align.extras import require

# one line with the install command instead of a ModuleNotFoundError from deep inside
require("lm", "grpo_align.lm")

from grpo_align.lm.experiment import LMExperimentConfig, Prediction, RunSummary, predict, run_experiment
from grpo_align.lm.probs import AnswerProbabilities, answer_probabilities, sample_completions
from grpo_align.lm.trainer import LMTrainConfig, LMTrainResult, train_lm

__all__ = [
    "AnswerProbabilities",
    "LMExperimentConfig",
    "LMTrainConfig",
    "LMTrainResult",
    "Prediction",
    "RunSummary",
    "answer_probabilities",
    "predict",
    "run_experiment",
    "sample_completions",
    "train_lm",
]
