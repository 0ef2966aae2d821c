"""OpenRLHF: the ``GRPO`` specification the flags of ``openrlhf.cli.train_ppo_ray`` train.

``parse_openrlhf_flags(text)`` reads a flags file (the command line, one or many lines,
``\\`` continuations and ``#`` comments allowed, a leading ``python -m ...`` or
``ray job submit ... --`` skipped); ``describe_openrlhf_mapping(flags)`` maps a mapping of
flag names (without ``--``) to values and returns a ``MappingReport``.

Every fact below was read in OpenRLHF 0.11.2's source (``OPENRLHF_VERSION``; file:line in
``OPENRLHF_KEYS``). 0.11 names its flags with dots (``--algo.kl.init_coef``); the flat
names of 0.9 and before (``--init_kl_coef``, checked in 0.9.10) are read as aliases
(``LEGACY_FLAGS``).

* ``--rollout.n_samples_per_prompt`` -> ``group_size`` (default 1: no group).
* ``--algo.advantage.estimator`` ``group_norm``: ``(r - mean) / (r.std() + 1e-9)``, Bessel's
  std -> ``shift_scale, ddof=1, eps=1e-9``; ``dr_grpo`` -> ``shift``; ``rloo`` -> ``rloo``;
  ``reinforce_baseline`` -> ``shift`` then whitened over the batch (a common positive
  scale: the stationary points do not move when the penalty is in the advantage too);
  ``gae`` (the default) trains a critic: refused.
* ``--algo.kl.use_loss``: ``init_coef`` x the estimator k1/k2/k3 per token in the loss ->
  ``beta``, ``penalty``; ``--algo.kl.unbiased_gradient`` takes k1 grad log pi -> ``k2``.
* Without ``--algo.kl.use_loss`` (the default) ``-init_coef x kl`` per token is added to the
  reward AFTER the group normalisation and summed into a reward-to-go, the advantage of
  every token (experience_maker.py:268-311, models/utils.py:131-159): not normalised with
  the reward, so not ``penalty_in="reward"``. Its expected gradient is
  -beta sum_o x(o) grad pi(o) with x(o) the sequence log-ratio; with k1 (the default) that
  is the direct KL's gradient, the engine's ``k2`` in the loss (psi = log(pi/pi_ref),
  THEORY.md section 3): exact when every answer passes one branching prefix only
  (atomic answers, or answers decided by one token: no shared prefixes); on trees of several
  branchings the reward-to-go carries the later tokens' log-ratios, which the per-token k2
  does not (the report's notes say so). k2 and k3 there are refused. OpenRLHF 0.9.10 and
  0.10.4 do the same (experience_maker.py:261-294 in 0.9.10).
* ``--actor.loss_agg_mode`` -> ``aggregation``: ``token-mean`` (the default) divides by the
  global batch's token count, "constant" in the many-groups limit (0.9.10 has no flag and
  always divides by the micro-batch's token count: "constant" in the same limit); ``seq-mean-token-mean`` -> ``sequence_mean`` (models/loss.py:11-39).

Neither torch nor OpenRLHF is imported.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from grpo_align.errors import InputError
from grpo_align.mappings.base import InertKeys, Key, KeyTable, Reader
from grpo_align.mappings.report import MappingReport, read_real, weight_decay_text
from grpo_align.theory.penalties import penalty as penalty_record
from grpo_align.theory.spec import GRPO
from grpo_align.theory.trainers import OPENRLHF_EPS

__all__ = [
    "LEGACY_FLAGS",
    "OPENRLHF_AGGREGATION",
    "OPENRLHF_EPS",
    "OPENRLHF_KEYS",
    "OPENRLHF_TABLE",
    "OPENRLHF_VERSION",
    "OpenRLHFKey",
    "describe_openrlhf_mapping",
    "grpo_from_openrlhf",
    "is_openrlhf_flags",
    "parse_openrlhf_flags",
]

#: the OpenRLHF release whose source the tables below were checked against
OPENRLHF_VERSION = "0.11.2"
#: the release whose flat flag names ``LEGACY_FLAGS`` were read in
LEGACY_VERSION = "0.9.10"

#: --actor.loss_agg_mode -> the aggregation (engine.AGGREGATIONS); models/loss.py:11-39:
#: token-mean divides by the global batch's token count (one normaliser for every group:
#: "constant" in the many-groups limit); 0.9.10 has no flag and always takes the token mean
OPENRLHF_AGGREGATION = {"token-mean": "constant", "seq-mean-token-mean": "sequence_mean"}


#: the record of a flag (``base.Key``), under its former name
OpenRLHFKey = Key


_P = "cli/train_ppo_ray.py"
_E = "trainer/ppo_utils/experience_maker.py"
_U = "models/utils.py"
_A = "trainer/ray/ppo_actor.py"

#: Every flag that can change what is trained (0.11.2 names), its default and where read.
_KEYS = (
    Key("rollout.n_samples_per_prompt", 1, f"{_P}:432-434, {_E}:256"),
    Key("algo.advantage.estimator", "gae", f"{_P}:514-522, {_E}:268-279"),
    Key("algo.kl.use_loss", False, f"{_P}:523-525, {_A}:318-338, {_E}:205-219"),
    Key("algo.kl.init_coef", 0.01, f"{_P}:438, {_A}:338, {_U}:138-144"),
    Key("algo.kl.estimator", "k1", f"{_P}:448-456, {_U}:93-113"),
    Key("algo.kl.unbiased_gradient", False, f"{_P}:457-466, {_U}:115-128"),
    Key("algo.kl.target", None, f"{_P}:436, trainer/ppo_trainer.py:171-176"),
    Key("algo.advantage.no_std_norm", False, f"{_P}:526-531, {_E}:325-338"),
    Key("actor.loss_agg_mode", "token-mean", f"{_P}:440-447, models/loss.py:11-39"),
    Key("actor.policy_loss_type", "ppo", f"{_P}:439"),
    Key("actor.entropy_coef", None, f"{_P}:468-473, {_A}:346-353"),
    Key("actor.aux_loss_coef", 0, f"{_P}:467, {_A}:340-344"),
    Key("actor.adam.weight_decay", 0.0, f"{_P}:505"),
    Key("rollout.temperature", 1.0, f"{_P}:418"),
    Key("rollout.top_p", 1.0, f"{_P}:417"),
    Key("reward.normalize_enable", False, f"{_P}:414-416"),
    Key("reward.clip_range", (-10, 10), f"{_P}:474, {_U}:141-142"),
    Key("reward.overlong_buffer_len", None, f"{_P}:532-534, {_E}:246"),
    Key("reward.stop_properly_penalty_coef", None, f"{_P}:536-542, {_E}:246"),
    Key("algo.dynamic_filtering_enable", False, f"{_P}:600-602"),
    Key("algo.advantage.is_correction_level", "off", f"{_P}:260-267"),
)

#: OpenRLHF 0.9.x flat flag -> the 0.11.2 flag it became (read in both releases' train_ppo_ray.py)
LEGACY_FLAGS: dict[str, str] = {
    "n_samples_per_prompt": "rollout.n_samples_per_prompt",
    "advantage_estimator": "algo.advantage.estimator",
    "use_kl_loss": "algo.kl.use_loss",
    "init_kl_coef": "algo.kl.init_coef",
    "kl_estimator": "algo.kl.estimator",
    "kl_target": "algo.kl.target",
    "no_advantage_std_norm": "algo.advantage.no_std_norm",
    "policy_loss_type": "actor.policy_loss_type",
    "entropy_loss_coef": "actor.entropy_coef",
    "aux_loss_coef": "actor.aux_loss_coef",
    "l2": "actor.adam.weight_decay",
    "temperature": "rollout.temperature",
    "top_p": "rollout.top_p",
    "normalize_reward": "reward.normalize_enable",
    "reward_clip_range": "reward.clip_range",
    "overlong_buffer_len": "reward.overlong_buffer_len",
    "stop_properly_penalty_coef": "reward.stop_properly_penalty_coef",
    "dynamic_filtering": "algo.dynamic_filtering_enable",
}

#: flag groups (0.11.2) that do not move the stationary points: parallelism, DeepSpeed,
#: vLLM plumbing, checkpoints, logging, data, evaluation, models' paths, learning-rate and
#: batch settings, clip widths (inactive at ratio 1), batch reuse
_INERT_PREFIXES = tuple(
    [
        "ds.",
        "vllm.",
        "ckpt.",
        "logger.",
        "data.",
        "eval.",
        "ref.",
        "critic.",
        "train.",
        "reward.num_nodes",
        "reward.num_gpus_per_node",
        "reward.model_name_or_path",
        "reward.remote_url",
        "reward.offload",
        "reward.overlong_penalty_factor",
        "actor.num_nodes",
        "actor.num_gpus_per_node",
        "actor.gradient_checkpointing_enable",  # train_ppo_ray.py:328
        "actor.model_name_or_path",
        "actor.freeze_visual_encoder",
        "actor.optim",
        "actor.muon.",
        "actor.adam.lr",
        "actor.adam.betas",
        "actor.adam.eps",
        "actor.lr_scheduler",
        "actor.lr_warmup_ratio",
        "actor.min_lr_ratio",
        "actor.max_norm",
        "actor.eps_clip",
        "actor.eps_clip_low_high",
        "actor.dual_clip",
        "rollout.batch_size",
        "rollout.micro_batch_size",
        "rollout.vllm_generate_batch_size",
        "rollout.max_new_tokens",
        "rollout.max_tokens_per_gpu",
        "algo.kl.horizon",
        "algo.advantage.gamma",
        "algo.advantage.lambd",
        "algo.advantage.is_correction_mode",
        "algo.advantage.is_correction_gating",
        "algo.advantage.is_correction_threshold",
        "algo.dynamic_filtering_range",
        "local_rank",
        "use_ms",
    ]
)

#: flat 0.9.x flags of the same kinds (run, engineering, data, models' paths)
_LEGACY_INERT = frozenset(
    [
        "pretrain",
        "reward_pretrain",
        "critic_pretrain",
        "remote_rm_url",
        "save_path",
        "ckpt_path",
        "save_steps",
        "logging_steps",
        "eval_steps",
        "max_ckpt_num",
        "max_ckpt_mem",
        "load_checkpoint",
        "micro_train_batch_size",
        "train_batch_size",
        "micro_rollout_batch_size",
        "rollout_batch_size",
        "max_samples",
        "max_epochs",
        "num_episodes",
        "prompt_max_len",
        "generate_max_len",
        "max_len",
        "zero_stage",
        "bf16",
        "actor_learning_rate",
        "critic_learning_rate",
        "lr_warmup_ratio",
        "lr_scheduler",
        "prompt_data",
        "prompt_split",
        "prompt_data_probs",
        "input_key",
        "label_key",
        "input_template",
        "apply_chat_template",
        "packing_samples",
        "adam_offload",
        "flash_attn",
        "gradient_checkpointing",
        "vllm_num_engines",
        "vllm_tensor_parallel_size",
        "vllm_gpu_memory_utilization",
        "vllm_sync_backend",
        "enforce_eager",
        "vllm_enable_sleep",
        "deepspeed_enable_sleep",
        "colocate_all_models",
        "colocate_actor_ref",
        "colocate_critic_reward",
        "ref_num_nodes",
        "ref_num_gpus_per_node",
        "actor_num_nodes",
        "actor_num_gpus_per_node",
        "critic_num_nodes",
        "critic_num_gpus_per_node",
        "reward_num_nodes",
        "reward_num_gpus_per_node",
        "use_wandb",
        "wandb_org",
        "wandb_group",
        "wandb_project",
        "wandb_run_name",
        "use_tensorboard",
        "seed",
        "max_norm",
        "eps_clip",
        "eps_clip_low_high",
        "dual_clip",
        "value_clip",
        "adam_betas",
        "kl_horizon",
        "gamma",
        "lambd",
        "local_rank",
        "save_hf_ckpt",
        "disable_ds_ckpt",
        "agent_func_path",
        "ring_attn_size",
        "ring_attn_head_stride",
        "lora_rank",
        "lora_alpha",
        "target_modules",
        "lora_dropout",
        "load_in_4bit",
        "disable_fast_tokenizer",
        "overlong_penalty_factor",
        "dynamic_filtering_reward_range",
        "full_determinism",
        "use_ds_universal_ckpt",
    ]
)

#: OpenRLHF 0.11.2's table: the flags read (in the report's order) and the inert ones; a
#: misspelt flag is matched against the 0.11.2 and the legacy names
OPENRLHF_TABLE = KeyTable.of(
    "openrlhf",
    "OpenRLHF",
    OPENRLHF_VERSION,
    _KEYS,
    inert=InertKeys(names=_LEGACY_INERT, prefixes=_INERT_PREFIXES),
    shown_prefix="--",
    suggest=tuple(LEGACY_FLAGS),
)
OPENRLHF_KEYS = OPENRLHF_TABLE.keys

_INERT = "no effect on the end point (a run, engineering or data setting)"


def parse_openrlhf_flags(text: str) -> dict[str, Any]:
    """The flags of an OpenRLHF command line, by name without ``--``.

    A flag followed by values takes them (one value as a string, several as a list); a
    flag followed by another flag or the end is a switch (True). Tokens before the first
    ``--flag`` (``python3 -m openrlhf.cli.train_ppo_ray``), and everything up to a bare
    ``--`` (``ray job submit ... --``), are skipped.
    """
    try:
        tokens = shlex.split(text.replace("\\\n", " "), comments=True)
    except ValueError as exc:
        raise InputError("flags", f"cannot split the command line: {exc}") from None
    if "--" in tokens:
        tokens = tokens[len(tokens) - tokens[::-1].index("--") :]
    flags: dict[str, Any] = {}
    name: str | None = None
    values: list[str] = []

    def close() -> None:
        if name is not None:
            flags[name] = True if not values else values[0] if len(values) == 1 else list(values)

    for tok in tokens:
        if tok.startswith("--") and len(tok) > 2:
            close()
            body = tok[2:]
            if "=" in body:
                name, value = body.split("=", 1)
                values = [value]
            else:
                name, values = body, []
            if name in flags:
                raise InputError(f"--{name}", "given twice; give each flag once")
        elif name is not None:
            values.append(tok)
    close()
    if not flags:
        raise InputError("flags", "no --flag found: expected OpenRLHF's train_ppo_ray command line")
    return flags


def is_openrlhf_flags(config: Mapping[str, Any]) -> bool:
    """Whether a mapping's keys are OpenRLHF flags (0.11 dotted or 0.9 flat names)."""
    keys = {k.lstrip("-") for k in config if isinstance(k, str)}
    return bool(keys & (set(OPENRLHF_KEYS) | set(LEGACY_FLAGS))) or any(
        k.split(".")[0] in ("algo", "rollout", "actor", "ds", "vllm") for k in keys
    )


