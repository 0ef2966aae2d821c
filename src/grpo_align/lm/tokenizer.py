"""A word-level tokenizer built in code: fixed vocabulary, nothing downloaded.

It is a ``transformers.PreTrainedTokenizerFast`` around a ``tokenizers`` WordLevel model, so
``save_pretrained`` / ``AutoTokenizer.from_pretrained`` round-trip it offline (TRL reloads it
that way). The only special token is ``<eos>``, which is also the padding token: an answer
is complete when it ends in ``<eos>``, and decoding with ``skip_special_tokens=True`` (what
TRL does) maps exactly one token sequence to each candidate's text. ``<unk>`` is a plain
token on purpose: were it special, ``[yes, <unk>]`` would decode to "yes" and a sequence of
the "anything else" class would earn the correct answer's reward.
"""

from __future__ import annotations

from collections.abc import Iterable

from grpo_align.errors import InputError

__all__ = ["EOS", "UNK", "build_tokenizer"]

EOS = "<eos>"
UNK = "<unk>"


def build_tokenizer(words: Iterable[str]):
    """A word-level ``PreTrainedTokenizerFast`` over ``<eos>``, ``<unk>`` and ``words`` (in order).

    Text is split on whitespace; decoding joins tokens with single spaces.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {EOS: 0, UNK: 1}
    for word in words:
        if not word or any(ch.isspace() for ch in word):
            raise InputError("words", f"expected non-empty words without spaces, got {word!r}")
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # WordPiece's decoder with an unused prefix joins tokens with spaces and changes nothing else
    core.decoder = decoders.WordPiece(prefix="\u0000##", cleanup=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=EOS)
    tok.padding_side = "left"  # generation-style batches (TRL pads prompts on the left)
    return tok
