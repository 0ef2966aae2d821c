"""``StationaryResult.to_dict``: every field of the result, its roots and its search record,
as plain JSON values, and ``grpo-align solve --out`` writing exactly that per algorithm."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import grpo_align as ga
from grpo_align.theory.stationary import RootSearch, StationaryResult, StationaryRoot

CASES = {
    # scan, two contexts, stability with eigenvalues
    "batch": (ga.Problem.from_bernoulli([[0.3, 0.7], [0.5, 0.5]], [[0.9, 0.2], [0.6, 0.1]]), ga.GRPO(group_size=8)),
    # three roots on a folded branch: a continuation search record
    "search": (
        ga.Problem.from_rewards([0.09, 0.89, 0.02], [1.0, 0.0, 0.5]),
        ga.GRPO(group_size=32, beta=0.725, penalty="kl"),
    ),
    # direct KL at G = inf runs to a vertex: a boundary root
    "boundary": (ga.Problem.from_rewards([0.3, 0.7], [1.0, 0.0]), ga.GRPO(group_size=math.inf, beta=0.5, penalty="kl")),
    # no regulariser: the limit
    "limit": (ga.Problem.from_rewards([0.3, 0.7], [1.0, 0.0]), ga.GRPO(group_size=4, beta=0.0)),
}


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_to_dict_loses_no_field(case):
    prob, algo = CASES[case]
    res = ga.stationary_policy(prob, algo)
    d = res.to_dict()
    assert list(d) == _names(StationaryResult)
    assert list(res.to_dict(inputs=False)) == [n for n in _names(StationaryResult) if n not in ("algo", "problem")]
    assert json.loads(json.dumps(d, allow_nan=False)) == d  # strict JSON as it stands
    # values round-trip: arrays, the context axis, strings
    np.testing.assert_array_equal(np.array(d["policy"], dtype=float), res.policy)
    assert d["success"] == [bool(s) for s in res.success] and d["status"] == list(res.status)
    assert d["message"] == list(res.message) and d["nit"] == res.nit and d["method"] == res.method
    np.testing.assert_array_equal(np.array(d["residual"], dtype=float), res.residual)
    assert d["algo"] == dataclasses.asdict(algo) | {"group_size": d["algo"]["group_size"]}
    assert len(d["roots"]) == len(res)
    for got, roots in zip(d["roots"], res.roots, strict=True):
        assert len(got) == len(roots)
        for g, r in zip(got, roots, strict=True):
            assert list(g) == _names(StationaryRoot)
            assert g["kind"] == r.kind and g["stable"] == r.stable
            np.testing.assert_array_equal(np.array(g["policy"], dtype=float), r.policy)
            if r.eigenvalues is None:
                assert g["eigenvalues"] is None
            else:
                ev = g["eigenvalues"]
                real = np.array(ev["real"] if isinstance(ev, dict) else ev, dtype=float)
                np.testing.assert_array_equal(real, np.real(r.eigenvalues))
    assert len(d["search"]) == len(res.search)
    for g, s in zip(d["search"], res.search, strict=True):
        assert list(g) == _names(RootSearch) and g["method"] == s.method and g["ended"] == s.ended


def test_cases_cover_what_they_claim():
    res = {k: ga.stationary_policy(*v) for k, v in CASES.items()}
    assert res["search"].search and res["search"].root_counts()[0] == 3
    assert res["boundary"].status[0] == "boundary" and any(r.boundary for r in res["boundary"].roots[0])
    assert res["limit"].status[0] == "limit"
    assert any(r.eigenvalues is not None for r in res["batch"].roots[0])


def test_solve_writes_every_field(tmp_path):
    from grpo_align.cli import main

    spec = tmp_path / "p.toml"
    spec.write_text(
        '[problem]\nref = [0.09, 0.89, 0.02]\nrewards = [1.0, 0.0, 0.5]\n\n[[algorithm]]\ngroup_size = 32\nbeta = 0.725\npenalty = "kl"\n'
    )
    out = tmp_path / "r.json"
    assert main(["solve", str(spec), "--out", str(out)]) == 0
    (a,) = json.loads(out.read_text())["algorithms"]
    res = ga.stationary_policy(*CASES["search"])
    assert list(a) == ["name", "preset", "spec", *res.to_dict(inputs=False)]
    assert a["search"][0]["method"] == res.search[0].method and a["method"] == res.method
    assert a["roots"][0][0].keys() == {f.name for f in dataclasses.fields(StationaryRoot)}
