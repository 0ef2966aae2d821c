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
    n_training = [s.key for s in SECTIONS].index("training") + 1
    assert [s.key for s in resolve_sections([str(n_training), "binary"])] == ["binary", "training"]
    assert [s.number for s in SECTIONS] == list(range(1, len(runner.MODULES) + 1))
    assert len({s.key for s in SECTIONS}) == len(runner.MODULES)


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
    [
        ("training", "torch", "train"),
        ("lm", "transformers", "lm"),
        ("lm", "tokenizers", "lm"),
        ("predict", "transformers", "lm"),
    ],
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
    assert section["name"] == "lm" and section["number"] == [m.KEY for m in runner.MODULES].index("lm") + 1
    assert (
        "runs pass the rule (MAE of the prediction at most 3 × mean standard error + 0.005" in section["verdict_text"]
    )
    assert "3 × the run's mean standard error + 0.005" in section["claim"]
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
    keys = [m.KEY for m in runner.MODULES]
    assert [(s.key, s.number) for s in chosen] == [
        ("pooling", keys.index("pooling") + 1),
        ("practice", keys.index("practice") + 1),
    ]
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
NO_TRAINING = [
    "binary",
    "paper-figures",
    "pooling",
    "reverse-kl",
    "pairwise",
    "large-groups",
    "variants",
    "direct-kl",
    "practice",
    "limits",
    "sequences",
]

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


def test_practice_verdict_needs_rloo_to_be_rlhf_pooling():
    """The rloo preset is RLHF at its beta (leave-one-out + k2): a gap, or a k3 preset on pooling, fails."""
    from grpo_align.report import practice

    good = dict(entries=(), all_solved=True, max_residual=0.0, limits_ok=True, max_z=1.0, tables=())
    assert practice.verdict(practice.PracticeData(**good, rloo_vs_rlhf=1e-16, k3_vs_rlhf=0.2)).passed
    assert practice.verdict(practice.PracticeData(**good, rloo_vs_rlhf=1e-3, k3_vs_rlhf=0.2)).failed
    assert practice.verdict(practice.PracticeData(**good, rloo_vs_rlhf=1e-16, k3_vs_rlhf=1e-12)).failed
    text = practice.verdict(practice.PracticeData(**good, rloo_vs_rlhf=-1e-17, k3_vs_rlhf=0.2)).text
    assert "< 1e-15" in text and "True" not in text


def test_practice_section_measures_rloo_as_pooling():
    from grpo_align.report import practice

    data = practice.compute(ReportConfig(quick=True))
    assert data.rloo_vs_rlhf < 1e-12 and data.k3_vs_rlhf > 1e-6
    assert practice.verdict(data).passed
    assert "exactly RLHF's logarithmic pooling at its own β" in practice.CLAIM


def test_lm_verdict_is_sentences_with_the_rule():
    from grpo_align.report import lm

    def run(mae: float, g: int) -> lm.LMRun:
        z = np.zeros(2)
        return lm.LMRun(
            0.5, g, 10, mae, 0.08, 0.4, 0.004, mae, lm.run_passes(mae, 0.08, 0.4, 0.004), z, z, z, z, z, z, z
        )

    data = lm.LMData((run(0.006, 8), run(0.02, 4)), 1, 2, 0.0, {}, [], 5, 10, ())
    v = lm.verdict(data)
    assert v.failed and "1 of 2 runs pass the rule" in v.text
    assert "tightest" not in v.text and "β = 0.5 and G = 4" in v.text
    assert "at most 3 × mean standard error + 0.005" in v.text
    assert lm.verdict(lm.LMData((), 1, 2, 0.0, {}, [], 5, 10, ())).failed


