"""verl: the ``GRPO`` specification a verl PPO trainer config trains.

``describe_verl_mapping(config)`` reads verl's trainer config as a nested mapping (the
YAML of ``verl/trainer/config/ppo_trainer.yaml``, or only the keys a run overrides; dotted
keys such as ``algorithm.adv_estimator`` are accepted too) and returns a ``MappingReport``.

Every fact below was read in verl 0.9.1's source (``VERL_VERSION``; file:line in
``VERL_KEYS``):

* ``actor_rollout_ref.rollout.n`` -> ``group_size`` (verl's default 1 leaves no group).
* ``algorithm.adv_estimator`` ``grpo`` (or ``grpo_vectorized``): ``(r - mean) /
  (torch.std(r) + 1e-6)``, Bessel's std -> ``shift_scale, ddof=1, eps=1e-6``; with
  ``norm_adv_by_std_in_grpo=false`` -> ``shift``. ``rloo`` (or ``rloo_vectorized``):
  ``(r - mean) n/(n-1)`` -> ``rloo``. verl's default ``gae`` needs a critic: refused.
* ``actor_rollout_ref.actor.use_kl_loss`` with ``kl_loss_coef`` -> ``beta`` and
  ``kl_loss_type``: ``low_var_kl``/``k3`` -> ``k3`` (clamped, see the notes), ``mse``/``k2``
  -> ``k2``, ``kl``/``k1`` -> ``k1``, ``abs`` -> ``abs``; a ``+`` suffix keeps the value but
  takes k2's gradient -> ``k2``.
* ``algorithm.use_kl_in_reward`` with ``kl_ctrl.kl_coef`` -> ``beta`` and
  ``penalty_in="reward"``: ``kl_coef * kl_penalty`` per token is subtracted from the
  reward before the advantage, computed from the sampling policy's log-probs
  (ray_trainer.py:78-117), and the advantage sums the tokens (core_algos.py:304).
  ``kl_penalty``: ``kl``/``k1`` -> ``k1`` (the sequence log-ratio: exact), ``mse``/``k2`` ->
  ``k2``, ``low_var_kl``/``k3`` -> ``k3`` (a sum of per-token values, which is the engine's
  k of the sequence log-ratio when every answer passes one branching prefix only; see the notes);
  ``abs`` and ``full`` are refused. A penalty in both the loss and the reward is refused.
* ``actor_rollout_ref.actor.loss_agg_mode`` -> ``aggregation`` (``VERL_AGGREGATION``):
  ``token-mean`` (the default) divides by the global batch's token count, "constant" in
  the many-groups limit; ``seq-mean-token-mean`` -> ``sequence_mean``; the token-sum
  modes weight every token alike -> ``constant``.

Neither torch nor verl is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grpo_align.errors import InputError
from grpo_align.mappings.base import InertKeys, Key, KeyTable, Reader
from grpo_align.mappings.report import MappingReport, weight_decay_text
from grpo_align.theory.penalties import penalty as penalty_record
from grpo_align.theory.spec import GRPO
from grpo_align.theory.trainers import VERL_EPS

__all__ = [
    "VERL_AGGREGATION",
    "VERL_EPS",
    "VERL_INERT_PREFIXES",
    "VERL_KEYS",
    "VERL_TABLE",
    "VERL_VERSION",
    "VerlKey",
    "describe_verl_mapping",
    "flatten",
    "grpo_from_verl",
    "is_verl_config",
]

#: the verl release whose source the tables below were checked against
VERL_VERSION = "0.9.1"

#: loss_agg_mode -> the aggregation (engine.AGGREGATIONS) that reproduces it
#: (core_algos.py:1140-1206 agg_loss). token-mean divides by the token count of the whole
#: (global) batch, one normaliser shared by every group: "constant" in the many-groups
#: limit, "group_token_mean" only when a batch holds one group. The seq-mean-token-sum
#: modes divide by the number of sequences (and a fixed horizon): a constant.
VERL_AGGREGATION = {
    "token-mean": "constant",
    "token-sum": "constant",
    "seq-mean-token-sum": "constant",
    "seq-mean-token-sum-norm": "constant",
    "seq-mean-token-mean": "sequence_mean",
}

#: kl_loss_type / kl_penalty -> the engine's penalty (core_algos.py:2188-2251)
_PENALTY = {"low_var_kl": "k3", "k3": "k3", "mse": "k2", "k2": "k2", "kl": "k1", "k1": "k1", "abs": "abs"}

#: k3 = exp(x) - x - 1, x = log(pi_ref / pi) clamped to [-20, 20], then the value clamped to
#: <= 10 (core_algos.py:2239-2245): the clamp is inactive iff x lies in this interval
K3_CLAMP_INTERVAL = (-10.999983, 2.610869)


#: the record of a setting (``base.Key``), under its former name
VerlKey = Key


_Y = "trainer/config/_generated_ppo_trainer.yaml"
_CA = "trainer/ppo/core_algos.py"
_L = "workers/utils/losses.py"
_RT = "trainer/ppo/ray_trainer.py"
_V1 = "trainer/ppo/v1/trainer_base.py"
_A = "actor_rollout_ref.actor."
_R = "actor_rollout_ref.rollout."

#: Every setting that can change what is trained: verl 0.9.1's default and where it is read.
_KEYS = (
    Key(_R + "n", 1, f"{_Y}:329, {_V1}:1781 (num_repeat), {_CA}:313 (groups by uid)"),
    Key("algorithm.adv_estimator", "gae", f"{_Y}:861, {_CA}:267-331 (grpo), 587-636 (rloo)"),
    Key("algorithm.norm_adv_by_std_in_grpo", True, f"{_Y}:862, {_CA}:321 (torch.std: Bessel), 325-328"),
    Key(_A + "use_kl_loss", False, f"{_Y}:106, {_L}:131-141"),
    Key(_A + "kl_loss_coef", 0.001, f"{_Y}:109, {_L}:140"),
    Key(_A + "kl_loss_type", "low_var_kl", f"{_Y}:110, {_CA}:2188-2245"),
    Key("algorithm.use_kl_in_reward", False, f"{_Y}:869, {_RT}:78-117, {_V1}:1753-1760"),
    Key("algorithm.kl_penalty", "kl", f"{_Y}:870, {_RT}:100-106"),
    Key("algorithm.kl_ctrl.type", "fixed", f"{_Y}:873"),
    Key("algorithm.kl_ctrl.kl_coef", 0.001, f"{_Y}:874, {_RT}:104-106"),
    Key(_A + "loss_agg_mode", "token-mean", f"{_Y}:101, {_CA}:1140-1206, {_L}:136-137"),
    Key(_A + "policy_loss.loss_mode", "vanilla", f"{_Y}:93, {_L}:101-103"),
    Key(_A + "entropy_coeff", 0, f"{_Y}:103, {_L}:122-128"),
    Key(_A + "optim.weight_decay", 0.01, f"{_Y}:15"),
    Key(_A + "ppo_epochs", 1, f"{_Y}:111"),
    Key(_R + "temperature", 1.0, f"{_Y}:297"),
    Key(_R + "top_k", -1, f"{_Y}:298"),
    Key(_R + "top_p", 1.0, f"{_Y}:299"),
    Key(_R + "do_sample", True, f"{_Y}:328"),
    Key(_R + "ignore_eos", False, f"{_Y}:306"),
    Key("algorithm.filter_groups.enable", False, f"{_Y}:865, trainer/ppo/v1/replay_buffer.py:268-310"),
    Key("algorithm.use_pf_ppo", False, f"{_Y}:877, {_RT}:229 (GAE only)"),
    Key("distillation.enabled", False, f"{_Y}:883"),
)

#: Subtrees and leaves that do not move the stationary points: run and engineering
#: settings (batch sizes, parallelism, offload, logging, checkpoints, data loading), the
#: reward's definition (the user's reward is the engine's reward), clip widths (inactive
#: at ratio 1), batch reuse, and the settings of estimators, loss modes and controllers
#: that the mapping refuses or that the accepted ones do not read.
VERL_INERT_PREFIXES: tuple[str, ...] = tuple(
    [
        "trainer.",
        "data.",
        "critic.",
        "reward_model.",
        "reward.",
        "custom_reward_function.",
        "sandbox_fusion.",
        "global_profiler.",
        "ray_kwargs.",
        "transfer_queue.",
        "skip.",
        "hydra.",
        "defaults",
        "_target_",
        "model_engine.",
        "actor_rollout_ref.model.",
        "actor_rollout_ref.ref.",
        "actor_rollout_ref.hybrid_engine",
        "actor_rollout_ref.nccl_timeout",
        "actor_rollout_ref.rollout.",
        "algorithm._target_",
        "algorithm.gamma",
        "algorithm.lam",
        "algorithm.kl_ctrl._target_",
        "algorithm.kl_ctrl.horizon",
        "algorithm.kl_ctrl.target_kl",
        "algorithm.filter_groups.",
        "algorithm.pf_ppo.",
        "algorithm.rollout_correction.",
        "distillation.",
        "actor_rollout_ref.actor.optim.",
        "actor_rollout_ref.actor.fsdp_config.",
        "actor_rollout_ref.actor.megatron.",
        "actor_rollout_ref.actor.checkpoint.",
        "actor_rollout_ref.actor.profiler.",
        "actor_rollout_ref.actor.qat.",
        "actor_rollout_ref.actor.policy_loss.",
        "actor_rollout_ref.actor._target_",
        "actor_rollout_ref.actor.rollout_n",
        "actor_rollout_ref.actor.strategy",
        "actor_rollout_ref.actor.ppo_mini_batch_size",
        "actor_rollout_ref.actor.ppo_micro_batch_size",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
        "actor_rollout_ref.actor.use_dynamic_bsz",
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu",
        "actor_rollout_ref.actor.clip_ratio",
        "actor_rollout_ref.actor.clip_ratio_low",
        "actor_rollout_ref.actor.clip_ratio_high",
        "actor_rollout_ref.actor.clip_ratio_c",
        "actor_rollout_ref.actor.tau_pos",
        "actor_rollout_ref.actor.tau_neg",
        "actor_rollout_ref.actor.freeze_vision_tower",
        "actor_rollout_ref.actor.loss_scale_factor",
        "actor_rollout_ref.actor.calculate_entropy",
        "actor_rollout_ref.actor.calculate_sum_pi_squared",
        "actor_rollout_ref.actor.use_prefix_grouper",
        "actor_rollout_ref.actor.use_torch_compile",
        "actor_rollout_ref.actor.shuffle",
        "actor_rollout_ref.actor.data_loader_seed",
        "actor_rollout_ref.actor.use_fused_kernels",
        "actor_rollout_ref.actor.grad_clip",
        "actor_rollout_ref.actor.ulysses_sequence_parallel_size",
        "actor_rollout_ref.actor.entropy_from_logits_with_chunking",
        "actor_rollout_ref.actor.entropy_from_logits_chunk_size",
        "actor_rollout_ref.actor.entropy_checkpointing",
        "actor_rollout_ref.actor.pad_to_length",
        "actor_rollout_ref.actor.use_remove_padding",
    ]
)

#: verl 0.9.1's table: the keys read (in the report's order) and the inert ones
VERL_TABLE = KeyTable.of("verl", "verl", VERL_VERSION, _KEYS, inert=InertKeys(prefixes=VERL_INERT_PREFIXES))
VERL_KEYS = VERL_TABLE.keys

_INERT = "no effect on the end point (a run, engineering or reward-definition setting)"


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``.

    A key that is itself dotted (a Hydra override, ``algorithm.adv_estimator``) is kept as
    it is, so nested and dotted forms may be mixed.
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise InputError("config", f"keys must be strings, got {key!r} (quote YAML keys such as n, y, on)")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def is_verl_config(config: Mapping[str, Any]) -> bool:
    """Whether a mapping's keys are verl's (the ``algorithm`` / ``actor_rollout_ref`` trees)."""
    return any(isinstance(k, str) and k.split(".")[0] in ("algorithm", "actor_rollout_ref") for k in config)


def _normalization(r: Reader) -> tuple[dict[str, Any], str]:
    est = r.get("algorithm.adv_estimator")
    scale = r.flag("algorithm.norm_adv_by_std_in_grpo")
    if est in ("grpo", "grpo_vectorized"):
        r.put("algorithm.adv_estimator", "group advantage (r - mean) [/ (std + 1e-6)]")
        if scale:
            r.put(
                "algorithm.norm_adv_by_std_in_grpo",
                "normalization shift_scale, ddof 1 (torch.std), eps 1e-6",
            )
            return dict(normalization="shift_scale", ddof=1, eps=VERL_EPS), "shift_scale (sample std, eps 1e-6)"
        r.put("algorithm.norm_adv_by_std_in_grpo", "normalization shift (r - mean), as Dr. GRPO")
        return dict(normalization="shift", ddof=0, eps=0.0), "shift (r - mean)"
    if est in ("rloo", "rloo_vectorized"):
        r.put("algorithm.adv_estimator", "normalization rloo: (r - mean) n/(n-1) = r minus the others' mean")
        r.put("algorithm.norm_adv_by_std_in_grpo", "not read by rloo")
        return dict(normalization="rloo", ddof=0, eps=0.0), "rloo (leave-one-out baseline)"
    why = {
        "gae": "trains a critic (GAE): no group-level GRPO spec expresses it; expected grpo or rloo",
        "reinforce_plus_plus": "whitens advantages over the whole batch with a per-token return; expected grpo or rloo",
        "reinforce_plus_plus_baseline": "whitens group-centred advantages over the whole batch; expected grpo or rloo",
        "remax": "uses a greedy rollout as the baseline; expected grpo or rloo",
    }.get(
        str(est),
        "is an advantage estimator the engine does not model; expected grpo, grpo_vectorized, rloo or rloo_vectorized",
    )
    raise r.refuse("algorithm.adv_estimator", est, why)


#: kl_penalty (use_kl_in_reward) -> the engine's penalty in the reward; verl sums the
#: per-token values over the response (core_algos.py:304 sums token_level_rewards)
_REWARD_PENALTY = {"kl": "k1", "k1": "k1", "mse": "k2", "k2": "k2", "low_var_kl": "k3", "k3": "k3"}


def _reward_penalty(r: Reader) -> tuple[float, str] | None:
    """beta and the penalty of ``use_kl_in_reward``; None when nothing reaches the reward."""
    in_reward = r.flag("algorithm.use_kl_in_reward")
    kind = r.get("algorithm.kl_penalty")
    coef = r.real("algorithm.kl_ctrl.kl_coef")
    ctrl = r.get("algorithm.kl_ctrl.type")
    if not in_reward:
        r.put("algorithm.use_kl_in_reward", "false: no penalty in the reward")
        r.put("algorithm.kl_penalty", "read only with use_kl_in_reward")
        r.put("algorithm.kl_ctrl.kl_coef", "read only with use_kl_in_reward")
        r.put("algorithm.kl_ctrl.type", "read only with use_kl_in_reward")
        return None
    if coef < 0:
        raise r.refuse("algorithm.kl_ctrl.kl_coef", coef, "expected a number >= 0")
    if ctrl != "fixed" and coef > 0:
        raise r.refuse("algorithm.kl_ctrl.type", ctrl, "changes beta during training; expected 'fixed'")
    r.put("algorithm.kl_ctrl.type", "fixed: beta constant")
    # a '+' suffix changes only the gradient, and the reward penalty is computed from the
    # sampling policy's log-probs without one (ray_trainer.py:100-102): the value is the base's
    base = kind.rstrip("+") if isinstance(kind, str) else kind
    if coef > 0 and (not isinstance(base, str) or base not in _REWARD_PENALTY):
        raise r.refuse(
            "algorithm.kl_penalty",
            kind,
            "cannot be put in the reward by the engine; expected kl, k1, mse, k2, low_var_kl or k3 "
            "(or use_kl_in_reward=false)",
        )
    if coef == 0:
        r.put("algorithm.use_kl_in_reward", "true at kl_coef 0: nothing reaches the reward")
        r.put("algorithm.kl_penalty", "unused at kl_coef 0")
        r.put("algorithm.kl_ctrl.kl_coef", "0: no penalty in the reward", coef)
        return None
    penalty = _REWARD_PENALTY[base]
    r.put(
        "algorithm.use_kl_in_reward",
        f"true: beta x {kind} per token subtracted from the reward before the group normalisation -> penalty_in reward",
    )
    r.put(
        "algorithm.kl_penalty",
        f"penalty {penalty} in the reward, summed over the response's tokens"
        + (" (the sequence log-ratio: exact)" if penalty == "k1" else ""),
    )
    r.put("algorithm.kl_ctrl.kl_coef", f"beta {coef:g}", coef)
    return coef, penalty


def _penalty(r: Reader) -> tuple[float, str, str, str, list[str]]:
    """beta, the engine's penalty, its placement, a phrase for explain, and notes."""
    in_loss = r.flag(_A + "use_kl_loss")
    coef = r.real(_A + "kl_loss_coef")
    kind = r.get(_A + "kl_loss_type")
    reward = _reward_penalty(r)
    if reward is not None:
        if in_loss and coef != 0:
            raise r.refuse(
                _A + "use_kl_loss",
                True,
                "with algorithm.use_kl_in_reward puts a penalty both in the loss and in the reward, which one GRPO "
                "spec cannot express; expected one of them (or kl_loss_coef 0)",
            )
        r.put(_A + "use_kl_loss", "no penalty in the loss" + ("" if not in_loss else " (kl_loss_coef 0)"))
        r.put(_A + "kl_loss_coef", "unused: the penalty is in the reward")
        r.put(_A + "kl_loss_type", "unused: the penalty is in the reward")
        beta, penalty = reward
        notes = [
            f"use_kl_in_reward: verl subtracts kl_coef x kl_penalty per token from the reward ({_RT}:78-117) and the "
            f"advantage sums the tokens ({_CA}:304): GRPO penalty_in='reward' with {penalty} (THEORY.md eq. 10.7)"
        ]
        if penalty != "k1":
            notes.append(
                f"verl sums {penalty} over the response's tokens; the engine takes {penalty} of the sequence log-ratio "
                "(their sum): the same when every answer passes one branching prefix only (atomic answers, or "
                "answers decided by one token: no shared prefixes), not on trees of several branchings"
            )
        if penalty == "k3":
            notes.append(
                "verl clamps low_var_kl to <= 10 per token (core_algos.py:2239-2245): exact while each token's "
                "log(pi_ref/pi) stays in [-11.0, 2.61]"
            )
        return beta, penalty, "reward", f"{penalty} penalty in the reward at beta {beta:g}", notes
    if not in_loss:
        r.put(_A + "use_kl_loss", "false: no penalty in the loss (beta 0)")
        r.put(_A + "kl_loss_coef", "unused without use_kl_loss")
        r.put(_A + "kl_loss_type", "unused without use_kl_loss")
        return 0.0, "k3", "loss", "no penalty", []
    if coef < 0:
        raise r.refuse(_A + "kl_loss_coef", coef, "expected a number >= 0")
    if not isinstance(kind, str) or kind.rstrip("+") not in _PENALTY or kind == "full":
        raise r.refuse(
            _A + "kl_loss_type",
            kind,
            "is not a per-token penalty the engine models; expected low_var_kl, k3, mse, k2, kl, k1 or abs (optionally with +)",
        )
    base = _PENALTY[kind.rstrip("+")]
    penalty = "k2" if kind.endswith("+") else base
    r.put(_A + "use_kl_loss", "true: the penalty is a term of the loss")
    r.put(_A + "kl_loss_coef", f"beta {coef:g}", coef)
    if kind.endswith("+"):
        text = f"penalty k2: {kind} keeps {base}'s value but takes k2's gradient (straight-through, {_CA}:2200-2213)"
    elif penalty == "k3":
        text = "penalty k3 (clamped: exact while log(pi_ref/pi) per token stays in [-11.0, 2.61])"
    else:
        text = f"penalty {penalty}"
    r.put(_A + "kl_loss_type", text)
    notes = []
    if penalty == "k3" and coef > 0:
        notes.append(
            "verl clamps low_var_kl to <= 10 (core_algos.py:2242-2245): where a token's pi < pi_ref e^-2.61 "
            "(about pi_ref/13.6) its penalty gradient is 0 and the prediction does not hold"
        )
    return coef, penalty, "loss", f"{kind} penalty in the loss at beta {coef:g}", notes


