"""The mappings base: key tables, inert-key matching, the reader and the refusals.

Each trainer module fills a ``KeyTable``; these tests pin the behaviour they share, on a
small table written here, and that the trainers' constants have one home.
"""

from __future__ import annotations

import pytest

from grpo_align.errors import InputError
from grpo_align.mappings.base import SAME, InertKeys, Key, KeyTable, Reader
from grpo_align.mappings.openrlhf import OPENRLHF_EPS, OPENRLHF_TABLE, describe_openrlhf_mapping
from grpo_align.mappings.trl import TRL_EPS, TRL_TABLE, describe_trl_mapping
from grpo_align.mappings.verl import VERL_EPS, VERL_TABLE, describe_verl_mapping
from grpo_align.theory import GRPO, trainers

TABLE = KeyTable.of(
    "toy",
    "Toy",
    "1.0",
    [Key("a.n", 1, "cfg.py:1"), Key("a.beta", 0.0, "cfg.py:2", absent=0.5), Key("a.on", False, "cfg.py:3")],
    inert=InertKeys(names=frozenset({"seed"}), prefixes=("run.", "a.lr")),
    shown_prefix="--",
)


@pytest.mark.parametrize(
    ("key", "inert"),
    [
        ("seed", True),
        ("seed.x", False),  # names match exactly
        ("run.steps", True),
        ("run", False),  # "run." names what is below it
        ("a.lr", True),
        ("a.lr.decay", True),
        ("a.lr_min", False),  # an entry without a dot matches itself and its subtree only
        ("a.n", False),
        (3, False),
    ],
)
def test_inert_keys_match_names_exactly_and_prefixes_by_subtree(key, inert):
    assert (key in TABLE.inert) is inert


def test_a_table_refuses_a_key_twice():
    with pytest.raises(ValueError, match="twice"):
        KeyTable.of("toy", "Toy", "1.0", [Key("a", 1, ""), Key("a", 2, "")])


def test_the_reader_takes_given_absent_and_default_values_and_writes_rows():
    r = Reader(TABLE, {"a.n": "4", "run.steps": 9}, {"a.n", "run.steps"}, absent={"a.beta"})
    assert (r.get("a.n"), r.get("a.beta"), r.get("a.on")) == ("4", 0.5, False)
    assert (r.source("a.n"), r.source("a.beta"), r.source("a.on")) == ("given", "absent", "default")
    assert r.integer("a.n") == 4 and r.real("a.beta") == 0.5 and r.flag("a.on") is False
    r.put("a.n", "group_size 4", 4)
    r.put("a.beta", "beta 0.5")
    r.put_inert("inert")
    rep = TABLE.report(r, GRPO(group_size=4, beta=0.5), ["a note"])
    assert [(row.key, row.value, row.source, row.where) for row in rep.rows] == [
        ("--a.n", 4, "given", "cfg.py:1"),
        ("--a.beta", 0.5, "absent", "cfg.py:2"),
        ("--run.steps", 9, "given", ""),
    ]
    assert (rep.trainer, rep.checked_version, rep.seen_version, rep.notes) == ("toy", "1.0", None, ("a note",))
    assert rep.aggregation == rep.algo.aggregation
    assert Key("x", 1, "").absent_value() == 1 and repr(SAME) == "SAME"


def test_refusals_are_one_line_naming_the_key():
    r = Reader(TABLE, {"a.n": 1}, {"a.n"})
    err = r.refuse("a.n", 1, "leaves no group; expected >= 2")
    assert (err.field, str(err)) == ("--a.n", "--a.n: 1 leaves no group; expected >= 2")
    with pytest.raises(InputError) as info:
        TABLE.refuse_unknown(["a.n", "run.x", "a.bta"], "remove it")
    assert str(info.value) == (
        "--a.bta: not classified by this mapping (checked against Toy 1.0) (did you mean --a.beta?): remove it"
    )
    quoted = KeyTable.of("toy", "Toy", "1.0", [Key("beta", 0, "")])
    assert str(quoted.unknown("bta", "unknown key", "why")) == "bta: unknown key (did you mean 'beta'?): why"
    assert quoted.hint("zzzzzz") == ""


def test_each_trainer_fills_one_table():
    for table, trainer, describe in (
        (TRL_TABLE, "trl", describe_trl_mapping),
        (VERL_TABLE, "verl", describe_verl_mapping),
        (OPENRLHF_TABLE, "openrlhf", describe_openrlhf_mapping),
    ):
        assert table.trainer == trainer and not set(table.keys) & table.inert.names
        assert all(k.where for k in table.keys.values()), trainer
        assert describe.__module__.endswith(trainer)


def test_the_trainers_eps_have_one_home_shared_by_presets_and_mappings():
    assert (TRL_EPS, VERL_EPS, OPENRLHF_EPS) == (trainers.TRL_EPS, trainers.VERL_EPS, trainers.OPENRLHF_EPS)
    assert GRPO.preset("trl").eps == TRL_EPS
    assert GRPO.preset("verl").eps == VERL_EPS
    assert GRPO.preset("openrlhf").eps == OPENRLHF_EPS
    assert describe_trl_mapping({"beta": 0.04}).algo.eps == TRL_EPS
    verl = {"algorithm.adv_estimator": "grpo", "actor_rollout_ref.rollout.n": 5}
    assert describe_verl_mapping(verl).algo.eps == VERL_EPS
    flags = {"rollout.n_samples_per_prompt": 8, "algo.advantage.estimator": "group_norm"}
    assert describe_openrlhf_mapping(flags).algo.eps == OPENRLHF_EPS


_VERL = {"algorithm.adv_estimator": "grpo", "actor_rollout_ref.rollout.n": 5}
_OPENRLHF = {"rollout.n_samples_per_prompt": 8, "algo.advantage.estimator": "group_norm"}


@pytest.mark.parametrize(
    ("describe", "config", "field"),
    [
        (describe_trl_mapping, {"reward_funcs": 2}, "reward_funcs"),
        (describe_trl_mapping, {"reward_funcs": {"a": 1}}, "reward_funcs"),
        (
            describe_verl_mapping,
            {**_VERL, "actor_rollout_ref.actor.loss_agg_mode": ["a"]},
            "actor_rollout_ref.actor.loss_agg_mode",
        ),
        (
            describe_verl_mapping,
            {**_VERL, "algorithm.use_kl_in_reward": True, "algorithm.kl_penalty": ["kl"]},
            "algorithm.kl_penalty",
        ),
        (describe_openrlhf_mapping, {**_OPENRLHF, "algo.advantage.estimator": ["gae"]}, "--algo.advantage.estimator"),
        (describe_openrlhf_mapping, {**_OPENRLHF, "actor.loss_agg_mode": {"a": 1}}, "--actor.loss_agg_mode"),
    ],
)
def test_values_of_the_wrong_type_are_refused_in_one_line_not_raised_as_type_errors(describe, config, field):
    with pytest.raises(InputError) as info:
        describe(config)
    assert info.value.field == field and "\n" not in str(info.value)