def test_new_verdicts_fail_on_bad_data():
    """paper-figures, direct-kl, limits and basins: each rule broken by hand-made data fails the verdict."""
    from grpo_align.report import basins, direct_kl, limits, paper_figures

    z = np.zeros(2)
    pf = dict(
        p0=z,
        g2=(),
        limit=(),
        direct_kl=(),
        solver_gap=1e-15,
        min_bound_slack=1e-12,
        bound_reached_gap=1e-9,
        at_zero=0.0,
        sqrt_gap=1e-16,
        gamma_gap=1e-16,
        beta_grid=z,
        inequality_min=1e-3,
        trl={},
        trl_min_slack=1e-12,
        trl_printed_gap=2.6e-6,
        all_success=True,
        tables=(),
    )
    assert paper_figures.verdict(paper_figures.PaperFiguresData(**pf)).passed
    for field, bad in (
        ("min_bound_slack", -1e-3),  # a point below the paper's bound
        ("bound_reached_gap", 1e-3),  # the bound not reached as pi_ref -> 0
        ("at_zero", 0.5),  # no jump: pi_ref = 0 kept mass
        ("sqrt_gap", 1e-6),
        ("inequality_min", -1e-3),
        ("trl_printed_gap", 1e-3),
        ("solver_gap", 1e-6),
    ):
        v = paper_figures.verdict(paper_figures.PaperFiguresData(**(pf | {field: bad})))
        assert v.failed and "Broken" in v.text, field

    dk = dict(
        shift_gap=1e-14,
        shift_rows=30,
        beta=np.ones(3),
        points=(),
        locus_p=z,
        locus_beta=z,
        beta_star=1.0818781,
        x_star=0.867,
        mismatches=0,
        max_equation=1e-12,
        all_success=True,
        tables=(),
    )
    assert direct_kl.verdict(direct_kl.DirectKLData(**dk)).passed
    for field, bad in (
        ("shift_gap", 1e-3),
        ("mismatches", 1),
        ("beta_star", 1.2),
        ("max_equation", 1e-3),
        ("x_star_gap", 1e-3),
        ("straddle_violations", 1),
    ):
        assert direct_kl.verdict(direct_kl.DirectKLData(**(dk | {field: bad}))).failed, field

    lim = dict(
        eq15=0.9,
        engine=0.6073,
        brute_force=0.6073,
        engine_by_g={},
        b2_roots=(0.54, 0.99),
        b2_stable=(True, False),
        b2_slope=(2.0, -1.0),
        p_grid=z,
        residual_curve=z,
        all_success=True,
        tables=(),
    )
    assert limits.verdict(limits.LimitsData(**lim)).passed
    # the statement holding (engine = Eq. 15) is not a limit of the paper
    assert limits.verdict(limits.LimitsData(**(lim | dict(engine=0.9, brute_force=0.9)))).failed
    assert limits.verdict(limits.LimitsData(**(lim | dict(brute_force=0.61)))).failed
    assert limits.verdict(limits.LimitsData(**(lim | dict(b2_stable=(True, True))))).failed
    assert limits.verdict(limits.LimitsData(**(lim | dict(b2_slope=(2.0, 1.0))))).failed

    reached = np.array([[0, 0, 2, 2]])
    bs = dict(
        p0=np.array([0.2]),
        starts=np.array([0.1, 0.5, 0.97, 0.99]),
        end=np.zeros((1, 4)),
        reached=reached,
        predicted=reached.copy(),
        judged=np.ones((1, 4), bool),
        roots=((0.6, 0.95, 0.998),),
        stable=((True, False, True),),
        steps=10,
        tables=(),
    )
    assert basins.verdict(basins.BasinsData(**bs)).passed
    assert basins.verdict(basins.BasinsData(**(bs | dict(reached=np.array([[0, 2, 2, 2]]))))).failed
    assert basins.verdict(
        basins.BasinsData(**(bs | dict(reached=np.zeros((1, 4), int), predicted=np.zeros((1, 4), int))))
    ).failed


def test_limits_brute_force_is_independent_of_the_engine():
    """The Bernoulli root by hand: the equation at the root is 0, and the known value 0.6073."""
    from grpo_align.report import limits

    root, _, _ = limits.brute_force()
    assert abs(root - 0.6073097) < 1e-6
    assert abs(float(limits.bernoulli_limit_residual(np.array(root)))) < 1e-14


def test_basins_prediction_follows_the_unstable_root():
    from grpo_align.report.basins import predicted_root

    roots, stable = (0.6, 0.95, 0.998), (True, False, True)
    assert [predicted_root(s, roots, stable) for s in (0.1, 0.94, 0.96, 0.9999)] == [0, 0, 2, 2]
    assert predicted_root(0.5, (0.6,), (True,)) == 0


def test_direct_kl_fold_by_an_independent_scan():
    """beta* and x* against a dense grid of B(p) (not the minimiser the section uses)."""
    from scipy.special import expit

    from grpo_align.report.direct_kl import fold, root_beta

    beta_star, x_star = fold(0.3)
    p = expit(np.linspace(-0.84, 12, 2_000_001))
    p = p[p > 0.3]
    b = root_beta(p, 0.3)
    assert abs(beta_star - b.min()) < 1e-9 and abs(x_star - p[np.argmin(b)]) < 1e-4
    assert abs(beta_star - 1.0818781) < 5e-8


