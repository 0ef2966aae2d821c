"""``grpo-align solve``: printed numbers, JSON, exit codes and one-line errors.

Expected numbers are THEORY.md section 6's worked numbers and the closed forms of
``closed_form.py`` (routes independent of the general solver the command calls).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import grpo_align as ga
from grpo_align.cli import main
from grpo_align.commands import solve as solve_cmd
from grpo_align.files import to_jsonable

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _row(out: str, label: str) -> list[str]:
    """Cells of the table row whose first cell is ``label`` (rich box-drawing separators)."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in:\n{out}")


def _header(out: str) -> list[str]:
    for line in out.splitlines():
        if "output" in line and "reference" in line:
            return [c.strip() for c in line.strip().strip("┃").split("┃")]
    raise AssertionError(f"no header in:\n{out}")


def _column(out: str, label: str, column: str) -> float:
    return float(_row(out, label)[_header(out).index(column)])


def test_binary_example_prints_theory_numbers(capsys):
    assert main(["solve", str(EXAMPLES / "binary.toml")]) == 0
    out = capsys.readouterr().out
    # THEORY.md section 6, p0 = 0.3, beta = 0.5
    assert _column(out, "correct", "G=2") == pytest.approx(0.710977, abs=5e-7)
    assert _column(out, "correct", "G=8") == pytest.approx(0.853564, abs=5e-7)
    assert _column(out, "correct", "G=inf") == pytest.approx(0.9, abs=5e-7)
    assert _column(out, "correct", "G=8 shift") == pytest.approx(0.680491, abs=5e-7)
    assert _column(out, "correct", "RLHF beta=0.5") == pytest.approx(0.760004, abs=5e-7)
    assert _column(out, "wrong", "G=2") == pytest.approx(1 - 0.710977, abs=5e-7)
    assert _column(out, "correct", "reference") == pytest.approx(0.3, abs=5e-7)


def test_three_outputs_example_prints_theory_numbers(capsys):
    assert main(["solve", str(EXAMPLES / "three_outputs.toml")]) == 0
    out = capsys.readouterr().out
    got = [_column(out, name, "GRPO k3") for name in ("best", "middle", "worst")]
    np.testing.assert_allclose(got, [0.653113, 0.155904, 0.190983], atol=5e-7)
    # RLHF pooling by hand: pi_ref * exp(r / beta), normalised
    rlhf = np.array([0.2, 0.3, 0.5]) * np.exp(np.array([1.0, 0.5, 0.0]) / 0.5)
    got_rlhf = [_column(out, name, "RLHF beta=0.5") for name in ("best", "middle", "worst")]
    np.testing.assert_allclose(got_rlhf, rlhf / rlhf.sum(), atol=5e-7)


def test_precision_option(capsys):
    assert main(["solve", str(EXAMPLES / "binary.toml"), "--precision", "3"]) == 0
    cells = _row(capsys.readouterr().out, "correct")
    assert "0.711" in cells and "0.854" in cells


def test_every_example_solves(capsys):
    for path in sorted(EXAMPLES.glob("*.toml")):
        assert main(["solve", str(path)]) == 0, path
    capsys.readouterr()


def test_batch_example_one_table_per_context(capsys):
    assert main(["solve", str(EXAMPLES / "presets.toml")]) == 0
    out = capsys.readouterr().out
    assert "context 1 of 2" in out and "context 2 of 2" in out
    # dr_grpo has beta = 0: the limit puts all mass on the best answer of each question
    assert "limit" in out


