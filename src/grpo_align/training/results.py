"""Result objects of training and of the expected dynamics, and a class-level view."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO
from grpo_align.theory.stationary import StationaryResult, reward_classes
from grpo_align.training.config import TrainConfig

__all__ = ["DynamicsResult", "TrainResult", "class_masses", "reward_classes"]


def _fmt(arr: Any) -> str:
    return np.array2string(np.asarray(arr), precision=5, threshold=8)


@dataclass(frozen=True, eq=False)
class TrainResult:
    """Outcome of ``train``: the trained policy against the predicted stationary policy.

    Arrays have a leading context axis only for a batched problem.

    Attributes
    ----------
    policy : (K,) or (C, K) the policy after the last step.
    mean_policy : Polyak average of the policy over the tail (the last ``config.tail_steps``).
    stderr : standard error of ``mean_policy`` per output, from the means of
        ``config.n_batches`` consecutive batches of the tail (batch means: valid when a
        batch is much longer than the autocorrelation time; see ``batch_autocorrelation``).
    tail_std : standard deviation of the policy over the tail (its fluctuation, not an error).
    batch_autocorrelation : lag-1 autocorrelation of consecutive batch means, pooled over
        outputs and contexts; near 0 means the batches are long enough for ``stderr``.
    trajectory : (R, [C,] K) the policy at ``trajectory_steps`` (step 0 = the start).
    predicted : ``ga.stationary_policy(problem, algo)`` (None when trained with predict=False).
    gap : mean_policy - predicted.policy.
    distance : max over outputs of |gap| per context (float for one context).
    metrics : per-step arrays: ``losses/loss`` (first inner iteration), ``losses/policy``,
        ``losses/penalty``, ``charts/clip_fraction`` (mean over the inner iterations),
        ``charts/reward`` (mean sampled reward).
    """

    policy: np.ndarray
    mean_policy: np.ndarray
    stderr: np.ndarray
    tail_std: np.ndarray
    batch_autocorrelation: float
    trajectory: np.ndarray
    trajectory_steps: np.ndarray
    predicted: StationaryResult | None
    gap: np.ndarray
    distance: Any
    metrics: dict[str, np.ndarray] = field(repr=False)
    config: TrainConfig = field(repr=False)
    algo: GRPO = field(repr=False)
    problem: Problem = field(repr=False)
    elapsed: float = 0.0
    outputs_per_second: float = 0.0

    @property
    def z(self) -> np.ndarray:
        """gap / stderr per output (0 where both vanish)."""
        se = np.asarray(self.stderr)
        gap = np.asarray(self.gap)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(se > 0, gap / np.where(se > 0, se, 1.0), np.where(gap == 0, 0.0, np.inf))

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (what the CLI writes)."""
        return {
            "policy": np.asarray(self.policy).tolist(),
            "mean_policy": np.asarray(self.mean_policy).tolist(),
            "stderr": np.asarray(self.stderr).tolist(),
            "tail_std": np.asarray(self.tail_std).tolist(),
            # the prediction carries the context axis; drop it like the other fields here
            "predicted": None if self.predicted is None else self.problem.squeeze(self.predicted.policy).tolist(),
            "predicted_status": None
            if self.predicted is None
            else self.problem.squeeze(np.asarray(self.predicted.status)).tolist(),
            "gap": np.asarray(self.gap).tolist(),
            "distance": np.asarray(self.distance).tolist(),
            "max_abs_z": float(np.max(np.abs(self.z))),
            "batch_autocorrelation": self.batch_autocorrelation,
            "clip_fraction_mean": float(np.mean(self.metrics["charts/clip_fraction"])),
            "elapsed_s": self.elapsed,
            "outputs_per_second": self.outputs_per_second,
        }

    def __repr__(self) -> str:
        return (
            f"TrainResult(mean_policy={_fmt(self.mean_policy)}, stderr={_fmt(self.stderr)}, "
            f"predicted={_fmt(None if self.predicted is None else self.problem.squeeze(self.predicted.policy))}, "
            f"distance={_fmt(self.distance)}, "
            f"max|z|={float(np.max(np.abs(self.z))):.2f}, steps={self.config.steps})"
        )


@dataclass(frozen=True, eq=False)
class DynamicsResult:
    """Outcome of ``expected_dynamics``: a noise-free trajectory of the expected update.

    Attributes
    ----------
    trajectory : (steps + 1, [C,] K) the policy after each step (row 0: the start).
    policy : the last row.
    converged : bool per context: the last step moved the policy by less than 1e-10.
    oscillating : bool per context: the trajectory keeps swinging back and forth instead
        of settling (a cycle of ``period`` steps, or sign-alternating steps whose size does
        not shrink); such a run has no fixed point to report.
    period : the cycle length found (0 if none).
    residual : stationarity residual of ``policy`` (``ga.stationarity_residual``).
    message : what happened, per context.
    """

    trajectory: np.ndarray
    policy: np.ndarray
    converged: Any
    oscillating: Any
    period: Any
    residual: Any
    message: Any

    def __repr__(self) -> str:
        msg = self.message if isinstance(self.message, str) else self.message[0]
        return (
            f"DynamicsResult(policy={_fmt(self.policy)}, converged={np.all(self.converged)}, "
            f"oscillating={np.any(self.oscillating)}, steps={len(self.trajectory) - 1}, message={msg!r})"
        )


def class_masses(problem: Problem, policy: Any) -> np.ndarray:
    """Probability mass of every reward class: (J,) for a policy (K,), (..., C, J) for (..., C, K)."""
    pol = np.asarray(policy, dtype=float)
    pol2 = pol[None] if pol.ndim == 1 else pol
    cls = reward_classes(problem)  # (C, K), broadcast over leading axes (e.g. a trajectory)
    n_cls = int(cls.max()) + 1
    out = np.stack([np.sum(np.where(cls == j, pol2, 0.0), axis=-1) for j in range(n_cls)], axis=-1)
    return out[0] if pol.ndim == 1 else out
