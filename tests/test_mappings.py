"""grpo_align.mappings: a TRL config (mapping of its keys, or a GRPOConfig-shaped object) -> GRPO,
and back, without torch or trl. The real GRPOConfig is tested in test_trl.py."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import grpo_align as ga
from grpo_align.errors import InputError
from grpo_align.mappings import MappingReport, describe_trl_mapping
from grpo_align.mappings.trl import TRL_INERT_KEYS, TRL_KEYS, grpo_from_trl, trl_aggregation, trl_kwargs_from_grpo

_GRID = [
    ga.GRPO(group_size=g, beta=b, normalization=n, ddof=d, eps=e, penalty=p, aggregation=a)
    for g, b, (n, d, e), p, a in itertools.product(
        (2, 3, 8, 64),
        (0.0, 0.04, 1.0),
        (("shift_scale", 1, 1e-4), ("shift", 0, 0.0)),
        ("k3", "k2"),
        ("sequence_mean", "constant"),
    )
]
_EXPRESSIBLE = [
    ga.GRPO.preset("trl"),
    ga.GRPO.preset("trl", beta=0.5, penalty="k3", group_size=3),
    ga.GRPO.preset("dr_grpo", beta=0.2),
    *_GRID,
]


@pytest.mark.parametrize("algo", _EXPRESSIBLE, ids=repr)
def test_round_trip_through_a_config_file(algo):
    """GRPO -> TRL keys -> (JSON file, as `trl grpo --config` reads) -> GRPO is the identity."""
    kwargs = json.loads(json.dumps(trl_kwargs_from_grpo(algo)))
    assert grpo_from_trl(kwargs) == algo
    assert ga.from_trl(kwargs) == algo


def test_a_dict_is_read_as_a_dict():
    """The values given are the values used (a dict read with getattr gave TRL's defaults)."""
    spec = ga.from_trl({"beta": 0.1, "num_generations": 4})
    assert (spec.group_size, spec.beta) == (4, 0.1)


def test_missing_keys_take_trl_defaults():
    """TRL 1.16.0's defaults, documented independently in the 'trl' preset."""
    assert ga.from_trl({}) == ga.GRPO.preset("trl")
    report = describe_trl_mapping({"beta": 0.1})
    assert report.row("beta").source == "given" and not report.row("beta").defaulted
    assert report.row("num_generations").source == "default" and report.row("num_generations").value == 8
    assert report.row("loss_type").value == "dapo"
    assert any("1.16.0" in n for n in report.notes)


@pytest.mark.parametrize("bad", [SimpleNamespace(beta=0.1), [("beta", 0.1)], None, "beta: 0.1", 3])
def test_anything_but_a_mapping_or_a_grpo_config_is_refused(bad):
    with pytest.raises(InputError) as info:
        ga.from_trl(bad)
    assert info.value.field == "config" and "\n" not in str(info.value)


def test_unknown_keys_are_refused_by_name_with_a_suggestion():
    with pytest.raises(InputError) as info:
        ga.from_trl({"num_generation": 4})
    assert info.value.field == "num_generation" and "num_generations" in str(info.value)
    with pytest.raises(InputError) as info:
        ga.from_trl({1: 4})
    assert info.value.field == "config"


def test_known_inert_keys_are_accepted_and_reported():
    config = {
        "learning_rate": 1e-5,
        "output_dir": "out",
        "model_name_or_path": "Qwen/Qwen2-0.5B",
        "env": {"A": "1"},
        "lora_r": 16,
        "max_grad_norm": 0.5,
        "beta": 0.04,
    }
    report = describe_trl_mapping(config)
    assert report.algo == ga.GRPO.preset("trl", beta=0.04)
    for key in ("learning_rate", "output_dir", "model_name_or_path", "env", "lora_r", "max_grad_norm"):
        assert report.row(key).source == "given" and "no effect" in report.row(key).maps_to


_REFUSED = [
    ({"sync_ref_model": True, "beta": 0.1}, "sync_ref_model"),
    ({"generation_kwargs": {"temperature": 0.7}}, "generation_kwargs.temperature"),
    ({"generation_kwargs": '{"top_k": 5}'}, "generation_kwargs.top_k"),
    ({"generation_kwargs": {"top_p": 0.9}}, "generation_kwargs.top_p"),
    ({"generation_kwargs": {"num_beams": 2}}, "generation_kwargs.num_beams"),
    ({"generation_kwargs": {"do_sample": False}}, "generation_kwargs.do_sample"),
    ({"generation_kwargs": {"suppress_tokens": [3]}}, "generation_kwargs.suppress_tokens"),
    ({"generation_kwargs": "{not json"}, "generation_kwargs"),
    ({"temperature": 0.7}, "temperature"),
    ({"top_p": 0.9}, "top_p"),
    ({"top_k": 5}, "top_k"),
    ({"min_p": 0.1}, "min_p"),
    ({"repetition_penalty": 1.1}, "repetition_penalty"),
    ({"vllm_structured_outputs_regex": "[ab]"}, "vllm_structured_outputs_regex"),
    ({"importance_sampling_level": "sequence", "beta": 0.1}, "importance_sampling_level"),
    ({"importance_sampling_level": "segment"}, "importance_sampling_level"),
    ({"mask_truncated_completions": True}, "mask_truncated_completions"),
    ({"scale_rewards": "batch"}, "scale_rewards"),
    ({"loss_type": "vespo"}, "loss_type"),
    ({"loss_type": "luspo"}, "loss_type"),
    ({"loss_type": "cispo"}, "epsilon_high"),  # epsilon_high defaults to epsilon = 0.2 < 1
    ({"loss_type": "sapo", "sapo_temperature_pos": 0}, "sapo_temperature_pos"),
    ({"multi_objective_aggregation": "normalize_then_sum"}, "multi_objective_aggregation"),
    ({"reward_weights": [1.0, 2.0]}, "reward_weights"),
    ({"reward_weights": [-1.0]}, "reward_weights"),
    ({"reward_weights": [1.0], "reward_funcs": ["a", "b"]}, "reward_weights"),
    ({"top_entropy_quantile": 0.2}, "top_entropy_quantile"),
    ({"entropy_coef": 0.01}, "entropy_coef"),
    ({"use_adaptive_entropy": True}, "use_adaptive_entropy"),
    ({"router_aux_loss_coef": 0.01}, "router_aux_loss_coef"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"neftune_noise_alpha": 5}, "neftune_noise_alpha"),
    ({"delta": 1.0}, "delta"),
    ({"epsilon": -0.1}, "epsilon"),
    ({"off_policy_mask_threshold": -1}, "off_policy_mask_threshold"),
    ({"num_iterations": 0}, "num_iterations"),
    ({"num_generations": 1}, "num_generations"),
    ({"num_generations": 2.5}, "num_generations"),
    ({"num_generations": 10**400}, "num_generations"),
    ({"beta": -1}, "beta"),
    ({"beta": "abc"}, "beta"),
    ({"beta": True}, "beta"),
    ({"beta": float("nan")}, "beta"),
    ({"use_bias_correction_kl": "maybe"}, "use_bias_correction_kl"),
    ({"max_completion_length": 0}, "max_completion_length"),
    ({"loss_type": ["grpo"]}, "loss_type"),
    ({"scale_rewards": [1]}, "scale_rewards"),
    ({"generation_kwargs": 5}, "generation_kwargs"),
    ({"reward_weights": "1"}, "reward_weights"),
    ({"multi_objective_aggregation": {"a": 1}}, "multi_objective_aggregation"),
]


