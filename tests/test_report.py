"""``grpo-align reproduce``: files, determinism, verdict plumbing and the sections' own maths.

A tiny report (two fast sections, --quick) is built once per module and reused.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pytest

from grpo_align.cli import main
from grpo_align.files import atomic_write_bytes
from grpo_align.report import SECTIONS, Verdict, resolve_sections, runner
from grpo_align.report.model import ReportConfig, SectionSpec
from grpo_align.report.reverse_kl import direct_kl_gradient, expected_penalty_gradient, reverse_kl_gradient
from grpo_align.report.writers import json_bytes
from grpo_align.theory.spec import GRPO

TINY = ["reverse-kl", "practice"]  # fast sections that both draw random numbers


def _reproduce(out: Path, *extra: str) -> int:
    return main(["reproduce", "--quick", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def tiny_reports(tmp_path_factory):
    """The same tiny report twice (seed 3) and once with another seed (seed 4)."""
    root = tmp_path_factory.mktemp("reports")
    codes = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        codes[name] = _reproduce(root / name, "--only", *TINY, "--seed", str(seed))
    return root, codes


def test_tiny_report_writes_every_file(tiny_reports):
    root, codes = tiny_reports
    assert codes["a"] == 0
    out = root / "a"
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["sections"]] == TINY
    for s in summary["sections"]:
        assert s["verdict"] == "pass", s
        assert s["claim"] and s["measured"]
        assert (out / "data" / f"{s['name']}.json").is_file()
    pngs = sorted((out / "figures").glob("*.png"))
    svgs = sorted((out / "figures").glob("*.svg"))
    assert pngs and [p.stem for p in pngs] == [p.stem for p in svgs]
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "index.html").read_text()
    # self-contained: every figure embedded, nothing fetched
    assert html.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r'(src|href)="(https?:|figures/)', html)
    for key in TINY:
        assert f'id="{key}"' in html
    md = (out / "report.md").read_text()
    for ref in re.findall(r"\]\((figures/[^)]+|data/[^)]+)\)", md):
        assert (out / ref).is_file(), ref
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_same_seed_gives_identical_data_files(tiny_reports):
    root, _ = tiny_reports
    files_a = sorted(p.relative_to(root / "a") for p in (root / "a" / "data").iterdir())
    files_b = sorted(p.relative_to(root / "b") for p in (root / "b" / "data").iterdir())
    assert files_a == files_b and files_a
    for rel in [*files_a, Path("summary.json")]:
        assert (root / "a" / rel).read_bytes() == (root / "b" / rel).read_bytes(), rel


def test_seed_changes_the_random_draws(tiny_reports):
    # the determinism test could pass with a seed that is ignored; this one cannot
    root, codes = tiny_reports
    assert codes["c"] == 0
    a = json.loads((root / "a" / "data" / "reverse-kl.json").read_text())["data"]["pi_old"]
    c = json.loads((root / "c" / "data" / "reverse-kl.json").read_text())["data"]["pi_old"]
    assert np.max(np.abs(np.array(a) - np.array(c))) > 0.01


def test_unknown_section_is_one_line_exit_2(tmp_path, capsys):
    assert _reproduce(tmp_path / "x", "--only", "nonsense") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --only") and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_out_that_is_a_file_is_exit_2(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    assert _reproduce(target, "--only", "practice") == 2
    assert capsys.readouterr().err.startswith("error: --out")
    assert target.read_text() == "keep me"


def test_sections_resolve_by_key_or_number():
    assert [s.key for s in resolve_sections(["7", "binary"])] == ["binary", "training"]
    assert [s.number for s in SECTIONS] == list(range(1, 10))
    assert len({s.key for s in SECTIONS}) == 9


@dataclass(frozen=True)
class _FakeData:
    x: float
    tables: tuple = ()

    def measured(self) -> dict:
        return {"x": self.x}

    def json(self) -> dict:
        return {"x": self.x}


def _fake_spec(key: str, number: int, passed: bool | None) -> SectionSpec:
    def compute(cfg: ReportConfig) -> _FakeData:
        if passed is None:
            raise RuntimeError("boom")
        return _FakeData(1.0)

    return SectionSpec(
        key, number, key.title(), "a claim", compute, lambda d: Verdict(bool(passed), "measured"), lambda d: []
    )


def test_failed_or_broken_section_gives_exit_1(tmp_path, monkeypatch):
    specs = (_fake_spec("good", 1, True), _fake_spec("bad", 2, False), _fake_spec("broken", 3, None))
    monkeypatch.setattr(runner, "SECTIONS", specs)
    assert _reproduce(tmp_path / "r") == 1
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    verdicts = {s["name"]: s["verdict"] for s in summary["sections"]}
    assert verdicts == {"good": "pass", "bad": "fail", "broken": "fail"}
    assert summary["passed"] is False
    broken = next(s for s in summary["sections"] if s["name"] == "broken")
    assert "RuntimeError: boom" in broken["verdict_text"]
    monkeypatch.setattr(runner, "SECTIONS", specs[:1])
    assert _reproduce(tmp_path / "ok") == 0


@pytest.mark.parametrize(
    ("key", "blocked", "extra"),
    [("training", "torch", "train"), ("lm", "transformers", "lm"), ("lm", "tokenizers", "lm")],
)
def test_section_without_its_extra_is_skipped_with_the_install_command(
    tmp_path, monkeypatch, capsys, key, blocked, extra
):
    monkeypatch.setitem(sys.modules, blocked, None)  # the package looks uninstalled
    assert _reproduce(tmp_path / "r", "--only", key, "practice") == 0  # a skip is not a failure
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    section = next(s for s in summary["sections"] if s["name"] == key)
    hint = f"pip install 'grpo-align[{extra}]'"
    assert section["verdict"] == "skip" and section["status"] == "skipped"
    assert section["verdict_text"] == f"report section '{key}' needs the '{extra}' extra ({blocked}): {hint}"
    assert section["measured"] == {"available": False, "extra": extra, "missing": [blocked], "install": hint}
    assert summary["passed"] is True and summary["skipped"] == [key]
    html = (tmp_path / "r" / "index.html").read_text()
    assert 'data-verdict="skip"' in html and '<span class="badge skip">SKIP</span>' in html
    assert html_escape(hint) in html
    assert "1 skipped (optional extra not installed)" in html
    md = (tmp_path / "r" / "report.md").read_text()
    assert "— SKIP" in md and f"**Verdict: SKIP.** report section '{key}'" in md
    err = capsys.readouterr().err
    assert "SKIP" in err and hint in err and "1 skipped" in err


def test_verdict_status():
    assert Verdict(True, "x").status == "passed" and Verdict(True, "x").label == "PASS"
    assert Verdict(False, "x").status == "failed" and Verdict(False, "x").failed
    skip = Verdict.skip("needs torch")
    assert skip.status == "skipped" and skip.label == "SKIP" and not skip.passed and not skip.failed
    with pytest.raises(ValueError, match="skipped"):
        Verdict(True, "x", skipped=True)


def test_lm_verdict_rule():
    from grpo_align.report.lm import run_passes

    assert run_passes(0.006, 0.08, 0.4, 0.0045)
    assert not run_passes(0.006, 0.005, 0.4, 0.0045)  # RLHF pooling closer
    assert not run_passes(0.006, 0.08, 0.006, 0.0045)  # no better than the reference
    assert not run_passes(0.03, 0.08, 0.4, 0.0045)  # 0.03 > 3 * 0.0045 + 0.005


def test_lm_section_writes_its_files(tmp_path, monkeypatch):
    # a tiny experiment (few SFT and GRPO steps, 4 questions): plumbing only, not the claim
    pytest.importorskip("transformers")
    import torch

    from grpo_align.lm import LMTrainConfig
    from grpo_align.lm.experiment import LMExperimentConfig
    from grpo_align.lm.sft import SFTConfig
    from grpo_align.report import lm

    def tiny(cfg):
        train = LMTrainConfig(steps=40, eval_every=2, seed=cfg.seed, checkpoint_every=0)
        return LMExperimentConfig(
            n_binary=2,
            n_choice=2,
            n_labels=10,
            seed=cfg.seed,
            sft=SFTConfig(steps=20),
            train=train,
            runs=(GRPO(group_size=4, beta=0.5),),
        )

    monkeypatch.setattr(lm, "experiment_config", tiny)
    threads = torch.get_num_threads()
    code = _reproduce(tmp_path / "r", "--only", "lm")
    assert torch.get_num_threads() == threads
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    (section,) = summary["sections"]
    assert code == (0 if section["verdict"] == "pass" else 1)
    assert section["name"] == "lm" and section["number"] == 9
    assert section["verdict_text"].startswith("rule: for every run MAE(GRPO prediction) < MAE(RLHF pooling)"), section
    assert section["measured"]["available"] is True and section["measured"]["questions"] == 4
    data = json.loads((tmp_path / "r" / "data" / "lm.json").read_text())["data"]
    (run,) = data["runs"]
    assert run["steps"] == 40 and len(run["predicted"]) == len(run["measured"]) == 4
    assert len(run["mean_gap"]) == len(run["record_steps"]) == 40 // 2 + 1
    assert (tmp_path / "r" / "data" / "lm-runs.csv").read_text().startswith("β,G,steps,MAE GRPO prediction")
    for name in ("predicted-vs-measured", "gap-trajectory"):
        assert (tmp_path / "r" / "figures" / f"lm-{name}.png").is_file()


def test_complex_step_gradients_against_hand_values():
    # two outputs, pi = (1/2, 1/2), ref = (1/4, 3/4): by hand, d KL(ref||pi)/d theta = pi - ref = (1/4, -1/4);
    # d KL(pi||ref)/d theta_0 = pi_0 (log(pi_0/ref_0) - KL) with KL = (log 2 + log(2/3))/2
    pi = np.array([[0.5, 0.5]])
    ref = np.array([[0.25, 0.75]])
    np.testing.assert_allclose(expected_penalty_gradient("k3", pi, ref), [[0.25, -0.25]], atol=1e-15)
    kl = 0.5 * (np.log(2.0) + np.log(2.0 / 3.0))
    g0 = 0.5 * (np.log(2.0) - kl)
    np.testing.assert_allclose(expected_penalty_gradient("k2", pi, ref), [[g0, -g0]], atol=1e-15)
    np.testing.assert_allclose(direct_kl_gradient(pi, ref), [[g0, -g0]], atol=1e-15)
    np.testing.assert_allclose(reverse_kl_gradient(pi, ref), [[0.25, -0.25]], atol=1e-15)
    np.testing.assert_allclose(expected_penalty_gradient("k1", pi, ref), [[0.0, 0.0]], atol=1e-15)


def test_atomic_write_and_json(tmp_path):
    target = tmp_path / "sub" / "x.json"
    atomic_write_bytes(target, json_bytes({"b": np.array([1.0, np.nan, np.inf]), "a": np.float64(0.1)}))
    assert json.loads(target.read_text()) == {"a": 0.1, "b": [1.0, None, "inf"]}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_cli_help_lists_the_real_sections():
    from grpo_align.commands.reproduce import SECTION_KEYS
    from grpo_align.report.runner import SECTIONS

    assert ", ".join(f"{s.number}={s.key}" for s in SECTIONS) == SECTION_KEYS


def test_runner_numbers_sections_in_order_and_only_keeps_them():
    """The runner is the one place numbers come from: 1..N in MODULES order; --only keeps them."""
    assert [s.key for s in SECTIONS] == [m.KEY for m in runner.MODULES]
    assert [s.number for s in SECTIONS] == list(range(1, len(runner.MODULES) + 1))
    for m in runner.MODULES:
        assert not hasattr(m, "NUMBER") and not hasattr(m, "build")
    chosen = resolve_sections(["practice", "pooling"])
    assert [(s.key, s.number) for s in chosen] == [("pooling", 2), ("practice", 8)]
    result = runner.build_section(_fake_spec("fake", 7, True), ReportConfig(quick=True))
    assert (result.number, result.claim, result.measured, result.verdict.status) == (7, "a claim", {"x": 1.0}, "passed")


def test_no_hard_coded_section_numbers_in_the_report_sources():
    """Section texts refer to sections by title or key; 'section N' is only ever THEORY.md's."""
    src = Path(runner.__file__).parent
    for path in src.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"\bnumber\s*=\s*\d", text), path.name
        assert not re.search(r"^NUMBER\s*=", text, re.M), path.name


