"""Measure a model's per-prompt rewards by sampling: the STATS file that ``grpo-align predict`` reads.

For each prompt, ``n`` completions are sampled from a transformers causal LM at
temperature 1 with no top-k / top-p filtering (the policy GRPO samples from), scored by a
reward function ``reward(prompt, completion, row) -> float``, and summarised per prompt:
``n`` and ``correct`` when every reward is 0 or 1, otherwise the list of ``rewards``
(``grpo_align.predict.stats``). Prompts are tokenized as TRL's ``GRPOTrainer`` does
(left padding, no special tokens added) and completions decoded with
``skip_special_tokens=True``, so the reward sees the text a GRPO run would score.

The default model and task are the project's own (``grpo_align.lm``): the tiny GPT-2
fitted to noisy labels, shipped with the package (``lm.builtin``; ``lm.experiment.build_reference``
loads it), and its questions with their exact-match answers.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import io
import json
import math
import numbers
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grpo_align.errors import InputError
from grpo_align.files import TextLines, atomic_write_jsonl, atomic_write_text, loads_json, read_csv

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "PromptSet",
    "RewardFn",
    "builtin_model",
    "builtin_prompts",
    "exact_match",
    "load_model",
    "load_prompts",
    "load_reward",
    "sample_rewards",
    "stats_records",
    "write_stats",
]

#: sequences (prompt copies) per ``generate`` call
DEFAULT_BATCH_SIZE = 256

#: ``reward(prompt, completion, row) -> float``
RewardFn = Callable[[str, str, Mapping[str, Any]], float]


@dataclass(frozen=True)
class PromptSet:
    """Prompts to measure, with their ids and full rows (what a reward function sees)."""

    prompt_id: list[str]
    prompt: list[str]
    rows: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.prompt)


# ---------------------------------------------------------------- prompts
def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line, row) of a JSON Lines or CSV file, streamed (``files.TextLines``)."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson", ".json")):
        with TextLines(path) as lines:
            for line in lines:
                if not line.strip():
                    continue
                where = f"{path}, line {lines.line_no}"
                row = loads_json(line, where, "expected one object per line", position=False)
                if not isinstance(row, dict):
                    raise InputError(where, "expected a JSON object per line")
                yield lines.line_no, row
    elif name.endswith((".csv", ".tsv")):
        _, rows, lines = read_csv(path)
        with lines:
            yield from rows
    else:
        raise InputError("--prompts", f"{path}: unknown format; expected .jsonl or .csv")


def load_prompts(path: str | Path, prompt_column: str = "prompt", required: Sequence[str] = ()) -> PromptSet:
    """Read a prompts file (JSON Lines or CSV): one row per prompt.

    ``prompt_column`` holds the prompt text; ``prompt_id`` the id (default: the 1-based
    line number); every column in ``required`` (the reference-answer column) must be
    present in every row. The file is read as ``predict`` reads STATS (``files.TextLines``,
    ``files.read_csv``): a regular UTF-8 file, streamed, a column or key twice refused.
    Raises a one-line ``InputError`` naming the file, line and column.
    """
    path = Path(path)
    if not path.exists():  # a FIFO or a device: refused as such when opened
        raise InputError("--prompts", f"{path}: no such file")
    ids: list[str] = []
    prompts: list[str] = []
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for line_no, row in _read_rows(path):
        for col in (prompt_column, *required):
            if row.get(col) is None:
                present = ", ".join(sorted(row)) or "none"
                raise InputError(f"{path}, line {line_no}", f"no column {col!r} (columns: {present})")
        prompt = row[prompt_column]
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"{path}, line {line_no}, column {prompt_column}", "expected a non-empty string")
        pid = str(row.get("prompt_id", line_no))
        if pid in seen:
            raise InputError(f"{path}, line {line_no}, column prompt_id", f"{pid!r} appears twice")
        seen.add(pid)
        ids.append(pid)
        prompts.append(prompt)
        rows.append(row)
    if not prompts:
        raise InputError("--prompts", f"{path} holds no prompts")
    return PromptSet(ids, prompts, rows)


# ---------------------------------------------------------------- rewards
def exact_match(column: str) -> RewardFn:
    """1 when the completion, stripped of surrounding whitespace, equals ``row[column]``, else 0."""

    def reward(prompt: str, completion: str, row: Mapping[str, Any]) -> float:
        return float(completion.strip() == str(row[column]).strip())

    reward.__qualname__ = f"exact_match({column!r})"
    return reward


def load_reward(spec: str) -> RewardFn:
    """The function named by ``module:function`` (or ``path/to/file.py:function``).

    The current folder is searched first, so a ``rewards.py`` beside the data imports as
    ``rewards:fn`` from the console script too.
    """
    module_name, sep, func_name = spec.rpartition(":")
    if not sep or not module_name or not func_name:
        raise InputError("--reward", f"expected module:function (e.g. my_rewards:score), got {spec!r}")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise InputError("--reward", f"{file}: no such file")
            mspec = importlib.util.spec_from_file_location(file.stem, file)
            assert mspec is not None and mspec.loader is not None
            module = importlib.util.module_from_spec(mspec)
            mspec.loader.exec_module(module)
        else:
            cwd = os.getcwd()
            added = cwd not in sys.path
            if added:
                sys.path.insert(0, cwd)
            try:
                module = importlib.import_module(module_name)
            finally:
                if added:
                    sys.path.remove(cwd)
    except InputError:
        raise
    except ModuleNotFoundError as exc:
        raise InputError("--reward", f"no module {exc.name!r} (from {spec!r}); is it on PYTHONPATH?") from None
    except Exception as exc:  # the user's module failed while importing
        raise InputError(
            "--reward", f"importing {module_name!r} raised {type(exc).__name__}: {_one_line(exc)}"
        ) from None
    func = getattr(module, func_name, None)
    if func is None:
        raise InputError("--reward", f"module {module_name!r} has no function {func_name!r}")
    if not callable(func):
        raise InputError("--reward", f"{spec} is not callable")
    out: RewardFn = func
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _score(reward: RewardFn, name: str, prompt: str, completion: str, row: Mapping[str, Any], pid: str) -> float:
    """``reward(prompt, completion, row)`` as a finite float, or a one-line ``InputError``."""
    try:
        value = reward(prompt, completion, row)
    except Exception as exc:
        raise InputError("--reward", f"{name} raised {type(exc).__name__} on prompt {pid}: {_one_line(exc)}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise InputError("--reward", f"{name} returned {value!r} on prompt {pid}; expected a finite number")
    return float(value)


# ---------------------------------------------------------------- models
def builtin_model(cache: str | Path | None = None, config: Any = None) -> tuple[Any, Any, Any]:
    """(task, tokenizer, reference model) of the built-in experiment.

    ``config`` is an ``LMExperimentConfig``; with its default reference settings (the
    default) the model is the one shipped with the package, checked against its manifest.
    Other settings fit a model, saved in ``cache/reference`` when ``cache`` is given and
    reloaded from there while the settings are unchanged.
    """
    from grpo_align.lm.experiment import LMExperimentConfig, build_reference

    return build_reference(
        config if config is not None else LMExperimentConfig(), Path(cache) if cache is not None else None
    )


def builtin_prompts(task: Any) -> PromptSet:
    """The built-in task's questions: ids ``q00``, ``q01``, ...; ``answer`` the correct candidate."""
    width = len(str(len(task) - 1))
    ids = [f"q{c:0{width}d}" for c in range(len(task))]
    rows = [
        {"prompt_id": pid, "prompt": q.prompt, "answer": q.candidates[q.correct]}
        for pid, q in zip(ids, task.questions, strict=True)
    ]
    return PromptSet(ids, [r["prompt"] for r in rows], rows)