@pytest.mark.parametrize(("config", "field"), _REFUSED, ids=[f for _, f in _REFUSED])
def test_options_that_change_what_is_trained_are_refused_by_name(config, field):
    with pytest.raises(InputError) as info:
        describe_trl_mapping(config)
    assert info.value.field == field
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "config",
    [
        {"epsilon": 0.1, "epsilon_high": 0.28},
        {"epsilon": 0.0},
        {"delta": 2.0},
        {"num_iterations": 4, "steps_per_generation": 4},
        {"off_policy_mask_threshold": 0.5},
        {"use_vllm": True},
        {"generation_kwargs": {"temperature": 1.0, "top_k": 0, "use_cache": True}},
        {"top_k": None, "min_p": 0.0},
        {"loss_type": "cispo", "epsilon_high": 5.0},
        {"loss_type": "bnpo"},
        {"importance_sampling_level": "sequence", "beta": 0.0},
        {"reward_funcs": ["accuracy", "format"]},
        {"disable_dropout": True},
    ],
    ids=repr,
)
def test_options_that_do_not_move_the_end_point_keep_the_spec(config):
    """Clip widths, batch reuse and identity sampling settings leave the defaults' spec."""
    report = describe_trl_mapping(config)
    assert report.algo == ga.GRPO.preset("trl")
    assert all(report.row(k).source == "given" for k in config)


