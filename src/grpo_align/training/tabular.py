"""GRPO on a tabular softmax policy, one loop in one function (``train``).

Every context c has its own logits theta_c (K of them); outputs whose reference
probability is 0 are masked to -inf so they keep probability 0. A step samples
``groups_per_step`` groups of G outputs per context from pi_old, draws their rewards from
the problem's reward distributions (for a pairwise-preference problem, the outcome of the
pair from its win probabilities), forms the group advantages with ``ga.group_advantages``
and takes ``inner_iterations`` optimiser steps on ``grpo_loss`` (THEORY.md section 1).

A problem with ``sequences`` trains a tree policy (``TreePolicy``, THEORY.md section 10.1):
one softmax per branching prefix, per-token ratios and penalties, the aggregation of
``algo.aggregation``. With ``algo.penalty_in == "reward"`` the rewards lose
beta k(sequence log-ratio of pi_old) before the group normalisation
(``training.loss.penalised_rewards``, eq. 10.7) and the loss has no penalty term.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grpo_align.errors import InputError
from grpo_align.theory.preference import group_advantages
from grpo_align.theory.problem import Problem
from grpo_align.theory.sequences import Tree
from grpo_align.theory.spec import GRPO
from grpo_align.theory.stationary import stationary_policy
from grpo_align.training import metrics as metric
from grpo_align.training.checkpoint import load_checkpoint, save_checkpoint
from grpo_align.training.config import TrainConfig
from grpo_align.training.loss import LossOutput, grpo_loss, penalised_rewards
from grpo_align.training.metrics import TABULAR_METRICS
from grpo_align.training.results import TrainResult
from grpo_align.training.stats import TailAccumulator

__all__ = [
    "CHECKPOINT_FORMAT",
    "RewardSampler",
    "TabularPolicy",
    "TreePolicy",
    "check_run_size",
    "context_sum_loss",
    "make_optimizer",
    "memory_limit",
    "train",
]

CHECKPOINT_FORMAT = 2  # 2: tail sums under "tail" (training.stats.TailAccumulator)
DTYPE = torch.float64

#: working memory per output sampled in a step: indices, rewards, advantages, log-probabilities,
#: mask and autograd buffers (about 380 bytes measured at 2e6 outputs a step; rounded up)
BYTES_PER_SAMPLE = 512

#: called after every step with (step, metrics of that step); may raise to stop the run
Callback = Callable[[int, dict[str, float]], None]


class TabularPolicy(torch.nn.Module):
    """Softmax policies of C contexts over K outputs: logits (C, K), masked where pi_ref = 0."""

    # buffers, declared for the type checker (register_buffer sets them)
    support: torch.Tensor
    log_ref: torch.Tensor

    def __init__(self, ref: np.ndarray, init: Any = None) -> None:
        super().__init__()
        ref_t = torch.as_tensor(ref, dtype=DTYPE)
        support = ref_t > 0
        start = ref_t if init is None else torch.as_tensor(init, dtype=DTYPE)
        self.register_buffer("support", support)
        self.register_buffer("log_ref", torch.where(support, ref_t.clamp(min=1e-300).log(), torch.zeros_like(ref_t)))
        self.logits = torch.nn.Parameter(torch.where(support, start.clamp(min=1e-300).log(), torch.zeros_like(ref_t)))

    def log_probs(self) -> torch.Tensor:
        """log pi_theta, (C, K); -inf outside the support."""
        return torch.log_softmax(self.logits.masked_fill(~self.support, -math.inf), dim=-1)

    def probs(self) -> np.ndarray:
        with torch.no_grad():
            return self.log_probs().exp().numpy().copy()

    # the per-token view the trainer uses (one token per output)
    def token_logps(self, outputs: torch.Tensor) -> torch.Tensor:
        """log pi_theta of sampled outputs (C, M) as one-token sequences, (C M, 1)."""
        return self.log_probs().gather(1, outputs).reshape(-1, 1)

    def token_ref(self, outputs: torch.Tensor) -> torch.Tensor:
        """log pi_ref of sampled outputs, (C M, 1)."""
        return self.log_ref.gather(1, outputs).reshape(-1, 1)

    def token_mask(self, outputs: torch.Tensor) -> torch.Tensor:
        """Valid tokens of sampled outputs: all ones, (C M, 1)."""
        return torch.ones(outputs.numel(), 1, dtype=DTYPE)


class TreePolicy(torch.nn.Module):
    """Autoregressive tabular policies of C contexts: one softmax per branching prefix.

    THEORY.md section 10.1: pi(o) = prod_j pi(t_j | t_<j); only prefixes with two or more
    next tokens (among the outputs with pi_ref > 0) have a softmax, the others have
    pi(t | u) = 1 (ratio 1, no gradient) and count only in |o|. The logits are padded to
    (C, prefixes, next tokens), -inf where a prefix has fewer next tokens. Sampling an
    output from pi(o) is sampling its tokens one by one from the conditionals (the same
    law, drawn in one call).

    Parameters
    ----------
    problem : Problem with ``sequences``.
    init : starting policy over outputs ((C, K), positive where pi_ref is); pi_ref by
        default. Its conditionals (eq. 10.1) start the logits.
    """

    slot_ok: torch.Tensor
    log_ref_edges: torch.Tensor
    token_edge: torch.Tensor
    valid: torch.Tensor
    active: torch.Tensor

    def __init__(self, problem: Problem, init: np.ndarray | None = None) -> None:
        super().__init__()
        if problem.sequences is None:
            raise InputError("problem", "a tree policy needs Problem(..., sequences=...)")
        n_ctx, n_out = problem.ref.shape
        self.trees = [Tree(problem.sequences[c], problem.ref[c]) for c in range(n_ctx)]
        n_nodes = max(1, max(len(t.prefixes) for t in self.trees))
        n_slots = max(2, max((len(e) for t in self.trees for e in t.node_edges), default=2))
        t_max = int(max(t.lengths.max() for t in self.trees))
        slot_ok = torch.zeros(n_ctx, n_nodes, n_slots, dtype=torch.bool)
        log_ref = torch.zeros(n_ctx, n_nodes, n_slots, dtype=DTYPE)
        start = torch.zeros(n_ctx, n_nodes, n_slots, dtype=DTYPE)
        # flat index node * n_slots + slot of each token's edge; -1 for a token with one continuation
        token_edge = torch.full((n_ctx, n_out, t_max), -1, dtype=torch.int64)
        valid = torch.zeros(n_ctx, n_out, t_max, dtype=DTYPE)
        self.edge_index: list[np.ndarray] = []
        for c, tree in enumerate(self.trees):
            cond0 = tree.ref_cond if init is None else tree.conditionals(init[c])
            flat = np.zeros(tree.n_edges, dtype=np.int64)
            where: dict[tuple[Any, ...], int] = {}
            for n, edges in enumerate(tree.node_edges):
                for slot, e in enumerate(edges.tolist()):
                    slot_ok[c, n, slot] = True
                    log_ref[c, n, slot] = math.log(tree.ref_cond[e])
                    start[c, n, slot] = math.log(cond0[e])
                    flat[e] = n * n_slots + slot
                    where[tree.prefixes[n] + (tree.edge_token[e],)] = int(flat[e])
            self.edge_index.append(flat)
            for o in np.nonzero(tree.active)[0].tolist():
                seq = tree.sequences[o]
                valid[c, o, : len(seq)] = 1.0
                for j in range(len(seq)):
                    token_edge[c, o, j] = where.get(seq[: j + 1], -1)
        self.register_buffer("slot_ok", slot_ok)
        self.register_buffer("log_ref_edges", log_ref)
        self.register_buffer("token_edge", token_edge)
        self.register_buffer("valid", valid)
        self.register_buffer("active", torch.as_tensor(np.stack([t.active for t in self.trees])))
        self.logits = torch.nn.Parameter(start.masked_fill(~slot_ok, 0.0))

    def _edge_logps(self, table: torch.Tensor | None = None) -> torch.Tensor:
        """log pi(t | u) per padded edge, (C, prefixes * slots); 0 on padding."""
        z = self.logits if table is None else table
        lp = torch.log_softmax(z.masked_fill(~self.slot_ok, -math.inf), dim=-1)
        return lp.masked_fill(~self.slot_ok, 0.0).reshape(z.shape[0], -1)

    def _tokens(self, edge_lp: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """Per-token log-probabilities of outputs (C, M) from per-edge ones, (C M, T)."""
        n_ctx, m = outputs.shape
        idx = self.token_edge.gather(1, outputs[..., None].expand(-1, -1, self.token_edge.shape[2]))  # (C, M, T)
        vals = edge_lp.gather(1, idx.clamp(min=0).reshape(n_ctx, -1)).reshape(idx.shape)
        return torch.where(idx >= 0, vals, torch.zeros_like(vals)).reshape(n_ctx * m, -1)

    def token_logps(self, outputs: torch.Tensor) -> torch.Tensor:
        """log pi_theta(t_j | t_<j) of sampled outputs (C, M), (C M, T); 0 past the end."""
        return self._tokens(self._edge_logps(), outputs)

    def token_ref(self, outputs: torch.Tensor) -> torch.Tensor:
        """log pi_ref(t_j | t_<j), (C M, T)."""
        return self._tokens(self.log_ref_edges.reshape(self.log_ref_edges.shape[0], -1), outputs)

    def token_mask(self, outputs: torch.Tensor) -> torch.Tensor:
        """1 for the |o| tokens of each sampled output, (C M, T)."""
        return self.valid.gather(1, outputs[..., None].expand(-1, -1, self.valid.shape[2])).reshape(outputs.numel(), -1)

    def log_probs(self) -> torch.Tensor:
        """log pi_theta(o) over whole outputs, (C, K); -inf outside the tree."""
        n_ctx, n_out = self.active.shape
        every = torch.arange(n_out).expand(n_ctx, -1)
        lp = self.token_logps(every).reshape(n_ctx, n_out, -1).sum(dim=2)
        return lp.masked_fill(~self.active, -math.inf)

    def probs(self) -> np.ndarray:
        with torch.no_grad():
            return self.log_probs().exp().numpy().copy()


def check_init(problem: Problem, init: Any) -> np.ndarray | None:
    """A starting policy of the problem's shape, positive wherever pi_ref is (or None)."""
    if init is None:
        return None
    pol = problem.check_policy(init, "init")
    if np.any((problem.ref > 0) & (pol <= 0)):
        raise InputError("init", "must be positive wherever ref is (a softmax cannot reach 0)")
    return np.where(problem.ref > 0, pol, 0.0)