def _canonical(flags: Mapping[str, Any]) -> dict[str, Any]:
    """0.11.2 names for every flag; legacy names mapped, inert ones kept as given."""
    out: dict[str, Any] = {}
    for raw, value in flags.items():
        if not isinstance(raw, str):
            raise InputError("flags", f"flag names must be strings, got {raw!r}")
        key = raw.lstrip("-")
        name = LEGACY_FLAGS.get(key, key)
        if name in out:
            raise InputError(f"--{key}", f"gives --{name} a second time (legacy and 0.11 names)")
        if not OPENRLHF_TABLE.is_known(name):  # an unknown name is its own (not a legacy alias)
            raise OPENRLHF_TABLE.unclassified(name, "it may change what is trained; remove it to use the default")
        out[name] = value
    return out


_NORM: dict[str, tuple[dict[str, Any], str]] = {
    "group_norm": (
        dict(normalization="shift_scale", ddof=1, eps=OPENRLHF_EPS),
        "normalization shift_scale, ddof 1 (torch std), eps 1e-9",
    ),
    "dr_grpo": (dict(normalization="shift", ddof=0, eps=0.0), "normalization shift (r - mean)"),
    "rloo": (dict(normalization="rloo", ddof=0, eps=0.0), "normalization rloo (r minus the others' mean)"),
    "reinforce_baseline": (
        dict(normalization="shift", ddof=0, eps=0.0),
        "normalization shift (r - mean), then whitened over the batch (a common scale)",
    ),
}