def test_paper_x_star_is_the_minimum_of_its_h():
    """App. B.2's x*(beta) against a dense grid minimum of the paper's h, written out here."""
    from scipy.special import logit

    from grpo_align.report.direct_kl import fold, paper_x_star

    x = np.linspace(1e-6, 1 - 1e-6, 2_000_001)
    for beta in (0.05, 0.5, 1.0818781, 3.0, 40.0):
        h = 1 / (beta * np.sqrt(x * (1 - x))) - logit(x) + logit(0.3)
        assert abs(x[np.argmin(h)] - paper_x_star(beta)) < 1e-6, beta
    beta_star, x_star = fold(0.3)
    # at the fold the double root sits at the minimum of h, and h is zero there
    xs = paper_x_star(beta_star)
    assert abs(x_star - xs) < 1e-6
    assert abs(1 / (beta_star * np.sqrt(xs * (1 - xs))) - logit(xs) + logit(0.3)) < 1e-9


_MARKUP = re.compile(r"`|\\|\^\{|\$|\bTrue\b|\bFalse\b|\bNone\b|= -\d\.\de-1[5-9]")


def test_texts_carry_no_markup(tmp_path):
    """Claims, verdicts and captions of the fast sections: no LaTeX, backticks, Python literals or -2e-16."""
    from grpo_align.report.style import style_context

    with style_context():
        for spec in SECTIONS:
            if spec.key not in ("binary", "pooling", "practice", "paper-figures", "direct-kl", "limits", "sequences"):
                continue
            result = runner.build_section(spec, ReportConfig(quick=True))
            texts = [result.claim, result.verdict.text]
            texts += [f.caption for f in result.figures] + [t.caption for t in result.tables]
            for text in texts:
                assert not _MARKUP.search(text), (spec.key, text)
    assert not _MARKUP.search("1 − R² = < 1e-15") and _MARKUP.search("it is True") and _MARKUP.search("e^{1/β}")


def test_only_removes_the_rebuilt_sections_stale_files(tmp_path):
    """--only X rewrites X's figures and data without leaving files from an earlier run; other sections stay."""
    out = tmp_path / "r"
    assert _reproduce(out, "--only", "practice", "limits") == 0
    figures = out / "figures"
    stale = [figures / "practice-old-figure.png", out / "data" / "practice-old-table.csv", figures / "limits-x.svg"]
    for path in stale:
        path.write_bytes(b"stale")
    other = figures / "binary-vs-p0.png"
    other.write_bytes(b"kept: binary was not rebuilt")
    assert _reproduce(out, "--only", "practice") == 0
    assert not stale[0].exists() and not stale[1].exists()
    assert stale[2].exists() and other.exists()  # sections not rebuilt are left alone
    assert (figures / "practice-presets.png").is_file() and (out / "data" / "practice.json").is_file()


def test_section_of_picks_the_longest_key():
    assert runner.section_of("paper-figures-figure-1.png", ["paper", "paper-figures"]) == "paper-figures"
    assert runner.section_of("lm-runs.csv", ["lm", "limits"]) == "lm"
    assert runner.section_of("limits.json", ["lm", "limits"]) == "limits"
    assert runner.section_of("other.json", ["lm"]) is None


# ---------------------------------------------------------------------------- sequences and predict
def test_sequences_brute_gradient_against_hand_values():
    """Two one-token outputs, rewards 1/0, G = 2, beta = 0: the groups (a, b) and (b, a) by hand.

    shift: advantages +-1/2, each member weighted 1/2: d/dz_a = 2 p(1-p) (1/2)(1/2)((1-p) + p) = p(1-p)/2;
    std scaling: advantages +-1, twice that. A tie group (a, a) or (b, b) adds nothing.
    """
    from grpo_align.report.sequences import brute_gradient

    p = 0.3
    rewards = [[(1.0, 1.0)], [(0.0, 1.0)]]
    for norm, expected in (("shift", p * (1 - p) / 2), ("shift_scale", p * (1 - p))):
        g = brute_gradient([(0,), (1,)], [0.5, 0.5], rewards, [p, 1 - p], 2, 0.0, normalization=norm)[()]
        assert abs(g[0] - expected) < 1e-15 and abs(g[1] + expected) < 1e-15
    # k1 in the reward at RLHF's policy (pi prop. to ref exp(r/beta)): every modified reward ties, no gradient
    beta, ref = 0.5, np.array([0.4, 0.6])
    rl = ref * np.exp(np.array([1.0, 0.0]) / beta)
    rl /= rl.sum()
    g = brute_gradient(
        [(0,), (1,)], list(ref), rewards, list(rl), 2, beta, normalization="shift", penalty="k1", penalty_in="reward"
    )[()]
    assert abs(g[0]) < 1e-15
    # a token with one continuation carries no logit; the branching prefix (1,) does
    tree = [(1, 2), (1, 3), (4,)]
    g = brute_gradient(tree, [0.2, 0.3, 0.5], [[(1.0, 1.0)], [(0.0, 1.0)], [(0.0, 1.0)]], [0.2, 0.3, 0.5], 2, 0.1)
    assert set(g) == {(), (1,)} and abs(sum(g[(1,)].values())) < 1e-15


