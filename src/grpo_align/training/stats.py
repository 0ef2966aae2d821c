"""Tail statistics of a run: the Polyak average over the tail and its batch-means error.

Consecutive policies of a stochastic run are correlated, so the plain standard error of
their mean is too small. Batch means (Flegal & Jones 2010) split the
tail into ``n_batches`` consecutive batches: when a batch is much longer than the
autocorrelation time, the batch means are nearly independent and their spread gives the
standard error. The lag-1 autocorrelation of the batch means checks that assumption.

``tail_statistics`` reads stored records (the LM trainer, the TRL callback);
``TailAccumulator`` gathers the same sums step by step (the tabular trainer, whose tail
may be too long to store) and ends in the same estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from grpo_align.errors import InputError

__all__ = ["TailAccumulator", "TailStatistics", "tail_statistics"]


@dataclass(frozen=True)
class TailStatistics:
    """Mean of the tail records with its batch-means standard error.

    Attributes
    ----------
    mean : the average of the records (the measured end point).
    stderr : batch-means standard error of ``mean`` (NaN with fewer records than batches).
    std : standard deviation of the records (their fluctuation, not an error).
    batch_autocorrelation : lag-1 autocorrelation of consecutive batch means, pooled over
        all entries; near 0 means the batches are long enough for ``stderr``.
    """

    mean: np.ndarray
    stderr: np.ndarray
    std: np.ndarray
    batch_autocorrelation: float


def _from_batches(mean: np.ndarray, batch_means: np.ndarray, std: np.ndarray) -> TailStatistics:
    """The estimator itself, shared by both ways of feeding it."""
    n_batches = batch_means.shape[0]
    stderr = batch_means.std(axis=0, ddof=1) / math.sqrt(n_batches)
    dev = batch_means - batch_means.mean(axis=0)
    denom = float(np.sum(dev * dev))
    autocorr = float(np.sum(dev[1:] * dev[:-1]) / denom) if denom > 0 else 0.0
    return TailStatistics(mean=mean, stderr=stderr, std=std, batch_autocorrelation=autocorr)


def _check_batches(n_batches: Any) -> int:
    if isinstance(n_batches, bool) or not isinstance(n_batches, int) or n_batches < 2:
        raise InputError("n_batches", f"expected an integer >= 2, got {n_batches!r}")
    return n_batches


def tail_statistics(records: Any, n_batches: int) -> TailStatistics:
    """Batch-means statistics of ``records`` (first axis: consecutive records of the tail).

    The records are split into ``n_batches`` consecutive batches of (nearly) equal length
    (``np.array_split``). With fewer records than batches the mean is still returned and
    ``stderr`` and ``batch_autocorrelation`` are NaN.
    """
    n_batches = _check_batches(n_batches)
    recs = np.asarray(records, dtype=float)
    if recs.ndim == 0 or recs.shape[0] == 0:
        raise InputError("records", "expected at least one record")
    mean = recs.mean(axis=0)
    std = recs.std(axis=0)
    if recs.shape[0] < n_batches:
        return TailStatistics(mean=mean, stderr=np.full(mean.shape, np.nan), std=std, batch_autocorrelation=math.nan)
    batch_means = np.stack([b.mean(axis=0) for b in np.array_split(recs, n_batches, axis=0)])
    return _from_batches(mean, batch_means, std)


class TailAccumulator:
    """``tail_statistics`` of a tail fed one record at a time, in O(n_batches) memory.

    ``n_records`` must be a multiple of ``n_batches`` (equal batches, as ``array_split``
    makes them then). The sums are plain arrays (``state`` / ``from_state``) so that a
    checkpoint can carry them.
    """

    def __init__(self, n_records: int, n_batches: int, shape: tuple[int, ...]) -> None:
        self.n_batches = _check_batches(n_batches)
        if n_records < n_batches or n_records % n_batches:
            raise InputError("n_batches", f"the tail ({n_records} records) must be a multiple of n_batches")
        self.n_records = n_records
        self.batch_len = n_records // n_batches
        self.batch_sums = np.zeros((n_batches, *shape))
        self.sumsq = np.zeros(shape)

    def add(self, index: int, record: np.ndarray) -> None:
        """Add the record at position ``index`` (0-based) of the tail."""
        self.batch_sums[index // self.batch_len] += record
        self.sumsq += record * record

    def state(self) -> dict[str, np.ndarray]:
        return {"batch_sums": self.batch_sums.copy(), "sumsq": self.sumsq.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.batch_sums = np.array(state["batch_sums"], dtype=float)
        self.sumsq = np.array(state["sumsq"], dtype=float)

    def statistics(self) -> TailStatistics:
        mean = self.batch_sums.sum(axis=0) / self.n_records
        std = np.sqrt(np.maximum(self.sumsq / self.n_records - mean**2, 0.0))
        return _from_batches(mean, self.batch_sums / self.batch_len, std)
