"""The penalty in the reward against the penalty in the loss on binary prompts, side by side.

    python benchmarks/bench_reward_penalty.py            # 10^4 prompts (about a minute on 2 cores)
    python benchmarks/bench_reward_penalty.py --prompts 1000000

Every prompt is predict's two-answer form (a correct answer of reward 1 with its own reference
pass rate, a wrong one of reward 0), G = 8, beta = 0.1, shift_scale with eps 0, solved by one
``stationary_policy`` call on the batched Problem. Each time is the best of N calls
(``time.perf_counter``) measured in this run, so the ratios hold on the machine that prints
them. The tree solver (the route every penalty in the reward took before
``stationary.reward_tie``) is timed on a sample of prompts and scaled to the batch.

A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
from bench_batch import best_time  # this folder is on sys.path when run as a script

import grpo_align as ga


def binary_prompts(n: int, seed: int = 0) -> ga.Problem:
    p0 = np.random.default_rng(seed).uniform(0.01, 0.99, n)
    ref = np.stack([p0, 1 - p0], axis=1)
    return ga.Problem.from_rewards(ref, np.broadcast_to([1.0, 0.0], ref.shape))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tree-sample", type=int, default=20)
    args = parser.parse_args()
    print(
        f"grpo-align {ga.__version__}, numpy {np.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; best of {args.repeats}; load average {os.getloadavg()[0]:.1f} at start"
    )
    prob = binary_prompts(args.prompts)
    base = dict(group_size=8, beta=0.1)
    loss = {pen: ga.GRPO(**base, penalty=pen) for pen in ("k3", "k2")}
    reward = {pen: ga.GRPO(**base, penalty=pen, penalty_in="reward") for pen in ("k1", "k2", "k3")}
    t_loss = {pen: best_time(lambda a=a: ga.stationary_policy(prob, a), args.repeats) for pen, a in loss.items()}
    ref_time = t_loss["k3"]
    print(f"\n{args.prompts} binary prompts, G 8, beta 0.1, shift_scale eps 0")
    print(f"{'case':<22}{'seconds':>10}{'/ loss k3':>12}")
    for pen, t in t_loss.items():
        print(f"{'loss ' + pen:<22}{t:>10.3f}{t / ref_time:>12.2f}")
    sample = binary_prompts(args.tree_sample, seed=1)
    for pen, a in reward.items():
        res: list[ga.StationaryResult] = []
        t = best_time(lambda a=a, res=res: res.append(ga.stationary_policy(prob, a)), args.repeats)
        ok = bool(np.all(res[-1].success))
        print(f"{'reward ' + pen:<22}{t:>10.3f}{t / ref_time:>12.2f}   all succeeded: {ok}")
        tree = best_time(lambda a=a: ga.stationary_policy(sample, a, method="tree"), 1)
        scaled = tree / args.tree_sample * args.prompts
        print(
            f"{'  tree solver (scaled)':<22}{scaled:>10.1f}{scaled / ref_time:>12.0f}   from {args.tree_sample} prompts"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