def memory_limit() -> int:
    """Bytes a run may plan to use: half of this machine's physical memory (8 GiB if unknown)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * 2**30
    return int(total) // 2


def check_run_size(problem: Problem, algo: GRPO, config: TrainConfig) -> int:
    """The memory a run would need, in bytes; ``InputError`` when it exceeds ``memory_limit()``.

    A step holds every sampled output (C contexts x groups_per_step x G) several times
    over (``BYTES_PER_SAMPLE``); the run keeps every step's metrics and the recorded
    policies. The error names the field that drives the size, so a typo such as
    ``groups_per_step = 1e8`` is refused before anything is allocated or solved.
    """
    if algo.is_limit:
        raise InputError("group_size", "training samples groups: expected a finite G")
    n_ctx, n_out = problem.ref.shape
    g, groups = int(algo.group_size), config.groups_per_step
    samples = n_ctx * groups * g
    per_step = samples * BYTES_PER_SAMPLE
    n_records = config.steps // config.record_interval + 2
    stored = config.steps * len(TABULAR_METRICS) * 8 + 2 * n_records * n_ctx * n_out * 8
    need, limit = per_step + stored, memory_limit()
    if need <= limit:
        return need
    if per_step >= stored:
        field = "group_size" if g > groups else "groups_per_step"
        what = f"{samples:.3g} sampled outputs a step ({n_ctx} context(s) x {groups} groups x G = {g})"
    else:
        field = "steps" if config.steps * len(TABULAR_METRICS) >= 2 * n_records * n_ctx * n_out else "record_every"
        what = f"the metrics and recorded policies of {config.steps:.3g} steps"
    raise InputError(
        field,
        f"the run would need about {need / 2**30:.3g} GiB of memory for {what}; "
        f"the limit is half this machine's memory, {limit / 2**30:.3g} GiB: lower {field}",
    )


def make_optimizer(name: str, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Plain SGD or Adam (torch defaults) on the logits."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise InputError("optimizer", f"unknown {name!r}; expected sgd or adam")


class RewardSampler:
    """Draws rewards of sampled outputs from a problem's reward distributions (torch, seeded)."""

    def __init__(self, problem: Problem) -> None:
        self.preference = problem.is_preference
        if self.preference:
            self.win = torch.as_tensor(problem.win_prob, dtype=DTYPE)  # (C, K, K)
            return
        dist = torch.as_tensor(problem.dist, dtype=DTYPE)  # (C, K, L)
        self.levels = torch.as_tensor(problem.levels, dtype=DTYPE)  # (C, L)
        self.deterministic = bool(torch.all((dist == 0) | (dist == 1)))
        if self.deterministic:
            self.reward_of = self.levels.gather(1, dist.argmax(dim=2))  # (C, K)
            return
        self.cdf = dist.cumsum(dim=2)
        n_levels = dist.shape[2]
        # rounding can leave u above the last cdf entry: fall back to the last level that occurs
        positive = dist > 0
        self.last_level = n_levels - 1 - positive.flip(2).to(torch.int64).argmax(dim=2)  # (C, K)

    def __call__(self, outputs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Rewards of ``outputs`` (C, N, G), same shape, float64."""
        n_ctx = outputs.shape[0]
        if self.preference:
            # G = 2: the first member wins with W[o1, o2], the second with W[o2, o1], else a tie
            flat = outputs.reshape(n_ctx, -1, 2)
            o1, o2 = flat[..., 0], flat[..., 1]
            k = self.win.shape[1]
            w12 = self.win.reshape(n_ctx, -1).gather(1, o1 * k + o2)
            w21 = self.win.reshape(n_ctx, -1).gather(1, o2 * k + o1)
            u = torch.rand(w12.shape, generator=generator, dtype=DTYPE)
            first = (u < w12).to(DTYPE)
            second = ((u >= w12) & (u < w12 + w21)).to(DTYPE)
            return torch.stack([first, second], dim=-1).reshape(outputs.shape)
        flat = outputs.reshape(n_ctx, -1)  # (C, M)
        if self.deterministic:
            return self.reward_of.gather(1, flat).reshape(outputs.shape)
        n_levels = self.cdf.shape[2]
        cdf = self.cdf.gather(1, flat[..., None].expand(-1, -1, n_levels))  # (C, M, L)
        u = torch.rand(flat.shape, generator=generator, dtype=DTYPE)
        level = (cdf <= u[..., None]).sum(dim=2)
        level = torch.minimum(level, self.last_level.gather(1, flat))
        return self.levels.gather(1, level).reshape(outputs.shape)


def context_sum_loss(
    policy: TabularPolicy | TreePolicy,
    outputs: torch.Tensor,
    logp_old: torch.Tensor,
    logp_ref: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    algo: GRPO,
    config: TrainConfig,
) -> LossOutput:
    """grpo_loss of all sampled outputs (C, N) under the current logits, times C.

    The rows are C contexts x groups x G, so consecutive G rows form a group, as
    ``grpo_loss`` expects.

    Every context has its own logits, so the sum over contexts of their own GRPO losses
    (each the mean over that context's groups) gives each context exactly the gradient
    of its own GRPO run, whatever the number of contexts. ``loss`` is that sum; the
    other fields are means over the whole batch.
    """
    logp_new = policy.token_logps(outputs)  # (B, T)
    out = grpo_loss(
        logp_new,
        logp_old,
        logp_ref,
        advantages,
        mask,
        algo,
        clip_eps_low=config.clip_eps,
        clip_eps_high=config.clip_eps_high,
        max_length=1,  # "constant" weighs 1/G (THEORY.md eq. 10.2), as the theory does
    )
    return out._replace(loss=out.loss * outputs.shape[0])


def _fingerprint(problem: Problem, algo: GRPO, config: TrainConfig, init: np.ndarray | None) -> str:
    """What a checkpoint must match to be resumed: problem, spec, config (but checkpoint_every), start."""
    h = hashlib.sha256()
    for arr in (problem.ref, problem.levels, problem.dist, problem.win_prob, init):
        h.update(
            b"none" if arr is None else np.ascontiguousarray(arr, dtype=float).tobytes() + str(np.shape(arr)).encode()
        )
    h.update(repr(problem.sequences).encode())
    cfg = {k: v for k, v in config.to_dict().items() if k != "checkpoint_every"}
    h.update(json.dumps([repr(algo), cfg], sort_keys=True).encode())
    return h.hexdigest()


def train(
    problem: Problem,
    algo: GRPO,
    config: TrainConfig | None = None,
    *,
    init: Any = None,
    callback: Callback | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    predict: bool = True,
) -> TrainResult:
    """Run GRPO variant ``algo`` on a tabular softmax policy and compare with the theory.

    Parameters
    ----------
    problem, algo : what is trained; ``ga.stationary_policy(problem, algo)`` is the prediction.
    config : TrainConfig (steps, groups_per_step, lr, optimizer, inner_iterations, clip, seed, tail).
    init : starting policy ((K,) or (C, K)); pi_ref by default.
    callback : called as ``callback(step, metrics)`` after every step (progress bars);
        ``metrics`` holds that step's ``training.metrics`` values and ``time/seconds``.
    checkpoint_path : file for checkpoints, written every ``config.checkpoint_every`` steps.
    resume : continue from ``checkpoint_path`` if it exists; the result is bit-for-bit that
        of an uninterrupted run.
    predict : solve for the stationary policy (``predicted``, ``gap``, ``distance``); False
        skips the solve (they are None / NaN), e.g. for timing the loop alone.

    Returns
    -------
    TrainResult with the final and tail-averaged policies, the batch-means standard error,
    the trajectory and the gap to the predicted stationary policy, all (C, ...) even for an
    unbatched problem (``res[0]`` is its one context).
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise InputError("config", "expected a grpo_align.TrainConfig")
    with torch_threads(config.threads):
        return _train(problem, algo, config, init, callback, checkpoint_path, resume, predict)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with n torch intra-op threads (0: unchanged), restoring the setting afterwards."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(
    problem: Problem,
    algo: GRPO,
    config: TrainConfig,
    init: Any,
    callback: Callback | None,
    checkpoint_path: str | os.PathLike[str] | None,
    resume: bool,
    predict: bool,
) -> TrainResult:
    if not isinstance(algo, GRPO):
        raise InputError("algo", "expected a grpo_align.GRPO")
    if algo.is_limit:
        raise InputError("group_size", "training samples groups: expected a finite G")
    if not isinstance(problem, Problem):
        raise InputError("problem", "expected a grpo_align.Problem")
    if problem.is_preference and algo.group_size != 2:
        raise InputError("group_size", "a pairwise-preference problem defines P_G for G = 2 only")
    check_run_size(problem, algo, config)  # before the solve and before any allocation
    predicted = stationary_policy(problem, algo) if predict else None
    init_arr = check_init(problem, init)
    g = int(algo.group_size)
    n_ctx, n_out = problem.ref.shape
    n_groups = config.groups_per_step

    policy: TabularPolicy | TreePolicy = (
        TreePolicy(problem, init_arr) if problem.has_sequences else TabularPolicy(problem.ref, init_arr)
    )
    optimizer = make_optimizer(config.optimizer, [policy.logits], config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    rewards_of = RewardSampler(problem)

    steps = config.steps
    tail_first = steps - config.tail_steps + 1
    tail = TailAccumulator(config.tail_steps, config.n_batches, (n_ctx, n_out))
    metrics = {name: np.zeros(steps) for name in TABULAR_METRICS}
    records, record_steps = [policy.probs()], [0]
    start_step = 1
    fingerprint = _fingerprint(problem, algo, config, init_arr)
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None

    if resume and ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt)
        if state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != fingerprint:
            raise InputError("resume", f"{ckpt} was written by a different problem, algorithm or config")
        with torch.no_grad():
            policy.logits.copy_(state["logits"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        tail.load_state({k: v.numpy() for k, v in state["tail"].items()})
        metrics = {k: v.numpy().copy() for k, v in state["metrics"].items()}
        records = list(state["records"].numpy())
        record_steps = state["record_steps"].tolist()
        start_step = int(state["step"]) + 1

    t0 = time.perf_counter()
    for step in range(start_step, steps + 1):
        # 1. sample groups from pi_old: (C, n_groups * G) output indices
        with torch.no_grad():
            logp_old_all = policy.log_probs()  # (C, K)
            outputs = torch.multinomial(logp_old_all.exp(), n_groups * g, replacement=True, generator=generator)
            rewards = rewards_of(outputs.view(n_ctx, n_groups, g), generator)  # (C, n_groups, G)
            logp_old = policy.token_logps(outputs)  # (B, T), constant
            logp_ref = policy.token_ref(outputs)  # (B, T)
            mask = policy.token_mask(outputs)  # (B, T)
        # 2. group advantages: the one definition, shared with the theory; with the penalty
        # in the reward, of r - beta k(x(o)) (THEORY.md eq. 10.7)
        scored = rewards.numpy()
        if algo.penalty_in == "reward":
            scored = penalised_rewards(scored, logp_old, logp_ref, mask, algo)
        advantages = torch.from_numpy(group_advantages(scored, algo)).reshape(-1)  # (B,)
        # 3. inner optimiser steps on the clipped loss (the clip acts from the second one)
        clip_total = 0.0
        for inner in range(config.inner_iterations):
            out = context_sum_loss(policy, outputs, logp_old, logp_ref, advantages, mask, algo, config)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            clip_total += out.clip_fraction.item()
            if inner == 0:
                first = (out.loss.item() / n_ctx, out.policy_loss.item(), out.penalty.item())
        # 4. bookkeeping: metrics, tail average, trajectory, checkpoint
        i = step - 1
        metrics[metric.LOSS][i], metrics[metric.POLICY_LOSS][i], metrics[metric.PENALTY][i] = first
        metrics[metric.CLIP_FRACTION][i] = clip_total / config.inner_iterations
        metrics[metric.REWARD][i] = float(rewards.mean())
        pi = policy.probs()
        if step >= tail_first:
            tail.add(step - tail_first, pi)
        if step % config.record_interval == 0 or step == steps:
            records.append(pi)
            record_steps.append(step)
        if ckpt is not None and config.checkpoint_every and (step % config.checkpoint_every == 0 or step == steps):
            save_checkpoint(
                ckpt,
                {
                    "format": CHECKPOINT_FORMAT,
                    "fingerprint": fingerprint,
                    "step": step,
                    "logits": policy.logits.detach().clone(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "tail": {k: torch.from_numpy(v) for k, v in tail.state().items()},
                    "metrics": {k: torch.from_numpy(v.copy()) for k, v in metrics.items()},
                    "records": torch.from_numpy(np.stack(records)),
                    "record_steps": torch.tensor(record_steps, dtype=torch.int64),
                },
            )
        if callback is not None:
            step_metrics = {name: float(values[i]) for name, values in metrics.items()}
            callback(step, {**step_metrics, metric.SECONDS: time.perf_counter() - t0})
    seconds = time.perf_counter() - t0
    run_steps = steps - start_step + 1

    stats = tail.statistics()
    if predicted is not None:
        gap = stats.mean - predicted.policy  # both (C, K)
        distance = np.max(np.abs(gap), axis=1)
    else:
        gap = np.full_like(stats.mean, np.nan)
        distance = np.full(n_ctx, np.nan)
    return TrainResult(
        policy=policy.probs(),
        mean_policy=stats.mean,
        stderr=stats.stderr,
        tail_std=stats.std,
        batch_autocorrelation=stats.batch_autocorrelation,
        trajectory=np.stack(records),
        record_steps=np.asarray(record_steps),
        predicted=predicted,
        gap=gap,
        distance=distance,
        metrics=metrics,
        config=config,
        algo=algo,
        problem=problem,
        seconds=seconds,
        outputs_per_second=run_steps * n_ctx * n_groups * g / seconds if seconds > 0 else math.inf,
    )
