"""Hugging Face TRL: the ``GRPO`` specification a ``GRPOConfig`` trains, and back.

Mapping (checked against TRL 1.16's ``grpo_trainer.py``; docs/lm.md has the table):

* ``num_generations`` <-> ``group_size``; ``beta`` <-> ``beta`` (TRL's default 0.0 loads no
  reference model and leaves no interior stationary policy: all mass flows to the best
  reward class).
* ``scale_rewards="group"`` (or True): ``(r - mean) / (std + 1e-4)`` with the sample std
  (Bessel) <-> ``normalization="shift_scale", ddof=1, eps=1e-4``; ``"none"`` (or False) <->
  ``"shift"``; ``"batch"`` scales by a batch-wide std, which no group-level spec expresses.
* penalty: ``exp(ref - logp) - (ref - logp) - 1`` per token <-> ``"k3"``;
  ``use_bias_correction_kl=True`` (the default in TRL 1.16; off in older releases)
  multiplies it by the ratio, whose gradient is that of the direct KL <-> ``"kl"`` (same
  stationary policies as ``"k2"``).
* ``loss_type``: "grpo" -> sequence mean, "dapo"/"bnpo" -> token mean, "dr_grpo" ->
  constant (``max_completion_length``). It is a training knob, not part of ``GRPO``: with
  answers of one length the three differ by a constant factor and have the same
  stationary policies.
* sampling must be exact (temperature 1, top_p 1, top_k 0/None, no min_p, no repetition
  penalty), and nothing may be added to the gradient (entropy bonus, entropy masking).

Neither torch nor trl is imported: ``grpo_from_trl`` reads any object with GRPOConfig's
attribute names.
"""

from __future__ import annotations

from typing import Any

from grpo_align.errors import InputError
from grpo_align.theory.spec import GRPO

__all__ = ["TRL_AGGREGATION", "TRL_EPS", "grpo_from_trl", "trl_aggregation", "trl_kwargs_from_grpo"]

#: TRL loss_type -> grpo_loss aggregation
TRL_AGGREGATION = {"grpo": "sequence_mean", "dapo": "token_mean", "bnpo": "token_mean", "dr_grpo": "constant"}

#: what TRL adds to the group's std before dividing (``scale_rewards="group"``)
TRL_EPS = 1e-4


def _get(config: Any, name: str, default: Any) -> Any:
    return getattr(config, name, default)


def trl_aggregation(config: Any) -> str:
    """The ``grpo_loss`` aggregation of a GRPOConfig's ``loss_type``."""
    loss_type = _get(config, "loss_type", "grpo")
    if loss_type not in TRL_AGGREGATION:
        raise InputError(
            "loss_type", f"{loss_type!r} has no counterpart here; expected one of {', '.join(TRL_AGGREGATION)}"
        )
    return TRL_AGGREGATION[loss_type]


def grpo_from_trl(config: Any) -> GRPO:
    """The ``GRPO`` specification a TRL ``GRPOConfig`` trains.

    Raises ``InputError`` for settings whose stationary policies the engine does not
    describe (batch-scaled rewards, inexact sampling, entropy terms, other loss types).
    """
    trl_aggregation(config)
    scale = _get(config, "scale_rewards", "group")
    if scale is True or scale == "group":
        norm: dict[str, Any] = dict(normalization="shift_scale", ddof=1, eps=TRL_EPS)
    elif scale is False or scale == "none":
        norm = dict(normalization="shift", ddof=0, eps=0.0)
    else:
        raise InputError(
            "scale_rewards",
            f"{scale!r} scales by a batch-wide std, which no group-level GRPO spec expresses; use 'group' or 'none'",
        )
    checks = [
        ("temperature", _get(config, "temperature", 1.0) == 1.0, "expected 1.0: the theory samples from pi itself"),
        ("top_p", _get(config, "top_p", 1.0) == 1.0, "expected 1.0 (no nucleus filtering)"),
        ("top_k", _get(config, "top_k", 0) in (0, None), "expected 0 or None (no top-k filtering)"),
        ("min_p", _get(config, "min_p", None) in (0, 0.0, None), "expected None"),
        ("repetition_penalty", _get(config, "repetition_penalty", 1.0) == 1.0, "expected 1.0"),
        (
            "top_entropy_quantile",
            _get(config, "top_entropy_quantile", 1.0) == 1.0,
            "expected 1.0 (every token in the loss)",
        ),
        (
            "entropy_coef",
            not _get(config, "entropy_coef", 0.0),
            "expected 0 (an entropy bonus moves the stationary policy)",
        ),
        ("use_adaptive_entropy", not _get(config, "use_adaptive_entropy", False), "expected False"),
        (
            "multi_objective_aggregation",
            _get(config, "multi_objective_aggregation", "sum_then_normalize") == "sum_then_normalize",
            "expected 'sum_then_normalize' (group normalisation of the summed reward)",
        ),
    ]
    for name, ok, expected in checks:
        if not ok:
            raise InputError(name, f"{expected}; got {_get(config, name, None)!r}")
    penalty = "kl" if _get(config, "use_bias_correction_kl", False) else "k3"
    group = _get(config, "num_generations", 8)
    return GRPO(group_size=int(group), beta=float(_get(config, "beta", 0.0)), penalty=penalty, **norm)


def trl_kwargs_from_grpo(algo: GRPO) -> dict[str, Any]:
    """The ``GRPOConfig`` keyword arguments that train ``algo`` (``grpo_from_trl`` inverts them).

    Only the fields that fix the specification (and exact sampling) are given; the run's
    other settings (steps, learning rate, ``loss_type``, batch sizes) are the caller's.
    Raises ``InputError`` naming the ``GRPO`` field TRL cannot express.
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
    if algo.penalty not in ("k3", "kl"):
        raise InputError(
            "penalty", f"TRL's GRPO penalty is k3 (or its ratio-corrected form, 'kl'), got {algo.penalty!r}"
        )
    return {
        "num_generations": int(algo.group_size),
        "beta": algo.beta,
        "scale_rewards": scale,
        "use_bias_correction_kl": algo.penalty == "kl",
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
    }
