"""The sequence experiment's summary, verdict and tables (pure: no torch, no training)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grpo_align.commands import lm_sequences
from grpo_align.commands.lm_sequences import is_sequence_summary, sequence_markdown
from grpo_align.errors import InputError
from grpo_align.files import json_dumps
from grpo_align.theory.spec import GRPO
from grpo_align.verify import family_wise_bound, sequence_summary, setting_name

PRED = {
    "sequence_mean": np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]),
    "constant": np.array([[0.4, 0.4, 0.2], [0.2, 0.0, 0.8]]),
}
QUESTIONS = [
    {"prompt": "q0", "candidates": ["yes", "yes indeed", "no"], "rewards": [1, 1, 0], "reference": [0.2, 0.2, 0.6]},
    {"prompt": "q1", "candidates": ["yes", "yes indeed", "no"], "rewards": [0, 0, 1], "reference": [0.3, 0.3, 0.4]},
]
SE = np.full((2, 3), 0.01)


def _run(name, measured):
    return {"name": name, "algo": {"aggregation": name}, "measured": measured, "stderr": SE, "other": [0.0, 0.0]}


def _summary(measured_sm, measured_c):
    return sequence_summary(
        trainer="grpo_align",
        config={"steps": 10},
        questions=QUESTIONS,
        predicted=PRED,
        runs=[_run("sequence_mean", measured_sm), _run("constant", measured_c)],
        n_batches=10,
    )


def test_family_wise_bound_against_tables():
    # two-sided 5 % with 9 degrees of freedom: 2.262 (Student's t table); a large dof
    # approaches the normal quantile 3.2905 of two-sided 1e-3
    assert family_wise_bound(1, 9, 0.05) == pytest.approx(2.2622, abs=1e-4)
    assert family_wise_bound(1, 10**6, 1e-3) == pytest.approx(3.2905, abs=1e-3)
    # Bonferroni: N tests at alpha is one test at alpha / N
    assert family_wise_bound(50, 9, 1e-3) == pytest.approx(family_wise_bound(1, 9, 2e-5))
    with pytest.raises(InputError):
        family_wise_bound(0, 9)


def test_setting_names():
    assert setting_name(GRPO(aggregation="constant")) == "constant"
    assert setting_name(GRPO(normalization="shift", penalty="k1", penalty_in="reward")) == "k1_in_reward"


def test_summary_z_scores_margins_and_verdict():
    good = _summary(PRED["sequence_mean"] + 0.01, PRED["constant"] - 0.02)
    assert is_sequence_summary(json.loads(json_dumps(good)))
    sm, c = good["runs"]
    np.testing.assert_allclose(sm["z"], np.ones((2, 3)))
    np.testing.assert_allclose(c["z"], -2 * np.ones((2, 3)))
    # mean |measured - other prediction| by hand: sequence_mean's run against constant's prediction
    by_hand = np.mean(np.abs(PRED["sequence_mean"] + 0.01 - PRED["constant"]))
    assert sm["mae"]["constant"] == pytest.approx(by_hand)
    assert sm["margin"] == pytest.approx(by_hand - 0.01)
    assert good["verdict"]["tests"] == 12 and good["verdict"]["dof"] == 9
    assert good["verdict"]["bound"] == pytest.approx(family_wise_bound(12, 9))
    assert good["verdict"]["pass"] is True
    # one answer 10 standard errors off fails the bound; a run as near the other prediction fails the margin
    far = PRED["constant"].copy()
    far[0, 0] += 0.10
    assert _summary(PRED["sequence_mean"], far)["verdict"]["pass"] is False
    halfway = (PRED["sequence_mean"] + PRED["constant"]) / 2
    mixed = _summary(halfway, PRED["constant"])
    assert mixed["runs"][0]["separated"] is False and mixed["verdict"]["pass"] is False


def test_markdown_tables_show_the_numbers():
    data = json.loads(json_dumps(_summary(PRED["sequence_mean"] + 0.01, PRED["constant"] - 0.02)))
    text = sequence_markdown(data)
    table1, verdict, table2 = text.strip().split("\n\n")
    rows = [line.split("|")[1:-1] for line in table1.splitlines()[2:]]
    assert [r[0].strip() for r in rows] == ["sequence_mean", "constant"]
    assert rows[0][1].strip() == "**0.0100**" and rows[1][2].strip() == "**0.0200**"
    assert rows[0][-1].strip() == rows[1][-1].strip() == "pass"
    assert verdict.startswith("Verdict: pass")
    lines = table2.splitlines()
    assert len(lines) == 2 + 6
    first = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert first[:4] == ["0", "yes", "1", "0.200"]
    assert first[4:6] == ["0.500", "0.400"]
    assert first[6] == "0.510 ± 0.0100 (+1.0)" and first[7] == "0.380 ± 0.0100 (-2.0)"


def test_markdown_refuses_a_malformed_summary():
    data = json.loads(json_dumps(_summary(PRED["sequence_mean"], PRED["constant"])))
    del data["runs"][0]["mae"]
    with pytest.raises(InputError) as info:
        sequence_markdown(data, "x.json")
    assert info.value.field == "--from-summary"


def test_cli_prints_a_stored_sequence_summary(tmp_path, capsys):
    from grpo_align.cli import main

    path = tmp_path / "seq.json"
    path.write_text(json_dumps(_summary(PRED["sequence_mean"], PRED["constant"])))
    assert main(["lm", "--from-summary", str(path), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out == sequence_markdown(json.loads(path.read_text()), path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "lm-sequences", "runs": []}))
    assert main(["lm", "--from-summary", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "--from-summary" in err and "Traceback" not in err


@pytest.mark.parametrize("flags", [["--quick"], ["--beta", "0.3"], ["--preset", "trl"], ["--steps", "5"]])
def test_cli_refuses_flags_the_sequence_task_does_not_take(flags, tmp_path, capsys):
    from grpo_align.cli import main

    assert main(["lm", "--task", "sequences", *flags, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_commands_module_reexports_the_verdict_names():
    """The summary and its verdict moved to grpo_align.verify; the old import path still works."""
    from grpo_align import verify

    for name in ("ALPHA", "SUMMARY_KIND", "family_wise_bound", "sequence_summary", "setting_name"):
        assert getattr(lm_sequences, name) is getattr(verify, name)
