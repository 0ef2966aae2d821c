"""`grpo-align train FILE.toml`: output files, the printed gap, resume and bad input."""

from __future__ import annotations

import json

import pytest

from grpo_align import training
from grpo_align.cli import main

TOML = """
title = "tiny"
[problem]
ref = [0.3, 0.7]
rewards = [1.0, 0.0]
names = ["correct", "wrong"]

[[algorithm]]
group_size = 4
beta = 0.5

[[algorithm]]
preset = "trl"
beta = 0.1

[train]
steps = 60
groups_per_step = 16
lr = 1.0
n_batches = 5
checkpoint_every = 10
"""


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def toml_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TOML)
    return path


def test_train_writes_summary_and_trajectory(toml_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", str(toml_file), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "gap to the predicted policy" in printed and "stderr" in printed
    summary = _lines(out / "summary.jsonl")
    assert [s["index"] for s in summary] == [0, 1]
    assert summary[1]["algorithm"]["ddof"] == 1  # the trl preset
    for i, s in enumerate(summary):
        # one context: every per-context array keeps the context axis
        assert len(s["mean_policy"]) == 1 and len(s["mean_policy"][0]) == 2
        assert abs(sum(s["mean_policy"][0]) - 1) < 1e-12 and "seconds" in s
        traj = _lines(out / f"trajectory-{i}.jsonl")
        assert traj[0]["step"] == 0 and traj[0]["policy"][0] == pytest.approx([0.3, 0.7])
        assert traj[-1]["step"] == 60 and traj[-1]["policy"][0] == pytest.approx(s["policy"][0])
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind


def test_interrupted_then_resumed_equals_uninterrupted(toml_file, tmp_path, monkeypatch):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", str(toml_file), "--out", str(full), "--quiet"]) == 0
    original = training.train

    def crashing_train(*args, callback=None, **kw):
        def crash(step, metrics):
            callback(step, metrics)
            if step == 27:
                raise KeyboardInterrupt

        return original(*args, callback=crash, **kw)

    monkeypatch.setattr(training, "train", crashing_train)
    assert main(["train", str(toml_file), "--out", str(cut), "--quiet"]) == 130
    assert not (cut / "summary.jsonl").exists()
    monkeypatch.setattr(training, "train", original)
    assert main(["train", str(toml_file), "--out", str(cut), "--quiet", "--resume"]) == 0
    for name in ("trajectory-0.jsonl", "trajectory-1.jsonl"):
        assert (cut / name).read_text() == (full / name).read_text()
    a, b = _lines(full / "summary.jsonl"), _lines(cut / "summary.jsonl")
    for x, y in zip(a, b, strict=False):
        for key in ("policy", "mean_policy", "stderr", "gap", "predicted"):
            assert x[key] == y[key]


def test_bad_train_table(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(TOML.replace("lr = 1.0", "lr = 1.0\nlearning_rate = 2"))
    assert main(["train", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train.learning_rate") and err.count("\n") == 1