def test_sequence_level_ratio_without_the_correction_is_the_k3_spec():
    spec = ga.from_trl({"importance_sampling_level": "sequence", "beta": 0.1, "use_bias_correction_kl": False})
    assert spec == ga.GRPO.preset("trl", beta=0.1, penalty="k3")


@pytest.mark.parametrize(
    ("loss_type", "aggregation", "batch_level"),
    [
        ("grpo", "sequence_mean", ("sequence_mean", "max_length")),
        ("dapo", "constant", ("constant", "batch_tokens")),
        ("bnpo", "constant", ("constant", "batch_tokens")),
        ("dr_grpo", "constant", ("constant", "max_length")),
        ("sapo", "sequence_mean", None),
        ("cispo", "constant", None),
    ],
)
def test_loss_type_sets_the_aggregation(loss_type, aggregation, batch_level):
    """TRL 1.16 grpo_trainer.py:3153-3173: grpo/sapo divide each sequence's token sum by its
    length; dapo/bnpo/cispo divide the batch's token sum by its token count, one number per
    batch, which the engine's 'constant' is in the many-groups limit; dr_grpo divides by
    B x max_completion_length."""
    extra = {"epsilon_high": 5.0} if loss_type == "cispo" else {}
    report = describe_trl_mapping({"loss_type": loss_type, **extra})
    assert report.aggregation == aggregation == report.algo.aggregation
    assert report.algo == ga.GRPO.preset("trl", aggregation=aggregation)
    if batch_level is not None:  # the grpo_loss aggregation the one-batch parity test uses
        assert trl_aggregation({"loss_type": loss_type}) == batch_level


def test_trl_default_loss_type_is_the_constant_of_the_trl_preset():
    assert ga.from_trl({}).aggregation == "constant" == ga.GRPO.preset("trl").aggregation
    assert "many-groups limit" in describe_trl_mapping({}).row("loss_type").maps_to
    assert "exact" in describe_trl_mapping({"loss_type": "dr_grpo"}).row("loss_type").maps_to


@pytest.mark.parametrize("aggregation", ["sequence_mean", "constant"])
def test_the_inverse_writes_the_loss_type_of_the_aggregation(aggregation):
    kwargs = trl_kwargs_from_grpo(ga.GRPO.preset("trl", beta=0.1, aggregation=aggregation))
    assert kwargs["loss_type"] == {"sequence_mean": "grpo", "constant": "dr_grpo"}[aggregation]


def test_group_token_mean_has_no_trl_loss_type():
    with pytest.raises(InputError) as info:
        trl_kwargs_from_grpo(ga.GRPO.preset("trl", aggregation="group_token_mean"))
    assert info.value.field == "aggregation" and "\n" not in str(info.value)
    assert "sequence_mean" in str(info.value) and "constant" in str(info.value)