def _sequence_case(**kw):
    from grpo_align.report.sequences import Case

    base = dict(
        group="g",
        setting="s",
        status="interior",
        success=True,
        policy=(0.2, 0.8),
        documented=(0.2,),
        shown=(0,),
        decimals=4,
        versus="paper",
        versus_policy=(0.2, 0.8),
        expect="equal",
        check=1e-16,
        versus_check=1e-16,
    )
    return Case(**(base | kw))


def test_sequences_verdict_fails_on_bad_data():
    from grpo_align.report import sequences as S

    beta = np.array([0.1, 1.0])
    sweep = S.Sweep(beta, ("a",), np.zeros((1, 2, 2)), (("interior", "sliding"),), np.array([[1e-16, 0.0]]))
    good_cases = (
        _sequence_case(),
        _sequence_case(policy=(0.25, 0.75), documented=(0.25,), expect="moves"),
        _sequence_case(status="sliding", check=0.0, versus="RLHF", versus_check=0.0),
    )

    def data(cases=good_cases, control=0.02, sw=sweep):
        return S.SequencesData(cases, control, sw, np.zeros(2), sw, np.zeros((2, 2)), ())

    assert S.verdict(data()).passed
    bad_cases = {
        "interior gradient": _sequence_case(check=1e-8),
        "sliding hull": _sequence_case(status="sliding", check=1e-6),
        "failed status": _sequence_case(status="failed", check=0.0),
        "not equal": _sequence_case(policy=(0.2 + 1e-6, 0.8 - 1e-6)),
        "does not move": _sequence_case(policy=(0.201, 0.799), documented=(0.201,), expect="moves"),
        "THEORY.md number": _sequence_case(documented=(0.2002,)),
        "atomic policy not stationary": _sequence_case(versus_check=1e-6),
        "solve failed": _sequence_case(success=False),
    }
    for name, case in bad_cases.items():
        v = S.verdict(data(cases=(*good_cases, case)))
        assert v.failed and "Broken" in v.text, name
    # the control must fail the hull test, or the test cannot tell
    assert S.verdict(data(control=1e-12)).failed
    bad_sweep = S.Sweep(beta, ("a",), np.zeros((1, 2, 2)), (("interior", "failed"),), np.array([[1e-16, np.inf]]))
    v = S.verdict(data(sw=bad_sweep))
    assert v.failed and "a at β = 1" in v.text
    assert S.verdict(data(cases=())).failed


def test_sequences_filippov_check_can_fail():
    """The hull residual is 0 at the sliding corner and not at RLHF's policy or a random point."""
    from grpo_align.report.sequences import BERN_REF, BERN_SUCCESS, filippov_residual, tie_corner
    from grpo_align.theory import Problem, rlhf_policy, stationary_policy

    prob = Problem.from_bernoulli(list(BERN_REF), list(BERN_SUCCESS))
    algo = GRPO(group_size=2, beta=0.5, penalty="k1", penalty_in="reward")
    rewards = [[(1.0, s), (0.0, 1 - s)] for s in BERN_SUCCESS]
    corner = stationary_policy(prob, algo).policy[0]
    assert filippov_residual(list(BERN_REF), rewards, corner, algo) < 1e-9
    # the tie structure alone fixes the corner (x0 = x1, x2 = x0 - 1/beta)
    np.testing.assert_allclose(tie_corner(BERN_REF, 0.5), corner, atol=1e-12)
    assert filippov_residual(list(BERN_REF), rewards, rlhf_policy(prob, 0.5).reshape(-1), algo) > 1e-3
    assert filippov_residual(list(BERN_REF), rewards, np.array([0.3, 0.3, 0.4]), algo) > 1e-3


