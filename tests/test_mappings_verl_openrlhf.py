"""verl and OpenRLHF config mappings, at the dict level: neither trainer is installed.

The oracles are the trainers' own formulas, re-typed here from their source (verl 0.9.1
core_algos.py, OpenRLHF 0.11.2 experience_maker.py), not the mapping's output.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from grpo_align.errors import InputError
from grpo_align.extras import MissingExtraError
from grpo_align.mappings import detect_trainer, load_config_file, read_trainer_config
from grpo_align.mappings.openrlhf import describe_openrlhf_mapping, parse_openrlhf_flags
from grpo_align.mappings.verl import describe_verl_mapping
from grpo_align.theory import GRPO
from grpo_align.theory.preference import group_advantages
from grpo_align.theory.spec import AGGREGATIONS

RNG = np.random.default_rng(12)


def verl_cfg(**over):
    cfg = {
        "algorithm": {"adv_estimator": "grpo"},
        "actor_rollout_ref": {"rollout": {"n": 5}, "actor": {"use_kl_loss": True}},
    }
    for dotted, value in over.items():
        cfg[dotted.replace("__", ".")] = value
    return cfg


# ---- verl ---------------------------------------------------------------------------


def test_verl_grpo_example_is_the_verl_preset():
    report = describe_verl_mapping(verl_cfg())
    assert report.algo == GRPO.preset("verl")
    assert report.trainer == "verl" and report.checked_version == "0.9.1"
    assert report.aggregation in AGGREGATIONS
    row = report.row("actor_rollout_ref.actor.kl_loss_type")
    assert row.source == "default" and "core_algos.py:2188" in row.where


def test_verl_grpo_advantage_matches_verl_formula():
    # verl compute_grpo_outcome_advantage: (r - mean) / (torch.std(r) + epsilon), unbiased std, epsilon 1e-6
    algo = describe_verl_mapping(verl_cfg()).algo
    r = RNG.integers(0, 3, size=(200, 5)).astype(float)
    mean, std = r.mean(1, keepdims=True), r.std(1, ddof=1, keepdims=True)
    verl = (r - mean) / (std + 1e-6)
    assert np.allclose(group_advantages(r, algo), verl, atol=1e-12)


def test_verl_rloo_matches_verl_formula():
    algo = describe_verl_mapping(verl_cfg(algorithm__adv_estimator="rloo")).algo
    r = RNG.normal(size=(100, 5))
    n = 5
    mean = r.mean(1, keepdims=True)
    verl = r * n / (n - 1) - mean * n / (n - 1)
    assert np.allclose(group_advantages(r, algo), verl, atol=1e-12)


def test_verl_no_std_is_shift():
    algo = describe_verl_mapping(verl_cfg(algorithm__norm_adv_by_std_in_grpo=False)).algo
    assert algo.normalization == "shift"


@pytest.mark.parametrize(
    ("kind", "penalty"),
    [("low_var_kl", "k3"), ("k3", "k3"), ("mse", "k2"), ("kl", "k1"), ("abs", "abs"), ("k3+", "k2")],
)
def test_verl_kl_loss_types(kind, penalty):
    cfg = verl_cfg(**{"actor_rollout_ref.actor.kl_loss_type": kind, "actor_rollout_ref.actor.kl_loss_coef": 0.05})
    algo = describe_verl_mapping(cfg).algo
    assert algo.penalty == penalty and algo.beta == 0.05


def test_verl_without_kl_loss_has_beta_zero():
    cfg = verl_cfg()
    cfg["actor_rollout_ref"]["actor"]["use_kl_loss"] = False
    assert describe_verl_mapping(cfg).algo.beta == 0.0


@pytest.mark.parametrize(
    ("mode", "agg"),
    [("token-mean", "constant"), ("seq-mean-token-mean", "sequence_mean"), ("seq-mean-token-sum-norm", "constant")],
)
def test_verl_loss_agg_mode(mode, agg):
    report = describe_verl_mapping(verl_cfg(**{"actor_rollout_ref.actor.loss_agg_mode": mode}))
    assert report.aggregation == agg == report.algo.aggregation
    assert agg in report.row("actor_rollout_ref.actor.loss_agg_mode").maps_to


def test_the_engine_has_the_fields_the_mappings_pass():
    algo = describe_verl_mapping(verl_cfg()).algo
    assert (algo.aggregation, algo.penalty_in) == ("constant", "loss")


@pytest.mark.parametrize(
    ("key", "value", "word"),
    [
        ("algorithm.adv_estimator", "gae", "critic"),
        ("actor_rollout_ref.rollout.n", 1, "no group"),
        ("actor_rollout_ref.actor.policy_loss.loss_mode", "gspo", "vanilla"),
        ("actor_rollout_ref.actor.entropy_coeff", 0.01, "entropy"),
        ("actor_rollout_ref.rollout.temperature", 0.7, "softmax"),
        ("actor_rollout_ref.rollout.top_p", 0.9, "truncated"),
        ("actor_rollout_ref.actor.kl_loss_type", "full", "per-token"),
        ("algorithm.filter_groups.enable", True, "tie"),
        ("actor_rollout_ref.actor.frobnicate", 1, "not classified"),
    ],
)
def test_verl_refusals_name_the_key(key, value, word):
    with pytest.raises(InputError) as info:
        describe_verl_mapping(verl_cfg(**{key: value}))
    assert info.value.field == key and word in str(info.value)
    assert "\n" not in str(info.value)


def test_verl_defaults_refused_without_a_group():
    with pytest.raises(InputError, match=r"actor_rollout_ref\.rollout\.n"):
        describe_verl_mapping({"algorithm": {"adv_estimator": "grpo"}})


def test_verl_inert_keys_accepted_with_rows():
    cfg = verl_cfg(**{"trainer.total_epochs": 3, "data.train_batch_size": 8, "actor_rollout_ref.actor.clip_ratio": 0.3})
    report = describe_verl_mapping(cfg)
    assert report.row("trainer.total_epochs").maps_to.startswith("no effect")


# ---- OpenRLHF -----------------------------------------------------------------------


def test_openrlhf_flags_parse():
    text = (
        "ray job submit --address=http://x:8265 -- python3 -m openrlhf.cli.train_ppo_ray \\\n"
        "  --algo.advantage.estimator group_norm  # comment\n"
        "  --rollout.n_samples_per_prompt=8 --algo.kl.use_loss --reward.clip_range -5 5\n"
    )
    flags = parse_openrlhf_flags(text)
    assert flags == {
        "algo.advantage.estimator": "group_norm",
        "rollout.n_samples_per_prompt": "8",
        "algo.kl.use_loss": True,
        "reward.clip_range": ["-5", "5"],
    }
    with pytest.raises(InputError, match="twice"):
        parse_openrlhf_flags("--a 1 --a 2")


def test_openrlhf_group_norm_matches_openrlhf_formula():
    flags = {"algo.advantage.estimator": "group_norm", "rollout.n_samples_per_prompt": 8, "algo.kl.use_loss": True}
    algo = describe_openrlhf_mapping(flags).algo
    r = RNG.integers(0, 2, size=(300, 8)).astype(float)
    ours = group_advantages(r, algo)
    # OpenRLHF: (r - r.mean(-1)) / (r.std(-1) + 1e-9); torch's std is unbiased
    theirs = (r - r.mean(1, keepdims=True)) / (r.std(1, ddof=1, keepdims=True) + 1e-9)
    ok = r.std(1) > 0  # all-tied groups: both 0
    assert np.allclose(ours[ok], theirs[ok], atol=1e-9) and np.all(ours[~ok] == 0) and np.all(theirs[~ok] == 0)
    assert algo.penalty == "k1" and algo.beta == 0.01  # OpenRLHF's defaults: estimator k1, init_coef 0.01


def test_openrlhf_legacy_flags_are_read_as_dotted():
    legacy = {
        "advantage_estimator": "group_norm",
        "n_samples_per_prompt": "8",
        "init_kl_coef": "1e-3",
        "use_kl_loss": True,
        "kl_estimator": "k3",
    }
    dotted = {
        "algo.advantage.estimator": "group_norm",
        "rollout.n_samples_per_prompt": 8,
        "algo.kl.init_coef": 0.001,
        "algo.kl.use_loss": True,
        "algo.kl.estimator": "k3",
    }
    a, b = describe_openrlhf_mapping(legacy), describe_openrlhf_mapping(dotted)
    assert (
        a.algo
        == b.algo
        == GRPO.preset("openrlhf")
        == GRPO(
            group_size=8,
            beta=0.001,
            normalization="shift_scale",
            ddof=1,
            eps=1e-9,
            penalty="k3",
            aggregation="constant",
        )
    )
    assert any("--init_kl_coef -> --algo.kl.init_coef" in n for n in a.notes)


def test_openrlhf_kl_in_advantage_is_the_direct_kl_gradient():
    """Without --use_kl_loss, -beta k1 enters the advantage after normalisation: its expected
    score-function gradient equals the gradient of beta KL(pi || pi_ref), which is the k2
    penalty's (phi = log pi/pi_ref). Checked in softmax logits by finite differences."""
    flags = {"algo.advantage.estimator": "group_norm", "rollout.n_samples_per_prompt": 4}
    algo = describe_openrlhf_mapping(flags).algo
    assert algo.penalty == "k2" and algo.beta == 0.01
    theta, ref = RNG.normal(size=5), RNG.dirichlet(np.ones(5))

    def pi(t):
        e = np.exp(t - t.max())
        return e / e.sum()

    p = pi(theta)
    jac = np.diag(p) - np.outer(p, p)  # d pi / d theta, symmetric
    # E_pi[k1(o) grad log pi(o)] = sum_o k1(o) grad pi(o)
    score = jac @ np.log(p / ref)

    def kl(t):
        q = pi(t)
        return float(np.sum(q * np.log(q / ref)))

    h = 1e-6
    fd = np.array([(kl(theta + h * e) - kl(theta - h * e)) / (2 * h) for e in np.eye(5)])
    assert np.allclose(score, fd, atol=1e-8)