def test_json_output(tmp_path, capsys):
    out_file = tmp_path / "binary.json"
    assert main(["solve", str(EXAMPLES / "binary.toml"), "--out", str(out_file)]) == 0
    capsys.readouterr()
    # strict JSON: no NaN/Infinity literals (G = inf is written as "inf")
    data = json.loads(out_file.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert [p.name for p in tmp_path.iterdir()] == ["binary.json"]  # no temp file left behind
    assert data["success"] is True
    assert data["problem"]["kind"] == "rewards"
    assert data["problem"]["names"] == ["correct", "wrong"]
    np.testing.assert_allclose(data["problem"]["ref"], [0.3, 0.7])
    algos = {a["name"]: a for a in data["algorithms"]}
    assert list(algos) == ["G=2", "G=8", "G=inf", "G=8 shift"]
    assert algos["G=inf"]["spec"]["group_size"] == "inf"
    assert algos["G=8"]["spec"] == {
        "group_size": 8,
        "beta": 0.5,
        "normalization": "shift_scale",
        "ddof": 0,
        "eps": 0.0,
        "penalty": "k3",
        "aggregation": "sequence_mean",
        "penalty_in": "loss",
    }
    # closed forms of THEORY.md section 6, computed without the general solver
    # every algorithm field carries the context axis, also for one context
    assert algos["G=2"]["policy"][0][0] == pytest.approx(ga.binary_g2_policy(0.3, 0.5), abs=1e-10)
    assert algos["G=8"]["policy"][0][0] == pytest.approx(ga.binary_policy(0.3, 0.5, 8), abs=1e-10)
    assert algos["G=inf"]["policy"][0][0] == pytest.approx(ga.binary_limit_policy(0.3, 0.5), abs=1e-10)
    assert algos["G=8 shift"]["policy"][0][0] == pytest.approx(ga.binary_shift_policy(0.3, 0.5, 8), abs=1e-10)
    for a in algos.values():
        assert a["status"] == ["interior"] and a["success"] == [True]
        assert len(a["residual"]) == 1 and a["residual"][0] < 1e-9
        assert len(a["roots"]) == 1 and len(a["roots"][0]) == 1 and a["roots"][0][0]["stable"] is True
        assert a["roots"][0][0]["policy"] == pytest.approx(a["policy"][0])
    assert data["rlhf"]["beta"] == 0.5
    assert data["rlhf"]["policy"][0][0] == pytest.approx(0.760004, abs=5e-7)


def test_json_batch_has_context_axis(tmp_path, capsys):
    out_file = tmp_path / "presets.json"
    assert main(["solve", str(EXAMPLES / "presets.toml"), "--out", str(out_file)]) == 0
    capsys.readouterr()
    data = json.loads(out_file.read_text())
    assert data["problem"]["batched"] is True
    for a in data["algorithms"]:
        assert np.asarray(a["policy"]).shape == (2, 4)
        assert len(a["status"]) == 2 and len(a["roots"]) == 2
        np.testing.assert_allclose(np.sum(a["policy"], axis=1), 1.0, atol=1e-12)
    # RLOO's leave-one-out advantage is unbiased, P(o) = E r(o) - E_pi r, so with the k2
    # penalty its stationary policy is RLHF's logarithmic pooling (THEORY.md section 5)
    rloo = next(a for a in data["algorithms"] if a["preset"] == "rloo")
    np.testing.assert_allclose(rloo["policy"], data["rlhf"]["policy"], atol=1e-9)


def test_failed_solve_exits_1_with_message(monkeypatch, capsys):
    real = ga.stationary_policy

    def failing(problem, algo):
        res = real(problem, algo)
        n = len(res)
        return dataclasses.replace(
            res,
            success=np.zeros(n, bool),
            status=("failed",) * n,
            message=("forced failure for the test",) * n,
        )

    monkeypatch.setattr(solve_cmd, "stationary_policy", failing)
    assert main(["solve", str(EXAMPLES / "binary.toml")]) == 1
    captured = capsys.readouterr()
    assert "forced failure for the test" in captured.err
    assert "Traceback" not in captured.err


BAD_INPUTS = {
    "malformed": ("[problem\nref = [0.5, 0.5]\n", "malformed TOML"),
    "unknown_key": (
        "[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\n[[algorithm]]\ngroup_size = 2\nbetta = 0.5\n",
        "algorithm[1].betta",
    ),
    "bad_probabilities": (
        "[problem]\nref = [0.5, 0.6]\nrewards = [1, 0]\n[[algorithm]]\ngroup_size = 2\nbeta = 0.5\n",
        "problem.ref",
    ),
    "negative_probability": (
        "[problem]\nref = [1.5, -0.5]\nrewards = [1, 0]\n[[algorithm]]\nbeta = 0.5\n",
        "problem.ref",
    ),
    "unknown_preset": (
        '[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\n[[algorithm]]\npreset = "deepspeed"\n',
        "algorithm[1].preset",
    ),
    "no_algorithm": ("[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\n", "algorithm"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_line_exit_2(case, tmp_path, capsys):
    text, field = BAD_INPUTS[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    assert main(["solve", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and field in lines[0]
    assert captured.out == ""


def test_missing_file_exit_2(tmp_path, capsys):
    assert main(["solve", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.toml" in err[0]


def test_bad_precision_exit_2(capsys):
    assert main(["solve", str(EXAMPLES / "binary.toml"), "--precision", "-1"]) == 2
    assert "--precision" in capsys.readouterr().err


def _run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    exe = Path(sys.executable).with_name("grpo-align")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "grpo_align.cli"]
    return subprocess.run(cmd + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_console_script_binary_example():
    proc = _run_cli("solve", "examples/binary.toml")
    assert proc.returncode == 0, proc.stderr
    assert _column(proc.stdout, "correct", "G=2") == pytest.approx(0.710977, abs=5e-7)
    assert _column(proc.stdout, "correct", "G=8") == pytest.approx(0.853564, abs=5e-7)


def test_console_script_bad_input_no_traceback(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[problem]\nref = [0.5, 0.5]\nrewards = [1, 0]\nspeed = 3\n[[algorithm]]\nbeta = 0.5\n")
    proc = _run_cli("solve", str(path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: problem.speed: unknown key; allowed: ref, rewards, success, levels, dist, win_prob, names, renormalize, sequences"
    ]


def test_inf_group_size_roundtrip_value():
    # the JSON encoder keeps the limit recognisable and strict
    assert to_jsonable(math.inf) == "inf"
    assert to_jsonable(float("nan")) is None
    assert to_jsonable(np.array([1 + 2j])) == {"real": [1.0], "imag": [2.0]}


def test_multiple_roots_reported_with_stability(tmp_path, capsys):
    out_file = tmp_path / "roots.json"
    assert main(["solve", str(EXAMPLES / "multiple_roots.toml"), "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "3 stationary policies" in out
    data = json.loads(out_file.read_text())
    k2 = next(a for a in data["algorithms"] if a["spec"]["penalty"] == "k2")
    assert k2["spec"]["group_size"] == 32 and k2["spec"]["beta"] == 0.5
    p0, beta, g = 0.01, 0.5, 32

    # k2 stationarity for a binary question, written with the closed-form P_G of
    # THEORY.md section 6: f(p) = logit p0 + (P_correct - P_wrong)/beta - logit p = 0;
    # the expected logit dynamics move along f, so a root is stable where f' < 0
    def f(p: float) -> float:
        pc, pw = ga.binary_preference(p, g)
        return math.log(p0 / (1 - p0)) + (pc - pw) / beta - math.log(p / (1 - p))

    assert len(k2["roots"]) == 1  # one context
    roots = k2["roots"][0]
    assert len(roots) == 3
    for root in roots:
        p = root["policy"][0]
        # the solver accepts |P_G(o) - beta phi(o) - c| <= 1e-9 * max(1, |P_G|, beta |phi|) on
        # each output; f is the difference of the two outputs' conditions divided by beta
        pc, pw = ga.binary_preference(p, g)
        scale = max(1.0, abs(pc), abs(pw), beta * abs(math.log(p / p0)), beta * abs(math.log((1 - p) / (1 - p0))))
        assert abs(f(p)) <= 2 * 1e-9 * scale / beta, (p, f(p))
        h = 1e-6 * min(p, 1 - p)
        slope = (f(p + h) - f(p - h)) / (2 * h)
        assert root["stable"] is (slope < 0), (p, slope)
    assert [r["stable"] for r in roots] == [True, False, True]
    # the returned policy is the stable root nearest the reference
    assert k2["policy"][0][0] == pytest.approx(roots[0]["policy"][0])


def test_out_into_missing_directory_exit_2(tmp_path, capsys):
    assert main(["solve", str(EXAMPLES / "binary.toml"), "--out", str(tmp_path / "no" / "x.json")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: --out") and captured.out == ""  # checked before solving
    assert main(["solve", str(EXAMPLES / "binary.toml"), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


MANY_ALGORITHMS = (
    "[problem]\nref = [0.1, 0.2, 0.3, 0.4]\nsuccess = [0.9, 0.6, 0.3, 0.1]\n"
    'names = ["a rather long output name", "b", "c", "d"]\n'
    + "".join(
        f'[[algorithm]]\nname = "algorithm number {i} with a long name"\ngroup_size = {g}\nbeta = 0.{i + 1}\n'
        for i, g in enumerate((2, 3, 4, 5, 6, 8, 12, 16))
    )
)


@pytest.mark.parametrize("width", [80, 60])
def test_tables_never_cut_a_number(width, tmp_path):
    """On a narrow terminal the columns are shared out over several tables (and the
    solver table becomes paragraphs): every number printed is whole, no cell is cut."""
    from rich.console import Console

    many = tmp_path / "many.toml"
    many.write_text(MANY_ALGORITHMS)
    for path in [*sorted(EXAMPLES.glob("*.toml")), many]:
        spec = solve_cmd.load_problem_toml(path, extra_tables=("train",))
        results = [ga.stationary_policy(spec.problem, algo) for _, algo in spec.algorithms]
        beta = solve_cmd.rlhf_beta_of(spec)
        rlhf = None if beta is None else np.reshape(ga.rlhf_policy(spec.problem, beta), spec.problem.ref.shape)
        buffer = io.StringIO()
        console = Console(width=width, file=buffer, color_system=None, highlight=False)
        solve_cmd.print_results(console, spec, results, rlhf, beta, 6, 8)
        text = buffer.getvalue()
        assert "…" not in text, (path.name, text)
        assert max(len(line) for line in text.splitlines()) <= width
        numbers = set(re.findall(r"\d+\.\d+(?:e[-+]\d+)?", text))
        policies = [r.policy for r in results] + ([] if rlhf is None else [rlhf])
        for c in range(min(spec.problem.n_contexts, 8)):
            for o in range(spec.options["n_outputs"][c]):
                for p in policies:
                    assert f"{p[c, o]:.6f}" in numbers, (path.name, c, o)
        for res in results:  # contexts with one outcome share a row showing the largest residual
            assert f"{max(res.residual):.1e}" in numbers, path.name
        assert "algorithm number 7 with a long name" in " ".join(text.split()) or path != many


@pytest.mark.parametrize(
    "argv",
    [
        ["solve", str(EXAMPLES / "binary.toml")],
        ["explain", str(EXAMPLES / "trl_grpo.yaml")],
    ],
)
def test_closed_pipe_exits_141_quietly(argv):
    """A reader that went away (`| head`) is 141, not 1 (a failed solve), and prints nothing."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the command writes: every write fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "grpo_align.cli", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env=os.environ | {"COLUMNS": "100"},
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""
