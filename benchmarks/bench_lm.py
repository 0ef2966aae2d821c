"""Our LM GRPO trainer against TRL's GRPOTrainer: same tiny model, task and settings.

    python benchmarks/bench_lm.py [--steps 40] [--threads 1]

Each trainer runs in its own process (so peak memory is its own) from the same saved
reference model: 24 questions x G = 8 completions per step, beta = 0.5, k3 penalty,
sample std + 1e-4 (TRL's scale_rewards="group"), per-sequence mean (loss_type="grpo"),
Adam(W) at lr 1e-3 with grad-norm clip 1. Prints completions/s, completion tokens/s and
peak resident memory, and our/TRL ratios. The loss values agree batch for batch
(tests/test_trl.py::test_one_batch_same_loss_and_gradient_as_trl).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BETA, GROUP, LR = 0.5, 8, 1e-3


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def worker_ours(out: Path, steps: int) -> dict:
    import copy

    from grpo_align.lm.experiment import LMExperimentConfig, build_reference
    from grpo_align.lm.trainer import LMTrainConfig, train_lm
    from grpo_align.theory.spec import GRPO

    task, tok, ref = build_reference(LMExperimentConfig(), out)
    algo = GRPO(group_size=GROUP, beta=BETA, normalization="shift_scale", ddof=1, eps=1e-4, penalty="k3")
    config = LMTrainConfig(
        steps=steps,
        lr=LR,
        eval_every=steps,
        n_batches=2,
        tail_fraction=1.0,
        checkpoint_every=0,
        warmup_steps=0,
        lr_final=1.0,
    )
    start = time.perf_counter()
    res = train_lm(copy.deepcopy(ref), ref, tok, task, algo, config)
    seconds = time.perf_counter() - start
    return dict(
        seconds=seconds,
        completions=steps * len(task) * GROUP,
        tokens=sum(m["charts/tokens"] for m in res.metrics),
        loss=res.metrics[-1]["losses/loss"],
    )


def worker_trl(out: Path, steps: int) -> dict:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from grpo_align.lm.experiment import LMExperimentConfig, build_reference

    task, tok, _ = build_reference(LMExperimentConfig(), out)
    lengths: list[float] = []

    class Lengths(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                lengths.append(float(logs["completions/mean_length"]))

    args = GRPOConfig(
        output_dir=str(out / "trl"),
        use_cpu=True,
        bf16=False,
        report_to="none",
        beta=BETA,
        num_generations=GROUP,
        loss_type="grpo",
        use_bias_correction_kl=False,
        max_completion_length=2,
        per_device_train_batch_size=len(task) * GROUP,
        learning_rate=LR,
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        max_steps=steps,
        logging_steps=1,
        save_strategy="no",
        top_k=0,
    )
    data = Dataset.from_list([{"prompt": q.prompt, "question": i} for i, q in enumerate(task.questions)])

    def reward(prompts, completions, question, **kw):
        return [task.questions[int(q)].reward(t) for q, t in zip(question, completions, strict=False)]

    trainer = GRPOTrainer(
        model=str(out / "reference"),
        reward_funcs=reward,
        args=args,
        train_dataset=data,
        processing_class=tok,
        callbacks=[Lengths()],
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    n = steps * len(task) * GROUP
    return dict(seconds=seconds, completions=n, tokens=n * (sum(lengths) / max(1, len(lengths))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=["ours", "trl"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.worker:
        res = (worker_ours if args.worker == "ours" else worker_trl)(args.dir, args.steps)
        res["peak_mb"] = _peak_mb()
        print("RESULT " + json.dumps(res))
        return 0

    from grpo_align.lm.experiment import LMExperimentConfig, build_reference

    with tempfile.TemporaryDirectory() as tmp:
        build_reference(LMExperimentConfig(), Path(tmp))  # fitted once; both workers load it
        results = {}
        for name in ("ours", "trl"):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    name,
                    "--dir",
                    tmp,
                    "--steps",
                    str(args.steps),
                    "--threads",
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
                check=False,
                env=dict(os.environ, HF_HUB_OFFLINE="1"),
            )
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not line:
                print(f"{name} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            results[name] = json.loads(line[0][7:])
    rows = []
    for name, r in results.items():
        rows.append((name, r["completions"] / r["seconds"], r["tokens"] / r["seconds"], r["peak_mb"], r["seconds"]))
    print(f"{args.steps} steps x 24 questions x G={GROUP}, {args.threads} thread(s)")
    print(f"{'trainer':8s} {'completions/s':>14s} {'tokens/s':>10s} {'peak MB':>9s} {'seconds':>8s}")
    for name, c, t, m, s in rows:
        print(f"{name:8s} {c:14.0f} {t:10.0f} {m:9.0f} {s:8.1f}")
    (o, to) = rows
    print(f"{'ratio':8s} {o[1] / to[1]:14.2f} {o[2] / to[2]:10.2f} {o[3] / to[3]:9.2f}   (ours / TRL)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