def _spec(r: Reader) -> tuple[GRPO, str, list[str]]:
    notes: list[str] = []
    g = r.integer("rollout.n_samples_per_prompt")
    if g < 2:
        raise r.refuse(
            "rollout.n_samples_per_prompt", g, "leaves no group (the default is 1); expected an integer >= 2"
        )
    r.put("rollout.n_samples_per_prompt", f"group_size {g}")
    est = r.get("algo.advantage.estimator")
    if not isinstance(est, str) or est not in _NORM:
        why = (
            "trains a critic (GAE, the default): no group-level GRPO spec expresses it; expected group_norm"
            if est == "gae"
            else "has no group baseline the engine models; expected group_norm, dr_grpo, rloo or reinforce_baseline"
        )
        raise r.refuse("algo.advantage.estimator", est, why)
    norm, text = _NORM[est]
    r.put("algo.advantage.estimator", text)
    whitened = est == "reinforce_baseline" and not r.flag("algo.advantage.no_std_norm")
    r.put(
        "algo.advantage.no_std_norm",
        "read only by the batch whitening of gae/reinforce/reinforce_baseline"
        if est != "reinforce_baseline"
        else ("true: no batch std" if not whitened else "false: advantages divided by the batch std"),
    )
    coef = r.real("algo.kl.init_coef")
    if coef < 0:
        raise r.refuse("algo.kl.init_coef", coef, "expected a number >= 0")
    target = r.get("algo.kl.target")
    if target not in (None, 0, 0.0, "None") and coef > 0:
        raise r.refuse("algo.kl.target", target, "adapts the KL coefficient during training; expected unset")
    r.put("algo.kl.target", "unset: the coefficient is fixed")
    est_kl = r.get("algo.kl.estimator")
    if est_kl not in ("k1", "k2", "k3"):
        raise r.refuse("algo.kl.estimator", est_kl, "expected k1, k2 or k3")
    in_loss = r.flag("algo.kl.use_loss")
    unbiased = r.flag("algo.kl.unbiased_gradient")
    if in_loss:
        penalty = "k2" if unbiased else est_kl
        if whitened and coef > 0:
            raise r.refuse(
                "algo.advantage.estimator",
                est,
                "whitens the advantages by the batch std but not the KL loss, which rescales beta during training; "
                "give --algo.advantage.no_std_norm or use group_norm",
            )
        r.put("algo.kl.use_loss", "true: the penalty is a term of the loss")
        r.put("algo.kl.init_coef", f"beta {coef:g}")
        r.put(
            "algo.kl.estimator",
            f"penalty {penalty}"
            + (" (clamped: exact while log(pi/pi_ref) per token stays in [-2.61, 11.0])" if penalty == "k3" else ""),
        )
        r.put(
            "algo.kl.unbiased_gradient",
            "true: k1 x grad log pi whatever the estimator, the direct KL's gradient -> penalty k2"
            if unbiased
            else "false: the estimator's own gradient",
        )
        placement = f"{est_kl} penalty in the loss at beta {coef:g}"
    else:
        if coef > 0 and est_kl != "k1":
            raise r.refuse(
                "algo.kl.estimator",
                est_kl,
                "without --algo.kl.use_loss adds -init_coef x the estimator to the advantage after the normalisation; "
                "its gradient coefficient is none of the engine's penalties for k2 and k3: use k1 (the default) "
                "or --algo.kl.use_loss",
            )
        penalty = "k2"
        r.put(
            "algo.kl.use_loss",
            "false: -beta k1 per token added to the advantage after the group normalisation (reward-to-go): "
            "its expected gradient is the direct KL's -> penalty k2, not normalised with the reward",
        )
        r.put("algo.kl.init_coef", f"beta {coef:g}")
        r.put("algo.kl.estimator", "k1: the score-function term with the direct KL's gradient")
        r.put("algo.kl.unbiased_gradient", "read only with --algo.kl.use_loss")
        placement = f"k1 in the advantage after normalisation at beta {coef:g} (the direct KL's gradient)"
        notes.append(
            f"OpenRLHF {OPENRLHF_VERSION} (and {LEGACY_VERSION}, 0.10.4) without --algo.kl.use_loss adds -beta k1 per "
            f"token to the reward after the group normalisation and sums it into a reward-to-go ({_E}:268-311): "
            "the direct KL's gradient, the engine's k2 in the loss (penalty_in='loss'), not the penalty normalised "
            "with the reward (penalty_in='reward')"
        )
        notes.append(
            "exact when every answer passes one branching prefix only (atomic answers, or answers decided by "
            "one token: no shared prefixes); on trees of several branchings the reward-to-go carries the later tokens' "
            "log-ratios (the sequence-level direct KL's gradient), which the per-token k2 does not"
        )
    if penalty in ("k1", "k2", "k3") and coef > 0:
        notes.append(
            f"OpenRLHF clamps every estimator to [-10, 10] per token ({_U}:106-113): exact while no token's clamp binds"
        )
    # the penalty is never normalised with the reward here: penalty_in "loss" in both branches
    algo = GRPO(
        group_size=g,
        beta=coef,
        penalty=penalty_record(penalty).name,
        **norm,
        aggregation=_aggregation(r),
        penalty_in="loss",
    )
    notes.insert(0, f"advantage: {text}; {placement}")
    return algo, placement, notes


