"""Hugging Face TRL: the ``GRPO`` specification a ``GRPOConfig`` trains, and back.

``describe_trl_mapping(config)`` reads a TRL ``GRPOConfig`` object, or a mapping with the
keys ``trl grpo --config`` reads (a YAML/JSON file), and returns a ``MappingReport``: the
``GRPO`` it trains and one row per setting. ``grpo_from_trl(config)`` is its ``algo``;
``trl_kwargs_from_grpo(algo)`` goes back. docs/lm.md has the table in words.

Every fact below was read in TRL 1.16.0's source (``TRL_VERSION``; line numbers of
``trl/trainer/grpo_trainer.py`` and ``grpo_config.py`` in ``TRL_KEYS``):

* ``num_generations`` -> ``group_size``; ``beta`` -> ``beta`` (TRL's default 0.0 loads no
  reference model and leaves no interior stationary policy, THEORY.md section 10).
* ``scale_rewards="group"`` (or true): ``(r - mean) / (std + 1e-4)`` with Bessel's std ->
  ``normalization="shift_scale", ddof=1, eps=1e-4``; ``"none"`` (or false) -> ``"shift"``;
  ``"batch"`` (a batch-wide std) has no group-level counterpart and is refused.
* penalty: ``exp(ref - logp) - (ref - logp) - 1`` per token -> ``"k3"``; with
  ``use_bias_correction_kl=True`` (the 1.16 default) it is multiplied by the ratio rho:
  d(rho k3)/d logp = x = logp - ref at rho = 1, k2's psi (the direct KL's gradient,
  THEORY.md section 10.3) -> ``"k2"`` (the project's ``"kl"``, rho x, has psi = x + 1: the
  same end point only under a constant aggregation). An object from a TRL without the
  field (added in 0.26, default true from 1.10) trains the plain ``"k3"``.
* ``loss_type`` -> ``aggregation`` (``TRL_AGGREGATION``, grpo_trainer.py:3153-3183):
  ``"grpo"``/``"sapo"`` average each sequence's tokens -> ``"sequence_mean"``;
  ``"dapo"`` (the default), ``"bnpo"`` and ``"cispo"`` divide the summed token losses by a
  token count shared by the whole (global or local) batch -> ``"constant"`` in the
  many-groups limit; ``"dr_grpo"`` divides by batch size x ``max_completion_length`` ->
  ``"constant"``, exactly. ``trl_kwargs_from_grpo`` writes ``"grpo"`` for
  ``"sequence_mean"`` and ``"dr_grpo"`` (exact for any batch) for ``"constant"``.
* equal ``reward_weights`` w scale the reward: ``eps = 1e-4 / w`` (std scaling) or
  ``beta / w`` (no scaling), exactly.
* Settings that change what is trained and are not modelled are refused by name with the
  reason; settings that do not move the stationary points (clip widths, batch reuse) are
  accepted and the report says why.

Neither torch nor trl is imported.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

from grpo_align.errors import InputError
from grpo_align.mappings.base import InertKeys, Key, KeyTable, Reader
from grpo_align.mappings.report import MappingReport, MappingRow, read_flag, read_int, read_real, weight_decay_text
from grpo_align.theory.penalties import penalty as penalty_record
from grpo_align.theory.spec import GRPO
from grpo_align.theory.trainers import TRL_EPS

__all__ = [
    "TRL_AGGREGATION",
    "TRL_EPS",
    "TRL_GRPO_LOSS_AGGREGATION",
    "TRL_INERT_KEYS",
    "TRL_KEYS",
    "TRL_TABLE",
    "TRL_VERSION",
    "LossAggregation",
    "TRLKey",
    "describe_trl_mapping",
    "grpo_from_trl",
    "trl_aggregation",
    "trl_kwargs_from_grpo",
]

#: the TRL release whose source the tables below were checked against
TRL_VERSION = "1.16.0"

#: TRL loss_type -> the ``GRPO`` aggregation (THEORY.md eq. 10.2) it trains. "dapo" and
#: "bnpo" divide by a token count shared by the whole batch: "constant" in the many-groups
#: limit; "dr_grpo" divides by batch size x max_completion_length: "constant" exactly.
TRL_AGGREGATION = {"grpo": "sequence_mean", "dapo": "constant", "bnpo": "constant", "dr_grpo": "constant"}

#: the aggregation every accepted loss type trains (cispo and sapo: on-policy gradients
#: equal to the clipped loss's, see ``_check_loss``)
_AGGREGATION = {**TRL_AGGREGATION, "cispo": "constant", "sapo": "sequence_mean"}

#: the loss_type ``trl_kwargs_from_grpo`` writes for each aggregation (exact for any batch)
_LOSS_TYPE = {"sequence_mean": "grpo", "constant": "dr_grpo"}


class LossAggregation(NamedTuple):
    """The ``grpo_loss`` arguments that reproduce a TRL loss_type on one batch."""

    aggregation: str
    #: the normaliser of "constant": B x max_completion_length, or the batch's valid tokens
    constant_by: str


#: TRL loss_type -> how the project's ``grpo_loss`` reproduces it on one batch
#: (``trl_aggregation``): "dapo"/"bnpo" divide by the batch's valid-token count, which is
#: the engine's "constant" only in the many-groups limit
TRL_GRPO_LOSS_AGGREGATION = {
    "grpo": LossAggregation("sequence_mean", "max_length"),
    "dapo": LossAggregation("constant", "batch_tokens"),
    "bnpo": LossAggregation("constant", "batch_tokens"),
    "dr_grpo": LossAggregation("constant", "max_length"),
}

#: the record of a setting (``base.Key``: default, where, and ``absent``, the behaviour of a
#: TRL release without the field), under its former name
TRLKey = Key


_T = "grpo_trainer.py"
_C = "grpo_config.py"

#: Every setting that can change what is trained: TRL 1.16.0's default (grpo_config.py and,
#: for the TrainingArguments / ``trl grpo`` script fields, their dataclasses) and where
#: grpo_trainer.py reads it. One table: the defaults a mapping without the key uses.
_KEYS = (
    # the specification
    Key("num_generations", 8, f"{_T}:2766-2771 (groups of num_generations)"),
    Key("beta", 0.0, f"{_T}:984 (no reference model at 0), 3098-3150"),
    Key("scale_rewards", "group", f"{_T}:2767-2787, utils.py:1037-1043 (Bessel), {_C}:1078", absent="group"),
    # absent before TRL 0.26: the plain k3 term was the only behaviour
    Key("use_bias_correction_kl", True, f"{_T}:3104", absent=False),
    Key("reward_weights", None, f"{_T}:568-576, 2763"),
    Key("reward_funcs", None, "scripts/grpo.py:92-105"),
    Key("reward_model_name_or_path", None, "scripts/grpo.py:93-94"),
    Key("multi_objective_aggregation", "sum_then_normalize", f"{_T}:2761-2800"),
    # the loss; before loss_type existed TRL averaged each sequence's tokens
    Key("loss_type", "dapo", f"{_T}:3109-3183", absent="grpo"),
    Key("epsilon", 0.2, f"{_T}:945, 3113"),
    Key("epsilon_high", None, f"{_T}:946, 3110, 3113"),
    Key("delta", None, f"{_T}:3115-3116"),
    Key("sapo_temperature_neg", 1.05, f"{_T}:3121-3123"),
    Key("sapo_temperature_pos", 1.0, f"{_T}:3121-3123"),
    Key("importance_sampling_level", "token", f"{_T}:3084-3093, 3104"),
    Key("off_policy_mask_threshold", None, f"{_T}:2945-2968, 3068-3081, 3140"),
    Key("top_entropy_quantile", 1.0, f"{_T}:3049-3052, 3143"),
    Key("entropy_coef", 0.0, f"{_T}:846-850, 3186-3210"),
    Key("use_adaptive_entropy", False, f"{_T}:846-850, 3186-3240"),
    Key("router_aux_loss_coef", None, f"{_T}:823-832, 3250"),
    Key("mask_truncated_completions", False, f"{_T}:2487-2495"),
    Key("sync_ref_model", False, f"{_T}:1190-1210"),
    Key("max_completion_length", 512, f"{_T}:3163-3165 (dr_grpo's constant)"),
    # batch reuse
    Key("num_iterations", 1, f"{_T}:944, 1270, 1538"),
    Key("steps_per_generation", None, f"{_C}:1097-1117, {_T}:1538"),
    Key("generation_batch_size", None, f"{_C}:1097-1117"),
    # sampling
    Key("temperature", 1.0, f"{_T}:1068-1077 (training log-probs), 1161 (sampling)"),
    Key("top_p", 1.0, f"{_T}:1133, 1162"),
    Key("top_k", 0, f"{_T}:1134, 1163"),
    Key("min_p", None, f"{_T}:1135, 1164"),
    Key("repetition_penalty", 1.0, f"{_T}:1131, 1165"),
    Key("generation_kwargs", None, f"{_T}:1138, 1171-1172 (override the sampling settings)"),
    Key("vllm_structured_outputs_regex", None, f"{_C}:619 (constrains vLLM's sampling)"),
    Key("use_vllm", False, f"{_T}:1125-1153"),
    Key("vllm_importance_sampling_correction", True, f"{_T}:2860-2915, 3146-3147", absent=False),
    # TrainingArguments that act on the weights during training
    Key("weight_decay", 0.0, "transformers Trainer optimizer (decoupled weight decay)"),
    Key("neftune_noise_alpha", None, "transformers trainer.py:1537-1538 (noise on embeddings)"),
    Key("disable_dropout", False, f"{_C}:453"),
    Key("use_peft", False, "trl ModelConfig"),
)

#: The other fields of TRL 1.16.0's ``GRPOConfig`` (with its ``TrainingArguments``) and of
#: the ``trl grpo`` script's dataclasses (GRPOScriptArguments, ModelConfig,
#: DatasetMixtureConfig), plus the config file's ``env`` block: run and engineering
#: settings (steps, learning rate, optimizer, logging, devices, data, vLLM plumbing) that
#: change how fast training goes, not the stationary points it goes to; and settings read
#: only by loss types the mapping refuses (vespo_*) or options it refuses
#: (ref_model_*, entropy_coef_* of the adaptive entropy).
_INERT_WORDS = """
    model_init_kwargs trust_remote_code cast_lm_head_to_fp32 num_generations_eval
    ds3_gather_for_generation shuffle_dataset pad_to_multiple_of chat_template_kwargs
    cache_implementation vllm_mode vllm_model_impl vllm_enable_sleep_mode vllm_server_base_url
    vllm_server_host vllm_server_port vllm_server_timeout vllm_group_port
    vllm_gpu_memory_utilization vllm_max_model_length vllm_tensor_parallel_size vespo_k_pos
    vespo_lambda_pos vespo_k_neg vespo_lambda_neg ref_model_mixup_alpha ref_model_sync_steps
    entropy_coef_min entropy_coef_max entropy_coef_delta entropy_target max_tool_calling_iterations
    vllm_importance_sampling_mode vllm_importance_sampling_clip_max vllm_importance_sampling_clip_min
    log_completions log_multimodal num_completions_to_print log_unique_prompts
    log_completions_hub_repo use_transformers_continuous_batching
    transformers_continuous_batching_config use_transformers_paged vllm_importance_sampling_cap
    accelerator_config activation_checkpointing activation_checkpointing_kwargs adam_beta1
    adam_beta2 adam_epsilon auto_find_batch_size average_tokens_across_devices batch_eval_metrics
    bf16 bf16_full_eval data_seed dataloader_drop_last dataloader_in_order
    dataloader_multiprocessing_context dataloader_num_workers dataloader_persistent_workers
    dataloader_pin_memory dataloader_prefetch_factor ddp_backend ddp_broadcast_buffers
    ddp_bucket_cap_mb ddp_find_unused_parameters ddp_static_graph ddp_timeout debug deepspeed
    disable_tqdm do_eval do_predict do_train enable_jit_checkpoint eval_accumulation_steps
    eval_delay eval_do_concat_batches eval_on_start eval_steps eval_strategy eval_use_gather_object
    fp16 fp16_full_eval fsdp fsdp_config full_determinism gradient_accumulation_steps
    gradient_checkpointing gradient_checkpointing_kwargs greater_is_better hub_always_push
    hub_model_id hub_private_repo hub_revision hub_strategy hub_token ignore_data_skip
    include_for_metrics include_num_input_tokens_seen label_names label_smoothing_factor
    learning_rate length_column_name liger_kernel_config load_best_model_at_end local_rank
    log_level log_level_replica log_on_each_node logging_first_step logging_nan_inf_filter
    logging_steps logging_strategy lr_scheduler_kwargs lr_scheduler_type max_grad_norm max_steps
    metric_for_best_model num_train_epochs optim optim_args optim_target_modules output_dir
    parallelism_config per_device_eval_batch_size per_device_train_batch_size prediction_loss_only
    project push_to_hub remove_unused_columns report_to restore_callback_states_from_checkpoint
    resume_from_checkpoint run_name save_on_each_node save_only_model save_steps save_strategy
    save_total_limit seed skip_memory_metrics tf32 torch_compile torch_compile_backend
    torch_compile_mode torch_empty_cache_steps trackio_bucket_id trackio_space_id
    trackio_static_space_id train_sampling_strategy use_cache use_cpu use_liger_kernel warmup_steps
    dataset_name dataset_config dataset_train_split dataset_test_split dataset_streaming
    ignore_bias_buffers model_name_or_path model_revision dtype attn_implementation lora_r
    lora_alpha lora_dropout lora_target_modules lora_target_parameters lora_modules_to_save
    lora_task_type use_rslora use_dora load_in_8bit load_in_4bit bnb_4bit_quant_type
    use_bnb_nested_quant bnb_4bit_quant_storage datasets streaming test_split_size env
