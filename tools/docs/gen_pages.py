"""Pages and figures generated at build time (mkdocs-gen-files runs this on every build).

Generated, never committed, so they follow the code:

- ``reference/cli.md``: every command's ``--help`` and argument table, from
  ``grpo_align.cli.build_parser()``;
- ``reference/mappings.md``: the TRL, verl and OpenRLHF tables of ``grpo_align.mappings``,
  with the release each was checked against;
- ``reference/presets.md``: ``grpo_align.PRESETS``;
- ``concepts/figures/*.png``: the Concepts pages' figures, computed by the engine.
"""

from __future__ import annotations

import argparse
import io
import math
import os
from collections.abc import Iterable
from typing import Any

import mkdocs_gen_files

os.environ["COLUMNS"] = "100"  # argparse wraps --help at this width
os.environ.setdefault("MPLBACKEND", "Agg")


def _cell(value: Any) -> str:
    """A value in a Markdown table cell: code, pipes escaped."""
    text = repr(value) if not isinstance(value, str) else value
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _text(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --- the command line ------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _argument_rows(parser: argparse.ArgumentParser) -> list[list[str]]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = ", ".join(action.option_strings) or action.dest
        default = action.default
        shown = "" if default in (None, argparse.SUPPRESS) or action.option_strings == [] else _cell(default)
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            shown = ""
        help_text = (action.help or "") % {"default": default, "prog": parser.prog} if action.help else ""
        choices = f" (one of {', '.join(map(str, action.choices))})" if action.choices else ""
        rows.append([f"`{name}`", _text(help_text) + choices, shown])
    return rows


def cli_page() -> str:
    from grpo_align.cli import build_parser

    parser = build_parser()
    out = [
        "# Command line\n",
        "Generated from `grpo_align.cli.build_parser()` when the site is built: every flag "
        "below is the installed `grpo-align`'s own. Exit statuses: [Exit status](exit-status.md).\n",
        "```text\n" + parser.format_help() + "```\n",
    ]
    for name, sub in _subparsers(parser).items():
        out.append(f"## grpo-align {name}\n")
        if sub.description:
            out.append(sub.description + ".\n")
        out.append("```text\n" + sub.format_help() + "```\n")
        out.append(_table(["argument", "meaning", "default"], _argument_rows(sub)))
    return "\n".join(out)


# --- trainer mappings --------------------------------------------------------------------


def mappings_page() -> str:
    from grpo_align.mappings import openrlhf, trl, verl

    out = [
        "# Trainer mappings\n",
        "Generated from the tables in `grpo_align.mappings` when the site is built. Each "
        "mapping reads a trainer's settings by name without importing the trainer; each row is a "
        "setting that can change what is trained: the trainer's default and where its source "
        "reads it, in the release named. Settings outside these tables are either listed as "
        "having no effect on the end point (run, engineering and data settings) or refused by "
        "name. `grpo-align explain CONFIG` prints the mapping of one config "
        "([how-to](../howto/explain.md)).\n",
        f"## TRL {trl.TRL_VERSION}\n",
        f"`GRPOConfig` (and the `trl grpo` script's fields), checked against TRL {trl.TRL_VERSION}'s "
        "source. Paths are relative to `trl/trainer/` unless named. *absent* is the behaviour of "
        "a TRL release that does not have the field.\n",
        _table(
            ["setting", "default", "absent", "read at"],
            (
                [f"`{k}`", _cell(v.default), _cell(v.absent_value()), _text(v.where)]
                for k, v in sorted(trl.TRL_KEYS.items())
            ),
        ),
        "\n`loss_type` → aggregation of the project's loss:\n",
        _table(["TRL loss_type", "aggregation"], ([f"`{k}`", f"`{v}`"] for k, v in trl.TRL_AGGREGATION.items())),
        f"\nTRL adds `{trl.TRL_EPS:g}` to the group's standard deviation. "
        f"{len(trl.TRL_INERT_KEYS)} further fields have no effect on the end point.\n",
        f"## verl {verl.VERL_VERSION}\n",
        f"The trainer YAML's dotted keys, checked against verl {verl.VERL_VERSION}'s source "
        f"(paths relative to `verl/`). verl adds `{verl.VERL_EPS:g}` to the std.\n",
        _table(
            ["key", "default", "read at"],
            ([f"`{k}`", _cell(v.default), _text(v.where)] for k, v in verl.VERL_KEYS.items()),
        ),
        "\n`loss_agg_mode` → aggregation:\n",
        _table(["verl loss_agg_mode", "aggregation"], ([f"`{k}`", f"`{v}`"] for k, v in verl.VERL_AGGREGATION.items())),
        f"\n## OpenRLHF {openrlhf.OPENRLHF_VERSION}\n",
        f"`train_ppo_ray` flags in {openrlhf.OPENRLHF_VERSION}'s names (paths relative to "
        f"`openrlhf/`); the flags of {openrlhf.LEGACY_VERSION} and earlier are translated first "
        f"(table below). OpenRLHF adds `{openrlhf.OPENRLHF_EPS:g}` to the std.\n",
        _table(
            ["flag", "default", "read at"],
            ([f"`{k}`", _cell(v.default), _text(v.where)] for k, v in openrlhf.OPENRLHF_KEYS.items()),
        ),
        f"\nFlags of OpenRLHF {openrlhf.LEGACY_VERSION} and earlier:\n",
        _table(["legacy flag", "current name"], ([f"`{k}`", f"`{v}`"] for k, v in openrlhf.LEGACY_FLAGS.items())),
        "\n`loss_agg_mode` → aggregation:\n",
        _table(
            ["OpenRLHF loss_agg_mode", "aggregation"],
            ([f"`{k}`", f"`{v}`"] for k, v in openrlhf.OPENRLHF_AGGREGATION.items()),
        ),
    ]
    return "\n".join(out)


# --- presets -------------------------------------------------------------------------------

#: what each preset mirrors, in words (the values themselves come from PRESETS)
MIRRORS = {
    "paper": "Vojnovic & Yun's analysis; G and beta of DeepSeekMath's GRPO",
    "trl": 'TRL `GRPOConfig` defaults: `num_generations=8`, `beta=0.0`, `scale_rewards="group"`, '
    "`(r - mean) / (std + 1e-4)` with torch's sample std; the k3 term times the importance ratio "
    '(`use_bias_correction_kl=True`) has the direct KL\'s gradient, hence `kl`; TRL <= 0.2x: `penalty="k3"`',
    "verl": "verl `adv_estimator=grpo`, `norm_adv_by_std_in_grpo=True`, `use_kl_loss=True`, "
    "`kl_loss_type=low_var_kl`, `kl_loss_coef=0.001`, `rollout.n=5` (its GRPO examples)",
    "openrlhf": "OpenRLHF `--advantage_estimator group_norm --use_kl_loss --kl_estimator k3 "
    "--init_kl_coef 1e-3 --n_samples_per_prompt 8`",
    "dr_grpo": "Dr. GRPO (Liu et al. 2025): no std scaling, beta = 0",
    "rloo": "RLOO (TRL `RLOOConfig`: `num_generations=2`, `beta=0.05`): the sequence k1 KL in the reward before "
    "the leave-one-out baseline (THEORY.md section 10)",
}


def presets_page() -> str:
    import grpo_align as ga

    fields = ["group_size", "beta", "normalization", "ddof", "eps", "penalty", "aggregation", "penalty_in"]
    rows = []
    for name in ga.PRESETS:
        algo = ga.GRPO.preset(name)
        rows.append([f"`{name}`", *(_cell(getattr(algo, f)) for f in fields), MIRRORS.get(name, "")])
    return "\n".join(
        [
            "# Presets\n",
            '`grpo_align.GRPO.preset(name, **overrides)` (TOML: `preset = "trl"`; CLI: `--preset`). '
            "Generated from `grpo_align.PRESETS` when the site is built; the values are the defaults of "
            "the trainer each mirrors (`src/grpo_align/theory/spec.py`), and any field can be "
            'overridden: `GRPO.preset("trl", beta=0.04)`.\n',
            _table(["preset", *fields, "mirrors"], rows),
            "\nWith beta = 0 (TRL's and Dr. GRPO's defaults) there is no interior stationary policy: "
            "the solver reports the limit (status `limit`), all mass on the reward class that wins "
            "under P_G ([THEORY.md section 9](../THEORY.md)). For a trainer's full config use "
            "`grpo-align explain` or `grpo_align.mappings.read_trainer_config`, which read every "
            "setting ([Trainer mappings](mappings.md)).\n",
        ]
    )


# --- figures for the Concepts pages ------------------------------------------------------


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def figures() -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import grpo_align as ga

    out: dict[str, bytes] = {}
    sizes = (2, 4, 8, math.inf)

    # P_G(correct | pi) of a binary question against pi(correct) (THEORY.md section 4)
    pis = np.linspace(0.01, 0.99, 99)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for g in sizes:
        algo = ga.GRPO(group_size=g, beta=0.1)
        policies = np.stack([pis, 1 - pis], axis=1)
        prob = ga.Problem.from_rewards(ref=policies, rewards=np.tile([1.0, 0.0], (len(pis), 1)))
        pg = np.asarray(ga.preference(prob, algo, policies))[:, 0]
        ax.plot(pis, pg, label=f"G = {g}")
    ax.set_xlabel("pi(correct)")
    ax.set_ylabel("P_G(correct | pi)")
    ax.set_title("The preference of a binary question (shift_scale, ddof 0)")
    ax.legend()
    out["preference.png"] = _png(fig)
    plt.close(fig)

    # stationary pi(correct) against beta, GRPO at several G against RLHF (section 6)
    betas = np.geomspace(0.05, 5, 40)
    p0 = 0.3
    prob = ga.Problem.from_rewards(ref=[p0, 1 - p0], rewards=[1.0, 0.0])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for g in sizes:
        ys = [ga.stationary_policy(prob, ga.GRPO(group_size=g, beta=b))[0].policy[0] for b in betas]
        ax.plot(betas, ys, label=f"GRPO G = {g}")
    ax.plot(betas, [ga.rlhf_policy(prob, beta=b)[0] for b in betas], "k--", label="RLHF")
    ax.axhline(p0, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("beta")
    ax.set_ylabel("stationary pi(correct)")
    ax.set_title(f"Binary question, p0 = {p0}, k3 penalty")
    ax.legend()
    out["binary_beta.png"] = _png(fig)
    plt.close(fig)

    # the penalties' gradient coefficients phi against pi/pi_ref (section 3)
    ratio = np.geomspace(0.05, 5, 200)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(ratio, 1 - 1 / ratio, label="k3: 1 - pi_ref/pi (reverse KL)")
    ax.plot(ratio, np.log(ratio), label="k2, kl: log(pi/pi_ref) (direct KL)")
    ax.plot(ratio, np.ones_like(ratio), label="k1: 1 (no pull)")
    ax.plot(ratio, np.sign(np.log(ratio)), label="abs: sign")
    ax.set_xscale("log")
    ax.set_ylim(-4, 3)
    ax.set_xlabel("pi(o) / pi_ref(o)")
    ax.set_ylabel("phi(o)")
    ax.set_title("The penalty's gradient coefficient")
    ax.legend(fontsize=8)
    out["penalties.png"] = _png(fig)
    plt.close(fig)

    # every stationary policy of the direct-KL binary question against beta (section 11)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for b in np.linspace(0.5, 3.0, 60):
        res = ga.stationary_policy(prob, ga.GRPO(group_size=math.inf, beta=float(b), penalty="k2"))[0]
        for root in res.roots:
            ax.plot(b, root.policy[0], "o", ms=3, color="C0" if root.stable else "C3")
    ax.plot([], [], "o", color="C0", label="stable")
    ax.plot([], [], "o", color="C3", label="unstable")
    ax.set_xlabel("beta")
    ax.set_ylabel("pi(correct) at a stationary policy")
    ax.set_title("Direct KL (k2), G -> inf, p0 = 0.3: a vertex, then a fold")
    ax.legend()
    out["direct_kl_roots.png"] = _png(fig)
    plt.close(fig)
    return out


def main() -> None:
    pages = {
        "reference/cli.md": cli_page(),
        "reference/mappings.md": mappings_page(),
        "reference/presets.md": presets_page(),
    }
    for path, text in pages.items():
        with mkdocs_gen_files.open(path, "w") as f:
            f.write(text)
    for name, data in figures().items():
        with mkdocs_gen_files.open(f"concepts/figures/{name}", "wb") as f:
            f.write(data)


main()
