"""GRPO on a causal language model, on the shared loss ``grpo_align.training.grpo_loss``.

One step, as in GRPO (cleanRL style, the loop is ``train_lm``):

1. sample G completions per question from pi_old at temperature 1 (``sample_completions``);
2. decode them and score the text with the task's reward;
3. log-probabilities of the frozen reference model and of pi_old;
4. group advantages with ``ga.group_advantages`` (the one advantage definition), of the
   rewards less beta k(sequence log-ratio) when ``algo.penalty_in == "reward"``
   (``training.loss.penalised_rewards``, THEORY.md eq. 10.7);
5. ``inner_iterations`` optimiser steps on ``grpo_loss`` (token-level ratios, clipping,
   penalty, the aggregation ``algo.aggregation``); the first inner step runs at
   theta = theta_old, so its log-probabilities are pi_old's.

Speed: a group holds few distinct completions (a question has a handful of likely
answers), so each step scores the distinct (question, completion) rows once and gathers
them back; gradients flow through the gather, so the loss is unchanged.

Every ``eval_every`` steps the exact answer probabilities (teacher forcing) are recorded;
the end point is their Polyak average over the tail, with a batch-means standard error.
Checkpoints (atomic) hold the model, optimiser, sampler state and records, so a resumed run
finishes bit-for-bit like an uninterrupted one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from grpo_align.errors import InputError
from grpo_align.files import atomic_write_jsonl
from grpo_align.lm.probs import (
    AnswerProbabilities,
    answer_probabilities,
    candidate_tokens,
    encode_prompts,
    sample_completions,
    token_logprobs,
)
from grpo_align.lm.task import ANSWER_TOKENS, Task
from grpo_align.theory.preference import group_advantages
from grpo_align.theory.spec import GRPO
from grpo_align.training import metrics as metric
from grpo_align.training.checkpoint import load_checkpoint, save_checkpoint
from grpo_align.training.config import RunConfig, check_float, check_int
from grpo_align.training.loss import grpo_loss, penalised_rewards
from grpo_align.training.stats import tail_statistics

__all__ = ["LMTrainConfig", "LMTrainResult", "train_lm"]


def _tail_records(steps: int, tail_fraction: float, eval_every: int) -> int:
    """Records (one every ``eval_every`` steps, step 0 included) from the tail's first step on."""
    start = round(steps * (1 - tail_fraction))
    return len(range(-(-start // eval_every) * eval_every, steps + 1, eval_every))


@dataclass(frozen=True)
class LMTrainConfig(RunConfig):
    """How an LM GRPO run is carried out (what is trained is the ``GRPO`` spec).

    The shared fields (steps, lr, inner_iterations, clip range, seed, tail, n_batches,
    checkpoint_every) are ``RunConfig``'s, with defaults for the tiny LM.
    """

    steps: int = 600
    """GRPO steps; every step samples G completions for every question"""
    lr: float = 1e-3
    """Adam learning rate"""
    tail_fraction: float = 0.3
    """fraction of the run at the end over which the answer probabilities are averaged"""
    n_batches: int = 6
    """batches of the tail records for the batch-means standard error"""
    checkpoint_every: int = 100
    """checkpoint every this many steps (when an output directory is given); 0: never"""
    warmup_steps: int = 20
    """the learning rate rises linearly from 0 over these first steps (Adam's first steps are large)"""
    max_grad_norm: float = 1.0
    """gradient-norm clip per optimiser step (0: none), as TRL's default; it rescales the
    gradient, so it cannot move the points where the expected gradient vanishes"""
    lr_final: float = 0.25
    """the learning rate decays linearly over the tail to lr * lr_final (less noise at the end point)"""
    decay_steps: int = 0
    """0: the decay spans the averaged tail; > 0: it spans the ``decay_steps`` steps before the
    tail, which then runs at lr * lr_final throughout. The tail average of the answer
    probabilities carries a bias of the order of the fluctuations' variance (a curved
    function of the parameters, averaged), which scales with the learning rate, while its
    standard error depends on the tail's length, not on the learning rate (docs/lm.md)"""
    groups_per_question: int = 1
    """independent groups of G completions sampled per question per step; more groups
    average the gradient noise (each group is normalised on its own, so the expected
    gradient and its zeros are unchanged), which shrinks the tail average's noise-induced
    bias at a given learning rate"""
    max_new_tokens: int = ANSWER_TOKENS
    """completion length limit (answers are ANSWER_TOKENS long)"""
    eval_every: int = 10
    """record the exact answer probabilities every this many steps"""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("warmup_steps", check_int("warmup_steps", self.warmup_steps, 0))
        self._set("max_grad_norm", check_float("max_grad_norm", self.max_grad_norm, 0.0))
        self._set("lr_final", check_float("lr_final", self.lr_final, 0.0, 1.0, open_low=True))
        self._set("decay_steps", check_int("decay_steps", self.decay_steps, 0))
        if self.decay_steps and self.decay_steps + self.warmup_steps > self.tail_start:
            raise InputError(
                "decay_steps",
                f"warm-up ({self.warmup_steps}) and decay ({self.decay_steps}) must end before the tail "
                f"starts (step {self.tail_start}); shorten them or the tail",
            )
        self._set("max_new_tokens", check_int("max_new_tokens", self.max_new_tokens, 1))
        self._set("groups_per_question", check_int("groups_per_question", self.groups_per_question, 1))
        self._set("eval_every", check_int("eval_every", self.eval_every, 1))
        if self.tail_records < self.n_batches:
            raise InputError(
                "steps",
                f"{self.steps} steps leave {self.tail_records} records in the averaged tail (one every "
                f"{self.eval_every} steps over the last {self.tail_fraction:.0%}), fewer than the {self.n_batches} "
                f"batches of its standard error; use steps >= {self.min_steps()}",
            )

    @property
    def tail_start(self) -> int:
        return round(self.steps * (1 - self.tail_fraction))

    @property
    def tail_records(self) -> int:
        return _tail_records(self.steps, self.tail_fraction, self.eval_every)

    def min_steps(self) -> int:
        """The fewest steps whose averaged tail holds ``n_batches`` records."""
        steps = self.n_batches
        while _tail_records(steps, self.tail_fraction, self.eval_every) < self.n_batches:
            steps += 1
        return steps

    def lr_at(self, step: int) -> float:
        """Linear warm-up, constant, then linear decay over the tail (``decay_steps`` 0) or
        over the ``decay_steps`` before it, the tail at ``lr * lr_final``."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / (self.warmup_steps + 1)
        start = self.tail_start - self.decay_steps if self.decay_steps else self.tail_start
        if step < start:
            return self.lr
        length = self.decay_steps if self.decay_steps else max(1, self.steps - self.tail_start)
        frac = min(1.0, (step - start) / length)
        return self.lr * (1 - (1 - self.lr_final) * frac)


@dataclass(frozen=True)
class LMTrainResult:
    """Outcome of ``train_lm``; probabilities are (C, K+1): candidates then "anything else".

    Attributes
    ----------
    policy : answer probabilities at the end.
    mean_policy : their average over the tail records (the measured end point).
    stderr : batch-means standard error of ``mean_policy`` (``training.stats.tail_statistics``).
    tail_std : standard deviation of the tail records (their fluctuation, not an error).
    batch_autocorrelation : lag-1 autocorrelation of the batch means (near 0: stderr is valid).
    trajectory : (records, C, K+1) answer probabilities at ``record_steps``.
    record_steps : steps of the records (0 = the start).
    metrics : one dict per step (``step`` and the ``training.metrics`` names), also in metrics.jsonl.
    seconds : wall-clock seconds of the run (summed over resumptions).
    completions_per_second : sampled completions per wall-clock second.
    """

    policy: np.ndarray
    mean_policy: np.ndarray
    stderr: np.ndarray
    tail_std: np.ndarray
    batch_autocorrelation: float
    trajectory: np.ndarray
    record_steps: np.ndarray
    metrics: list[dict[str, float]] = field(repr=False)
    seconds: float = 0.0
    completions_per_second: float = 0.0

    def __len__(self) -> int:
        """Number of contexts (questions)."""
        return int(self.policy.shape[0])

    def __repr__(self) -> str:
        return (
            f"LMTrainResult(steps={int(self.record_steps[-1])}, questions={self.policy.shape[0]}, "
            f"max stderr={self.stderr.max():.3g}, seconds={self.seconds:.1f})"
        )


def _table(probs: AnswerProbabilities) -> np.ndarray:
    """(C, K+1): candidate probabilities then the "anything else" mass."""
    return np.concatenate([probs.probs, probs.other[:, None]], axis=1)


def train_lm(
    policy,
    reference,
    tokenizer,
    task: Task,
    algo: GRPO,
    config: LMTrainConfig = LMTrainConfig(),
    *,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    stop_after: int | None = None,
) -> LMTrainResult:
    """Train ``policy`` (in place) with GRPO variant ``algo`` on ``task``; ``reference`` stays frozen.

    ``out_dir`` receives ``checkpoint.pt`` and ``metrics.jsonl``; with ``resume`` an existing
    checkpoint is continued. ``progress(step, metrics)`` is called after every step.
    ``stop_after`` ends the run early after that many steps (to test resuming).
    """
    if not isinstance(algo, GRPO):
        raise InputError("algo", "expected a grpo_align.GRPO")
    if algo.is_limit:
        raise InputError("group_size", "training needs a finite group size")
    start_time = time.perf_counter()
    group = int(algo.group_size)
    n_groups = config.groups_per_question
    eos = tokenizer.eos_token_id
    prompt_ids = encode_prompts(tokenizer, task)
    cands = candidate_tokens(tokenizer, task)
    n_ctx = len(task)
    reference.eval()  # frozen: only ever run under no_grad
    policy.eval()  # no dropout: the sampling policy is the trained one
    opt = torch.optim.Adam(policy.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    step = 0
    records: list[np.ndarray] = []
    record_steps: list[int] = []
    metrics: list[dict] = []
    done_seconds, n_completions = 0.0, 0  # carried over a resume, for the speed report
    ckpt = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    if ckpt is not None and resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        if state.get("config") != asdict(config) or state.get("algo") != asdict(algo):
            raise InputError("out_dir", f"{ckpt} belongs to a different run; remove it or use another directory")
        policy.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, record_steps, metrics = state["step"], state["record_steps"], state["metrics"]
        records = list(state["records"].numpy())
        done_seconds, n_completions = state["seconds"], state["completions"]
    if not records:
        records.append(_table(answer_probabilities(policy, tokenizer, task, prompt_ids, cands)))
        record_steps.append(0)

    def save() -> None:
        if ckpt is None:
            return
        state = dict(
            model=policy.state_dict(),
            optimizer=opt.state_dict(),
            generator=gen.get_state(),
            step=step,
            # a tensor, not numpy arrays: weights_only loading refuses numpy objects
            records=torch.from_numpy(np.stack(records)),
            record_steps=record_steps,
            metrics=metrics,
            config=asdict(config),
            algo=asdict(algo),
            seconds=done_seconds + time.perf_counter() - start_time,
            completions=n_completions,
        )
        save_checkpoint(ckpt, state)
        atomic_write_jsonl(ckpt.parent / "metrics.jsonl", metrics)

    while step < config.steps:
        for g in opt.param_groups:
            g["lr"] = config.lr_at(step)
        # 1. sample from pi_old
        # (groups_per_question groups of G per question: consecutive samples of one question)
        comp = sample_completions(policy, prompt_ids, group * n_groups, config.max_new_tokens, eos, gen)
        # 2. reward on the decoded text
        texts = tokenizer.batch_decode(comp.tokens, skip_special_tokens=True)
        rewards = task.rewards(comp.question.tolist(), texts).reshape(n_ctx * n_groups, group)
        # distinct rows, scored once
        rows = torch.cat([comp.question[:, None], comp.tokens], dim=1)
        uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
        u_prompts, u_tokens = prompt_ids[uniq[:, 0]], uniq[:, 1:]
        # 3. frozen reference
        with torch.no_grad():
            logp_ref = token_logprobs(reference, u_prompts, u_tokens)[inverse]
        # 4./5. inner optimiser steps; the first at theta_old gives pi_old's log-probabilities
        for it in range(config.inner_iterations):
            logp = token_logprobs(policy, u_prompts, u_tokens)[inverse]
            if it == 0:
                logp_old = logp.detach()
                # group advantages (THEORY.md section 2), of the penalised rewards (eq. 10.7)
                scored = (
                    penalised_rewards(rewards, logp_old, logp_ref, comp.mask, algo).reshape(n_ctx * n_groups, group)
                    if algo.penalty_in == "reward"
                    else rewards
                )
                adv = torch.as_tensor(group_advantages(scored, algo).reshape(-1), dtype=torch.float64)
            out = grpo_loss(
                logp,
                logp_old,
                logp_ref,
                adv,
                comp.mask,
                algo,
                clip_eps_low=config.clip_eps,
                clip_eps_high=config.clip_eps_high,
                max_length=config.max_new_tokens,
            )
            opt.zero_grad()
            out.loss.backward()
            if config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            opt.step()
        step += 1
        n_completions += comp.tokens.shape[0]
        m: dict[str, float] = {
            "step": step,
            metric.LOSS: out.loss.item(),
            metric.POLICY_LOSS: out.policy_loss.item(),
            metric.PENALTY: out.penalty.item(),
            metric.CLIP_FRACTION: out.clip_fraction.item(),
            metric.REWARD: float(rewards.mean()),
            metric.DISTINCT: int(uniq.shape[0]),
            metric.TOKENS: int(comp.mask.sum()),
            metric.LEARNING_RATE: config.lr_at(step - 1),
        }
        if step % config.eval_every == 0 or step == config.steps:
            table = _table(answer_probabilities(policy, tokenizer, task, prompt_ids, cands))
            records.append(table)
            record_steps.append(step)
            m[metric.P_CORRECT] = float(table[np.arange(n_ctx), task.correct_index()].mean())
        metrics.append(m)
        if progress is not None:
            progress(step, {**m, metric.SECONDS: time.perf_counter() - start_time})
        if (
            ckpt is not None
            and config.checkpoint_every
            and (step % config.checkpoint_every == 0 or step == config.steps)
        ):
            save()
        if stop_after is not None and step >= stop_after and step < config.steps:
            break

    traj = np.stack(records)
    steps_arr = np.array(record_steps)
    # a run stopped early (stop_after) has no tail: its last record, without an error
    tail = traj[steps_arr >= config.tail_start] if step == config.steps else traj[-1:]
    stats = tail_statistics(tail, config.n_batches)
    seconds = done_seconds + time.perf_counter() - start_time
    return LMTrainResult(
        policy=traj[-1],
        mean_policy=stats.mean,
        stderr=stats.stderr,
        tail_std=stats.std,
        batch_autocorrelation=stats.batch_autocorrelation,
        trajectory=traj,
        record_steps=steps_arr,
        metrics=metrics,
        seconds=seconds,
        completions_per_second=n_completions / seconds if seconds > 0 else 0.0,
    )
