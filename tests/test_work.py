"""Unbounded work is refused up front (issue 18 item 7): ``theory.stationary.work``.

Each case of the audit (64 and more reward levels at a small G, 1000 levels at G = inf,
100 first-token-distinct sequences, a binary problem at G 2 10^4 and 10^5; G 10^4 is
estimated at 42 s, within the limit, and runs) is either solved
within the limit or refused before any solver runs, in one line naming the field and the
largest size that fits. "Before any solver runs" is checked by making every solver entry
point fail the test if it is reached, not by timing. How close the estimates are to the
measured cost is printed by benchmarks/bench_work.py (timings are not tested here).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import grpo_align.theory.stationary as stationary_pkg
from grpo_align.cli import main
from grpo_align.theory import GRPO, Problem, WorkLimitError, estimate_work, level_preference, stationary_policy
from grpo_align.theory.preference import LevelPreference
from grpo_align.theory.stationary import work


@pytest.fixture
def no_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any solver reached fails the test: a refusal must come first."""

    def reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("a solver ran before the work check")

    for name in ("_solve", "tree_stationary_policy"):
        monkeypatch.setattr(stationary_pkg, name, reached)


def _levels(n_levels: int, n_ctx: int = 1, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    return Problem.from_rewards(ref=np.full((n_ctx, n_levels), 1 / n_levels), rewards=rng.random((n_ctx, n_levels)))


def _binary(n_ctx: int = 3) -> Problem:
    p0 = np.linspace(0.1, 0.9, n_ctx)
    return Problem.from_bernoulli(ref=np.stack([p0, 1 - p0], axis=1), success=np.tile([1.0, 0.0], (n_ctx, 1)))


AUDIT_CASES = [
    ("levels", _levels(1000), GRPO(group_size=math.inf, beta=0.04)),
    ("levels", _levels(128), GRPO(group_size=4, beta=0.04)),
    ("levels", _levels(40), GRPO(group_size=16, beta=0.04)),
    ("group_size", _binary(), GRPO(group_size=20_000, beta=0.04)),
    ("group_size", _binary(), GRPO(group_size=100_000, beta=0.04)),
    (
        "sequences",
        Problem.from_bernoulli(
            # two lengths: a tree problem (one-token outputs alone are solved atomically)
            ref=np.full(100, 0.01),
            success=np.linspace(0, 1, 100),
            sequences=[(i,) if i % 2 else (i, 0) for i in range(100)],
        ),
        GRPO(group_size=8, beta=0.04),
    ),
]


@pytest.mark.parametrize(("field", "problem", "algo"), AUDIT_CASES)
def test_costly_solves_are_refused_before_any_solver_runs(
    no_solver: None, field: str, problem: Problem, algo: GRPO
) -> None:
    with pytest.raises(WorkLimitError) as info:
        stationary_policy(problem, algo)
    message = str(info.value)
    assert info.value.field == field
    assert "\n" not in message
    assert "limit 60 s" in message and "max_seconds=None lifts it" in message


def test_the_advice_names_the_largest_size_within_the_limit() -> None:
    """The size the message offers is within the limit and one more is not (independent of
    the search that found it: the estimate is evaluated at both sizes)."""
    with pytest.raises(WorkLimitError) as info:
        stationary_policy(_levels(128), GRPO(group_size=4, beta=0.04))
    msg = str(info.value)
    n_max = int(msg.split("at most ")[1].split(" ")[0])
    algo = GRPO(group_size=4, beta=0.04)
    assert (
        estimate_work(_levels(n_max), algo).seconds
        <= work.MAX_SECONDS
        < estimate_work(_levels(n_max + 1), algo).seconds
    )
    with pytest.raises(WorkLimitError) as info:
        stationary_policy(_binary(), GRPO(group_size=10**5, beta=0.04))
    msg = str(info.value)
    g_max = int(msg.split("group_size <= ")[1].split(" ")[0].replace(",", ""))
    assert estimate_work(_binary(), GRPO(group_size=g_max, beta=0.04)).seconds <= work.MAX_SECONDS
    assert estimate_work(_binary(), GRPO(group_size=g_max + 1, beta=0.04)).seconds > work.MAX_SECONDS


def test_estimates_grow_with_every_size() -> None:
    algo = GRPO(group_size=8, beta=0.04)
    by_levels = [estimate_work(_levels(n), algo).seconds for n in (3, 5, 10, 20)]
    assert by_levels == sorted(by_levels) and by_levels[0] < by_levels[-1]
    by_g = [estimate_work(_levels(6), GRPO(group_size=g, beta=0.04)).seconds for g in (2, 4, 8, 16)]
    assert by_g == sorted(by_g) and by_g[0] < by_g[-1]
    by_k = [
        estimate_work(
            Problem.from_bernoulli(
                ref=np.full(k, 1 / k), success=np.linspace(0, 1, k), sequences=[(i,) for i in range(k)]
            ),
            algo,
            method="tree",
        ).seconds
        for k in (3, 10, 30)
    ]
    assert by_k == sorted(by_k) and by_k[0] < by_k[-1]


def test_cheap_problems_are_not_refused_and_the_limit_is_a_parameter() -> None:
    problem = Problem.from_rewards(ref=[0.2, 0.3, 0.5], rewards=[1.0, 0.5, 0.0])
    algo = GRPO(group_size=4, beta=0.5)
    solved = stationary_policy(problem, algo)
    assert solved.success.all()
    with pytest.raises(WorkLimitError, match=r"limit 1e-12 s"):
        stationary_policy(problem, algo, max_seconds=1e-12)
    lifted = stationary_policy(problem, algo, max_seconds=None)
    np.testing.assert_array_equal(lifted.policy, solved.policy)


def test_memory_is_bounded_whatever_the_time_limit() -> None:
    """max_seconds=None lifts the time limit, not the memory bound: 20,000 contexts of 30
    distinct levels at G = 8 would need terabytes of advantage tables."""
    with pytest.raises(WorkLimitError, match="of working memory"):
        work.check_work(_levels(30, n_ctx=20_000), GRPO(group_size=8, beta=0.04), max_seconds=None)


def test_two_level_preference_in_blocks_equals_one_product() -> None:
    """Many points at a large G are summed in blocks (bounded memory); each h is the same
    expectation, to rounding, as the one matrix product over a slice of few points (below
    the blocking threshold: 2^20 count-vector probabilities per call)."""
    algo = GRPO(group_size=3000, beta=0.04)
    w1 = np.linspace(0.0, 1.0, 4001)
    w = np.stack([1 - w1, w1], axis=-1)[None]
    pref = LevelPreference(np.array([[0.0, 1.0]]), algo)
    blocked = pref(w)
    whole = np.concatenate([pref(w[:, i : i + 256]) for i in range(0, w.shape[1], 256)], axis=1)
    scale = np.max(np.abs(pref.table))
    # each entry a sum of G non-negative-weight terms: rounding within G ulps of the scale
    np.testing.assert_allclose(blocked, whole, rtol=0, atol=3000 * np.finfo(float).eps * scale)
    np.testing.assert_allclose(blocked[0, 7], level_preference([0.0, 1.0], w[0, 7], algo)[0], rtol=1e-12)


def test_cli_solve_refuses_in_one_line(tmp_path, capsys) -> None:
    toml = tmp_path / "levels.toml"
    rewards = np.linspace(0.0, 1.0, 1000).tolist()
    toml.write_text(
        "[problem]\n"
        f"ref = {json.dumps([1 / 1000] * 1000)}\n"
        f"rewards = {json.dumps(rewards)}\n"
        "[[algorithm]]\ngroup_size = inf\nbeta = 0.04\n"
    )
    assert main(["solve", str(toml)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "1000 reward levels at group_size=inf" in err and "round the rewards" in err


def test_cli_predict_refuses_and_writes_nothing(tmp_path, capsys) -> None:
    stats = tmp_path / "stats.jsonl"
    rng = np.random.default_rng(1)
    stats.write_text(json.dumps({"prompt_id": "a", "rewards": rng.random(1000).tolist()}) + "\n")
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(stats),
            "--preset",
            "paper",
            "--group-size",
            "inf",
            "--out",
            str(out),
            "--quiet",
            "--planner-prompts",
            "0",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "round the rewards" in err
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".")]