@pytest.mark.parametrize(
    ("flags", "key", "word"),
    [
        ({}, "--rollout.n_samples_per_prompt", "no group"),
        ({"rollout.n_samples_per_prompt": 4}, "--algo.advantage.estimator", "critic"),
        (
            {"rollout.n_samples_per_prompt": 4, "algo.advantage.estimator": "group_norm", "algo.kl.estimator": "k3"},
            "--algo.kl.estimator",
            "use_loss",
        ),
        (
            {"rollout.n_samples_per_prompt": 4, "algo.advantage.estimator": "group_norm", "rollout.temperature": 0.6},
            "--rollout.temperature",
            "softmax",
        ),
        (
            {
                "rollout.n_samples_per_prompt": 4,
                "algo.advantage.estimator": "group_norm",
                "actor.policy_loss_type": "gspo",
            },
            "--actor.policy_loss_type",
            "ppo",
        ),
        (
            {
                "rollout.n_samples_per_prompt": 4,
                "algo.advantage.estimator": "reinforce_baseline",
                "algo.kl.use_loss": True,
            },
            "--algo.advantage.estimator",
            "batch std",
        ),
        (
            {"rollout.n_samples_per_prompt": 4, "algo.advantage.estimator": "group_norm", "frobnicate": 1},
            "--frobnicate",
            "not classified",
        ),
    ],
)
def test_openrlhf_refusals_name_the_flag(flags, key, word):
    with pytest.raises(InputError) as info:
        describe_openrlhf_mapping(flags)
    assert info.value.field == key and word in str(info.value)


