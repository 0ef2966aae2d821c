"""``grpo-align explain``: the mapping table, the words and the predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grpo_align.cli import main
from grpo_align.theory import binary_shift_policy

ROOT = Path(__file__).resolve().parents[1]


def test_trl_default_says_beta_zero(tmp_path, capsys):
    f = tmp_path / "trl.json"
    f.write_text(json.dumps({"num_generations": 8}))
    assert main(["explain", str(f)]) == 0
    out = capsys.readouterr().out
    assert "beta = 0: no interior end point, mass goes to the best reward class" in out
    assert "num_generations" in out


def test_prediction_matches_closed_form(tmp_path, capsys):
    # TRL scale_rewards none + plain k3 = shift normalisation, k3: a quadratic (THEORY.md section 6)
    f = tmp_path / "trl.json"
    f.write_text(
        json.dumps({"num_generations": 4, "beta": 0.5, "scale_rewards": "none", "use_bias_correction_kl": False})
    )
    assert main(["explain", str(f), "--p0", "0.3"]) == 0
    out = capsys.readouterr().out
    expected = binary_shift_policy(0.3, 0.5, 4)
    assert f"p0 = 0.3 -> {expected:.6f}" in out


@pytest.mark.parametrize("name", ["trl_grpo.yaml", "verl_grpo.yaml", "openrlhf_grpo.flags"])
def test_examples_explain(name, capsys):
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    assert main(["explain", str(ROOT / "examples" / name), "--p0", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "optimises:" in out and "p0 = 0.5 ->" in out


def test_verl_clamp_is_flagged(capsys):
    pytest.importorskip("yaml")
    assert main(["explain", str(ROOT / "examples" / "verl_grpo.yaml"), "--p0", "0.3"]) == 0
    assert "k3 clamp binds" in capsys.readouterr().out


def test_refused_config_is_one_line_exit_2(tmp_path, capsys):
    f = tmp_path / "run.flags"
    f.write_text("--rollout.n_samples_per_prompt 4 --algo.advantage.estimator gae\n")
    assert main(["explain", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --algo.advantage.estimator: 'gae'")


def test_markup_in_user_strings_is_escaped(tmp_path, capsys):
    f = tmp_path / "trl.json"
    f.write_text(json.dumps({"num_generations": 4, "output_dir": "[bold]x[/bold]"}))
    assert main(["explain", str(f), "--no-predict"]) == 0
    assert "[bold]x[/bold]" in capsys.readouterr().out


def test_bad_p0(tmp_path, capsys):
    f = tmp_path / "trl.json"
    f.write_text("{}")
    assert main(["explain", str(f), "--p0", "1.5"]) == 2


def test_words_follow_the_penalty_placement():
    """The penalty in the reward is not described as a penalty in the loss (THEORY.md 10.7)."""
    from grpo_align.commands.explain import objective_words
    from grpo_align.theory import GRPO

    rloo = objective_words(GRPO.preset("rloo", beta=0.1))
    assert "subtracted from each reward" in rloo and "RLHF's objective" in rloo and "in the loss" not in rloo
    std = objective_words(GRPO(group_size=4, beta=0.1, penalty="k1", penalty_in="reward"))
    assert "sliding-mode" in std and "in the loss" not in std
    loss = objective_words(GRPO(group_size=4, beta=0.1))
    assert "k3 penalty in the loss" in loss and "reverse-KL" in loss


def test_brief_leaves_out_the_settings_table(capsys):
    pytest.importorskip("yaml")
    path = str(ROOT / "examples" / "trl_grpo.yaml")
    assert main(["explain", path, "--p0", "0.5"]) == 0
    full = capsys.readouterr().out
    assert main(["explain", path, "--p0", "0.5", "--brief"]) == 0
    brief = capsys.readouterr().out
    assert "num_generations" in full and "num_generations" not in brief
    assert brief.splitlines()[0].startswith("trains GRPO(") and brief.strip().splitlines()[-1] in full
