"""``grpo-align predict``: per-prompt end points against the closed forms and the general
solver, every input format, one-line errors, Jeffreys numbers, and streaming.

Oracles: the closed forms of THEORY.md section 6 (``closed_form.py``, written from the
formulas without the general solver); the general solver on the unreduced problem (every
sampled completion its own output); scipy's Beta distribution for the Jeffreys numbers.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from grpo_align.cli import main
from grpo_align.errors import InputError
from grpo_align.predict import binary_end_points, jeffreys_interval, jeffreys_mean, load_spec, run_predict
from grpo_align.predict.config import SpecSource, load_spec_with_source
from grpo_align.predict.stats import StatsReader
from grpo_align.theory import (
    GRPO,
    Problem,
    binary_g2_policy,
    binary_limit_policy,
    binary_policy,
    stationary_policy,
)

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-9


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow([json.dumps(r[c]) if isinstance(r[c], list) else r[c] for c in columns])
    return path


def _predictions(out: Path) -> dict[str, dict[str, str]]:
    with (out / "predictions.csv").open(newline="") as fh:
        return {row["prompt_id"]: row for row in csv.DictReader(fh)}


def _run(tmp_path: Path, stats: Path, algo: GRPO, name: str = "out", **kwargs) -> dict[str, dict[str, str]]:
    out = tmp_path / name
    kwargs.setdefault("planner_prompts", 0)
    kwargs.setdefault("html", False)
    run_predict(stats, algo, SpecSource("preset", "test"), out, **kwargs)
    return _predictions(out)


def _random_p0(seed: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # spread over the logit scale: rare and near-certain answers included
    return 1.0 / (1.0 + np.exp(-rng.uniform(-5.0, 5.0, size)))


# ---------------------------------------------------------------------------- closed forms
CLOSED_FORMS = [
    ("G=8 k3 ddof0", GRPO(group_size=8, beta=0.3), lambda p, a: binary_policy(p, a.beta, 8, ddof=0)),
    (
        "G=5 k3 ddof1",
        GRPO(group_size=5, beta=0.1, ddof=1),
        lambda p, a: binary_policy(p, a.beta, 5, ddof=1),
    ),
    ("G=2 k3", GRPO(group_size=2, beta=0.2), lambda p, a: binary_g2_policy(p, a.beta)),
    ("G=2 k3 ddof1", GRPO(group_size=2, beta=0.05, ddof=1), lambda p, a: binary_g2_policy(p, a.beta, ddof=1)),
    ("G=inf k3", GRPO(group_size=math.inf, beta=0.5), lambda p, a: binary_limit_policy(p, a.beta)),
]


@pytest.mark.parametrize(("label", "algo", "closed_form"), CLOSED_FORMS, ids=[c[0] for c in CLOSED_FORMS])
def test_binary_prompts_match_closed_forms(tmp_path, label, algo, closed_form):
    p0 = _random_p0(1, 25)
    stats = _write_jsonl(tmp_path / "p.jsonl", [{"prompt_id": f"q{i}", "p0": float(p)} for i, p in enumerate(p0)])
    rows = _run(tmp_path, stats, algo)
    for i, p in enumerate(p0):
        row = rows[f"q{i}"]
        expected = closed_form(float(p), algo)
        assert float(row["predicted"]) == pytest.approx(expected, abs=TOL, rel=0), (label, p)
        # KL and RLHF from their formulas at the closed-form end point
        kl = expected * math.log(expected / p) + (1 - expected) * math.log((1 - expected) / (1 - p))
        assert float(row["kl"]) == pytest.approx(kl, abs=1e-8, rel=1e-7)
        rlhf = 1.0 / (1.0 + (1 - p) / p * math.exp(-1.0 / algo.beta))
        assert float(row["rlhf"]) == pytest.approx(rlhf, abs=1e-12)
        assert row["status"] == "interior" and row["roots"] == "1"


@pytest.mark.parametrize("preset", ["paper", "trl", "verl", "openrlhf", "rloo"])
def test_binary_prompts_match_the_general_solver_one_by_one(tmp_path, preset):
    """The batched run against one single-context solve per prompt (a different batch)."""
    algo = GRPO.preset(preset, beta=0.2)
    p0 = _random_p0(2, 12)
    stats = _write_jsonl(tmp_path / "p.jsonl", [{"prompt_id": f"q{i}", "p0": float(p)} for i, p in enumerate(p0)])
    rows = _run(tmp_path, stats, algo)
    for i, p in enumerate(p0):
        res = stationary_policy(Problem.from_bernoulli(ref=[p, 1 - p], success=[1.0, 0.0]), algo)
        assert float(rows[f"q{i}"]["predicted"]) == pytest.approx(res[0].policy[0], abs=TOL, rel=0)


@pytest.mark.parametrize("algo", [GRPO(group_size=4, beta=0.3), GRPO.preset("trl", beta=0.2)], ids=["k3", "trl"])
def test_reward_lists_match_the_unreduced_problem(tmp_path, algo):
    """Rewards: classes (reference count/n) against every sampled completion its own output."""
    rng = np.random.default_rng(3)
    prompts = []
    for i in range(10):
        n = int(rng.integers(2, 9))
        rewards = rng.choice([0.0, 0.5, 1.0, 2.0][: int(rng.integers(1, 5))], size=n).tolist()
        prompts.append({"prompt_id": f"r{i}", "rewards": rewards})
    stats = _write_jsonl(tmp_path / "r.jsonl", prompts)
    rows = _run(tmp_path, stats, algo)
    for p in prompts:
        r = np.asarray(p["rewards"])
        full = Problem.from_rewards(ref=np.full(r.size, 1.0 / r.size), rewards=r)
        res = stationary_policy(full, algo)[0]
        row = rows[p["prompt_id"]]
        assert float(row["p0"]) == pytest.approx(r.mean(), abs=1e-15)
        assert float(row["predicted"]) == pytest.approx(res.policy @ r, abs=TOL, rel=0)
        kl = float(np.sum(np.where(res.policy > 0, res.policy * np.log(res.policy * r.size), 0.0)))
        assert float(row["kl"]) == pytest.approx(kl, abs=1e-9)
        assert row["n"] == str(r.size) and row["correct"] == "" and row["p0_low"] == ""


@pytest.mark.parametrize(
    "algo",
    [
        GRPO.preset("paper"),
        GRPO.preset("trl", beta=0.04),
        GRPO.preset("verl"),
        GRPO.preset("dr_grpo", beta=0.1),
        GRPO(group_size=2, beta=0.1),
        GRPO(group_size=math.inf, beta=0.3),
        GRPO(group_size=32, beta=0.5, penalty="k2"),  # three roots near p0 = 0.01 (examples/multiple_roots.toml)
    ],
    ids=["paper", "trl", "verl", "dr_grpo", "G2", "Ginf", "k2-three-roots"],
)
def test_end_point_increases_with_p0(algo):
    """The claim that carries the interval: predicted(p0) is nondecreasing on (0, 1).

    For k2 with three roots the reported one is the stable root nearest the reference
    mixture; the grid crosses the region with several roots.
    """
    grid = np.concatenate(
        [np.geomspace(1e-4, 0.05, 60), np.linspace(0.05, 0.95, 91)[1:], 1 - np.geomspace(0.05, 1e-4, 60)[1:]]
    )
    if algo.is_limit:
        # the solver's residual check fails at G = inf above p0 ~ 0.9996 (the value still
        # matches binary_limit_policy; reported as status "failed", not as a wrong number)
        grid = grid[grid <= 0.999]
    out = binary_end_points(grid, algo)
    assert all(s == "interior" for s in out.status)
    assert np.all(np.diff(out.predicted) >= -1e-12)
    if algo.penalty == "k2" and algo.group_size == 32:
        assert out.roots.max() == 3  # the grid does cross the three-root region


def test_interval_holds_the_point_estimate_near_one():
    """TRL's preset at beta 0.04 sends every prompt of the example file to 1 - 1e-16 or 1.0:
    solved separately, the interval ends came out one ulp on the wrong side of the point."""
    from grpo_align.predict import open_stats, predict_chunk
    from grpo_align.predict.engine import ordered_interval_ends

    chunk = next(iter(open_stats(ROOT / "examples" / "pass_rates.jsonl")))
    cols = predict_chunk(chunk, GRPO.preset("trl", beta=0.04))
    pred, low, high = (np.asarray(cols[k]) for k in ("predicted", "predicted_low", "predicted_high"))
    assert np.all(low <= pred) and np.all(pred <= high)
    # an inversion larger than rounding is not folded in
    low2, high2 = ordered_interval_ends(np.array([0.5, 0.5]), np.array([0.5 + 1e-9, 0.4]), np.array([0.6, 0.5 - 1e-9]))
    assert low2[0] == 0.5 + 1e-9 and high2[1] == 0.5 - 1e-9


def test_interval_is_carried_to_the_prediction(tmp_path):
    algo = GRPO(group_size=8, beta=0.3)
    stats = _write_jsonl(tmp_path / "c.jsonl", [{"prompt_id": "a", "n": 16, "correct": 5}])
    row = _run(tmp_path, stats, algo)["a"]
    low, high = jeffreys_interval(np.array([16]), np.array([5]))
    assert float(row["p0"]) == pytest.approx(5.5 / 17, abs=1e-15)
    assert float(row["p0_low"]) == pytest.approx(low[0], abs=1e-15)
    assert float(row["predicted_low"]) == pytest.approx(binary_policy(float(low[0]), 0.3, 8), abs=TOL)
    assert float(row["predicted_high"]) == pytest.approx(binary_policy(float(high[0]), 0.3, 8), abs=TOL)
    assert float(row["predicted_low"]) < float(row["predicted"]) < float(row["predicted_high"])


def test_beta_zero_is_the_limit(tmp_path):
    stats = _write_jsonl(tmp_path / "c.jsonl", [{"prompt_id": "a", "n": 8, "correct": 2}])
    row = _run(tmp_path, stats, GRPO.preset("trl"))["a"]
    assert row["status"] == "limit" and float(row["predicted"]) == 1.0 and row["rlhf"] == ""
    # all mass on the correct answer: KL = -log p0
    assert float(row["kl"]) == pytest.approx(-math.log(2.5 / 9), abs=1e-12)


# ---------------------------------------------------------------------------- Jeffreys
def test_jeffreys_against_scipy_beta():
    from scipy.stats import beta

    n = np.array([1, 4, 16, 100, 1000, 7])
    c = np.array([0, 4, 5, 37, 1, 3])
    mean = jeffreys_mean(n, c)
    low, high = jeffreys_interval(n, c)
    for i in range(n.size):
        a, b = c[i] + 0.5, n[i] - c[i] + 0.5
        assert mean[i] == pytest.approx(beta.mean(a, b), abs=1e-15)
        lo, hi = beta.interval(0.95, a, b)
        assert (low[i], high[i]) == pytest.approx((lo, hi), abs=1e-12)
        # and by definition: 2.5% of the posterior below, 2.5% above
        assert beta.cdf(low[i], a, b) == pytest.approx(0.025, abs=1e-10)
        assert beta.sf(high[i], a, b) == pytest.approx(0.025, abs=1e-10)
    # a number by hand: 0 of 10 -> (0 + 1/2) / 11
    assert jeffreys_mean(np.array([10]), np.array([0]))[0] == pytest.approx(1 / 22, abs=1e-16)


# ---------------------------------------------------------------------------- formats
ROWS = [
    {"prompt_id": "a", "n": 16, "correct": 3},
    {"prompt_id": "b", "n": 16, "correct": 0},
    {"prompt_id": "c", "n": 8, "correct": 8},
    {"prompt_id": "d", "n": 32, "correct": 20},
]
REWARD_ROWS = [
    {"prompt_id": "x", "rewards": [1.0, 0.0, 0.0, 1.0]},
    {"prompt_id": "y", "rewards": [0.5, 0.5, 0.0]},
    {"prompt_id": "z", "rewards": [2.0]},
]


def _all_formats(tmp_path: Path, rows: list[dict], columns: list[str]) -> dict[str, Path]:
    files = {
        "jsonl": _write_jsonl(tmp_path / "s.jsonl", rows),
        "csv": _write_csv(tmp_path / "s.csv", rows, columns),
    }
    gz = tmp_path / "s.jsonl.gz"
    gz.write_bytes(gzip.compress(files["jsonl"].read_bytes()))
    files["jsonl.gz"] = gz
    try:
        import datasets
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return files
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, tmp_path / "s.parquet")
    files["parquet"] = tmp_path / "s.parquet"
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    files["datasets"] = tmp_path / "ds"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dsdict"))
    files["datasets-dict"] = tmp_path / "dsdict"
    return files


@pytest.mark.parametrize(
    ("rows", "columns"), [(ROWS, ["prompt_id", "n", "correct"]), (REWARD_ROWS, ["prompt_id", "rewards"])]
)
def test_every_format_gives_the_same_predictions(tmp_path, rows, columns):
    files = _all_formats(tmp_path, rows, columns)
    pytest.importorskip("pyarrow")
    assert {"parquet", "datasets", "datasets-dict"} <= set(files)
    algo = GRPO(group_size=4, beta=0.25)
    results = {fmt: _run(tmp_path, path, algo, name=f"out-{fmt}") for fmt, path in files.items()}
    reference = results["jsonl"]
    assert list(reference) == [r["prompt_id"] for r in rows]
    for fmt, result in results.items():
        assert result == reference, fmt
    # and the Parquet twin of predictions.csv holds the same numbers
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "out-jsonl" / "predictions.parquet").to_pylist()
    for rec in table:
        row = reference[rec["prompt_id"]]
        assert rec["predicted"] == float(row["predicted"])
        assert (rec["correct"] is None) == (row["correct"] == "")


def test_csv_rewards_cells_as_separated_numbers(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text('prompt_id,rewards\nx,"1 0 0 1"\ny,0.5;0.5;0\nz,[2]\n')
    semi = _run(tmp_path, path, GRPO(group_size=4, beta=0.25), name="a")
    as_json = _run(tmp_path, _write_jsonl(tmp_path / "s.jsonl", REWARD_ROWS), GRPO(group_size=4, beta=0.25), name="b")
    assert semi == as_json


BLOCKER = """
import sys
class _Uninstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"pyarrow", "datasets"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Uninstalled())
from grpo_align.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _blocked_cli(*args: str) -> tuple[int, str, str]:
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER, "predict", *args], capture_output=True, text=True, env=env, timeout=300
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_missing_data_extra_is_one_line(tmp_path):
    (tmp_path / "s.parquet").write_bytes(b"PAR1")
    (tmp_path / "ds").mkdir()
    out = str(tmp_path / "out")
    rc, _, err = _blocked_cli(str(tmp_path / "s.parquet"), "--preset", "paper", "--out", out, "--quiet")
    assert rc == 2
    assert err == "error: reading Parquet needs the 'data' extra (pyarrow): pip install 'grpo-align[data]'\n"
    rc, _, err = _blocked_cli(str(tmp_path / "ds"), "--preset", "paper", "--out", out, "--quiet")
    assert rc == 2
    assert (
        err
        == "error: reading a datasets folder needs the 'data' extra (pyarrow, datasets): pip install 'grpo-align[data]'\n"
    )
    # JSON Lines needs no extra, and the outputs leave the Parquet twin out
    stats = _write_jsonl(tmp_path / "s.jsonl", ROWS)
    rc, _, err = _blocked_cli(str(stats), "--preset", "paper", "--out", out, "--quiet", "--planner-prompts", "0")
    assert rc == 0, err
    assert not (tmp_path / "out" / "predictions.parquet").exists() and (tmp_path / "out" / "predictions.csv").exists()