"""
TRL_INERT_KEYS: frozenset[str] = frozenset(_INERT_WORDS.split())

#: TRL 1.16.0's table: the keys read (in the report's order) and the inert ones; a misspelt
#: key is matched against both
TRL_TABLE = KeyTable.of(
    "trl", "TRL", TRL_VERSION, _KEYS, inert=InertKeys(names=TRL_INERT_KEYS), suggest=tuple(sorted(TRL_INERT_KEYS))
)
TRL_KEYS = TRL_TABLE.keys

_INERT = "no effect on the end point (a run or engineering setting)"

#: generation_kwargs that leave the sampling distribution unchanged at these values
_NEUTRAL_GENERATION: dict[str, tuple[Any, ...]] = {
    "temperature": (1, 1.0),
    "top_p": (1, 1.0),
    "top_k": (0, None),
    "min_p": (0, 0.0, None),
    "repetition_penalty": (1, 1.0),
    "typical_p": (1, 1.0),
    "epsilon_cutoff": (0, 0.0),
    "eta_cutoff": (0, 0.0),
    "num_beams": (1,),
    "do_sample": (True,),
}
#: generation_kwargs that do not touch the distribution at all
_INERT_GENERATION = frozenset({"use_cache", "cache_implementation", "disable_compile", "output_scores"})


# ---------------------------------------------------------------------------------------
# reading the config


def _is_grpo_config(config: Any) -> bool:
    """A ``trl`` GRPOConfig (or a subclass) instance, recognised without importing trl."""
    cls: type = type(config)
    return dataclasses.is_dataclass(config) and any(
        c.__name__ == "GRPOConfig" and c.__module__.split(".")[0] == "trl" for c in cls.__mro__
    )


def _installed_trl() -> tuple[str | None, frozenset[str], dict[str, Any]]:
    """TRL's version and GRPOConfig field defaults, if trl is already imported (never imported here)."""
    trl = sys.modules.get("trl")
    if trl is None:
        return None, frozenset(), {}
    version = getattr(trl, "__version__", None)
    try:
        cls = trl.GRPOConfig
    except Exception:  # a partial or broken trl: fall back to the recorded tables
        return version, frozenset(), {}
    return version, frozenset(f.name for f in dataclasses.fields(cls)), _field_defaults(cls)


