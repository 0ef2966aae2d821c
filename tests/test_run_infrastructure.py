"""The shared run infrastructure: config base, tail statistics, checkpoints, result views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import grpo_align as ga
from grpo_align.errors import InputError
from grpo_align.training import RunConfig, TrainConfig, tail_statistics, train
from grpo_align.training.checkpoint import load_checkpoint, save_checkpoint
from grpo_align.training.stats import TailAccumulator


def test_tail_statistics_is_batch_means():
    rng = np.random.default_rng(0)
    recs = rng.normal(size=(40, 2, 3))
    stats = tail_statistics(recs, 4)
    means = recs.reshape(4, 10, 2, 3).mean(axis=1)
    np.testing.assert_allclose(stats.mean, recs.mean(axis=0))
    np.testing.assert_allclose(stats.stderr, means.std(axis=0, ddof=1) / 2)
    np.testing.assert_allclose(stats.std, recs.std(axis=0))
    assert -1 <= stats.batch_autocorrelation <= 1
    short = tail_statistics(recs[:3], 4)
    assert np.all(np.isnan(short.stderr)) and np.isnan(short.batch_autocorrelation)
    with pytest.raises(InputError, match="n_batches"):
        tail_statistics(recs, 1)


def test_streaming_accumulator_gives_the_same_statistics():
    rng = np.random.default_rng(1)
    recs = rng.uniform(size=(30, 2, 2))
    acc = TailAccumulator(30, 5, (2, 2))
    for i, r in enumerate(recs):
        acc.add(i, r)
    a, b = acc.statistics(), tail_statistics(recs, 5)
    for name in ("mean", "stderr", "std"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12, atol=1e-12)
    assert a.batch_autocorrelation == pytest.approx(b.batch_autocorrelation, abs=1e-12)


def test_config_base_names_the_field():
    assert issubclass(TrainConfig, RunConfig)
    for field, bad in (("steps", 0), ("lr", -1.0), ("clip_eps", 1.5), ("seed", True), ("n_batches", 1)):
        with pytest.raises(InputError) as info:
            TrainConfig(**{field: bad})
        assert info.value.field == field


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    path = tmp_path / "c.pt"
    state = {"a": torch.arange(3.0), "meta": {"step": 3, "name": "x", "list": [1.0, 2.0]}}
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    assert torch.equal(back["a"], state["a"]) and back["meta"] == state["meta"]
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    # numpy objects would need full unpickling: refused, so checkpoints must not hold them
    save_checkpoint(path, {"bad": np.zeros(2)})
    with pytest.raises(InputError, match="cannot be read"):
        load_checkpoint(path)


def test_train_result_keeps_the_context_axis():
    prob = ga.Problem.from_rewards(ref=[0.3, 0.7], rewards=[1.0, 0.0])
    algo = ga.GRPO(group_size=4, beta=0.5)
    res = train(prob, algo, TrainConfig(steps=40, groups_per_step=8, lr=0.5, n_batches=4, record_every=10))
    assert res.policy.shape == res.mean_policy.shape == res.stderr.shape == res.gap.shape == (1, 2)
    assert res.trajectory.shape == (5, 1, 2) and list(res.record_steps) == [0, 10, 20, 30, 40]
    assert res.distance.shape == (1,) and len(res) == 1
    ctx = res[0]
    assert ctx.policy.shape == (2,) and ctx.trajectory.shape == (5, 2) and isinstance(ctx.distance, float)
    np.testing.assert_allclose(ctx.predicted, np.reshape(ga.stationary_policy(prob, algo).policy, 2))
    assert [c.distance for c in res] == [ctx.distance] and isinstance(ctx.predicted_status, str)
    summary = res.summary()
    assert "seconds" in summary and np.shape(summary["mean_policy"]) == (1, 2)
    assert set(res.metrics) == {
        "losses/loss",
        "losses/policy",
        "losses/penalty",
        "charts/clip_fraction",
        "charts/reward",
    }


def test_lm_command_builds_one_grpo_from_its_flags():
    from argparse import Namespace

    from grpo_align.commands.lm import grpo_from_flags

    def flags(**kw):
        return Namespace(**{"preset": None, "beta": None, "group_size": None, **kw})

    assert grpo_from_flags(flags()) is None  # the experiment's own runs
    assert grpo_from_flags(flags(beta=0.25)) == ga.GRPO(group_size=8, beta=0.25)
    assert grpo_from_flags(flags(preset="verl", group_size=4)) == ga.GRPO.preset("verl", group_size=4)
    with pytest.raises(InputError) as info:
        grpo_from_flags(flags(group_size=1))
    assert info.value.field == "--group-size"
    with pytest.raises(InputError) as info:
        grpo_from_flags(flags(preset="nope"))
    assert info.value.field == "--preset"


def test_lm_experiment_takes_grpo_runs():
    pytest.importorskip("transformers")
    from grpo_align.lm.experiment import LMExperimentConfig, run_name

    cfg = LMExperimentConfig(runs=(ga.GRPO.preset("trl", beta=0.5), ga.GRPO(group_size=2, beta=0.5)))
    assert [run_name(a) for a in cfg.runs] == ["beta0.5_G8_ddof1_eps0.0001_k2", "beta0.5_G2"]
    assert cfg.to_json()["runs"][0]["penalty"] == "k2"
    with pytest.raises(InputError, match="runs"):
        LMExperimentConfig(runs=((0.5, 8),))
    with pytest.raises(InputError, match="twice"):
        LMExperimentConfig(runs=(ga.GRPO(beta=0.5), ga.GRPO(beta=0.5)))