def _aggregation(r: Reader) -> str:
    mode = r.get(_A + "loss_agg_mode")
    if not isinstance(mode, str) or mode not in VERL_AGGREGATION:
        raise InputError(_A + "loss_agg_mode", f"{mode!r}: expected one of {', '.join(VERL_AGGREGATION)}")
    agg = VERL_AGGREGATION[mode]
    detail = {
        "token-mean": "constant: one token count for the whole (global) batch, a constant in the many-groups limit "
        "(group_token_mean only with one group per batch)",
        "seq-mean-token-mean": "sequence_mean: each sequence's tokens averaged, then sequences",
        "seq-mean-token-sum": "constant: each sequence's tokens summed, then divided by the number of sequences",
        "seq-mean-token-sum-norm": "constant: as seq-mean-token-sum, divided by the horizon too "
        "(loss_scale_factor, else the padded response length: set it for a constant)",
        "token-sum": "constant: every token weighted 1",
    }[mode]
    r.put(_A + "loss_agg_mode", f"aggregation {detail}")
    return agg


def _checks(r: Reader, beta: float, normalization: str) -> None:
    mode = r.get(_A + "policy_loss.loss_mode")
    if mode != "vanilla":
        raise r.refuse(
            _A + "policy_loss.loss_mode",
            mode,
            "is a policy loss whose on-policy gradient the engine does not model; expected 'vanilla' (PPO clip)",
        )
    r.put(_A + "policy_loss.loss_mode", "vanilla: PPO clip, inactive at ratio 1")
    ent = r.real(_A + "entropy_coeff")
    if ent != 0:
        raise r.refuse(
            _A + "entropy_coeff", ent, "adds an entropy bonus, which moves the stationary policy; expected 0"
        )
    r.put(_A + "entropy_coeff", "0: no entropy bonus", ent)
    wd = r.real(_A + "optim.weight_decay")
    r.put(_A + "optim.weight_decay", weight_decay_text(_A + "optim.weight_decay", wd)[0], wd)
    epochs = r.integer(_A + "ppo_epochs")
    if epochs < 1:
        raise r.refuse(_A + "ppo_epochs", epochs, "takes no step on a batch; expected an integer >= 1")
    r.put(
        _A + "ppo_epochs",
        "batch reuse, off-policy by O(learning rate): the stationary points do not move",
        epochs,
    )
    t = r.real(_R + "temperature")
    if t != 1.0:
        raise r.refuse(
            _R + "temperature", t, "samples from softmax(logits / T), not the policy it trains; expected 1.0"
        )
    r.put(_R + "temperature", "1.0: samples from the policy itself", t)
    k = r.integer(_R + "top_k")
    if k not in (-1, 0):
        raise r.refuse(_R + "top_k", k, "samples from a truncated distribution; expected -1")
    r.put(_R + "top_k", "no top-k filtering", k)
    p = r.real(_R + "top_p")
    if p != 1.0:
        raise r.refuse(_R + "top_p", p, "samples from a truncated distribution; expected 1.0")
    r.put(_R + "top_p", "no nucleus filtering", p)
    if not r.flag(_R + "do_sample"):
        raise r.refuse(_R + "do_sample", False, "decodes greedily, not from the policy; expected true")
    r.put(_R + "do_sample", "samples from the policy")
    if r.flag(_R + "ignore_eos"):
        raise r.refuse(
            _R + "ignore_eos", True, "generates past the end token, so answers are not the policy's; expected false"
        )
    r.put(_R + "ignore_eos", "answers end at the end token")
    if r.flag("algorithm.filter_groups.enable"):
        if beta > 0 or normalization not in ("shift_scale", "shift", "rloo"):
            raise r.refuse(
                "algorithm.filter_groups.enable",
                True,
                "drops groups whose rewards all tie, whose penalty gradient then goes missing; "
                "expected false (or beta 0)",
            )
        r.put("algorithm.filter_groups.enable", "drops all-tied groups: their advantages are 0 anyway at beta 0")
    else:
        r.put("algorithm.filter_groups.enable", "false: every group trained")
    if r.flag("algorithm.use_pf_ppo"):
        raise r.refuse("algorithm.use_pf_ppo", True, "reweights samples by their reward; expected false")
    r.put("algorithm.use_pf_ppo", "false: no reweighting")
    if r.flag("distillation.enabled"):
        raise r.refuse("distillation.enabled", True, "adds a distillation loss toward a teacher; expected false")
    r.put("distillation.enabled", "false: no distillation loss")