def load_model(path: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer) from a local folder (``from_pretrained``, no download)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path)
    if not folder.is_dir():
        raise InputError("--model", f"{folder}: no such folder; expected a local model saved with save_pretrained")
    if not (folder / "config.json").is_file():
        raise InputError("--model", f"{folder} has no config.json; expected a folder written by save_pretrained")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError("--model", f"cannot load {folder}: {_one_line(exc)}") from None
    return model.eval(), tokenizer


# ---------------------------------------------------------------- sampling
def _generation_config(tokenizer: Any, max_new_tokens: int) -> Any:
    """Exact sampling at temperature 1: every filter that would change the distribution off."""
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def sample_rewards(
    model: Any,
    tokenizer: Any,
    prompts: PromptSet,
    reward: RewardFn,
    n: int,
    *,
    max_new_tokens: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    reward_name: str = "the reward function",
    on_batch: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Rewards of ``n`` completions per prompt sampled at temperature 1, shape (prompts, n).

    The ``len(prompts) * n`` sequences are generated ``batch_size`` at a time (a batch may
    mix prompts; they are left-padded). Seeded: the same arguments give the same rewards.
    ``on_batch(done, total)`` reports completions sampled so far.
    """
    import torch

    if not isinstance(n, int) or n < 1:
        raise InputError("--n", f"expected an integer >= 1, got {n!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError("--batch-size", f"expected an integer >= 1, got {batch_size!r}")
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise InputError("--model", "the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    gen_config = _generation_config(tokenizer, max_new_tokens)
    device = next(model.parameters()).device
    total = len(prompts) * n
    out = np.empty(total)
    owner = np.repeat(np.arange(len(prompts)), n)  # flat sequence i answers prompt owner[i]
    model.eval()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, total, batch_size):
            idx = owner[start : start + batch_size]
            enc = tokenizer(
                [prompts.prompt[i] for i in idx],
                return_tensors="pt",
                padding=True,
                padding_side="left",
                add_special_tokens=False,
            )
            ids = enc["input_ids"].to(device)
            seqs = model.generate(
                input_ids=ids, attention_mask=enc["attention_mask"].to(device), generation_config=gen_config
            )
            texts = tokenizer.batch_decode(seqs[:, ids.shape[1] :].cpu(), skip_special_tokens=True)
            for j, (i, text) in enumerate(zip(idx, texts, strict=True)):
                out[start + j] = _score(
                    reward, reward_name, prompts.prompt[i], text, prompts.rows[i], prompts.prompt_id[i]
                )
            if on_batch is not None:
                on_batch(min(start + batch_size, total), total)
    return out.reshape(len(prompts), n)


# ---------------------------------------------------------------- STATS
def stats_records(prompt_id: Sequence[str], rewards: np.ndarray) -> list[dict[str, Any]]:
    """One STATS row per prompt: ``n`` and ``correct`` when every reward is 0 or 1, else ``rewards``.

    A file holds one kind (``predict.stats``), so a single reward outside {0, 1} makes every
    row a ``rewards`` row.
    """
    rewards = np.asarray(rewards, dtype=float)
    if np.isin(rewards, (0.0, 1.0)).all():
        return [
            {"prompt_id": pid, "n": int(r.size), "correct": int(r.sum())}
            for pid, r in zip(prompt_id, rewards, strict=True)
        ]
    return [{"prompt_id": pid, "rewards": [float(x) for x in r]} for pid, r in zip(prompt_id, rewards, strict=True)]


def write_stats(path: str | Path, records: list[dict[str, Any]]) -> Path:
    """Write STATS rows atomically: JSON Lines (``.jsonl``) or CSV (``.csv``; ``rewards`` as a JSON list)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        atomic_write_jsonl(path, records)
    elif name.endswith(".csv"):
        buf = io.StringIO()
        fields = list(records[0]) if records else ["prompt_id", "n", "correct"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for rec in records:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in rec.items()})
        atomic_write_text(path, buf.getvalue())
    else:
        raise InputError("--out", f"{path}: expected a .jsonl or .csv file name")
    return path
