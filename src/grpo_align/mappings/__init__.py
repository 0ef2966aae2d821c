"""Mappings between trainers' configurations and the ``GRPO`` specification.

Pure Python: each module reads a trainer's settings by name, without importing the
trainer, and returns a ``MappingReport`` (``report``): the ``GRPO`` it trains and one row
per setting. ``trl``: Hugging Face TRL's ``GRPOConfig``; ``verl``: verl's trainer YAML;
``openrlhf``: OpenRLHF's ``train_ppo_ray`` flags; each fills ``base`` (a ``KeyTable`` of one
release's keys, defaults and citations, read through a ``Reader`` that records and refuses).
``read_trainer_config(path)`` reads a
file (``load_config_file``: a regular UTF-8 file, a key twice, a file with no settings and
a YAML alias bomb refused), detects the trainer and dispatches. ``engine``: the ``GRPO`` fields every mapping
sets for token sequences (``aggregation``, ``penalty_in``; THEORY.md section 10).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grpo_align.errors import InputError
from grpo_align.files import loads_json, read_text_file
from grpo_align.mappings.openrlhf import describe_openrlhf_mapping, is_openrlhf_flags, parse_openrlhf_flags
from grpo_align.mappings.report import MappingReport, MappingRow
from grpo_align.mappings.trl import describe_trl_mapping, grpo_from_trl, trl_kwargs_from_grpo
from grpo_align.mappings.verl import describe_verl_mapping, is_verl_config

__all__ = [
    "MAX_YAML_NODES",
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


#: most nodes a YAML config may expand to, an alias (``*name``) counted at the size of the
#: node it names: trainer configs hold hundreds; an alias bomb (nine aliases of nine
#: aliases of ...) would be billions
MAX_YAML_NODES = 100_000


class _YamlRefused(Exception):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message


def _yaml_loader() -> type:
    """PyYAML's ``SafeLoader``, reading only true/false as booleans, counting what it composes.

    YAML 1.1 reads ``n``, ``y``, ``on``, ``off``, ``yes``, ``no`` as booleans, so verl's
    ``rollout: {n: 5}`` would become ``{False: 5}``; OmegaConf, which verl uses, does not.
    Each node is counted with its children, an alias at the size of the node it names, and
    a document past ``MAX_YAML_NODES`` is refused while it is composed, before anything
    expands it; so are an alias inside the node it names and a key twice in one mapping
    (PyYAML would keep the last value).
    """
    import re

    import yaml  # optional (the config extra)

    merge = "tag:yaml.org,2002:merge"

    class _Loader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.expanded: dict[int, int] = {}  # id(node) -> nodes it stands for

        def compose_node(self, parent: Any, index: Any) -> Any:
            alias = self.check_event(yaml.AliasEvent)
            line = self.peek_event().start_mark.line + 1
            node = super().compose_node(parent, index)
            size = self.expanded.get(id(node))
            if size is None:
                if alias:
                    raise _YamlRefused(line, "an alias (*name) inside the node it names; expected a tree of settings")
                if isinstance(node, yaml.MappingNode):
                    _unique_keys(node.value)
                    size = 1 + sum(self.expanded[id(k)] + self.expanded[id(v)] for k, v in node.value)
                elif isinstance(node, yaml.SequenceNode):
                    size = 1 + sum(self.expanded[id(v)] for v in node.value)
                else:
                    size = 1
                self.expanded[id(node)] = size
            if size > MAX_YAML_NODES:
                raise _YamlRefused(
                    line,
                    f"expands to more than {MAX_YAML_NODES} values (aliases counted at what they name); "
                    "expected a trainer config",
                )
            return node

    def _unique_keys(pairs: list[tuple[Any, Any]]) -> None:
        seen: dict[tuple[str, str], int] = {}
        for key, _ in pairs:
            if not isinstance(key, yaml.ScalarNode) or key.tag == merge:
                continue
            line = key.start_mark.line + 1
            if (key.tag, key.value) in seen:
                raise _YamlRefused(
                    line,
                    f"key {key.value!r} appears twice in one mapping (first at line {seen[key.tag, key.value]}); "
                    "give each key once",
                )
            seen[key.tag, key.value] = line

    resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
        for k, v in _Loader.yaml_implicit_resolvers.items()
    }
    _Loader.yaml_implicit_resolvers = resolvers
    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return _Loader


def _yaml_load(text: str, path: Path) -> Any:
    """YAML through PyYAML (the ``config`` extra) and ``_yaml_loader``; errors as ``InputError``."""
    from grpo_align.extras import require

    require("config", f"reading the YAML file {path.name}")
    import yaml  # optional (the config extra)

    try:
        return yaml.load(text, Loader=_yaml_loader())
    except _YamlRefused as exc:
        raise InputError(f"{path}, line {exc.line}", exc.message) from None
    except yaml.YAMLError as exc:
        raise InputError(str(path), f"not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise InputError(str(path), "nested too deeply; expected a trainer config") from None


def _is_flags_line(line: str) -> bool:
    """A line of a command line with ``--flags`` (a comment that mentions one is not)."""
    body = line.lstrip()
    return not body.startswith("#") and (body.startswith("--") or " --" in body)


#: what a config file is, for messages
_EXPECTED = "expected a trainer config: TRL or verl settings as YAML or JSON, or OpenRLHF's flags"


def load_config_file(path: str | Path) -> Mapping[str, Any]:
    """A trainer config file as a mapping: JSON, YAML (``.yaml``/``.yml``), or a flags file.

    A file that is neither JSON nor YAML by its suffix is read as a command line of
    ``--flags`` (OpenRLHF), or as YAML when it has no ``--flag``. The file must be a
    regular UTF-8 file of at most ``files.MAX_INPUT_BYTES`` (a byte-order mark is
    dropped; ``files.read_text_file``). A key given twice, and a file with no settings
    (empty, or only comments), are refused.
    """
    p = Path(path)
    text = read_text_file(p, expected="a trainer config file")
    suffix = p.suffix.lower()
    if suffix == ".json":
        data = loads_json(text, str(p), "expected a JSON object of settings")
    elif suffix in (".yaml", ".yml"):
        data = _yaml_load(text, p)
    elif any(_is_flags_line(line) for line in text.splitlines()):
        return parse_openrlhf_flags(text)
    else:
        data = _yaml_load(text, p)
    if data is None:
        raise InputError(str(p), f"holds no settings; {_EXPECTED}")
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
