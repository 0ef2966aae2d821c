"""Speed of tabular GRPO training: sampled outputs per second against numpy's floor.

Workload of issue 4: 10^4 contexts x 16 groups x G = 8 = 1.28 million sampled outputs per
step (Bernoulli rewards, K outputs per context, SGD, one inner iteration). The floor is
what it costs just to draw those outputs with numpy (inverse CDF, vectorised). The
table shows the training step as outputs per second and as a multiple of the floor, and
where a step's time goes.

    nice python benchmarks/bench_training.py [--steps 5] [--contexts 10000] [--k 4 16]
"""

from __future__ import annotations

import argparse
import time
import timeit

import numpy as np
import torch

import grpo_align as ga
from grpo_align.training import TrainConfig, train
from grpo_align.training.tabular import (
    DTYPE,
    RewardSampler,
    TabularPolicy,
    context_sum_loss,
    make_optimizer,
    torch_threads,
)


def best_of(fn, repeats: int) -> float:
    """Best of ``repeats`` single-call wall-clock times."""
    return min(timeit.repeat(fn, repeat=repeats, number=1))


def numpy_floor(policy: np.ndarray, n: int, rng: np.random.Generator) -> None:
    """Draw n outputs per context from (C, K) policies: uniforms against the CDF."""
    cdf = np.cumsum(policy, axis=1)
    u = rng.random((policy.shape[0], n))
    (u[:, :, None] > cdf[:, None, :]).sum(axis=2)


def phases(problem: ga.Problem, algo: ga.GRPO, cfg: TrainConfig, repeats: int) -> dict[str, float]:
    """Seconds per step of each part of the loop, timed separately (same code as train)."""
    c, g, n = problem.n_contexts, algo.group_size, cfg.groups_per_step
    policy = TabularPolicy(problem.ref)
    opt = make_optimizer("sgd", [policy.logits], cfg.lr)
    gen = torch.Generator().manual_seed(0)
    sampler = RewardSampler(problem)
    mask = torch.ones(c * n * g, 1, dtype=DTYPE)
    out: dict[str, float] = {}
    with torch.no_grad():
        logp_old_all = policy.log_probs()
    out["sample outputs"] = best_of(
        lambda: torch.multinomial(logp_old_all.exp(), n * g, replacement=True, generator=gen), repeats
    )
    outputs = torch.multinomial(logp_old_all.exp(), n * g, replacement=True, generator=gen)
    out["draw rewards"] = best_of(lambda: sampler(outputs.view(c, n, g), gen), repeats)
    rewards = sampler(outputs.view(c, n, g), gen)
    out["advantages (numpy)"] = best_of(lambda: ga.group_advantages(rewards.numpy(), algo), repeats)
    adv = torch.from_numpy(ga.group_advantages(rewards.numpy(), algo)).reshape(-1)
    logp_old = logp_old_all.gather(1, outputs).reshape(-1, 1)
    logp_ref = policy.log_ref.gather(1, outputs).reshape(-1, 1)

    def update() -> None:
        loss = context_sum_loss(policy, outputs, logp_old, logp_ref, adv, mask, algo, cfg)
        opt.zero_grad(set_to_none=True)
        loss.loss.backward()
        opt.step()

    out["loss + backward + step"] = best_of(update, repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--k", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    c, n, g = args.contexts, args.groups, args.group_size
    per_step = c * n * g
    rng = np.random.default_rng(0)
    print(f"{c} contexts x {n} groups x G = {g}: {per_step:,} sampled outputs per step; best of {args.steps} steps\n")
    header = f"{'K':>4} {'threads':>7} {'numpy floor':>14} {'train step':>12} {'outputs/s':>12} {'x floor':>8}   where a step goes"
    print(header)
    print("-" * len(header))
    for k in args.k:
        ref = rng.dirichlet(np.ones(k), size=c)
        problem = ga.Problem.from_bernoulli(ref=ref, success=rng.uniform(0.05, 0.95, size=(c, k)))
        algo = ga.GRPO(group_size=g, beta=0.1)
        floor = best_of(lambda ref=ref: numpy_floor(ref, n * g, rng), args.steps)
        for threads in args.threads:
            cfg = TrainConfig(
                steps=args.steps + 1,
                groups_per_step=n,
                lr=0.5,
                tail_fraction=1.0,
                n_batches=2,
                threads=threads,
                record_every=args.steps + 1,
            )
            times: list[float] = []
            last = [time.perf_counter()]

            def tick(
                step: int, metrics: dict[str, float], times: list[float] = times, last: list[float] = last
            ) -> None:
                now = time.perf_counter()
                times.append(now - last[0])
                last[0] = now

            last[0] = time.perf_counter()
            train(problem, algo, cfg, callback=tick, predict=False)
            step_time = min(times[1:])  # the first step pays for warm-up
            with torch_threads(threads):
                parts = phases(problem, algo, cfg, args.steps)
            where = ", ".join(f"{name} {t / step_time:.0%}" for name, t in parts.items())
            print(
                f"{k:>4} {threads:>7} {floor * 1e3:>11.1f} ms {step_time * 1e3:>9.1f} ms {per_step / step_time:>12,.0f} {step_time / floor:>8.1f}   {where}"
            )
    print("\nnumpy floor: drawing the outputs alone (uniforms against each context's CDF); a train step")
    print("also draws the rewards, forms the advantages, and runs the loss, its gradient and the update.")


if __name__ == "__main__":
    main()