def test_ratio_corrected_k3_has_the_k2_gradient():
    """d/d logp [exp(logp - old) k3(logp - ref)] at logp = old is x = logp - ref, k2's psi
    (not the project's kl, rho x, whose psi is x + 1): differentiated here numerically."""
    old, ref, h = -1.3, -0.6, 1e-6

    def rho_k3(lp):
        x = lp - ref
        return np.exp(lp - old) * (np.exp(-x) + x - 1)

    slope = (rho_k3(old + h) - rho_k3(old - h)) / (2 * h)
    assert slope == pytest.approx(old - ref, abs=1e-8)
    assert ga.from_trl({"use_bias_correction_kl": True, "beta": 0.1}).penalty == "k2"


def test_values_as_yaml_and_the_cli_write_them():
    """YAML 1.1 reads 1e-3 as a string and TRL accepts booleans for scale_rewards."""
    assert ga.from_trl({"beta": "1e-3", "num_generations": "4"}) == ga.GRPO.preset("trl", beta=1e-3, group_size=4)
    assert ga.from_trl({"scale_rewards": False}) == ga.from_trl({"scale_rewards": "none"})
    assert ga.from_trl({"scale_rewards": "true"}) == ga.from_trl({"scale_rewards": "group"})
    assert ga.from_trl({"use_bias_correction_kl": "false"}).penalty == "k3"


def _stationary(rewards, algo):
    problem = ga.Problem.from_rewards([0.2, 0.3, 0.5], rewards)
    return ga.stationary_policy(problem, algo)[0].policy


@pytest.mark.parametrize("w", [0.5, 3.0])
def test_equal_reward_weights_scale_the_reward(w):
    """Weights w on the rewards == the unweighted rewards with eps / w (std scaling) or
    beta / w (no scaling): checked against the engine solving the weighted rewards."""
    rewards = np.array([1.0, 0.4, 0.0])
    scaled = ga.from_trl({"reward_weights": [w, w], "reward_funcs": ["a", "b"], "beta": 0.5})
    assert scaled == ga.GRPO.preset("trl", beta=0.5, eps=1e-4 / w)
    weighted = _stationary(w * rewards, ga.GRPO.preset("trl", beta=0.5))
    assert np.allclose(_stationary(rewards, scaled), weighted, atol=1e-9)
    shift = ga.from_trl({"reward_weights": [w], "scale_rewards": "none", "beta": 0.5})
    assert shift == ga.GRPO.preset("dr_grpo", beta=0.5 / w, penalty="k2")
    weighted = _stationary(w * rewards, ga.GRPO.preset("dr_grpo", beta=0.5, penalty="k2"))
    assert np.allclose(_stationary(rewards, shift), weighted, atol=1e-9)


def test_report_has_a_row_per_setting_read_and_lines_for_explain():
    report = describe_trl_mapping({"beta": 0.1, "learning_rate": 1e-6})
    assert isinstance(report, MappingReport) and report.trainer == "trl"
    keys = {r.key for r in report.rows}
    assert set(TRL_KEYS) - {"reward_funcs", "reward_model_name_or_path", "use_peft"} <= keys
    assert "learning_rate" in keys
    lines = report.lines()
    assert len(lines) == 1 + len(report.rows) + len(report.notes)
    assert "group_size 8" in report.row("num_generations").maps_to
    assert report.row("beta").where.startswith("grpo_trainer.py:")
    assert "no interior end point" in describe_trl_mapping({}).row("beta").maps_to
    with pytest.raises(KeyError):
        report.row("nothing")


def test_tables_do_not_overlap():
    assert not set(TRL_KEYS) & TRL_INERT_KEYS


# -- objects shaped like a GRPOConfig (a dataclass named GRPOConfig from a trl module) --


