"""A tiny GPT-2 built from its configuration (nothing downloaded).

Dropout is off everywhere: the theory needs the model that samples to be the model whose
log-probabilities enter the loss, and dropout would make them differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grpo_align.errors import InputError

__all__ = ["ModelConfig", "build_model", "count_parameters", "save_pretrained"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the tiny causal LM."""

    n_layer: int = 2
    """transformer blocks"""
    n_embd: int = 64
    """width"""
    n_head: int = 2
    """attention heads"""
    n_positions: int = 16
    """longest sequence (prompt + completion)"""

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_embd", "n_head", "n_positions"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(name, f"expected a positive integer, got {v!r}")
        if self.n_embd % self.n_head:
            raise InputError("n_head", f"must divide n_embd={self.n_embd}, got {self.n_head}")


def build_model(tokenizer, config: ModelConfig = ModelConfig(), seed: int = 0):
    """A freshly initialised ``GPT2LMHeadModel`` for ``tokenizer`` (seeded)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    cfg._attn_implementation = "sdpa"
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg)
    # exact sampling from pi: no top-k / top-p filtering in generate() either
    model.generation_config.do_sample = True
    model.generation_config.top_k = 0
    model.generation_config.top_p = 1.0
    model.generation_config.temperature = 1.0
    return model


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save_pretrained(model, tokenizer, path: str | Path) -> Path:
    """Save model and tokenizer so that ``from_pretrained(path)`` reloads both offline.

    The config's ``_name_or_path`` is set to ``path``: TRL rebuilds its reference model from it.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.config._name_or_path = str(path.resolve())
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
