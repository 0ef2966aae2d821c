"""Per-prompt end points: each prompt a context of one batched problem, solved by the engine.

A prompt given by counts or by p0 is a binary question (THEORY.md section 6): a correct
and a wrong answer with reference probabilities p0 and 1 - p0 and rewards 1 and 0. Its
end point is the stationary probability of the correct answer, ``predicted``. A prompt
given by sampled rewards is the empirical reward distribution: each sampled completion is
an output with reference probability 1/n and its reward; completions with equal rewards
form one reward class (section 5), so the problem is solved on the classes (reference
probability count/n, reward the level), which has the same stationary class masses and
the same KL. Its ``p0`` and ``predicted`` are the mean reward under the reference and at
the end point (for rewards in {0, 1} the probability of a correct answer).

Several stationary policies: ``predicted`` is the solver's ``policy``, the root
``ROOT_CHOICE_RULE`` picks (stable first, interior first, nearest pi_ref; THEORY.md
section 9); ``roots`` counts them all.
Without regularisation (beta = 0 or k1) there is no interior end point: ``status`` is
"limit" and ``predicted`` the vertex the expected dynamics reach (all mass on the best
class the reference can sample). Where a solve fails, the status is "failed" and the
prompt has no results (NaN: the solver's candidate or pi_ref is no end point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grpo_align.errors import InputError
from grpo_align.predict.estimate import MAX_COUNT, jeffreys_interval, jeffreys_mean
from grpo_align.predict.stats import StatsChunk
from grpo_align.theory import GRPO, Problem, rlhf_policy, stationary_policy
from grpo_align.theory.stationary.work import MAX_MEMORY_BYTES, check_work

__all__ = [
    "COLUMNS",
    "EndPoints",
    "binary_end_points",
    "kl_to_reference",
    "ordered_interval_ends",
    "predict_chunk",
    "reward_end_points",
]

#: the columns of predictions.csv, in order
COLUMNS = (
    "prompt_id",
    "n",
    "correct",
    "p0",
    "p0_low",
    "p0_high",
    "predicted",
    "predicted_low",
    "predicted_high",
    "rlhf",
    "kl",
    "roots",
    "status",
)

#: contexts per call of the solver (bounds its working memory)
SOLVE_BATCH = 20_000


@dataclass(frozen=True)
class EndPoints:
    """End points of a set of prompts, one entry each.

    Attributes
    ----------
    predicted : ndarray
        p(correct) (binary) or the mean reward at the end point.
    kl : ndarray
        KL(pi || pi_ref) at the end point, in nats.
    rlhf : ndarray
        The same quantity as ``predicted`` under RLHF's logarithmic pooling at the same
        beta (NaN for beta = 0).
    roots : ndarray of int
        Stationary policies found.
    status : list of str
        "interior", "limit" or "failed".
    message : list of str
    """

    predicted: np.ndarray
    kl: np.ndarray
    rlhf: np.ndarray
    roots: np.ndarray
    status: list[str]
    message: list[str]


def kl_to_reference(policy: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """KL(pi || pi_ref) = sum_o pi(o) log(pi(o)/pi_ref(o)) per row, with 0 log 0 = 0.

    log(pi/pi_ref) is taken from the ratio where the ratio is a normal float and as
    log pi - log pi_ref where it is not: against a subnormal pi_ref (p0 1e-320 and a
    predicted p near 1) the ratio overflows, its log does not (KL about 732.7, not inf).
    """
    pos = policy > 0
    num = np.where(pos, policy, 1.0)
    den = np.where(pos, ref, 1.0)
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        ratio = num / den
        normal = np.isfinite(ratio) & (ratio >= np.finfo(float).tiny)
        log_ratio = np.where(normal, np.log(np.where(normal, ratio, 1.0)), np.log(num) - np.log(den))
    return np.sum(np.where(pos, policy * log_ratio, 0.0), axis=-1)


def _solve(problem: Problem, algo: GRPO, values: np.ndarray) -> EndPoints:
    """Solve one batched problem; ``values`` (C, K) is what each output is worth."""
    res = stationary_policy(problem, algo)
    policy = res.policy
    if algo.beta > 0:
        rlhf = np.sum(np.reshape(rlhf_policy(problem, algo.beta), policy.shape) * values, axis=1)
    else:
        rlhf = np.full(len(res), np.nan)
    return EndPoints(
        predicted=np.sum(policy * values, axis=1),
        kl=kl_to_reference(policy, problem.ref),
        rlhf=rlhf,
        roots=res.root_counts(),
        status=list(res.status),
        message=list(res.message),
    )


def _concat(parts: list[EndPoints]) -> EndPoints:
    return EndPoints(
        predicted=np.concatenate([p.predicted for p in parts]),
        kl=np.concatenate([p.kl for p in parts]),
        rlhf=np.concatenate([p.rlhf for p in parts]),
        roots=np.concatenate([p.roots for p in parts]),
        status=[s for p in parts for s in p.status],
        message=[m for p in parts for m in p.message],
    )


def _empty() -> EndPoints:
    return EndPoints(np.empty(0), np.empty(0), np.empty(0), np.empty(0, dtype=np.int64), [], [])


def binary_end_points(p0: np.ndarray, algo: GRPO) -> EndPoints:
    """End points of binary questions with reference probabilities ``p0`` (THEORY.md section 6).

    One batched ``Problem.from_bernoulli(ref=[[p0, 1 - p0], ...], success=[[1, 0], ...])``
    per ``SOLVE_BATCH`` prompts.
    """
    p0 = np.asarray(p0, dtype=float).reshape(-1)
    parts = []
    for start in range(0, p0.size, SOLVE_BATCH):
        p = p0[start : start + SOLVE_BATCH]
        ref = np.stack([p, 1.0 - p], axis=1)
        success = np.tile([1.0, 0.0], (p.size, 1))
        parts.append(_solve(Problem.from_bernoulli(ref=ref, success=success), algo, success))
    return _concat(parts) if parts else _empty()


def _batch_within_memory(ref: np.ndarray, levels: np.ndarray, algo: GRPO) -> int:
    """Contexts per solve for prompts of this many reward classes: ``SOLVE_BATCH``, or fewer
    where each context's own table of P_G (many distinct levels) would exceed a quarter of
    the engine's memory bound (``work.MAX_MEMORY_BYTES``).

    A context too costly on its own is refused here, before any solve (``WorkLimitError``).
    """
    one = check_work(Problem.from_rewards(ref=ref, rewards=levels), algo)
    if one.memory_bytes <= 0:
        return SOLVE_BATCH
    return int(max(1, min(SOLVE_BATCH, MAX_MEMORY_BYTES // 4 // one.memory_bytes)))


def reward_end_points(rewards: list[np.ndarray], algo: GRPO) -> tuple[np.ndarray, EndPoints]:
    """(mean reward under the reference, end points) of empirical reward distributions.

    Each prompt's sampled rewards become its reward classes: levels ``np.unique(r)`` with
    reference probabilities count / n (``Problem.from_rewards`` over the n samples with
    reference 1/n each reduces to exactly this). Prompts with the same number of classes
    are solved together, so no padding is needed.
    """
    levels_of: list[np.ndarray] = []
    ref_of: list[np.ndarray] = []
    for r in rewards:
        levels, counts = np.unique(r, return_counts=True)
        levels_of.append(levels)
        ref_of.append(counts / r.size)
    n_prompts = len(rewards)
    p0 = np.array([ref @ lev for ref, lev in zip(ref_of, levels_of, strict=True)], dtype=float)
    predicted = np.empty(n_prompts)
    kl = np.empty(n_prompts)
    rlhf = np.empty(n_prompts)
    roots = np.empty(n_prompts, dtype=np.int64)
    status = [""] * n_prompts
    message = [""] * n_prompts
    n_classes = np.array([lev.size for lev in levels_of], dtype=np.int64)
    for k in np.unique(n_classes):
        idx_all = np.flatnonzero(n_classes == k)
        batch = _batch_within_memory(ref_of[idx_all[0]], levels_of[idx_all[0]], algo)
        for start in range(0, idx_all.size, batch):
            idx = idx_all[start : start + batch]
            ref = np.stack([ref_of[i] for i in idx])
            lev = np.stack([levels_of[i] for i in idx])
            out = _solve(Problem.from_rewards(ref=ref, rewards=lev), algo, lev)
            predicted[idx], kl[idx], rlhf[idx], roots[idx] = out.predicted, out.kl, out.rlhf, out.roots
            for j, i in enumerate(idx):
                status[i], message[i] = out.status[j], out.message[j]
    return p0, EndPoints(predicted, kl, rlhf, roots, status, message)


#: ulps of 1 within which an interval end may fall on the wrong side of the point estimate
#: by rounding alone (each end point is solved to about one ulp of its value)
ROUNDING_ULPS = 8


def ordered_interval_ends(predicted: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The interval ends, widened to hold the point estimate where rounding inverted them.

    The end point increases with p0, so low <= predicted <= high holds exactly; solved
    separately near 1 (an end point 1 - 1e-16 beside 1.0) the three can come out one ulp
    out of order. Inversions within ``ROUNDING_ULPS`` ulps are folded into the interval;
    anything larger is left as computed (a real failure of monotonicity, which the tests
    would catch), never hidden.
    """
    slack = ROUNDING_ULPS * np.spacing(np.maximum(1.0, np.abs(predicted)))
    with np.errstate(invalid="ignore"):
        low = np.where((low > predicted) & (low - predicted <= slack), predicted, low)
        high = np.where((high < predicted) & (predicted - high <= slack), predicted, high)
    return low, high