def describe_verl_mapping(config: Mapping[str, Any]) -> MappingReport:
    """What a verl trainer config (nested or dotted keys) trains, setting by setting.

    Parameters
    ----------
    config : Mapping
        verl's trainer YAML as a mapping; keys not given take verl 0.9.1's defaults
        (``VERL_KEYS``).

    Returns
    -------
    MappingReport
        ``algo`` the ``GRPO`` (THEORY.md sections 2-3), ``aggregation`` (section 10) and
        one row per setting read or given.

    Raises
    ------
    InputError
        Naming the key: an unknown key outside the settings known not to move the end point,
        a bad value, or a setting that changes what is trained and is not modelled.
    """
    if not isinstance(config, Mapping):
        raise InputError("config", f"expected a mapping of verl's config keys, got {type(config).__name__}")
    values = flatten(config)
    VERL_TABLE.refuse_unknown(values, "it may change what is trained; remove it to use verl's default")
    r = Reader(VERL_TABLE, values, set(values))
    g = r.integer(_R + "n")
    if g < 2:
        raise r.refuse(_R + "n", g, "leaves no group to normalise (verl's default is 1); expected an integer >= 2")
    r.put(_R + "n", f"group_size {g}", g)
    norm, norm_text = _normalization(r)
    beta, penalty, penalty_in, penalty_text, penalty_notes = _penalty(r)
    aggregation = _aggregation(r)
    _checks(r, beta, norm["normalization"])
    r.put_inert(_INERT)
    algo = GRPO(
        group_size=g,
        beta=beta,
        penalty=penalty_record(penalty).name,
        **norm,
        aggregation=aggregation,
        penalty_in=penalty_in,
    )
    notes = [
        f"keys not given take verl {VERL_VERSION}'s defaults ({_Y})",
        f"advantage: {norm_text}; {penalty_text}",
        f"loss_agg_mode {r.get(_A + 'loss_agg_mode')!r} -> aggregation {aggregation!r}: it moves the end point "
        "only for answers of several tokens with shared prefixes or different lengths (THEORY.md section 10.7)",
        *penalty_notes,
    ]
    _, wd_note = weight_decay_text(_A + "optim.weight_decay", r.real(_A + "optim.weight_decay"))
    if wd_note is not None:
        notes.append(wd_note)
    return VERL_TABLE.report(r, algo, notes)


def grpo_from_verl(config: Mapping[str, Any]) -> GRPO:
    """The ``GRPO`` a verl trainer config trains (see ``describe_verl_mapping``)."""
    return describe_verl_mapping(config).algo
