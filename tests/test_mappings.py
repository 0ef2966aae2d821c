"""grpo_align.mappings: GRPOConfig <-> GRPO without torch or trl (a stand-in config object)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

import grpo_align as ga
from grpo_align.errors import InputError
from grpo_align.mappings.trl import grpo_from_trl, trl_kwargs_from_grpo


@pytest.mark.parametrize(
    "algo",
    [
        ga.GRPO.preset("trl"),
        ga.GRPO.preset("trl", beta=0.5, penalty="k3", group_size=3),
        ga.GRPO.preset("dr_grpo", beta=0.2),
        ga.GRPO(group_size=4, beta=0.1, normalization="shift", penalty="kl"),
    ],
)
def test_round_trip(algo):
    kwargs = trl_kwargs_from_grpo(algo)
    assert grpo_from_trl(SimpleNamespace(**kwargs)) == algo
    assert ga.from_trl(SimpleNamespace(**kwargs)) == algo


@pytest.mark.parametrize(
    ("algo", "field"),
    [
        (ga.GRPO.preset("paper"), "ddof"),  # population std
        (ga.GRPO.preset("verl"), "eps"),  # 1e-6 added to the std
        (ga.GRPO.preset("rloo"), "normalization"),
        (ga.GRPO.preset("trl", penalty="k2"), "penalty"),
        (ga.GRPO(group_size=4, normalization="shift", ddof=1), "ddof"),
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
    code = "import grpo_align.mappings.trl, grpo_align, sys; assert not {'torch', 'trl'} & set(sys.modules), sys.modules.keys()"
    subprocess.run([sys.executable, "-c", code], check=True)