def test_openrlhf_inert_flags_accepted_with_rows():
    # --actor.gradient_checkpointing_enable: train_ppo_ray.py:328 in 0.11.2 (309 in 0.10.4)
    flags = parse_openrlhf_flags(
        "--rollout.n_samples_per_prompt 4 --algo.advantage.estimator group_norm "
        "--actor.gradient_checkpointing_enable --ds.zero_stage 3 --seed 7"
    )
    report = describe_openrlhf_mapping(flags)
    for key in ("--actor.gradient_checkpointing_enable", "--ds.zero_stage", "--seed"):
        assert report.row(key).source == "given" and report.row(key).maps_to.startswith("no effect")


def test_openrlhf_unbiased_gradient_is_k2():
    flags = {
        "rollout.n_samples_per_prompt": 4,
        "algo.advantage.estimator": "dr_grpo",
        "algo.kl.use_loss": True,
        "algo.kl.estimator": "k3",
        "algo.kl.unbiased_gradient": True,
    }
    algo = describe_openrlhf_mapping(flags).algo
    assert algo.penalty == "k2" and algo.normalization == "shift"


# ---- files and detection ------------------------------------------------------------


def test_detect_and_read_files(tmp_path):
    trl = tmp_path / "trl.json"
    trl.write_text(json.dumps({"num_generations": 4, "beta": 0.1}))
    assert read_trainer_config(trl).trainer == "trl"
    flags = tmp_path / "run.sh"
    flags.write_text("python3 -m openrlhf.cli.train_ppo_ray --advantage_estimator rloo --n_samples_per_prompt 4\n")
    rep = read_trainer_config(flags)
    assert rep.trainer == "openrlhf" and rep.algo.normalization == "rloo" and rep.algo.penalty == "k2"
    assert detect_trainer({"algorithm.adv_estimator": "grpo"}) == "verl"
    with pytest.raises(InputError, match="trainer"):
        read_trainer_config(trl, trainer="deepspeed")