def _aggregation(r: Reader) -> str:
    mode = r.get("actor.loss_agg_mode")
    if not isinstance(mode, str) or mode not in OPENRLHF_AGGREGATION:
        raise r.refuse("actor.loss_agg_mode", mode, f"expected one of {', '.join(OPENRLHF_AGGREGATION)}")
    return OPENRLHF_AGGREGATION[mode]


def _checks(r: Reader, beta: float) -> None:
    agg = _aggregation(r)
    r.put(
        "actor.loss_agg_mode",
        f"aggregation {agg}"
        + (
            ": one token count for the whole (global) batch, a constant in the many-groups limit"
            if agg == "constant"
            else ": each sequence's tokens averaged, then sequences"
        ),
    )
    plt = r.get("actor.policy_loss_type")
    if plt != "ppo":
        raise r.refuse("actor.policy_loss_type", plt, "weights whole sequences by their ratio (GSPO); expected ppo")
    r.put("actor.policy_loss_type", "ppo: the clip is inactive at ratio 1")
    ent = r.get("actor.entropy_coef")
    if ent is not None and read_real("--actor.entropy_coef", ent) != 0:
        raise r.refuse(
            "actor.entropy_coef", ent, "adds an entropy bonus, which moves the stationary policy; expected unset or 0"
        )
    r.put("actor.entropy_coef", "no entropy bonus")
    aux = r.real("actor.aux_loss_coef")
    if aux > 1e-8:
        raise r.refuse("actor.aux_loss_coef", aux, "adds a Mixture-of-Experts balancing loss; expected 0")
    r.put("actor.aux_loss_coef", "0: no auxiliary loss")
    wd_text, _ = weight_decay_text("actor.adam.weight_decay", r.real("actor.adam.weight_decay"))
    r.put("actor.adam.weight_decay", wd_text)
    t = r.real("rollout.temperature")
    if t != 1.0:
        raise r.refuse(
            "rollout.temperature", t, "samples from softmax(logits / T), not the policy it trains; expected 1.0"
        )
    r.put("rollout.temperature", "1.0: samples from the policy itself")
    p = r.real("rollout.top_p")
    if p != 1.0:
        raise r.refuse("rollout.top_p", p, "samples from a truncated distribution; expected 1.0")
    r.put("rollout.top_p", "1.0: no nucleus filtering")
    if r.flag("reward.normalize_enable"):
        raise r.refuse("reward.normalize_enable", True, "rescales rewards by running statistics; expected off")
    r.put("reward.normalize_enable", "off: rewards as given")
    r.put("reward.clip_range", "rewards clipped to this range: exact for rewards inside it")
    for key, why in (
        ("reward.overlong_buffer_len", "penalises long answers in the reward; expected unset"),
        ("reward.stop_properly_penalty_coef", "penalises truncated answers in the reward; expected unset"),
    ):
        if r.get(key) not in (None, "None"):
            raise r.refuse(key, r.get(key), why)
        r.put(key, "unset: the reward as given")
    if r.flag("algo.dynamic_filtering_enable"):
        if beta > 0:
            raise r.refuse(
                "algo.dynamic_filtering_enable",
                True,
                "drops groups whose rewards all tie, whose penalty gradient then goes missing; expected off (or beta 0)",
            )
        r.put("algo.dynamic_filtering_enable", "drops all-tied groups: their advantages are 0 anyway at beta 0")
    else:
        r.put("algo.dynamic_filtering_enable", "off: every group trained")
    lvl = r.get("algo.advantage.is_correction_level")
    r.put(
        "algo.advantage.is_correction_level",
        "off" if lvl == "off" else "vLLM/trainer mismatch correction: weight 1 where vLLM samples the policy itself",
    )