def _predict_data(**kw):
    from grpo_align.report import predict as P

    c = 12
    p0 = np.linspace(0.2, 0.8, c)
    pred = 0.5 + p0 / 2
    base = dict(
        p0_exact=p0,
        correct=np.round(16 * p0),
        p0_low=p0 - 0.2,
        p0_high=p0 + 0.2,
        predicted_exact=pred,
        predicted_full=pred + 1e-16,
        predicted=pred + 0.01,
        predicted_low=pred - 0.05,
        predicted_high=pred + 0.05,
        end_point=pred + 0.004,
        stderr=np.full(c, 0.004),
        expected_coverage=np.full(c, 0.95),
        pvalue=0.5,
        n=16,
        steps=600,
        config={},
        tables=(),
    )
    return P.PredictData(**(base | kw))


def test_predict_verdict_fails_on_bad_data():
    from grpo_align.report import predict as P

    good = _predict_data()
    assert P.verdict(good).passed and "12 of 12 questions" in P.verdict(good).text
    pred = good.predicted_exact
    for name, bad in {
        "prediction off by 4 standard errors": dict(end_point=pred + 0.016),
        "training did not move": dict(p0_exact=pred),
        "coverage rejected": dict(pvalue=1e-4),
        "routes disagree": dict(predicted_full=pred + 1e-6),
        "point outside its interval": dict(predicted=pred + 0.06),
    }.items():
        v = P.verdict(_predict_data(**bad))
        assert v.failed and "Broken" in v.text, name
    empty = np.zeros(0)
    assert P.verdict(
        _predict_data(**{k: empty for k in ("p0_exact", "correct", "p0_low", "p0_high", "predicted_exact",
                                            "predicted_full", "predicted", "predicted_low", "predicted_high",
                                            "end_point", "stderr", "expected_coverage")})
    ).failed  # fmt: skip


def test_predict_section_writes_its_files(tmp_path, monkeypatch):
    # a tiny run (4 questions, few SFT and GRPO steps): plumbing only, not the claim
    pytest.importorskip("transformers")
    from dataclasses import replace

    from grpo_align.lm.endtoend import EndToEndConfig
    from grpo_align.lm.experiment import LMExperimentConfig
    from grpo_align.lm.sft import SFTConfig
    from grpo_align.lm.trainer import LMTrainConfig
    from grpo_align.report import predict

    def tiny(cfg):
        train = LMTrainConfig(steps=40, eval_every=2, seed=cfg.seed, checkpoint_every=0)
        exp = LMExperimentConfig(n_binary=2, n_choice=2, n_labels=10, seed=cfg.seed, sft=SFTConfig(steps=20))
        return EndToEndConfig(experiment=replace(exp, train=train), algo=predict.ALGO, n=4, sample_seed=cfg.seed)

    monkeypatch.setattr(predict, "endtoend_config", tiny)
    code = _reproduce(tmp_path / "r", "--only", "predict")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    (section,) = summary["sections"]
    assert code == (0 if section["verdict"] == "pass" else 1)
    assert section["number"] == [m.KEY for m in runner.MODULES].index("predict") + 1
    assert section["measured"]["questions"] == 4 and section["measured"]["n"] == 4
    data = json.loads((tmp_path / "r" / "data" / "predict.json").read_text())["data"]
    assert len(data["end_point"]) == len(data["predicted_low"]) == 4
    assert (tmp_path / "r" / "figures" / "predict-intervals.png").is_file()
    assert (tmp_path / "r" / "data" / "predict-questions.csv").read_text().startswith("question,correct of 4")


def test_predict_quick_setting_is_the_tests_small_one():
    """--quick: 12 questions and 600 steps (fast); the full report: the built-in 24 questions, 1500 steps."""
    pytest.importorskip("transformers")
    from grpo_align.report import predict

    quick = predict.endtoend_config(ReportConfig(quick=True, seed=5))
    full = predict.endtoend_config(ReportConfig(quick=False, seed=5))
    assert quick.experiment.n_binary + quick.experiment.n_choice == 12 and quick.experiment.train.steps == 600
    assert full.experiment.n_binary + full.experiment.n_choice == 24 and full.experiment.train.steps == 1500
    for c in (quick, full):
        assert c.experiment.seed == c.experiment.train.seed == c.sample_seed == 5 and c.n == 16
