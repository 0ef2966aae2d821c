"""Exact answer probabilities by teacher forcing, sampling at temperature 1, token log-probs.

pi(answer | question) = prod_t pi(a_t | question, a_<t): one forward pass over every
(question, candidate) pair at once. The "anything else" class gets 1 - sum over candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from grpo_align.errors import InputError
from grpo_align.lm.task import ANSWER_TOKENS, Task
from grpo_align.lm.tokenizer import UNK

__all__ = [
    "AnswerProbabilities",
    "Completions",
    "answer_ids",
    "answer_probabilities",
    "candidate_tokens",
    "encode_prompts",
    "sample_completions",
    "through_first_eos",
    "token_logprobs",
]


def encode_prompts(tokenizer, task: Task) -> torch.Tensor:
    """Prompt token ids, (C, P); every prompt has the same length by construction."""
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in task.prompts]
    if len({len(i) for i in ids}) != 1:
        raise InputError("task", "prompts must all have the same number of tokens")
    return torch.tensor(ids, dtype=torch.long)


def answer_ids(tokenizer, text: str) -> list[int]:
    """Token ids of an answer: its words, then <eos>; refuses words outside the vocabulary."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids or tokenizer.convert_tokens_to_ids(UNK) in ids:
        raise InputError("candidates", f"{text!r} is not a sequence of vocabulary words")
    return [*ids, tokenizer.eos_token_id]


