"""The built-in reference model ships with the package: loaded and checked, never fitted at first use.

The fit is chaotic in float32's last bits (two CPUs' kernels give weights 0.3 apart), so the
claim that ``measure`` prints the same on every CPU rests on two things tested here: nothing
fits the default reference any more, and sampling from one set of weights gives the same
completions under torch's generic kernels (``ATEN_CPU_CAPABILITY=default``) as under the
machine's vectorised ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from grpo_align.errors import InputError
from grpo_align.lm import builtin, experiment
from grpo_align.lm.task import build_task, task_words
from grpo_align.lm.tokenizer import build_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def _default_stamp():
    config = experiment.LMExperimentConfig()
    task = build_task(config.n_binary, config.n_choice, seed=config.seed)
    tokenizer = build_tokenizer(task_words())
    return experiment.reference_stamp(config, task, tokenizer)


def test_default_reference_is_the_shipped_model_and_nothing_is_fitted(tmp_path, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("the default reference was fitted instead of loaded")

    monkeypatch.setattr(experiment, "supervised_finetune", no_fit)
    task, tokenizer, model = experiment.build_reference(experiment.LMExperimentConfig(), tmp_path)
    # the weights in memory are the shipped file's, and out/reference holds the same file (TRL reads it)
    manifest = builtin.builtin_manifest()
    saved = hashlib.sha256((tmp_path / "reference" / "model.safetensors").read_bytes()).hexdigest()
    assert saved == manifest["files"]["model.safetensors"]
    assert len(task) == 24 and len(tokenizer) == model.config.vocab_size


def test_shipped_manifest_matches_the_task_the_code_builds():
    """A change to the task, vocabulary or labels without ``tasks.py reference`` fails here."""
    assert builtin.builtin_manifest()["stamp"] == _default_stamp()


def test_package_data_covers_every_shipped_file():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"data/reference/*"' in pyproject
    shipped = {p.name for p in builtin.BUILTIN_DIR.iterdir()}
    assert shipped == {*builtin.MODEL_FILES, builtin.MANIFEST}


@pytest.fixture
def copy_of_shipped(tmp_path):
    folder = tmp_path / "reference"
    shutil.copytree(builtin.BUILTIN_DIR, folder)
    return folder


def test_an_altered_weight_file_is_refused(copy_of_shipped):
    weights = copy_of_shipped / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one float
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"model\.safetensors differs from its sha256.*tasks\.py reference"):
        builtin.load_builtin_reference(_default_stamp(), copy_of_shipped)


def test_a_missing_file_is_refused(copy_of_shipped):
    (copy_of_shipped / "tokenizer.json").unlink()
    with pytest.raises(InputError, match=r"tokenizer\.json is missing"):
        builtin.load_builtin_reference(_default_stamp(), copy_of_shipped)
    (copy_of_shipped / builtin.MANIFEST).unlink()
    with pytest.raises(InputError, match=r"grpo_align\.json is missing"):
        builtin.load_builtin_reference(_default_stamp(), copy_of_shipped)


def test_a_model_built_for_another_task_is_refused(copy_of_shipped):
    manifest_file = copy_of_shipped / builtin.MANIFEST
    manifest = json.loads(manifest_file.read_text())
    manifest["stamp"]["fingerprint"] = "0" * 64  # as if fitted to another vocabulary
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"fitted for other settings \(differ: fingerprint\)"):
        builtin.load_builtin_reference(_default_stamp(), copy_of_shipped)


def _measure(tmp_path: Path, name: str, capability: str | None) -> bytes:
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    if capability is not None:
        env["ATEN_CPU_CAPABILITY"] = capability
    out = tmp_path / f"{name}.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_align.cli", "measure", "--n", "16", "--quiet", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def test_measure_is_the_same_under_torch_generic_kernels(tmp_path):
    """The README's measure block: the same STATS bytes with the vectorised and the generic kernels."""
    assert _measure(tmp_path, "native", None) == _measure(tmp_path, "generic", "default")


@pytest.mark.slow
def test_build_command_writes_a_folder_the_loader_accepts(tmp_path):
    """``python3 tasks.py reference`` into a fresh folder (a fit: 10-70 s by kernel)."""
    folder = tmp_path / "reference"
    manifest = builtin.build_builtin_reference(folder)
    assert manifest["stamp"] == _default_stamp()
    assert builtin.load_builtin_reference(manifest["stamp"], folder).config.vocab_size == 38