def test_yaml_reads_n_as_a_key_not_a_boolean(tmp_path):
    pytest.importorskip("yaml")
    f = tmp_path / "verl.yaml"
    f.write_text(
        "algorithm:\n  adv_estimator: grpo\nactor_rollout_ref:\n  rollout:\n    n: 6\n  actor:\n    use_kl_loss: yes\n"
    )
    with pytest.raises(InputError, match="use_kl_loss: expected true or false"):
        read_trainer_config(f)  # YAML 1.2: 'yes' is a string, as in OmegaConf
    f.write_text("algorithm:\n  adv_estimator: grpo\nactor_rollout_ref:\n  rollout:\n    n: 6\n")
    assert read_trainer_config(f).algo.group_size == 6
    assert load_config_file(f)["actor_rollout_ref"]["rollout"] == {"n": 6}


def test_yaml_without_pyyaml_is_one_line(tmp_path, monkeypatch):
    f = tmp_path / "c.yaml"
    f.write_text("beta: 0.1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(MissingExtraError) as info:
        read_trainer_config(f)
    assert str(info.value).endswith("pip install 'grpo-align[config]'")


# ---- shared rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trainer", "config", "key"),
    [
        ("trl", {"weight_decay": 0.05}, "weight_decay"),
        (
            "verl",
            verl_cfg(**{"actor_rollout_ref.actor.optim.weight_decay": 0.05}),
            "actor_rollout_ref.actor.optim.weight_decay",
        ),
        (
            "openrlhf",
            {
                "rollout.n_samples_per_prompt": 4,
                "algo.advantage.estimator": "group_norm",
                "actor.adam.weight_decay": 0.05,
            },
            "actor.adam.weight_decay",
        ),
    ],
)
def test_weight_decay_is_noted_alike_by_every_trainer(trainer, config, key):
    """A decoupled weight decay: accepted with one note naming it, the same spec as without it."""
    from grpo_align.mappings import describe_trl_mapping

    describe_mapping = {
        "trl": lambda _, c: describe_trl_mapping(c),
        "verl": lambda _, c: describe_verl_mapping(c),
        "openrlhf": lambda _, c: describe_openrlhf_mapping(c),
    }[trainer]
    with_wd = describe_mapping(trainer, config)
    notes = [n for n in with_wd.notes if "weight decay" in n]
    assert len(notes) == 1 and key in notes[0] and "0.05" in notes[0]
    without = {k: v for k, v in config.items() if k != key}
    without[key] = 0
    plain = describe_mapping(trainer, without)
    assert plain.algo == with_wd.algo
    assert not [n for n in plain.notes if "weight decay" in n]
    with pytest.raises(InputError) as info:
        describe_mapping(trainer, {**config, key: -0.1})
    assert key in info.value.field
