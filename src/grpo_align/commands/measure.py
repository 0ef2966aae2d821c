"""``grpo-align measure``: sample n completions per prompt and write the STATS file ``predict`` reads.

    grpo-align measure [--model PATH] [--prompts FILE] [--reward module:function | --answer-column COL]
                       [--n N] [--batch-size B] [--seed S] --out STATS

Without ``--model`` the built-in tiny model (shipped with the package, the same on every
CPU: ``grpo_align.lm.builtin``) is sampled; without ``--prompts`` the built-in task's questions, scored by exact match with
their answers. With a prompts file (JSON Lines or CSV: ``prompt``, optional ``prompt_id``)
the reward is ``--reward module:function``, called as ``function(prompt, completion, row)``,
or exact match against ``--answer-column`` (default ``answer`` when the file has one).
Writes STATS (``.jsonl`` or ``.csv``): ``prompt_id, n, correct`` for 0/1 rewards, else
``prompt_id, rewards``. Exit status 0, or 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", type=Path, default=None, help="a local transformers causal LM folder (default: the built-in model)"
    )
    parser.add_argument(
        "--prompts", type=Path, default=None, help="prompts: .jsonl or .csv (default: the built-in task's questions)"
    )
    parser.add_argument("--prompt-column", default="prompt", help="column of the prompt text (default prompt)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--reward", default=None, help="module:function called as function(prompt, completion, row)")
    group.add_argument("--answer-column", default=None, help="reward 1 for an exact match with this column, else 0")
    parser.add_argument("--n", type=int, default=16, help="completions sampled per prompt (default 16)")
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per generate call (default 256)")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="completion length limit (default: 2 for the built-in task, else 256)",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: 1 for the built-in model, else torch's)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the STATS file to write: .jsonl or .csv")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _check(args: argparse.Namespace) -> None:
    from grpo_align.errors import InputError

    if args.n < 1:
        raise InputError("--n", f"expected an integer >= 1, got {args.n}")
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError("--batch-size", f"expected an integer >= 1, got {args.batch_size}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise InputError("--max-new-tokens", f"expected an integer >= 1, got {args.max_new_tokens}")
    if not args.out.name.lower().endswith((".jsonl", ".ndjson", ".csv")):
        raise InputError("--out", f"{args.out}: expected a .jsonl or .csv file name")
    if args.out.is_dir():
        raise InputError("--out", f"{args.out} is a folder; expected a .jsonl or .csv file name")
    if args.threads is not None and args.threads < 1:
        raise InputError("--threads", f"expected an integer >= 1, got {args.threads}")
    if args.model is not None and args.prompts is None:
        raise InputError("--prompts", "required with --model (the built-in questions suit only the built-in model)")
    if args.prompts is None and (args.reward is not None or args.answer_column is not None):
        raise InputError(
            "--prompts", "the built-in task has its own answers; --reward and --answer-column need --prompts"
        )


def run(args: argparse.Namespace) -> int:
    from grpo_align.extras import require

    require("lm", "grpo-align measure")
    _check(args)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from grpo_align.errors import InputError
    from grpo_align.lm.measure import (
        DEFAULT_BATCH_SIZE,
        PromptSet,
        builtin_model,
        builtin_prompts,
        exact_match,
        load_model,
        load_prompts,
        load_reward,
        sample_rewards,
        stats_records,
        write_stats,
    )
    from grpo_align.lm.task import ANSWER_TOKENS

    start = time.perf_counter()
    err = Console(stderr=True)
    # the reward and the prompts first: a typo costs nothing
    reward_name = "exact match"
    prompts: PromptSet | None
    if args.prompts is None:
        prompts = None
        reward = exact_match("answer")
    elif args.reward is not None:
        reward = load_reward(args.reward)
        reward_name = args.reward
        prompts = load_prompts(args.prompts, args.prompt_column)
    else:
        column = args.answer_column
        if column is None:
            probe = load_prompts(args.prompts, args.prompt_column)
            if "answer" not in probe.rows[0]:
                raise InputError(
                    "--reward", "give --reward module:function or --answer-column COL (no 'answer' column)"
                )
            column = "answer"
        reward = exact_match(column)
        reward_name = f"exact match with column {column!r}"
        prompts = load_prompts(args.prompts, args.prompt_column, required=(column,))

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar, ours
    if args.threads is not None or args.model is None:
        # one thread is fastest for the tiny built-in model
        torch.set_num_threads(args.threads or 1)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.model is None:
        task, tokenizer, model = builtin_model()
        if prompts is None:
            prompts = builtin_prompts(task)
        max_new = args.max_new_tokens or ANSWER_TOKENS
        source = "the built-in model"
    else:
        model, tokenizer = load_model(args.model)
        max_new = args.max_new_tokens or 256
        source = str(args.model)
    if prompts is None:  # only with --model, which _check refuses without --prompts
        raise InputError("--prompts", "required with --model")
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise InputError("--device", f"cannot use {device!r}: {' '.join(str(exc).split())}") from None

    with Progress(
        TextColumn("measure"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=args.quiet,
    ) as bar:
        job = bar.add_task("measure", total=len(prompts) * args.n)
        rewards = sample_rewards(
            model,
            tokenizer,
            prompts,
            reward,
            args.n,
            max_new_tokens=max_new,
            batch_size=args.batch_size or DEFAULT_BATCH_SIZE,
            seed=args.seed,
            reward_name=reward_name,
            on_batch=lambda done, total: bar.update(job, completed=done),
        )
    records = stats_records(prompts.prompt_id, rewards)
    write_stats(args.out, records)
    kind = "n, correct" if "correct" in records[0] else "rewards"
    print(
        f"{len(prompts)} prompts x {args.n} completions from {source}, reward {reward_name}: "
        f"mean reward {rewards.mean():.4f}; wrote {args.out} ({kind})"
    )
    sys.stdout.flush()
    # the time on stderr: stdout is the same for the same model, prompts and seed
    err.print(f"measured in {time.perf_counter() - start:.1f} s", highlight=False)
    return 0
