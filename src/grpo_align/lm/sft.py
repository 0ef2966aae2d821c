"""The supervised phase: fit the model to noisy labels, giving the reference policy.

The noisy labels of a question form a multiset of answer words; minimising the expected
cross-entropy over it (every distinct (question, answer) pair once, weighted by its count)
is the same as training on the multiset, and its minimiser is the label frequencies. So the
reference model's probability of the correct answer spreads across questions as the labels
do (``task.noisy_labels``). Training is full-batch Adam: a few hundred steps of one small
forward pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from grpo_align.errors import InputError
from grpo_align.lm.probs import encode_prompts, through_first_eos, token_logprobs
from grpo_align.lm.task import Task

__all__ = ["SFTConfig", "SFTResult", "supervised_finetune"]


@dataclass(frozen=True)
class SFTConfig:
    steps: int = 400
    """full-batch Adam steps"""
    lr: float = 3e-3
    """Adam learning rate"""
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 0:
            raise InputError("steps", f"expected an integer >= 0, got {self.steps!r}")
        if not self.lr > 0:
            raise InputError("lr", f"expected a positive number, got {self.lr!r}")


@dataclass(frozen=True)
class SFTResult:
    losses: np.ndarray
    """expected cross-entropy per step"""
    entropy: float
    """its floor: the entropy of the label frequencies (mean over questions, nats per answer)"""
    seconds: float

    def __repr__(self) -> str:
        return f"SFTResult(loss={self.losses[-1]:.4f}, floor={self.entropy:.4f}, steps={len(self.losses)}, seconds={self.seconds:.1f})"


def supervised_finetune(
    model, tokenizer, task: Task, labels: list[dict[str, int]], config: SFTConfig = SFTConfig()
) -> SFTResult:
    """Fit ``model`` in place to the label counts (one dict {answer word: count} per question)."""
    if len(labels) != len(task):
        raise InputError("labels", f"expected one label dict per question ({len(task)}), got {len(labels)}")
    start = time.perf_counter()
    prompt_ids = encode_prompts(tokenizer, task)
    rows, answers, weights, entropy = [], [], [], 0.0
    for c, counts in enumerate(labels):
        total = sum(counts.values())
        freq = np.array(list(counts.values()), dtype=float) / total
        entropy += float(-(freq * np.log(freq)).sum()) / len(task)
        for word, n in counts.items():
            rows.append(c)
            answers.append(tokenizer(word, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
            weights.append(n / total / len(task))
    prompts = prompt_ids[torch.tensor(rows)]
    # answers of different token lengths: padded with <eos>, masked after the first
    width = max(len(a) for a in answers)
    targets = torch.tensor([a + [tokenizer.eos_token_id] * (width - len(a)) for a in answers], dtype=torch.long)
    valid = through_first_eos(targets, int(tokenizer.eos_token_id))
    w = torch.tensor(weights, dtype=torch.float64)
    torch.manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    losses = []
    for _ in range(config.steps):
        loss = -((token_logprobs(model, prompts, targets) * valid).sum(-1) * w).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return SFTResult(losses=np.array(losses), entropy=entropy, seconds=time.perf_counter() - start)