def _field_defaults(cls: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _unknown_key(key: str, value: Any, installed: tuple[str | None, frozenset[str], dict[str, Any]]) -> str:
    """The row text for a key outside both tables, or InputError when it might change training."""
    version, fields, defaults = installed
    if key in fields:
        if key in defaults and defaults[key] == value:
            return f"a GRPOConfig field of TRL {version} not in the table checked against {TRL_VERSION}; at its default"
        raise InputError(
            key,
            f"a GRPOConfig field of TRL {version} that this mapping (checked against TRL {TRL_VERSION}) "
            "has not classified, so it cannot tell whether it changes what is trained: remove it or leave it at its default",
        )
    raise TRL_TABLE.unknown(
        key, "unknown key", f"not a field of TRL {TRL_VERSION}'s GRPOConfig or of the `trl grpo` script"
    )


def _reader(config: Any) -> tuple[Reader, str | None, list[str]]:
    """Read a mapping or a GRPOConfig object; the TRL version that built it; notes."""
    installed = _installed_trl()
    notes: list[str] = []
    if isinstance(config, Mapping):
        values: dict[str, Any] = {}
        for key, value in config.items():
            if not isinstance(key, str):
                raise InputError("config", f"keys must be strings, got {key!r}")
            values[key] = value
        reader = Reader(TRL_TABLE, values, set(values))
        for key, value in values.items():
            if not TRL_TABLE.is_known(key):
                reader.rows[key] = MappingRow(key, value, "given", _unknown_key(key, value, installed))
        notes.append(f"keys not given take TRL {TRL_VERSION}'s defaults (use_bias_correction_kl=true since TRL 1.10)")
        return reader, None, notes
    if not _is_grpo_config(config):
        raise InputError(
            "config",
            f"expected a TRL GRPOConfig or a mapping of its keys (a YAML/JSON config), got {type(config).__name__}",
        )
    version = installed[0]
    own = _field_defaults(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    values = {n: getattr(config, n) for n in names}
    # a field at the object's own default counts as defaulted; TRL's __post_init__ also
    # fills some (steps_per_generation), which then show as given
    given = {n for n in names if n not in own or values[n] != own[n]}
    absent = {k for k in TRL_KEYS if k not in values and k not in _SCRIPT_KEYS}
    reader = Reader(TRL_TABLE, values, given, absent)
    for key in names:
        if not TRL_TABLE.is_known(key):
            # a field of a later TRL: at its own default it does what that release does by default
            maps_to = (
                f"not in the table checked against TRL {TRL_VERSION}; at this release's default"
                if key not in given
                else _unknown_key(key, values[key], installed)
            )
            reader.rows[key] = MappingRow(key, values[key], reader.source(key), maps_to)
    if version is not None and version != TRL_VERSION:
        notes.append(f"this config comes from TRL {version}; the mapping was checked against TRL {TRL_VERSION}")
    if "use_bias_correction_kl" in absent:
        notes.append(
            "this GRPOConfig has no use_bias_correction_kl (TRL before 0.26): the plain k3 term, its only behaviour"
        )
    return reader, version, notes


#: keys of the `trl grpo` script's own dataclasses, never attributes of a GRPOConfig object
_SCRIPT_KEYS = frozenset({"reward_funcs", "reward_model_name_or_path", "use_peft"})


# ---------------------------------------------------------------------------------------
# the checks: each reads its keys, writes their rows, refuses what it cannot model


def _check_sampling(r: Reader) -> None:
    """The engine samples from the policy it trains: every sampling filter at its identity."""
    t = r.real("temperature")
    if t != 1.0:
        raise r.refuse(
            "temperature",
            t,
            "samples and scores softmax(logits / T) (training log-probs too), so the end point is that of the "
            "tempered policy and needs reference statistics measured at T; the mapping takes 1.0",
        )
    r.put("temperature", "1.0: samples from the policy itself", t)
    p = r.real("top_p")
    if p != 1.0:
        raise r.refuse("top_p", p, "samples from a truncated distribution, not the policy it trains; expected 1.0")
    r.put("top_p", "1.0: no nucleus filtering", p)
    k = r.get("top_k")
    if k is not None and read_int("top_k", k) != 0:
        raise r.refuse("top_k", k, "samples from a truncated distribution, not the policy it trains; expected 0")
    r.put("top_k", "0: no top-k filtering")
    m = r.get("min_p")
    if m is not None and read_real("min_p", m) != 0.0:
        raise r.refuse("min_p", m, "samples from a truncated distribution, not the policy it trains; expected null")
    r.put("min_p", "null: no min-p filtering")
    rp = r.real("repetition_penalty")
    if rp != 1.0:
        raise r.refuse("repetition_penalty", rp, "reweights the sampling distribution; expected 1.0")
    r.put("repetition_penalty", "1.0: no repetition penalty", rp)
    _check_generation_kwargs(r)
    regex = r.get("vllm_structured_outputs_regex")
    if regex is not None:
        raise r.refuse("vllm_structured_outputs_regex", regex, "constrains what vLLM samples; expected null")
    r.put("vllm_structured_outputs_regex", "null: unconstrained sampling")
    vllm = r.flag("use_vllm")
    corr = r.flag("vllm_importance_sampling_correction")
    r.put("use_vllm", "vLLM samples the same distribution up to numerics" if vllm else "samples with transformers")
    r.put(
        "vllm_importance_sampling_correction",
        "reweights by pi_train / pi_vllm: 1 where vLLM samples the policy itself"
        if vllm and corr
        else "unused without vLLM"
        if not vllm
        else "off: vLLM's numerical mismatch is left uncorrected (the engine assumes none)",
        corr,
    )


def _check_generation_kwargs(r: Reader) -> None:
    raw = r.get("generation_kwargs")
    kwargs = raw
    if isinstance(raw, str):  # the TRL CLI passes dict fields as JSON strings
        try:
            kwargs = json.loads(raw)
        except json.JSONDecodeError:
            raise InputError("generation_kwargs", f"expected a mapping or a JSON object, got {raw!r}") from None
    if kwargs is None or kwargs == {}:
        r.put("generation_kwargs", "none: sampling as set above")
        return
    if not isinstance(kwargs, Mapping):
        raise InputError("generation_kwargs", f"expected a mapping, got {type(kwargs).__name__}")
    for key, value in kwargs.items():
        name = f"generation_kwargs.{key}"
        if key in _INERT_GENERATION:
            continue
        if key not in _NEUTRAL_GENERATION:
            raise InputError(
                name,
                "overrides TRL's sampling settings and is not known to leave the sampling distribution "
                "unchanged; remove it",
            )
        neutral = _NEUTRAL_GENERATION[key]
        if value not in neutral or isinstance(value, bool) != any(isinstance(n, bool) for n in neutral):
            raise InputError(
                name,
                f"{value!r} overrides TRL's sampling and samples another distribution than the policy it "
                f"trains; expected {neutral[0]!r} or remove it",
            )
    r.put("generation_kwargs", "only settings that leave the sampling distribution unchanged", dict(kwargs))


def _check_reference(r: Reader) -> None:
    if r.flag("sync_ref_model"):
        raise r.refuse(
            "sync_ref_model",
            True,
            "moves pi_ref toward the policy during training (TR-DPO), so there is no fixed reference "
            "whose stationary policy is the end point; expected false",
        )
    r.put("sync_ref_model", "false: pi_ref is fixed")
    if r.flag("mask_truncated_completions"):
        raise r.refuse(
            "mask_truncated_completions",
            True,
            "drops completions without an end token from the loss, so what is trained is conditioned on "
            "finishing within max_completion_length; expected false",
        )
    r.put("mask_truncated_completions", "false: every completion in the loss")
    length = r.get("max_completion_length")
    if length is not None:
        length = read_int("max_completion_length", length)
        if length < 1:
            raise r.refuse("max_completion_length", length, "leaves no completion token; expected an integer >= 1")
    r.put(
        "max_completion_length",
        "answers must fit (a truncated answer is another output); dr_grpo's constant",
        length,
    )


def _check_terms(r: Reader) -> None:
    """Nothing but the advantage term and the penalty may reach the gradient."""
    q = r.real("top_entropy_quantile")
    if q != 1.0:
        raise r.refuse(
            "top_entropy_quantile", q, "keeps only high-entropy tokens in the policy loss; expected 1.0 (every token)"
        )
    r.put("top_entropy_quantile", "1.0: every token in the loss", q)
    c = r.real("entropy_coef")
    if c != 0.0:
        raise r.refuse("entropy_coef", c, "adds an entropy bonus, which moves the stationary policy; expected 0")
    r.put("entropy_coef", "0: no entropy bonus", c)
    if r.flag("use_adaptive_entropy"):
        raise r.refuse("use_adaptive_entropy", True, "adds an adaptive entropy bonus; expected false")
    r.put("use_adaptive_entropy", "false: no entropy bonus")
    aux = r.get("router_aux_loss_coef")
    if aux is not None and read_real("router_aux_loss_coef", aux) != 0.0:
        raise r.refuse("router_aux_loss_coef", aux, "adds a Mixture-of-Experts load-balancing loss; expected null or 0")
    r.put(
        "router_aux_loss_coef",
        "null: a Mixture-of-Experts model adds its own load-balancing loss (not modelled); none for a dense model"
        if aux is None
        else "0: no auxiliary loss",
    )
    wd_text, _ = weight_decay_text("weight_decay", r.real("weight_decay"))
    r.put("weight_decay", wd_text)
    noise = r.get("neftune_noise_alpha")
    if noise is not None:
        raise r.refuse(
            "neftune_noise_alpha", noise, "adds noise to the embeddings in training forward passes; expected null"
        )
    r.put("neftune_noise_alpha", "null: no embedding noise")
    dropout_off = r.flag("disable_dropout")
    r.put(
        "disable_dropout",
        "dropout off: log-probs are the policy's"
        if dropout_off
        else "dropout on in training forward passes: exact only for a model without dropout",
    )
    if "use_peft" in r.given:
        peft = r.flag("use_peft")
        r.put("use_peft", "LoRA: the engine assumes the end point is reachable by the adapter" if peft else _INERT)
    m = r.get("off_policy_mask_threshold")
    if m is not None and read_real("off_policy_mask_threshold", m) < 0:
        raise r.refuse("off_policy_mask_threshold", m, "drops every negative-advantage sequence; expected null or >= 0")
    r.put(
        "off_policy_mask_threshold",
        "null: no off-policy masking"
        if m is None
        else "masks only sequences whose KL to the sampler exceeds it: none at theta = theta_old",
    )


def _check_reuse(r: Reader) -> None:
    """Reusing a batch is off-policy by O(learning rate): the drift, to first order in the
    step, is the on-policy expected gradient, so the stationary points do not move."""
    mu = r.integer("num_iterations")
    if mu < 1:
        raise r.refuse("num_iterations", mu, "takes no step on a batch; expected an integer >= 1")
    r.put(
        "num_iterations",
        "1: one step per batch"
        if mu == 1
        else f"{mu} steps per batch: off-policy by O(learning rate), the stationary points do not move",
        mu,
    )
    for key in ("steps_per_generation", "generation_batch_size"):
        value = r.get(key)
        if value is not None and read_int(key, value) < 1:
            raise r.refuse(key, value, "expected null or an integer >= 1")
        r.put(key, "batch reuse, off-policy by O(learning rate): the stationary points do not move")


def _check_loss(r: Reader, beta: float, corrected: bool) -> str:
    """The loss type's aggregation; refuse losses whose on-policy gradient differs."""
    loss_type = r.get("loss_type")
    if not isinstance(loss_type, str) or loss_type not in _AGGREGATION:
        raise InputError(
            "loss_type",
            f"{loss_type!r}: expected one of {', '.join(_AGGREGATION)} (vespo and luspo weight whole sequences "
            "by their ratio, which the engine does not model)",
        )
    eps = r.real("epsilon")
    high_raw = r.get("epsilon_high")
    high = eps if high_raw is None else read_real("epsilon_high", high_raw)
    if eps < 0 or high < 0:
        bad = "epsilon" if eps < 0 else "epsilon_high"
        raise r.refuse(
            bad, r.get(bad), "makes the clip range empty, which blocks the gradient at ratio 1; expected >= 0"
        )
    clip_note = (
        "a clip, inactive at theta = theta_old (ratio 1): does not move the stationary point of the expected gradient"
    )
    r.put("epsilon", clip_note, eps)
    r.put("epsilon_high", f"{clip_note} (null: epsilon)")
    delta = r.get("delta")
    if delta is not None and read_real("delta", delta) <= 1.0:
        raise r.refuse(
            "delta", delta, "caps the ratio at or below 1, which changes the gradient at ratio 1; expected null or > 1"
        )
    r.put("delta", "null: one-sided clip" if delta is None else clip_note)
    if loss_type == "cispo" and high < 1.0:
        raise r.refuse(
            "epsilon_high",
            high,
            "with loss_type 'cispo' scales the policy term by min(1, epsilon_high) at ratio 1 but not the penalty; "
            "expected >= 1 (ScaleRL uses 5.0)",
        )
    for key in ("sapo_temperature_neg", "sapo_temperature_pos"):
        if loss_type != "sapo":
            r.put(key, "used only by loss_type 'sapo'")
            continue
        if r.real(key) <= 0:
            raise r.refuse(key, r.get(key), "expected > 0")
        r.put(key, "soft gate sigmoid(t (ratio - 1)) 4 / t has slope 1 at ratio 1: the clipped loss's gradient")
    level = r.get("importance_sampling_level")
    if level not in ("token", "sequence"):
        raise InputError("importance_sampling_level", f"{level!r}: expected 'token' or 'sequence'")
    if level == "sequence" and beta > 0 and corrected:
        raise r.refuse(
            "importance_sampling_level",
            level,
            "with use_bias_correction_kl multiplies each token's k3 by the sequence's mean ratio, which is not the "
            "direct KL's gradient; use 'token' or use_bias_correction_kl=false",
        )
    r.put(
        "importance_sampling_level",
        "token: one ratio per token"
        if level == "token"
        else "sequence: exp of the mean token log-ratio; at ratio 1 its gradient, aggregated over the sequence's "
        "tokens, is the token level's: the same end point",
    )
    aggregation = _AGGREGATION[loss_type]
    words = (
        "each sequence's tokens averaged, then the batch"
        if aggregation == "sequence_mean"
        else "tokens summed and divided by batch size x max_completion_length: exact"
        if loss_type == "dr_grpo"
        else "tokens summed over the batch and divided by a token count shared by the whole batch: "
        "a constant in the many-groups limit"
    )
    r.put("loss_type", f"aggregation {aggregation}: {words}")
    return aggregation


def _reward_scale(r: Reader) -> tuple[float, str]:
    """The factor w the rewards are multiplied by: equal reward_weights only."""
    agg = r.get("multi_objective_aggregation")
    if agg != "sum_then_normalize":
        raise InputError(
            "multi_objective_aggregation",
            f"{agg!r} normalises each reward function in its group and then the sum over the whole batch, "
            "which no group-level GRPO spec expresses; expected 'sum_then_normalize'",
        )
    r.put("multi_objective_aggregation", "the group normalises the (weighted) sum of the rewards")
    funcs = r.get("reward_funcs")
    if isinstance(funcs, str):
        funcs = [funcs]
    if funcs and not isinstance(funcs, list | tuple):
        raise InputError("reward_funcs", f"expected a reward function's name or a list of them, got {funcs!r}")
    n = (len(funcs) if funcs else 0) + (1 if r.get("reward_model_name_or_path") else 0)
    for key in ("reward_funcs", "reward_model_name_or_path"):
        if key in r.given:
            r.put(key, f"{n} reward function(s): the engine's reward is their sum")
    weights = r.get("reward_weights")
    if weights is None:
        r.put("reward_weights", "null: every reward function weighted 1")
        return 1.0, ""
    if not isinstance(weights, list | tuple) or not weights:
        raise InputError("reward_weights", f"expected a list of numbers, got {weights!r}")
    ws = [read_real("reward_weights", w) for w in weights]
    if n and len(ws) != n:
        raise InputError("reward_weights", f"{len(ws)} weights for {n} reward functions")
    if any(w != ws[0] for w in ws) or ws[0] <= 0:
        raise r.refuse(
            "reward_weights",
            weights,
            "weights the reward functions unequally (or not positively): the engine's reward would be the "
            "weighted sum; give that reward and equal positive weights",
        )
    w = ws[0]
    if w == 1.0:
        r.put("reward_weights", "all 1")
        return 1.0, ""
    return w, f"equal reward weights {w:g}: the reward is scaled by {w:g}"


def _spec(r: Reader) -> tuple[GRPO, bool]:
    g = r.integer("num_generations")
    if g < 2:
        raise r.refuse("num_generations", g, "leaves no group to normalise; expected an integer >= 2")
    beta = r.real("beta")
    if beta < 0:
        raise r.refuse("beta", beta, "expected a number >= 0")
    scale = r.get("scale_rewards")
    if isinstance(scale, str) and scale.strip().lower() in ("true", "false"):
        scale = read_flag("scale_rewards", scale)
    if isinstance(scale, bool):  # as GRPOConfig.__post_init__ does
        scale = "group" if scale else "none"
    corrected = r.flag("use_bias_correction_kl")
    w, scale_note = _reward_scale(r)
    if scale == "group":
        eps = TRL_EPS / w
        norm: dict[str, Any] = dict(normalization="shift_scale", ddof=1, eps=eps)
        r.put("scale_rewards", f"normalization shift_scale, ddof 1, eps {eps:g} ((r - mean) / (std + 1e-4))", scale)
    elif scale == "none":
        norm = dict(normalization="shift", ddof=0, eps=0.0)
        r.put("scale_rewards", "normalization shift (r - mean)", scale)
    else:
        raise InputError(
            "scale_rewards",
            f"{scale!r} scales by a batch-wide std, which no group-level GRPO spec expresses; "
            "expected 'group' or 'none'",
        )
    if scale_note:
        r.put(
            "reward_weights",
            f"{scale_note}: eps = 1e-4 / {w:g}" if scale == "group" else f"{scale_note}: beta / {w:g}",
        )
    spec_beta = beta if scale == "group" else beta / w
    penalty = "k2" if corrected else "k3"
    r.put("num_generations", f"group_size {g}", g)
    r.put(
        "beta",
        f"beta {spec_beta:g}"
        + (": no penalty, no interior end point (mass goes to the best reward)" if beta == 0 else ""),
        beta,
    )
    r.put(
        "use_bias_correction_kl",
        "penalty k2 (k3 times the ratio: its gradient at ratio 1 is x = logp - ref per token, k2's)"
        if corrected
        else "penalty k3",
        corrected,
    )
    return GRPO(group_size=g, beta=spec_beta, penalty=penalty_record(penalty).name, **norm), corrected


def describe_trl_mapping(config: Any) -> MappingReport:
    """What a TRL ``GRPOConfig`` (object, or mapping of its keys) trains, setting by setting.

    Parameters
    ----------
    config : trl.GRPOConfig or Mapping
        A config object, or the keys of a ``trl grpo --config`` YAML/JSON file; keys not
        given take TRL 1.16.0's defaults (``TRL_KEYS``).

    Returns
    -------
    MappingReport
        ``algo`` the ``GRPO`` (THEORY.md sections 2-3) and one row per setting read or given.

    Raises
    ------
    InputError
        Naming the setting, for anything else than a GRPOConfig or a mapping, an unknown key,
        a bad value, or a setting that changes what is trained and is not modelled.
    """
    r, version, notes = _reader(config)
    algo, corrected = _spec(r)
    aggregation = _check_loss(r, algo.beta, corrected)
    algo = algo.replace(aggregation=aggregation)
    _check_sampling(r)
    _check_reference(r)
    _check_terms(r)
    _check_reuse(r)
    r.put_inert(_INERT)
    _, wd_note = weight_decay_text("weight_decay", r.real("weight_decay"))
    if wd_note is not None:
        notes.append(wd_note)
    return TRL_TABLE.report(r, algo, notes, seen_version=version)


def grpo_from_trl(config: Any) -> GRPO:
    """The ``GRPO`` specification a TRL ``GRPOConfig`` (or mapping of its keys) trains.

    See ``describe_trl_mapping`` for the rows and the refusals.
    """
    return describe_trl_mapping(config).algo


def trl_aggregation(config: Any) -> LossAggregation:
    """The ``grpo_loss`` aggregation that reproduces a config's ``loss_type`` on one batch.

    ``TRL_GRPO_LOSS_AGGREGATION``: "dapo" is "constant" over the batch's valid tokens; the
    ``GRPO`` field the config trains is ``grpo_from_trl(config).aggregation``
    (``TRL_AGGREGATION``, the many-groups limit).
    """
    r, _, _ = _reader(config)
    loss_type = r.get("loss_type")
    if not isinstance(loss_type, str) or loss_type not in TRL_GRPO_LOSS_AGGREGATION:
        raise InputError(
            "loss_type",
            f"{loss_type!r} has no grpo_loss counterpart; expected one of {', '.join(TRL_GRPO_LOSS_AGGREGATION)}",
        )
    return TRL_GRPO_LOSS_AGGREGATION[loss_type]


def trl_kwargs_from_grpo(algo: GRPO) -> dict[str, Any]:
    """The ``GRPOConfig`` keyword arguments that train ``algo`` (``grpo_from_trl`` inverts them).

    Only the fields that fix the specification (and exact sampling) are given; the run's
    other settings (steps, learning rate, batch sizes) are the caller's. ``loss_type`` is
    "grpo" for ``sequence_mean`` and "dr_grpo" for ``constant`` (exact for any batch; TRL's
    default "dapo" trains the same in the many-groups limit). Raises ``InputError`` naming
    the ``GRPO`` field TRL cannot express.
    """
    if not isinstance(algo, GRPO):
        raise InputError("algo", "expected a grpo_align.GRPO")
    if algo.is_limit:
        raise InputError("group_size", "TRL samples finite groups: expected an integer G")
    if algo.normalization == "shift_scale":
        if algo.ddof != 1:
            raise InputError("ddof", f"TRL scales by the sample std (ddof=1), got ddof={algo.ddof}")
        if algo.eps != TRL_EPS:
            raise InputError("eps", f"TRL adds {TRL_EPS:g} to the std, got eps={algo.eps:g}")
        scale = "group"
    elif algo.normalization == "shift":
        # without scaling ddof and eps do nothing; the TRL config maps back to 0 for both
        if algo.ddof != 0:
            raise InputError("ddof", "expected 0 with normalization='shift' (TRL's scale_rewards='none')")
        if algo.eps != 0:
            raise InputError("eps", "expected 0 with normalization='shift' (TRL's scale_rewards='none')")
        scale = "none"
    else:
        raise InputError(
            "normalization", f"TRL's GRPOTrainer has no {algo.normalization!r}; expected 'shift_scale' or 'shift'"
        )
    if algo.penalty_in != "loss":
        raise InputError(
            "penalty_in", "TRL's GRPOTrainer puts the penalty in the loss (RLOOTrainer puts it in the reward)"
        )
    if algo.penalty not in ("k3", "k2"):
        hint = (
            " ('kl' has the same end point as 'k2' only under aggregation 'constant')" if algo.penalty == "kl" else ""
        )
        raise InputError(
            "penalty",
            f"TRL's GRPO penalty is k3, or k2 (k3 times the ratio: use_bias_correction_kl), got {algo.penalty!r}{hint}",
        )
    if algo.aggregation not in _LOSS_TYPE:
        raise InputError(
            "aggregation",
            f"TRL has no loss_type for {algo.aggregation!r} (a token count per group); expected 'sequence_mean' "
            "(loss_type grpo) or 'constant' (dr_grpo, dapo, bnpo)",
        )
    return {
        "num_generations": int(algo.group_size),
        "beta": algo.beta,
        "scale_rewards": scale,
        "use_bias_correction_kl": algo.penalty == "k2",
        "loss_type": _LOSS_TYPE[algo.aggregation],
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
    }