# ---------------------------------------------------------------------------- bad input
BAD = [
    # (file name, content, message after "error: ")
    ("s.csv", "prompt_id,n\na,3\n", "{p}, column correct: missing; n and correct go together"),
    ("s.csv", "id,p0\na,0.3\n", "{p}, column prompt_id: missing; the columns are id, p0"),
    ("s.csv", "prompt_id,score\na,0.3\n", "{p}: expected the columns n + correct, p0 or rewards beside prompt_id"),
    (
        "s.csv",
        "prompt_id,n,correct\na,4,2\nb,4,5\n",
        "{p}, line 3, column correct: 5 > n = 4; expected 0 <= correct <= n",
    ),
    ("s.csv", "prompt_id,n,correct\na,4,2\nb,,1\n", "{p}, line 3, column n: missing value"),
    ("s.csv", "prompt_id,n,correct\na,four,2\n", "{p}, line 2, column n: expected a number, got 'four'"),
    ("s.csv", "prompt_id,n,correct\na,4,2.5\n", "{p}, line 2, column correct: expected a whole number >= 0, got '2.5'"),
    ("s.csv", "prompt_id,n,correct\na,0,0\n", "{p}, line 2, column n: expected at least 1 sampled completion, got 0"),
    ("s.csv", "prompt_id,p0\na,0.3\nb,1.2\n", "{p}, line 3, column p0: 1.2 is outside [0, 1]; expected a probability"),
    (
        "s.csv",
        "prompt_id,p0\na,0.3\nb,-0.1\n",
        "{p}, line 3, column p0: -0.1 is outside [0, 1]; expected a probability",
    ),
    ("s.csv", "prompt_id,p0\na,nan\n", "{p}, line 2, column p0: expected a finite number, got nan"),
    (
        "s.csv",
        "prompt_id,p0\na,0.3\nb,0.4\na,0.5\n",
        "{p}, line 4, column prompt_id: duplicate prompt_id 'a' (first at line 2); expected one row per prompt",
    ),
    (
        "s.csv",
        'prompt_id,rewards\na,"[1, x]"\n',
        "{p}, line 2, column rewards: expected a JSON list of numbers, got '[1, x]'",
    ),
    ("s.csv", "prompt_id,rewards\na,1 x\n", "{p}, line 2, column rewards[1]: expected a number, got 'x'"),
    (
        "s.jsonl",
        '{"prompt_id": "a", "p0": 0.2}\n\n{"prompt_id": "b", "p0": "high"}\n',
        "{p}, line 3, column p0: expected a number, got 'high'",
    ),
    ("s.jsonl", '{"prompt_id": "a", "p0": 0.2}\n{"prompt_id": "b"}\n', "{p}, line 2, column p0: missing value"),
    (
        "s.jsonl",
        '{"prompt_id": "a", "n": 3, "correct": true}\n',
        "{p}, line 1, column correct: expected a number, got True",
    ),
    (
        "s.jsonl",
        '{"prompt_id": "a", "p0": 0.2}\n{"prompt_id": "a", "p0": 0.3}\n',
        "{p}, line 2, column prompt_id: duplicate prompt_id 'a' (first at line 1); expected one row per prompt",
    ),
    (
        "s.jsonl",
        '{"prompt_id": "a", "p0": 0.2}\n{"prompt_id": "b", "p0": 0.2\n',
        "{p}, line 2: malformed JSON (Expecting ',' delimiter); expected one object per line",
    ),
    (
        "s.jsonl",
        '{"prompt_id": "a", "rewards": []}\n',
        "{p}, line 1, column rewards: expected a non-empty list of rewards",
    ),
    (
        "s.txt",
        "prompt_id,p0\n",
        "{p}: unknown format; expected .jsonl, .csv, .parquet (optionally .gz for the first two) or a folder written by datasets' save_to_disk",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD, ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD)])
