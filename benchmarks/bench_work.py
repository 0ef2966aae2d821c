"""How close ``estimate_work`` is to what a solve costs: estimate / measured, side by side.

    python benchmarks/bench_work.py            # a dozen solves (a few minutes on 2 cores)
    python benchmarks/bench_work.py --quick    # the smaller half

``stationary_policy`` refuses, before it starts, a solve whose estimated seconds per
context exceed its limit (``theory.stationary.work``). The estimate is a fixed formula of
the problem's sizes (so the refusal does not depend on the machine); this script measures
each solve once and prints the ratio estimate / measured for the three costly paths (many
reward levels at a finite G, many levels at G = inf, two levels at a large G) and the tree
solver. Above 1 means it over-estimates (refuses early), below 1 that it under-estimates.

Measured on the project machine (2 cores, load about 1.6, 2026-12-08), estimate / measured:
16 levels G 4 / G 8: 1.24 / 1.10; 40 levels G 4: 2.18 (0.66 in an earlier run: the solve's
own time varied from 2.8 to 4.5 s); 64 levels G 4: 1.43; 100 / 300 levels G inf: 8.7 / 3.5
(G = inf's cost depends on how fast the solve converges: another reward draw took 8 s and
39 s, ratios 1.1 / 1.0); 2 levels G 1000 / 4000: 1.29 / 1.14; trees of 10 / 30 outputs:
1.31 / 0.89.

A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
from rich.console import Console
from rich.table import Table

import grpo_align as ga


def _levels(n_levels: int) -> ga.Problem:
    rng = np.random.default_rng(0)
    return ga.Problem.from_rewards(ref=np.full(n_levels, 1 / n_levels), rewards=rng.random(n_levels))


def _binary() -> ga.Problem:
    return ga.Problem.from_bernoulli(ref=[0.3, 0.7], success=[1.0, 0.0])


def _tree(n_out: int) -> ga.Problem:
    rng = np.random.default_rng(0)
    seqs = [(i, 1000 + i % 3) if i % 2 else (i,) for i in range(n_out)]
    return ga.Problem.from_bernoulli(ref=rng.dirichlet(np.ones(n_out)), success=rng.random(n_out), sequences=seqs)


CASES = [
    ("16 levels, G 4", lambda: _levels(16), ga.GRPO(group_size=4, beta=0.04), True),
    ("16 levels, G 8", lambda: _levels(16), ga.GRPO(group_size=8, beta=0.04), True),
    ("40 levels, G 4", lambda: _levels(40), ga.GRPO(group_size=4, beta=0.04), False),
    ("64 levels, G 4", lambda: _levels(64), ga.GRPO(group_size=4, beta=0.04), False),
    ("100 levels, G inf", lambda: _levels(100), ga.GRPO(group_size=math.inf, beta=0.04), True),
    ("300 levels, G inf", lambda: _levels(300), ga.GRPO(group_size=math.inf, beta=0.04), False),
    ("2 levels, G 1000", _binary, ga.GRPO(group_size=1000, beta=0.04), True),
    ("2 levels, G 4000", _binary, ga.GRPO(group_size=4000, beta=0.04), False),
    ("tree, 10 outputs", lambda: _tree(10), ga.GRPO(group_size=8, beta=0.04, aggregation="sequence_mean"), True),
    ("tree, 30 outputs", lambda: _tree(30), ga.GRPO(group_size=8, beta=0.04, aggregation="sequence_mean"), False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the smaller cases")
    args = parser.parse_args()
    console = Console()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    console.print(f"grpo-align {ga.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs; load {load:.1f}")
    table = Table(title="estimate_work against one measured solve")
    for col in ("case", "estimate", "measured", "estimate / measured", "status"):
        table.add_column(col, justify="right" if col != "case" else "left")
    for label, make, algo, quick in CASES:
        if args.quick and not quick:
            continue
        problem = make()
        est = ga.estimate_work(problem, algo)
        start = time.perf_counter()
        res = ga.stationary_policy(problem, algo, max_seconds=None)
        took = time.perf_counter() - start
        table.add_row(label, f"{est.seconds:.3g} s", f"{took:.3g} s", f"{est.seconds / took:.2f}", res.status[0])
    console.print(table)


if __name__ == "__main__":
    main()