def candidate_tokens(tokenizer, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate answers as token ids (C, K, T) (words, <eos>, then <eos> padding) and a (C, K)
    validity mask. T is the longest candidate's length (``ANSWER_TOKENS`` for one-word answers)."""
    n_ctx, n_cand = len(task), task.max_candidates
    ids = {(c, k): answer_ids(tokenizer, cand) for c, q in enumerate(task.questions) for k, cand in enumerate(q.candidates)}  # fmt: skip
    width = max(ANSWER_TOKENS, *(len(v) for v in ids.values()))
    out = torch.full((n_ctx, n_cand, width), tokenizer.eos_token_id, dtype=torch.long)
    valid = torch.zeros((n_ctx, n_cand), dtype=torch.bool)
    for (c, k), row in ids.items():
        out[c, k, : len(row)] = torch.tensor(row)
        valid[c, k] = True
    return out, valid


def through_first_eos(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 up to and including the first <eos> of each row (the tokens of the answer), same shape."""
    is_eos = (tokens == eos_id).to(torch.long)
    before = is_eos.cumsum(-1) - is_eos  # <eos> tokens strictly before each position
    return (before == 0).to(torch.float64)


def token_logprobs(model, prompt_ids: torch.Tensor, completion_ids: torch.Tensor) -> torch.Tensor:
    """log pi(completion token t | prompt, earlier tokens), (B, T), float64.

    ``prompt_ids`` (B, P) and ``completion_ids`` (B, T); tokens after <eos> get a value too
    and must be masked by the caller.
    """
    n_prompt = prompt_ids.shape[1]
    inputs = torch.cat([prompt_ids, completion_ids], dim=1)  # (B, P+T)
    logits = model(input_ids=inputs, attention_mask=torch.ones_like(inputs)).logits[
        :, n_prompt - 1 : -1
    ]  # (B, T, V): the logits that predict each completion token
    logp = torch.log_softmax(logits.double(), dim=-1)
    return logp.gather(-1, completion_ids[..., None]).squeeze(-1)


@dataclass(frozen=True)
class AnswerProbabilities:
    """Exact answer probabilities of a model on a task.

    Attributes
    ----------
    probs : (C, K) pi(candidate | question); 0 where a question has fewer than K candidates.
    other : (C,) 1 - sum of ``probs``: every other completion.
    eos : (C, K) pi(<eos> | question, candidate word); 1 - eos is the mass by which the
        token-level penalty's per-node fixed point can differ from the sequence-level one
        (docs/lm.md).
    valid : (C, K) which candidates exist.
    """

    probs: np.ndarray
    other: np.ndarray
    eos: np.ndarray
    valid: np.ndarray

    def ragged(self) -> list[list[float]]:
        """Per question: candidate probabilities followed by the "anything else" mass."""
        return [[*list(self.probs[c, self.valid[c]]), float(self.other[c])] for c in range(len(self.other))]

    def correct(self, task: Task) -> np.ndarray:
        """pi(correct answer | question), (C,)."""
        return self.probs[np.arange(len(task)), task.correct_index()]

    def __repr__(self) -> str:
        return (
            f"AnswerProbabilities(questions={len(self.other)}, other in [{self.other.min():.3g}, {self.other.max():.3g}], "
            f"min eos={self.eos[self.valid].min():.4f})"
        )


@torch.no_grad()
def answer_probabilities(
    model,
    tokenizer,
    task: Task,
    prompt_ids: torch.Tensor | None = None,
    candidates: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> AnswerProbabilities:
    """Teacher-forced pi(answer | question) for every candidate, batched over all pairs."""
    if prompt_ids is None:
        prompt_ids = encode_prompts(tokenizer, task)
    cand, valid = candidate_tokens(tokenizer, task) if candidates is None else candidates
    n_ctx, n_cand, n_tok = cand.shape
    prompts = prompt_ids[:, None, :].expand(n_ctx, n_cand, -1).reshape(n_ctx * n_cand, -1)
    lp = token_logprobs(model, prompts, cand.reshape(n_ctx * n_cand, n_tok)).reshape(n_ctx, n_cand, n_tok)
    mask = through_first_eos(cand, int(tokenizer.eos_token_id))
    probs = torch.where(valid, (lp * mask).sum(-1).exp(), torch.zeros((), dtype=lp.dtype)).numpy()
    # pi(<eos> | question, answer words): the last token of each answer
    last = (mask.sum(-1).to(torch.long) - 1)[..., None]
    eos = torch.where(valid, lp.gather(-1, last).squeeze(-1).exp(), torch.ones((), dtype=lp.dtype)).numpy()
    other = np.clip(1.0 - probs.sum(axis=1), 0.0, 1.0)
    return AnswerProbabilities(probs=probs, other=other, eos=eos, valid=valid.numpy())


@dataclass(frozen=True)
class Completions:
    """G sampled completions per question, flattened question-major: row i answers ``question[i]``."""

    question: torch.Tensor  # (B,)
    tokens: torch.Tensor  # (B, T), <eos> after the end
    mask: torch.Tensor  # (B, T), 1 up to and including the first <eos>


@torch.no_grad()
def sample_completions(
    model, prompt_ids: torch.Tensor, group_size: int, max_new_tokens: int, eos_id: int, generator: torch.Generator
) -> Completions:
    """Sample exactly from pi at temperature 1 (no top-k, no top-p), G per question.

    The first token depends on the question only, so its distribution is computed once
    per question and sampled G times.
    """
    n_ctx = prompt_ids.shape[0]
    question = torch.arange(n_ctx).repeat_interleave(group_size)
    logits = model(input_ids=prompt_ids, attention_mask=torch.ones_like(prompt_ids)).logits[:, -1]  # (C, V)
    probs = torch.softmax(logits.double(), dim=-1)
    first = torch.multinomial(probs, group_size, replacement=True, generator=generator).reshape(-1)  # (C*G,)
    tokens = [first]
    done = first == eos_id
    seqs = torch.cat([prompt_ids[question], first[:, None]], dim=1)
    for _ in range(1, max_new_tokens):
        probs = torch.softmax(
            model(input_ids=seqs, attention_mask=torch.ones_like(seqs)).logits[:, -1].double(), dim=-1
        )
        nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
        tokens.append(nxt)
        done = done | (nxt == eos_id)
        seqs = torch.cat([seqs, nxt[:, None]], dim=1)
    tokens_t = torch.stack(tokens, dim=1)  # (B, T)
    is_eos = (tokens_t == eos_id).long()
    # valid up to and including the first <eos>: no <eos> strictly before position t
    before = torch.cumsum(is_eos, dim=1) - is_eos
    mask = (before == 0).double()
    return Completions(question=question, tokens=tokens_t, mask=mask)
