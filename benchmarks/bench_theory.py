"""Speed of the theory engine: exact P_G and the stationary solve as the number of outputs grows.

    python benchmarks/bench_theory.py            # K = 10^3 .. 10^6 (a few minutes on 2 cores)
    python benchmarks/bench_theory.py --quick    # K = 10^3 .. 10^4

Every time is the best of N runs (time.perf_counter) and is also given as a ratio to one
numpy pass over the problem's K x L array (``dist @ levels``, the expected reward of every
output), so the cost per output is visible: a ratio that stays flat as K grows means the
work per output is constant. The second table sets exact P_G against Monte Carlo
(``preference_monte_carlo``) at equal accuracy: the samples Monte Carlo needs for a given
standard error, and the time they take, against the exact computation.

A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import grpo_align as ga


def best_time(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """Best of ``repeats`` wall-clock times, after one untimed warm-up call (caches filled)."""
    if warmup:
        fn()
    return min(timeit.repeat(fn, repeat=repeats, number=1))


# ---------------------------------------------------------------------------- problems
def make_problem(kind: str, n_out: int, rng: np.random.Generator) -> ga.Problem:
    """A one-context problem with ``n_out`` outputs.

    binary01:  deterministic 0/1 rewards (two reward classes: the target case);
    bernoulli: a random success probability per output (every output its own class);
    levels4:   deterministic rewards on 4 levels (four classes);
    dist4:     a random distribution over 4 levels per output (every output its own class).
    """
    ref = rng.random(n_out) + 0.01
    ref /= ref.sum()
    if kind == "binary01":
        return ga.Problem.from_rewards(ref, (rng.random(n_out) < 0.3).astype(float))
    if kind == "bernoulli":
        return ga.Problem.from_bernoulli(ref, rng.random(n_out))
    if kind == "levels4":
        return ga.Problem.from_rewards(ref, rng.integers(0, 4, n_out).astype(float) / 3)
    if kind == "dist4":
        dist = rng.dirichlet(np.ones(4), size=n_out)
        return ga.Problem(ref, [0.0, 1 / 3, 2 / 3, 1.0], dist, renormalize=True)
    raise ValueError(kind)


KINDS = {
    "binary01": "L=2, 0/1 rewards (2 classes)",
    "bernoulli": "L=2, Bernoulli (K classes)",
    "levels4": "L=4, deterministic (4 classes)",
    "dist4": "L=4, random dist (K classes)",
}


@dataclass
class ScalingRow:
    kind: str
    n_out: int
    group_size: int
    numpy_pass: float
    pref: float
    solve: float
    success: bool
    n_roots: int


def scaling(
    sizes: list[int], group_sizes: dict[str, list[int]], max_size: dict[str, int], repeats: int, progress: Progress
) -> list[ScalingRow]:
    rng = np.random.default_rng(0)
    rows = []
    jobs = [(kind, k, g) for kind in KINDS for k in sizes if k <= max_size.get(kind, k) for g in group_sizes[kind]]
    task = progress.add_task("P_G and stationary solve", total=len(jobs))
    current: tuple[str, int] | None = None
    for kind, n_out, g in jobs:
        if (kind, n_out) != current:
            current = (kind, n_out)  # one problem in memory at a time
            problem = make_problem(kind, n_out, rng)
            dist, levels = problem.dist[0], problem.levels[0]
        # the unit of every ratio; timed at every row, and the best over the rows of a
        # problem is used, since other processes on a shared machine disturb single timings
        t_pass = best_time(lambda dist=dist, levels=levels: dist @ levels, 20)
        algo = ga.GRPO(group_size=g, beta=0.5)
        policy = problem.ref[0]
        # caches (count vectors) are filled by the first, smallest K; large K: fewer repeats
        reps = repeats if n_out < 10**4 else max(2, repeats // 2)
        t_pref = best_time(lambda problem=problem, algo=algo, policy=policy: ga.preference(problem, algo, policy), reps)
        results = []
        t_solve = best_time(
            lambda results=results, problem=problem, algo=algo: results.append(ga.stationary_policy(problem, algo)),
            reps,
            warmup=n_out < 10**4,
        )
        result = results[0][0]  # the one context
        rows.append(ScalingRow(kind, n_out, g, t_pass, t_pref, t_solve, result.success, len(result.roots)))
        progress.advance(task)
    best_pass: dict[tuple[str, int], float] = {}
    for r in rows:
        best_pass[(r.kind, r.n_out)] = min(r.numpy_pass, best_pass.get((r.kind, r.n_out), math.inf))
    for r in rows:
        r.numpy_pass = best_pass[(r.kind, r.n_out)]
    return rows


@dataclass
class MonteCarloRow:
    n_levels: int
    group_size: int
    n_out: int
    exact: float
    mc_samples_timed: int
    mc_time_timed: float
    max_stderr: float
    max_z: float
    target: float
    samples_needed: int
    mc_time_needed: float


def exact_vs_monte_carlo(targets: list[float], repeats: int, progress: Progress) -> list[MonteCarloRow]:
    """Monte Carlo samples (per output) for a standard error of ``target`` on every output,
    and their time, against exact P_G. Monte Carlo is timed at a sample size that fits in
    memory; its time is linear in the samples, and stderr falls as 1/sqrt(samples), so the
    cost at the target is scaled from that measurement."""
    rng = np.random.default_rng(1)
    n_out = 10
    cases = [(2, 8), (2, 64), (4, 8), (4, 64)]
    task = progress.add_task("exact P_G vs Monte Carlo", total=len(cases))
    rows = []
    for n_levels, g in cases:
        levels = np.linspace(0.0, 1.0, n_levels)
        dist = rng.dirichlet(np.ones(n_levels), size=n_out)
        problem = ga.Problem(rng.dirichlet(np.ones(n_out)), levels, dist, renormalize=True)
        policy = rng.dirichlet(np.ones(n_out))
        algo = ga.GRPO(group_size=g, beta=0.5)
        t_exact = best_time(
            lambda problem=problem, algo=algo, policy=policy: ga.preference(problem, algo, policy), repeats
        )
        exact = ga.preference(problem, algo, policy)
        # 5e6 sampled rewards per call: a few hundred MB, about a second
        samples = max(1000, int(5e6 / (n_out * g)))
        t0 = time.perf_counter()
        mc = ga.preference_monte_carlo(problem, algo, policy, samples=samples, seed=3)
        t_mc = time.perf_counter() - t0
        z = float(np.max(np.abs(mc.mean - exact) / mc.stderr))
        s = float(np.max(mc.stderr))
        for target in targets:
            needed = math.ceil(samples * (s / target) ** 2)
            rows.append(
                MonteCarloRow(n_levels, g, n_out, t_exact, samples, t_mc, s, z, target, needed, t_mc * needed / samples)
            )
        progress.advance(task)
    return rows


# ---------------------------------------------------------------------------- output
def fmt_time(t: float) -> str:
    if t < 1e-3:
        return f"{t * 1e6:.0f} us"
    if t < 1:
        return f"{t * 1e3:.1f} ms"
    return f"{t:.2f} s"


def scaling_table(rows: list[ScalingRow]) -> Table:
    table = Table(
        title="Exact P_G and stationary solve (one context, beta = 0.5, shift_scale, k3)", title_justify="left"
    )
    for name, justify in [
        ("problem", "left"),
        ("K", "right"),
        ("G", "right"),
        ("numpy pass", "right"),
        ("P_G", "right"),
        ("P_G / pass", "right"),
        ("solve", "right"),
        ("solve / pass", "right"),
        ("ok", "center"),
    ]:
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    last = None
    for r in rows:
        table.add_row(
            KINDS[r.kind] if r.kind != last else "",
            f"10^{round(math.log10(r.n_out))}",
            str(r.group_size),
            fmt_time(r.numpy_pass),
            fmt_time(r.pref),
            f"{r.pref / r.numpy_pass:.0f}",
            fmt_time(r.solve),
            f"{r.solve / r.numpy_pass:.0f}",
            "yes" if r.success else "NO",
            end_section=False,
        )
        last = r.kind
    return table


def mc_table(rows: list[MonteCarloRow]) -> Table:
    table = Table(
        title="Exact P_G vs Monte Carlo at equal accuracy (K = 10, random F and policy; samples per output)",
        title_justify="left",
        caption="z = max over outputs of |MC - exact| / stderr (a check: should be a few units at most)",
        caption_justify="left",
    )
    for name in [
        "L",
        "G",
        "exact",
        "MC samples",
        "MC time",
        "stderr",
        "z",
        "target",
        "samples needed",
        "time needed",
        "MC/exact",
    ]:
        table.add_column(name, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            str(r.n_levels),
            str(r.group_size),
            fmt_time(r.exact),
            f"{r.mc_samples_timed:,}",
            fmt_time(r.mc_time_timed),
            f"{r.max_stderr:.1e}",
            f"{r.max_z:.2f}",
            f"{r.target:.0e}",
            f"{r.samples_needed:,}",
            fmt_time(r.mc_time_needed),
            f"{r.mc_time_needed / r.exact:,.0f}x",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="K up to 10^4 and fewer repeats")
    parser.add_argument(
        "--all",
        action="store_true",
        help="also K >= 10^5 Bernoulli and K = 10^6 random-dist problems, every output its own class (slow: minutes each)",
    )
    args = parser.parse_args()
    # every output its own reward class: the solve is slow there (benchmarks/README.md)
    max_size = {} if args.all else {"bernoulli": 10**4, "dist4": 10**5}
    console = Console(width=max(Console().width, 130))
    if args.quick:
        sizes, repeats = [10**3, 10**4], 3
        group_sizes = {"binary01": [2, 8, 64, 256], "bernoulli": [8, 64], "levels4": [8, 64], "dist4": [8, 64]}
        targets = [1e-3]
    else:
        sizes, repeats = [10**3, 10**4, 10**5, 10**6], 5
        group_sizes = {
            "binary01": [2, 8, 64, 256, 1024],
            "bernoulli": [2, 8, 64, 1024],
            "levels4": [2, 8, 64],
            "dist4": [2, 8, 64],
        }
        targets = [1e-3, 1e-4]
    console.print(
        f"grpo-align {ga.__version__}, numpy {np.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); best of {repeats}; "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    with Progress(console=console, transient=True) as progress:
        rows = scaling(sizes, group_sizes, max_size, repeats, progress)
        mc_rows = exact_vs_monte_carlo(targets, repeats, progress)
    console.print(f"load average {os.getloadavg()[0]:.1f} at the end")
    console.print(scaling_table(rows))
    target = [r for r in rows if r.kind == "binary01" and r.n_out == 10**6 and r.group_size == 64]
    if target:
        console.print(
            f"target: 10^6-output binary problem, G = 64 solved in {fmt_time(target[0].solve)} (goal: well under 1 s)"
        )
    if max_size and not args.quick:
        console.print(
            "K-class problems stop at 10^4 (Bernoulli) and 10^5 (random dist); --all for more, see benchmarks/README.md"
        )
    console.print(mc_table(mc_rows))


if __name__ == "__main__":
    main()