def predict_chunk(chunk: StatsChunk, algo: GRPO) -> dict[str, object]:
    """The ``COLUMNS`` of ``predictions.csv`` for one chunk, plus ``message`` per prompt.

    Counts: p0 is the Jeffreys posterior mean and [p0_low, p0_high] its 95% interval
    (``estimate``); predicted_low / predicted_high are the end points at p0_low / p0_high.
    The end point of a binary question increases with p0 (checked over a grid in the tests),
    so they bound the end point of every p0 in the interval. Given p0 or rewards the
    interval columns are NaN. ``status`` is "failed" when any of a prompt's solves failed;
    then its results (predicted and its interval, rlhf, kl) are NaN, its p0 and interval
    kept, and ``message`` says what failed.
    """
    size = len(chunk)
    nan = np.full(size, np.nan)
    low = high = pred_low = pred_high = nan
    if chunk.kind == "rewards":
        assert chunk.rewards is not None
        p0, main = reward_end_points(chunk.rewards, algo)
        status = list(main.status)
    elif chunk.kind == "counts":
        over = chunk.n > MAX_COUNT
        if np.any(over):  # named by prompt here: the estimate knows only array positions
            i = int(np.argmax(over))
            raise InputError(
                f"prompt_id {chunk.prompt_id[i]!r}, column n",
                f"{chunk.n[i]:.6g} completions; expected at most 2**53 ({MAX_COUNT}), "
                "beyond which counts have no exact float",
            )
        p0 = jeffreys_mean(chunk.n, chunk.correct)
        low, high = jeffreys_interval(chunk.n, chunk.correct)
        # one batch: the point estimate and both ends of the interval
        both_p0 = np.concatenate([p0, low, high])
        both = binary_end_points(both_p0, algo)
        main = EndPoints(
            both.predicted[:size],
            both.kl[:size],
            both.rlhf[:size],
            both.roots[:size],
            both.status[:size],
            both.message[:size],
        )
        pred_low, pred_high = ordered_interval_ends(
            main.predicted, both.predicted[size : 2 * size], both.predicted[2 * size :]
        )
        status = list(main.status)
        for i in range(size):
            for end, j in (("p0_low", size + i), ("p0_high", 2 * size + i)):
                if both.status[j] == "failed" and status[i] != "failed":
                    status[i] = "failed"
                    main.message[i] = f"the end point at {end} = {both_p0[j]:.6g} failed: {both.message[j]}"
    else:
        p0 = chunk.p0
        main = binary_end_points(p0, algo)
        status = list(main.status)
    failed = np.array([s == "failed" for s in status], dtype=bool)

    def result(values: np.ndarray) -> np.ndarray:
        # a failed solve's policy is a candidate or pi_ref, not an end point: no value
        return np.where(failed, np.nan, values)

    return {
        "prompt_id": chunk.prompt_id,
        "n": chunk.n,
        "correct": chunk.correct,
        "p0": p0,
        "p0_low": low,
        "p0_high": high,
        "predicted": result(main.predicted),
        "predicted_low": result(pred_low),
        "predicted_high": result(pred_high),
        "rlhf": result(main.rlhf),
        "kl": result(main.kl),
        "roots": main.roots,
        "status": status,
        "message": main.message,
    }