def describe_openrlhf_mapping(flags: Mapping[str, Any]) -> MappingReport:
    """What an OpenRLHF ``train_ppo_ray`` command line trains, flag by flag.

    Parameters
    ----------
    flags : Mapping
        Flag names (with or without ``--``; 0.11 dotted or 0.9 flat) to values, as from
        ``parse_openrlhf_flags``; switches map to True. Flags not given take OpenRLHF
        0.11.2's defaults (``OPENRLHF_KEYS``).

    Returns
    -------
    MappingReport
        ``algo`` the ``GRPO`` (THEORY.md sections 2-3) and one row per flag read or given.

    Raises
    ------
    InputError
        Naming the flag: unknown, a bad value, or one that changes what is trained and is
        not modelled.
    """
    if not isinstance(flags, Mapping):
        raise InputError("flags", f"expected a mapping of OpenRLHF flags, got {type(flags).__name__}")
    values = _canonical(flags)
    r = Reader(OPENRLHF_TABLE, values, set(values))
    algo, _, notes = _spec(r)
    _checks(r, algo.beta)
    r.put_inert(_INERT)
    legacy = sorted(k.lstrip("-") for k in flags if isinstance(k, str) and k.lstrip("-") in LEGACY_FLAGS)
    if legacy:
        notes.append(
            f"flat flags of OpenRLHF {LEGACY_VERSION} and before read as their {OPENRLHF_VERSION} names: "
            + ", ".join(f"--{k} -> --{LEGACY_FLAGS[k]}" for k in legacy)
        )
    _, wd_note = weight_decay_text("actor.adam.weight_decay", r.real("actor.adam.weight_decay"))
    if wd_note is not None:
        notes.append(wd_note)
    notes.append(f"flags not given take OpenRLHF {OPENRLHF_VERSION}'s defaults ({_P})")
    return OPENRLHF_TABLE.report(r, algo, notes)


def grpo_from_openrlhf(flags: Mapping[str, Any]) -> GRPO:
    """The ``GRPO`` an OpenRLHF command line trains (see ``describe_openrlhf_mapping``)."""
    return describe_openrlhf_mapping(flags).algo
