"""The built-in reference model, shipped with the package instead of fitted at first use.

The supervised fit (``lm.sft``: 400 full-batch Adam steps on an under-determined problem) is
chaotic in the last bits of float32: torch's vectorised kernels (AVX2, AVX-512, the generic
ones under ``ATEN_CPU_CAPABILITY=default``) round differently, and after 400 steps the weights
of two machines differ by up to 0.3 and the built-in task's mean pass rate measured at 16
completions by 0.01. Sampling from *one* set of weights is the same on every kernel: the
fit was the only step that moved. So the model is fitted once, by

    python3 tasks.py reference      (= python -m grpo_align.lm.builtin src/grpo_align/data/reference)

and its files ship in ``grpo_align/data/reference``. ``MANIFEST`` there (``grpo_align.json``)
records what the model was fitted to (the fingerprint of vocabulary, questions and labels
that ``lm.experiment`` computes), the sha256 of every file, and the torch release and CPU
kernels that fitted it. ``load_builtin_reference`` checks both before it loads anything: a
file altered after the build, or a package whose task changed without a rebuild, is a
one-line error naming the rebuild command, never a silently different reference.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from grpo_align.errors import InputError
from grpo_align.files import atomic_write_text, read_regular_file

__all__ = [
    "BUILD_COMMAND",
    "BUILTIN_DIR",
    "MANIFEST",
    "build_builtin_reference",
    "builtin_manifest",
    "load_builtin_reference",
]

#: the shipped model's folder (package data)
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "data" / "reference"
#: the manifest in it: stamp, file hashes, provenance
MANIFEST = "grpo_align.json"
#: how the shipped model is rebuilt (from a checkout)
BUILD_COMMAND = "python3 tasks.py reference"
#: the files of a saved model and tokenizer; the manifest holds a sha256 of each
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(read_regular_file(path, max_bytes=64 * 2**20)).hexdigest()


def builtin_manifest(folder: Path = BUILTIN_DIR) -> dict[str, Any]:
    """The manifest of a built-in model folder, or a one-line ``InputError`` naming the rebuild."""
    path = folder / MANIFEST
    try:
        data = json.loads(read_regular_file(path))
    except FileNotFoundError:
        raise InputError(
            "built-in model", f"{path} is missing: the package is incomplete; reinstall it or run {BUILD_COMMAND}"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError("built-in model", f"{path} is not JSON ({exc}); run {BUILD_COMMAND}") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict) or "stamp" not in data:
        raise InputError("built-in model", f"{path} has no 'stamp' and 'files'; run {BUILD_COMMAND}")
    return data


def load_builtin_reference(stamp: dict[str, Any], folder: Path = BUILTIN_DIR) -> Any:
    """The shipped ``GPT2LMHeadModel`` (eval mode), after checking it is the model ``stamp`` asks for.

    ``stamp`` is ``lm.experiment``'s record of the reference settings and the fingerprint of
    what the fit is made of. Refused (``InputError``) when the manifest was written for
    another stamp (the task or the defaults changed since the build) or any file's sha256
    differs from the manifest's (a file altered or truncated after the build).
    """
    from transformers import AutoModelForCausalLM

    manifest = builtin_manifest(folder)
    if manifest["stamp"] != stamp:
        changed = sorted(k for k in {*stamp, *manifest["stamp"]} if stamp.get(k) != manifest["stamp"].get(k))
        raise InputError(
            "built-in model",
            f"{folder} was fitted for other settings (differ: {', '.join(changed)}); run {BUILD_COMMAND}",
        )
    for name in MODEL_FILES:
        want = manifest["files"].get(name)
        try:
            got = _sha256(folder / name)
        except FileNotFoundError:
            got = None
        if got is None or got != want:
            raise InputError(
                "built-in model",
                f"{folder / name} {'is missing' if got is None else 'differs from its sha256 in ' + MANIFEST}; "
                f"reinstall the package or run {BUILD_COMMAND}",
            )
    return AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()


def build_builtin_reference(folder: Path = BUILTIN_DIR) -> dict[str, Any]:
    """Fit the default experiment's reference model and write it with its manifest into ``folder``.

    Every file is written atomically; the manifest last, so an interrupted build leaves a
    folder that ``load_builtin_reference`` refuses rather than one it trusts.
    """
    import torch

    from grpo_align.lm.experiment import LMExperimentConfig, fit_reference, reference_stamp
    from grpo_align.lm.model import save_pretrained

    config = LMExperimentConfig()
    task, tokenizer, model = fit_reference(config)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    save_pretrained(model, tokenizer, folder)
    # the config's _name_or_path is the build folder's absolute path: meaningless elsewhere
    config_file = folder / "config.json"
    cfg = json.loads(config_file.read_text())
    cfg.pop("_name_or_path", None)
    atomic_write_text(config_file, json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    for name in MODEL_FILES:
        (folder / name).chmod(0o644)  # safetensors writes its file private; package data is read by all
    manifest = {
        "stamp": reference_stamp(config, task, tokenizer),
        "files": {name: _sha256(folder / name) for name in MODEL_FILES},
        "built_by": {
            "command": BUILD_COMMAND,
            "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
    }
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """``python -m grpo_align.lm.builtin [FOLDER]``: rebuild the shipped model (default: the package's)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        print("usage: python -m grpo_align.lm.builtin [FOLDER]", file=sys.stderr)
        return 2
    folder = Path(args[0]) if args else BUILTIN_DIR
    manifest = build_builtin_reference(folder)
    print(f"wrote {folder}: fingerprint {manifest['stamp']['fingerprint'][:16]}, built by {manifest['built_by']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
