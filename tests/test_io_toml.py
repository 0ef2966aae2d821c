"""TOML problem files: every problem kind parses to the Problem the API builds; bad files
raise InputError naming the key."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import grpo_align as ga
from grpo_align.io_toml import ALGORITHM_KEYS, PROBLEM_KEYS, load_problem_toml

ALGO = "\n[[algorithm]]\ngroup_size = 2\nbeta = 0.5\n"


def _load(tmp_path: Path, text: str, **kw):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return load_problem_toml(path, **kw)


def _same_problem(a: ga.Problem, b: ga.Problem) -> None:
    assert a.batched == b.batched
    np.testing.assert_array_equal(a.ref, b.ref)
    np.testing.assert_array_equal(a.levels, b.levels)
    np.testing.assert_array_equal(a.dist, b.dist)


def test_rewards(tmp_path):
    problem, algos, opts = _load(tmp_path, "[problem]\nref = [0.2, 0.3, 0.5]\nrewards = [1, 0.5, 0]\n" + ALGO)
    _same_problem(problem, ga.Problem.from_rewards([0.2, 0.3, 0.5], [1.0, 0.5, 0.0]))
    assert opts["kind"] == "rewards" and opts["names"] == [["o1", "o2", "o3"]] and opts["n_outputs"] == [3]
    assert algos == [("G=2 beta=0.5", ga.GRPO(group_size=2, beta=0.5))]


def test_success_batch_ragged_with_shared_names(tmp_path):
    text = "[problem]\nref = [[0.5, 0.5], [0.2, 0.3, 0.5]]\nsuccess = [[0.9, 0.1], [0.5, 0.4, 0.3]]\n"
    text += 'names = [["a", "b"], ["x", "y", "z"]]\n' + ALGO
    problem, _, opts = _load(tmp_path, text)
    _same_problem(problem, ga.Problem.from_bernoulli([[0.5, 0.5], [0.2, 0.3, 0.5]], [[0.9, 0.1], [0.5, 0.4, 0.3]]))
    assert opts["n_outputs"] == [2, 3] and opts["names"] == [["a", "b"], ["x", "y", "z"]]


def test_levels_dist_batch_shares_one_level_vector(tmp_path):
    text = "[problem]\nref = [[0.5, 0.5], [0.1, 0.9]]\nlevels = [0, 1, 2]\n"
    text += "dist = [[[0.2, 0.3, 0.5], [1, 0, 0]], [[0, 0, 1], [0.5, 0.5, 0]]]\n" + ALGO
    problem, _, opts = _load(tmp_path, text)
    dist = [[[0.2, 0.3, 0.5], [1, 0, 0]], [[0, 0, 1], [0.5, 0.5, 0]]]
    _same_problem(problem, ga.Problem([[0.5, 0.5], [0.1, 0.9]], [[0, 1, 2], [0, 1, 2]], dist))
    assert opts["kind"] == "dist"


def test_win_prob_and_shared_names(tmp_path):
    text = "[problem]\nref = [0.6, 0.3, 0.1]\nwin_prob = [[0, 0, 1], [1, 0, 0], [0, 1, 0]]\n"
    text += 'names = ["rock", "paper", "scissors"]\n' + ALGO
    problem, _, opts = _load(tmp_path, text)
    assert problem.is_preference
    np.testing.assert_array_equal(problem.win_prob[0], [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert opts["names"] == [["rock", "paper", "scissors"]]


def test_renormalize(tmp_path):
    problem, _, _ = _load(tmp_path, "[problem]\nref = [1, 3]\nrewards = [1, 0]\nrenormalize = true\n" + ALGO)
    np.testing.assert_allclose(problem.ref[0], [0.25, 0.75])


def test_presets_and_overrides(tmp_path):
    text = "[problem]\nref = [0.3, 0.7]\nrewards = [1, 0]\n"
    text += '[[algorithm]]\npreset = "trl"\nbeta = 0.04\n'
    text += '[[algorithm]]\nname = "mine"\ngroup_size = inf\nbeta = 0.5\npenalty = "k2"\n'
    _, algos, opts = _load(tmp_path, text)
    assert algos[0] == ("trl (beta=0.04)", ga.GRPO.preset("trl", beta=0.04))
    assert algos[1][0] == "mine" and algos[1][1].is_limit and algos[1][1].penalty == "k2"
    assert opts["presets"] == ["trl", None]


def test_extra_tables_pass_through(tmp_path):
    text = "[problem]\nref = [0.3, 0.7]\nrewards = [1, 0]\n[train]\nsteps = 10\n" + ALGO
    _, _, opts = _load(tmp_path, text, extra_tables=("train",))
    assert opts["train"] == {"steps": 10}
    with pytest.raises(ga.InputError, match="train"):
        _load(tmp_path, text)


@pytest.mark.parametrize(
    "text, field, words",
    [
        ("[problem\n", "p.toml", "malformed TOML"),
        ("colour = 1\n[problem]\nref = [1]\nrewards = [1]\n" + ALGO, "colour", "allowed: title, problem, algorithm"),
        ("[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\nfoo = 1\n" + ALGO, "problem.foo", ", ".join(PROBLEM_KEYS)),
        (
            "[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\n[[algorithm]]\nlr = 1\n",
            "algorithm[1].lr",
            ", ".join(ALGORITHM_KEYS),
        ),
        ("[problem]\nrewards = [1, 0]\n" + ALGO, "problem.ref", "missing"),
        ("[problem]\nref = [0.5, 0.5]\n" + ALGO, "problem", "exactly one of"),
        (
            "[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\nsuccess = [1, 0]\n" + ALGO,
            "problem",
            "given: rewards, success",
        ),
        ("[problem]\nref = [0.5, 0.5]\nlevels = [0, 1]\n" + ALGO, "problem.dist", "missing"),
        ("[problem]\nref = [0.5, 0.6]\nrewards = [1, 0]\n" + ALGO, "problem.ref", "sum to 1"),
        ("[problem]\nref = [0.5, 0.5]\nsuccess = [1.5, 0]\n" + ALGO, "problem.success", "[0, 1]"),
        ("[problem]\nref = [0.5, 0.5]\nrewards = [true, 0]\n" + ALGO, "problem.rewards", "expected numbers"),
        ('[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\nnames = ["a"]\n' + ALGO, "problem.names", "1 names for 2"),
        ("[problem]\nref = [0.5, 0.5]\nrewards = [1, 0, 3]\n" + ALGO, "problem.rewards", "one reward per output"),
        ("[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\n", "algorithm", "at least one"),
        (
            "[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\n[[algorithm]]\npreset = 'x'\n",
            "algorithm[1].preset",
            "unknown",
        ),
        ("[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\n[[algorithm]]\nbeta = -1\n", "algorithm[1].beta", ">= 0"),
        ("[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\n[[algorithm]]\nbeta = '1'\n", "algorithm[1].beta", "number"),
        (
            "[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\n[[algorithm]]\ngroup_size = 1\n",
            "algorithm[1].group_size",
            ">= 2",
        ),
        (
            "[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\n[[algorithm]]\npenalty = 'k4'\n",
            "algorithm[1].penalty",
            "k3",
        ),
        (
            "[problem]\nref = [0.5, 0.5]\nwin_prob = [[0, 1], [0, 0]]\n[[algorithm]]\ngroup_size = 8\n",
            "algorithm[1].group_size",
            "G = 2 only",
        ),
        (
            "[problem]\nref = [0.5, 0.5]\nwin_prob = [[0, 1], [0, 0]]\n[[algorithm]]\npreset = 'trl'\ngroup_size = 2\n",
            "algorithm[1].eps",
            "eps = 0",
        ),
    ],
)
def test_bad_files_name_the_key(tmp_path, text, field, words):
    with pytest.raises(ga.InputError) as info:
        _load(tmp_path, text)
    assert info.value.field.endswith(field)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_problem_toml(tmp_path / "missing.toml")


def test_examples_parse():
    examples = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))
    assert len(examples) >= 2
    for path in examples:
        problem, algos, opts = load_problem_toml(path, extra_tables=("train",))
        assert algos and opts["title"]
        assert all(math.isclose(s, 1.0) for s in problem.ref.sum(axis=1))


def test_sequences_parse_to_the_api_problem(tmp_path):
    """problem.sequences: token lists per output; the solve equals the API's on the same tree."""
    seqs = [["yes", "<eos>"], ["yes", "indeed", "<eos>"], ["no", "<eos>"]]
    text = (
        f"[problem]\nref = [0.3, 0.2, 0.5]\nsuccess = [0.9, 0.8, 0.1]\nsequences = {seqs!r}\n".replace("'", '"')
        + '\n[[algorithm]]\ngroup_size = 3\nbeta = 0.4\naggregation = "group_token_mean"\n'
    )
    problem, algos, _ = _load(tmp_path, text)
    api = ga.Problem.from_bernoulli([0.3, 0.2, 0.5], [0.9, 0.8, 0.1], sequences=[tuple(s) for s in seqs])
    algo = algos[0][1]
    assert algo.aggregation == "group_token_mean"
    np.testing.assert_array_equal(ga.stationary_policy(problem, algo).policy, ga.stationary_policy(api, algo).policy)
    # and the aggregation moves it here (shared prefix "yes"), unlike without sequences
    other = ga.stationary_policy(problem, algo.replace(aggregation="sequence_mean")).policy
    assert np.max(np.abs(other - ga.stationary_policy(problem, algo).policy)) > 1e-3


@pytest.mark.parametrize(
    ("sequences", "field"),
    [
        ('[["a", "<e>"]]', "problem.sequences"),  # one list for three outputs
        ('[["a"], [], ["b"]]', "problem.sequences[2]"),
        ('[["a"], [1.5], ["b"]]', "problem.sequences[2]"),
        ('"abc"', "problem.sequences"),
    ],
)
def test_bad_sequences_name_the_key(tmp_path, sequences, field):
    text = f"[problem]\nref = [0.3, 0.2, 0.5]\nrewards = [1, 1, 0]\nsequences = {sequences}\n" + ALGO
    with pytest.raises(ga.InputError) as info:
        _load(tmp_path, text)
    assert info.value.field == field