def _fake_config_class(fields, module="trl.trainer.grpo_config"):
    cls = dataclasses.make_dataclass("GRPOConfig", [(n, object, dataclasses.field(default=d)) for n, d in fields])
    cls.__module__ = module
    return cls


_OLD_FIELDS = [("num_generations", 8), ("beta", 0.04), ("scale_rewards", True), ("temperature", 0.9)]


def test_an_object_without_use_bias_correction_kl_trains_plain_k3():
    """TRL before 0.26 had no correction: its only penalty is k3, whatever 1.16's default."""
    cls = _fake_config_class(_OLD_FIELDS)
    report = describe_trl_mapping(cls(temperature=1.0))
    assert report.algo == ga.GRPO(group_size=8, beta=0.04, normalization="shift_scale", ddof=1, eps=1e-4)
    assert report.algo.penalty == "k3" and report.algo.aggregation == "sequence_mean"
    assert report.row("use_bias_correction_kl").source == "absent"
    assert report.row("loss_type").value == "grpo"  # before loss_type, each sequence's mean
    assert any("0.26" in n for n in report.notes)
    with pytest.raises(InputError) as info:  # that release's own default temperature 0.9
        describe_trl_mapping(cls())
    assert info.value.field == "temperature"


def test_an_object_with_the_field_uses_its_value_and_defaults():
    cls = _fake_config_class([*_OLD_FIELDS, ("use_bias_correction_kl", False)])
    assert describe_trl_mapping(cls(temperature=1.0, use_bias_correction_kl=True)).algo.penalty == "k2"
    report = describe_trl_mapping(cls(temperature=1.0))
    assert report.algo.penalty == "k3" and report.row("use_bias_correction_kl").source == "default"


def test_an_object_with_an_unclassified_field_is_refused_off_its_default():
    cls = _fake_config_class([*_OLD_FIELDS, ("new_objective_knob", 0.0)])
    assert describe_trl_mapping(cls(temperature=1.0)).row("new_objective_knob").source == "default"
    with pytest.raises(InputError) as info:
        describe_trl_mapping(cls(temperature=1.0, new_objective_knob=0.3))
    assert info.value.field == "new_objective_knob"


def test_a_dataclass_from_elsewhere_is_not_a_grpo_config():
    with pytest.raises(InputError) as info:
        describe_trl_mapping(_fake_config_class(_OLD_FIELDS, module="mylib.configs")())
    assert info.value.field == "config"


# -- the inverse --


@pytest.mark.parametrize(
    ("algo", "field"),
    [
        (ga.GRPO.preset("paper"), "ddof"),  # population std
        (ga.GRPO.preset("verl"), "eps"),  # 1e-6 added to the std
        (ga.GRPO.preset("rloo"), "normalization"),
        (ga.GRPO.preset("trl", penalty="kl"), "penalty"),
        (ga.GRPO.preset("trl", penalty="k1"), "penalty"),
        (ga.GRPO.preset("trl", aggregation="group_token_mean"), "aggregation"),
        (ga.GRPO.preset("trl", penalty="k1", penalty_in="reward"), "penalty_in"),
        (ga.GRPO(group_size=4, normalization="shift", ddof=1), "ddof"),
        (ga.GRPO(group_size=4, normalization="shift", eps=0.1), "eps"),
        (ga.GRPO(group_size=4, normalization="raw"), "normalization"),
        (ga.GRPO(group_size=float("inf")), "group_size"),
    ],
)
def test_specs_trl_cannot_train_are_refused_naming_the_field(algo, field):
    with pytest.raises(InputError) as info:
        trl_kwargs_from_grpo(algo)
    assert info.value.field == field


def test_spec_module_no_longer_knows_trl():
    assert not hasattr(ga.GRPO, "from_trl")


def test_mapping_imports_neither_torch_nor_trl():
    code = (
        "import grpo_align.mappings.trl, grpo_align, sys; grpo_align.from_trl({'beta': 0.1}); "
        "assert not {'torch', 'trl'} & set(sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
