"""Mappings between trainers' configurations and the ``GRPO`` specification.

Pure Python: each module reads a trainer's settings by name, without importing the
trainer, and returns a ``MappingReport`` (``report``): the ``GRPO`` it trains and one row
per setting. ``trl``: Hugging Face TRL's ``GRPOConfig``; ``verl``: verl's trainer YAML;
``openrlhf``: OpenRLHF's ``train_ppo_ray`` flags. ``read_trainer_config(path)`` reads a
file, detects the trainer and dispatches. ``engine``: the ``GRPO`` fields every mapping
sets for token sequences (``aggregation``, ``penalty_in``; THEORY.md section 10).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grpo_align.errors import InputError
from grpo_align.mappings.openrlhf import describe_openrlhf_mapping, is_openrlhf_flags, parse_openrlhf_flags
from grpo_align.mappings.report import MappingReport, MappingRow
from grpo_align.mappings.trl import describe_trl_mapping, grpo_from_trl, trl_kwargs_from_grpo
from grpo_align.mappings.verl import describe_verl_mapping, is_verl_config

__all__ = [
    "TRAINERS",
    "MappingReport",
    "MappingRow",
    "describe_openrlhf_mapping",
    "describe_trl_mapping",
    "describe_verl_mapping",
    "detect_trainer",
    "grpo_from_trl",
    "load_config_file",
    "read_trainer_config",
    "trl_kwargs_from_grpo",
]

TRAINERS = ("trl", "verl", "openrlhf")

_DESCRIBE = {"trl": describe_trl_mapping, "verl": describe_verl_mapping, "openrlhf": describe_openrlhf_mapping}


def _yaml_load(text: str, path: Path) -> Any:
    """YAML through PyYAML (the ``config`` extra), reading only true/false as booleans.

    YAML 1.1 reads ``n``, ``y``, ``on``, ``off``, ``yes``, ``no`` as booleans, so verl's
    ``rollout: {n: 5}`` would become ``{False: 5}``; OmegaConf, which verl uses, does not.
    """
    from grpo_align.extras import require

    require("config", f"reading the YAML file {path.name}")
    import yaml  # optional (the config extra)

    class _Loader(yaml.SafeLoader):
        pass

    resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
        for k, v in _Loader.yaml_implicit_resolvers.items()
    }
    _Loader.yaml_implicit_resolvers = resolvers
    import re

    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise InputError(str(path), f"not valid YAML: {str(exc).splitlines()[0]}") from None


def load_config_file(path: str | Path) -> Mapping[str, Any]:
    """A trainer config file as a mapping: JSON, YAML (``.yaml``/``.yml``), or a flags file.

    A file that is neither JSON nor YAML by its suffix is read as a command line of
    ``--flags`` (OpenRLHF), or as YAML when it has no ``--flag``.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(str(p), f"not valid JSON: {exc.msg} (line {exc.lineno})") from None
    elif suffix in (".yaml", ".yml"):
        data = _yaml_load(text, p)
    elif any(line.lstrip().startswith("--") or " --" in line for line in text.splitlines()):
        return parse_openrlhf_flags(text)
    else:
        data = _yaml_load(text, p)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InputError(str(p), f"expected a mapping of settings at the top level, got {type(data).__name__}")
    return data


def detect_trainer(config: Mapping[str, Any]) -> str:
    """``verl`` for the ``algorithm`` / ``actor_rollout_ref`` trees, ``openrlhf`` for its
    flags, else ``trl`` (a GRPOConfig's flat keys)."""
    if is_verl_config(config):
        return "verl"
    if is_openrlhf_flags(config):
        return "openrlhf"
    return "trl"


def read_trainer_config(path: str | Path, trainer: str | None = None) -> MappingReport:
    """Read a trainer config file and map it to the ``GRPO`` it trains.

    Parameters
    ----------
    path : str or Path
        A TRL ``GRPOConfig`` as YAML/JSON, verl's trainer YAML/JSON, or OpenRLHF's
        ``train_ppo_ray`` flags as a text file. YAML needs PyYAML (the ``config`` extra).
    trainer : {"trl", "verl", "openrlhf"} or None
        None detects it from the keys (``detect_trainer``).

    Returns
    -------
    MappingReport

    Raises
    ------
    InputError
        A file that cannot be read as a config, an unknown trainer, or the mapping's own
        refusals (naming the setting).
    """
    if trainer is not None and trainer not in TRAINERS:
        raise InputError("trainer", f"unknown {trainer!r}; expected one of {', '.join(TRAINERS)}")
    config = load_config_file(path)
    chosen = trainer or detect_trainer(config)
    return _DESCRIBE[chosen](config)