#: sections that need no training, with their quick compute time: all run without matplotlib
NO_TRAINING = ["binary", "pooling", "reverse-kl", "pairwise", "large-groups", "variants", "practice"]

_BLOCK_MATPLOTLIB = """
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
        return None

sys.meta_path.insert(0, Block())
from grpo_align.report.model import ReportConfig
from grpo_align.report.runner import SECTIONS
from grpo_align.report.writers import json_bytes

out = {}
for spec in SECTIONS:
    if spec.key in sys.argv[1:]:
        data = spec.compute(ReportConfig(quick=True))
        out[spec.key] = [spec.verdict(data).status, len(json_bytes(data.json())), len(data.tables)]
assert not any(m == "matplotlib" or m.startswith("matplotlib.") for m in sys.modules)
print(json.dumps(out))
"""


def test_compute_and_verdict_run_without_matplotlib():
    """compute and verdict of every section that needs no training import no matplotlib."""
    done = subprocess.run(
        [sys.executable, "-c", _BLOCK_MATPLOTLIB, *NO_TRAINING], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(out) == sorted(NO_TRAINING)
    for key, (status, size, n_tables) in out.items():
        assert status == "passed", key
        assert size > 100 and n_tables >= 1, key


def test_blocked_matplotlib_is_really_blocked():
    """The blocker itself works: importing matplotlib under it fails (so the test above can fail)."""
    code = _BLOCK_MATPLOTLIB.split("from grpo_align")[0] + "import matplotlib\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "blocked" in done.stderr


def test_verdicts_fail_on_bad_data():
    """A verdict is a pure function of the data and can fail: hand-made data that breaks each rule."""
    from grpo_align.report import binary, large_groups, pooling, practice

    good_binary = dict(
        p0=np.linspace(0.1, 0.9, 3),
        vs_p0=(),
        rlhf_vs_p0={},
        beta=np.ones(2),
        vs_beta=(),
        rlhf_vs_beta=np.ones((2, 3)),
        max_gap=1e-12,
        max_residual=1e-13,
        all_success=True,
        worked_gap=1e-7,
        tables=(),
    )
    assert binary.verdict(binary.BinaryData(**good_binary)).passed
    for field, bad in (("max_gap", 1e-6), ("worked_gap", 1e-6), ("all_success", False), ("max_residual", 1.0)):
        verdict = binary.verdict(binary.BinaryData(**(good_binary | {field: bad})))
        assert verdict.failed, field

    base = dict(
        reward=np.zeros(2),
        ref=np.full(2, 0.5),
        series={},
        max_formula_gap=0.0,
        all_success=True,
        tables=(),
        jitter=np.zeros(2),
    )
    line = dict(rlhf_one_minus_r2=0.0, rlhf_slope=1 / pooling.BETA)
    assert pooling.verdict(pooling.PoolingData(**base, **line, grpo_min_one_minus_r2=0.1)).passed
    # GRPO on a line would contradict the claim
    assert pooling.verdict(pooling.PoolingData(**base, **line, grpo_min_one_minus_r2=1e-6)).failed

    def series(slope: float) -> large_groups.Series:
        return large_groups.Series("p", 0.5, [2, 4], np.array([0.1, 0.05]), np.ones(2), np.ones((2, 2)), slope, 0.0)

    ok = large_groups.LargeGroupsData((series(-1.0),), limit_gap=0.0, all_success=True, tables=())
    assert large_groups.verdict(ok).passed
    assert large_groups.verdict(large_groups.LargeGroupsData((series(-0.5),), 0.0, True, ())).failed

    p = practice.PracticeData(
        (), all_solved=True, max_residual=0.0, limits_ok=True, max_z=practice.Z_LIMIT + 1, tables=()
    )
    assert practice.verdict(p).failed