def test_bad_input_is_one_line(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    rc = main(["predict", str(path), "--preset", "paper", "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == f"error: {message.format(p=path)}\n"
    assert not (tmp_path / "out" / "predictions.csv").exists()  # nothing half-written


def test_bad_parquet_row_names_the_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(
        pa.Table.from_pylist([{"prompt_id": "a", "n": 4, "correct": 1}, {"prompt_id": "b", "n": 4, "correct": 9}]),
        tmp_path / "s.parquet",
    )
    with pytest.raises(InputError, match=r"s\.parquet, row 2, column correct: 9 > n = 4"):
        list(StatsReader(tmp_path / "s.parquet"))


# ---------------------------------------------------------------------------- streaming
def test_streaming_gives_the_same_output_as_one_chunk(tmp_path):
    rng = np.random.default_rng(5)
    rows = [{"prompt_id": f"q{i}", "n": 16, "correct": int(c)} for i, c in enumerate(rng.integers(0, 17, 50))]
    stats = _write_jsonl(tmp_path / "s.jsonl", rows)
    algo = GRPO(group_size=4, beta=0.2)
    one = tmp_path / "one"
    many = tmp_path / "many"
    run_predict(stats, algo, SpecSource("preset", "x"), one, chunk_size=1000, planner_prompts=8, html=False)
    run_predict(stats, algo, SpecSource("preset", "x"), many, chunk_size=7, planner_prompts=8, html=False)
    assert (one / "predictions.csv").read_bytes() == (many / "predictions.csv").read_bytes()
    a, b = (json.loads((d / "summary.json").read_text()) for d in (one, many))
    a.pop("seconds"), b.pop("seconds")
    # running sums in a different order: equal to rounding
    for key in [k for k in a if k.startswith("mean_")]:
        assert a.pop(key) == pytest.approx(b.pop(key), abs=1e-14)
    assert a == b  # the planner's random sample does not depend on the chunking either


# ---------------------------------------------------------------------------- spec
def test_load_spec_sources(tmp_path):
    assert load_spec("trl", {"beta": 0.04}) == GRPO.preset("trl", beta=0.04)
    assert load_spec("paper", {"group_size": math.inf}).is_limit
    toml = tmp_path / "a.toml"
    toml.write_text('[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\n\n[algorithm]\npreset = "verl"\nbeta = 0.01\n')
    assert load_spec(toml) == GRPO.preset("verl", beta=0.01)
    toml.write_text("[[algorithm]]\ngroup_size = 4\nbeta = 0.2\n")
    assert load_spec(toml, {"beta": 0.3}) == GRPO(group_size=4, beta=0.3)
    trl_cfg = {"num_generations": 4, "beta": 0.1, "scale_rewards": "none", "use_bias_correction_kl": True}
    (tmp_path / "trl.json").write_text(json.dumps(trl_cfg))
    algo, source = load_spec_with_source(tmp_path / "trl.json")
    assert (algo.group_size, algo.beta, algo.normalization, algo.penalty) == (4, 0.1, "shift", "k2")
    assert (source.kind, source.trainer) == ("trainer", "trl")
    pytest.importorskip("yaml")
    (tmp_path / "trl.yaml").write_text(
        "num_generations: 4\nbeta: 0.1\nscale_rewards: none\nuse_bias_correction_kl: true\n"
    )
    assert load_spec(tmp_path / "trl.yaml") == algo


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (
            "[[algorithm]]\nbeta = 0.1\n[[algorithm]]\nbeta = 0.2\n",
            ".toml",
            "has 2 [[algorithm]] tables; expected exactly one",
        ),
        ("title = 'x'\n", ".toml", "algorithm: missing; expected an [algorithm] table of GRPO fields"),
        ('{"num_generations": 4, "rollout_n": 3}', ".json", "rollout_n"),
        ('{"scale_rewards": "batch", "beta": 0.1}', ".json", "scale_rewards: 'batch' scales by a batch-wide std"),
    ],
)
def test_bad_config_is_one_line(tmp_path, content, suffix, message):
    path = tmp_path / f"c{suffix}"
    path.write_text(content)
    with pytest.raises(
        InputError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")
    ):
        load_spec(path)


def test_unknown_preset(capsys, tmp_path):
    stats = _write_jsonl(tmp_path / "s.jsonl", ROWS)
    assert main(["predict", str(stats), "--config", "trlx"]) == 2
    assert (
        capsys.readouterr().err
        == "error: --config: 'trlx' is neither a file nor a preset (paper, trl, verl, openrlhf, dr_grpo, rloo)\n"
    )


# ---------------------------------------------------------------------------- the command
def test_command_on_the_shipped_example(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        ["predict", str(ROOT / "examples" / "pass_rates.jsonl"), "--preset", "trl", "--beta", "0.04", "--out", str(out)]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert (
        "spec (preset trl): G=8 beta=0.04 shift_scale ddof=1 eps=0.0001 penalty=k2 in the loss aggregation=constant"
        in text
    )
    summary = json.loads((out / "summary.json").read_text())
    rows = _predictions(out)
    assert summary["prompts"] == len(rows) >= 24
    assert summary["mean_p0"] == pytest.approx(np.mean([float(r["p0"]) for r in rows.values()]), abs=1e-12)
    assert summary["mean_predicted"] == pytest.approx(
        np.mean([float(r["predicted"]) for r in rows.values()]), abs=1e-12
    )
    # the summary records the whole spec the preset trains (every GRPO field)
    assert summary["spec"] == {
        "group_size": 8,
        "beta": 0.04,
        "normalization": "shift_scale",
        "ddof": 1,
        "eps": 1e-4,
        "penalty": "k2",
        "aggregation": "constant",
        "penalty_in": "loss",
    }
    assert summary["source"]["kind"] == "preset" and summary["source"]["overrides"] == {"beta": 0.04}
    page = (out / "index.html").read_text()
    assert page.count("<img") == 3 and "http://" not in page and "https://" not in page


def test_out_must_be_a_folder(tmp_path, capsys):
    stats = _write_jsonl(tmp_path / "s.jsonl", ROWS)
    (tmp_path / "f").write_text("")
    assert main(["predict", str(stats), "--preset", "paper", "--out", str(tmp_path / "f")]) == 2
    assert capsys.readouterr().err == f"error: --out: {tmp_path / 'f'} is a file; expected a folder\n"


@pytest.mark.parametrize("preset", ["trl --beta 0.04", "paper"])
def test_readme_shows_the_real_output(tmp_path, capsys, preset):
    """The predict how-to's `grpo-align predict` blocks are what the command prints (no drift)."""
    readme = (ROOT / "docs" / "howto" / "predict.md").read_text()
    command = f"$ grpo-align predict examples/pass_rates.jsonl --preset {preset} --out "
    start = readme.index(command)
    block = readme[start : readme.index("```", start)]
    shown = [line for line in block.splitlines() if line.startswith(("│", "spec (", "status:"))]
    assert len(shown) >= 6
    rc = main(
        ["predict", str(ROOT / "examples" / "pass_rates.jsonl"), "--preset", *preset.split(), "--out", str(tmp_path)]
    )
    printed = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert shown == [line for line in printed if line.startswith(("│", "spec (", "status:"))]


def test_csv_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes("\ufeffprompt_id,p0\na,0.3\n".encode())
    rows = _run(tmp_path, path, GRPO(group_size=2, beta=0.2))
    assert float(rows["a"]["predicted"]) == pytest.approx(binary_g2_policy(0.3, 0.2), abs=TOL)


def test_a_failed_solve_exits_1_and_names_the_prompt(tmp_path, capsys, monkeypatch):
    """A failure at an interval end marks the prompt failed, with the end named."""

    from grpo_align.predict import engine

    real = engine.stationary_policy

    def failing_last(problem, algo):
        res = real(problem, algo)
        status = (*res.status[:-1], "failed")
        message = (*res.message[:-1], "no stationary policy found (test)")
        success = res.success.copy()
        success[-1] = False
        return dataclasses.replace(res, status=status, message=message, success=success)

    monkeypatch.setattr(engine, "stationary_policy", failing_last)
    stats = _write_jsonl(tmp_path / "s.jsonl", ROWS)
    rc = main(["predict", str(stats), "--preset", "paper", "--out", str(tmp_path / "out"), "--planner-prompts", "0"])
    err = capsys.readouterr().err
    assert rc == 1
    # the last context of the batch is the last prompt's p0_high
    assert err.startswith("error: prompt d: the end point at p0_high = 0.")
    assert err.rstrip().endswith("failed: no stationary policy found (test)")
    assert _predictions(tmp_path / "out")["d"]["status"] == "failed"
    assert _predictions(tmp_path / "out")["a"]["status"] == "interior"
