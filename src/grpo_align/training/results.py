"""Result objects of training and of the expected dynamics, and a class-level view."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grpo_align.theory.problem import Problem
from grpo_align.theory.spec import GRPO
from grpo_align.theory.stationary import StationaryResult, reward_classes
from grpo_align.training.config import TrainConfig
from grpo_align.training.metrics import CLIP_FRACTION
from grpo_align.verify import z_scores

__all__ = ["DynamicsContext", "DynamicsResult", "TrainContext", "TrainResult", "class_masses", "reward_classes"]


def _fmt(arr: Any) -> str:
    return np.array2string(np.asarray(arr), precision=5, threshold=8)


def _z(gap: np.ndarray, stderr: np.ndarray) -> np.ndarray:
    return z_scores(gap, stderr)  # the one definition (grpo_align.verify)


@dataclass(frozen=True)
class TrainContext:
    """One context of a ``TrainResult`` (the context axis dropped): arrays (K,) or (R, K)."""

    policy: np.ndarray
    mean_policy: np.ndarray
    stderr: np.ndarray
    tail_std: np.ndarray
    trajectory: np.ndarray
    predicted: np.ndarray | None
    """the predicted stationary policy (K,), None when trained with predict=False"""
    predicted_status: str | None
    gap: np.ndarray
    distance: float

    @property
    def z(self) -> np.ndarray:
        """gap / stderr per output (0 where both vanish)."""
        return _z(self.gap, self.stderr)


@dataclass(frozen=True, eq=False)
class TrainResult:
    """Outcome of ``train``: the trained policy against the predicted stationary policy.

    Arrays always carry the context axis C (1 for an unbatched problem); ``res[c]`` is
    the ``TrainContext`` of context c, ``len(res)`` the number of contexts.

    Attributes
    ----------
    policy : (C, K) the policy after the last step.
    mean_policy : (C, K) Polyak average of the policy over the tail (the last ``config.tail_steps``).
    stderr : (C, K) standard error of ``mean_policy``, from the means of ``config.n_batches``
        consecutive batches of the tail (``training.stats``; valid when a batch is much
        longer than the autocorrelation time, see ``batch_autocorrelation``).
    tail_std : (C, K) standard deviation of the policy over the tail (its fluctuation, not an error).
    batch_autocorrelation : lag-1 autocorrelation of consecutive batch means, pooled over
        outputs and contexts; near 0 means the batches are long enough for ``stderr``.
    trajectory : (R, C, K) the policy at ``record_steps`` (step 0 = the start).
    record_steps : (R,) steps of the trajectory records.
    predicted : ``ga.stationary_policy(problem, algo)`` (None when trained with predict=False).
    gap : (C, K) mean_policy - predicted policy (NaN without a prediction).
    distance : (C,) max over outputs of |gap| per context.
    metrics : per-step arrays (``training.metrics``): ``losses/loss`` (first inner
        iteration), ``losses/policy``, ``losses/penalty``, ``charts/clip_fraction`` (mean
        over the inner iterations), ``charts/reward`` (mean sampled reward).
    seconds : wall-clock seconds of the loop (this process's part of a resumed run).
    outputs_per_second : sampled outputs per wall-clock second.
    """

    policy: np.ndarray
    mean_policy: np.ndarray
    stderr: np.ndarray
    tail_std: np.ndarray
    batch_autocorrelation: float
    trajectory: np.ndarray
    record_steps: np.ndarray
    predicted: StationaryResult | None
    gap: np.ndarray
    distance: np.ndarray
    metrics: dict[str, np.ndarray] = field(repr=False)
    config: TrainConfig = field(repr=False)
    algo: GRPO = field(repr=False)
    problem: Problem = field(repr=False)
    seconds: float = 0.0
    outputs_per_second: float = 0.0

    @property
    def z(self) -> np.ndarray:
        """(C, K) gap / stderr per output (0 where both vanish)."""
        return _z(self.gap, self.stderr)

    @property
    def predicted_policy(self) -> np.ndarray | None:
        """(C, K) the predicted stationary policy, None without a prediction."""
        return None if self.predicted is None else self.predicted.policy

    @property
    def predicted_status(self) -> tuple[str, ...] | None:
        """The solver's status per context, None without a prediction."""
        if self.predicted is None:
            return None
        return self.predicted.status

    def __len__(self) -> int:
        return int(self.policy.shape[0])

    def __getitem__(self, c: int) -> TrainContext:
        pred, status = self.predicted_policy, self.predicted_status
        return TrainContext(
            policy=self.policy[c],
            mean_policy=self.mean_policy[c],
            stderr=self.stderr[c],
            tail_std=self.tail_std[c],
            trajectory=self.trajectory[:, c],
            predicted=None if pred is None else pred[c],
            predicted_status=None if status is None else status[c],
            gap=self.gap[c],
            distance=float(self.distance[c]),
        )

    def __iter__(self) -> Iterator[TrainContext]:
        return (self[c] for c in range(len(self)))

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (what the CLI writes); arrays keep the context axis."""
        pred = self.predicted_policy
        return {
            "policy": self.policy.tolist(),
            "mean_policy": self.mean_policy.tolist(),
            "stderr": self.stderr.tolist(),
            "tail_std": self.tail_std.tolist(),
            "predicted": None if pred is None else pred.tolist(),
            "predicted_status": None if self.predicted_status is None else list(self.predicted_status),
            "gap": self.gap.tolist(),
            "distance": self.distance.tolist(),
            "max_abs_z": float(np.max(np.abs(self.z))),
            "batch_autocorrelation": self.batch_autocorrelation,
            "clip_fraction_mean": float(np.mean(self.metrics[CLIP_FRACTION])),
            "seconds": self.seconds,
            "outputs_per_second": self.outputs_per_second,
        }

    def __repr__(self) -> str:
        return (
            f"TrainResult(mean_policy={_fmt(self.mean_policy)}, stderr={_fmt(self.stderr)}, "
            f"predicted={_fmt(self.predicted_policy)}, distance={_fmt(self.distance)}, "
            f"max|z|={float(np.max(np.abs(self.z))):.2f}, steps={self.config.steps})"
        )


@dataclass(frozen=True)
class DynamicsContext:
    """One context of a ``DynamicsResult`` (the context axis dropped)."""

    trajectory: np.ndarray
    """(steps + 1, K)"""
    policy: np.ndarray
    """(K,) the last row"""
    converged: bool
    oscillating: bool
    period: int
    residual: float
    message: str


@dataclass(frozen=True, eq=False)
class DynamicsResult:
    """Outcome of ``expected_dynamics``: a noise-free trajectory of the expected update.

    Arrays always carry the context axis C (1 for an unbatched problem); ``res[c]`` is
    the ``DynamicsContext`` of context c, ``len(res)`` the number of contexts.

    Attributes
    ----------
    trajectory : (steps + 1, C, K) the policy after each step (row 0: the start).
    policy : (C, K) the last row.
    converged : (C,) bool: the last step moved the policy by less than 1e-10.
    oscillating : (C,) bool: the trajectory keeps swinging back and forth instead of
        settling (a cycle of ``period`` steps, or sign-alternating steps whose size does
        not shrink); such a run has no fixed point to report.
    period : (C,) int, the cycle length found (0 if none).
    residual : (C,) stationarity residual of ``policy`` (``ga.stationarity_residual``).
    message : what happened, one string per context.
    """

    trajectory: np.ndarray
    policy: np.ndarray
    converged: np.ndarray
    oscillating: np.ndarray
    period: np.ndarray
    residual: np.ndarray
    message: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.policy.shape[0])

    def __getitem__(self, c: int) -> DynamicsContext:
        return DynamicsContext(
            trajectory=self.trajectory[:, c],
            policy=self.policy[c],
            converged=bool(self.converged[c]),
            oscillating=bool(self.oscillating[c]),
            period=int(self.period[c]),
            residual=float(self.residual[c]),
            message=self.message[c],
        )

    def __iter__(self) -> Iterator[DynamicsContext]:
        return (self[c] for c in range(len(self)))

    def __repr__(self) -> str:
        return (
            f"DynamicsResult(policy={_fmt(self.policy)}, converged={bool(np.all(self.converged))}, "
            f"oscillating={bool(np.any(self.oscillating))}, steps={len(self.trajectory) - 1}, "
            f"message={self.message[0]!r})"
        )


def class_masses(problem: Problem, policy: Any) -> np.ndarray:
    """Probability mass of every reward class: (J,) for a policy (K,), (..., C, J) for (..., C, K)."""
    pol = np.asarray(policy, dtype=float)
    pol2 = pol[None] if pol.ndim == 1 else pol
    cls = reward_classes(problem)  # (C, K), broadcast over leading axes (e.g. a trajectory)
    n_cls = int(cls.max()) + 1
    out = np.stack([np.sum(np.where(cls == j, pol2, 0.0), axis=-1) for j in range(n_cls)], axis=-1)
    return out[0] if pol.ndim == 1 else out
