"""The algorithm specification: one object says what is trained and what is predicted.

``GRPO`` fixes the group size G, the penalty weight beta, the group advantage
normalisation (THEORY.md section 2) and the penalty estimator (section 3). The theory
engine solves it; the trainers run it.
"""

from __future__ import annotations

import difflib
import functools
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from grpo_align.errors import InputError
from grpo_align.theory.penalties import PENALTIES, Penalty
from grpo_align.theory.trainers import OPENRLHF_EPS, TRL_EPS, VERL_EPS

__all__ = ["AGGREGATIONS", "GRPO", "NORMALIZATIONS", "PENALTIES", "PENALTY_PLACEMENTS", "PRESETS"]

NORMALIZATIONS = ("shift_scale", "shift", "rloo", "raw")
# PENALTIES (imported from theory.penalties): every penalty's record by name; iterating it
# gives the names k3, k2, k1, abs, kl, as the tuple it replaced did.

#: How per-token terms are weighted (THEORY.md section 10): 1/|o_i|, 1/sum_j |o_j| over the
#: group, or one constant.
AGGREGATIONS = ("sequence_mean", "group_token_mean", "constant")
#: Where the penalty acts: a per-token term of the loss, or subtracted from the reward
#: before the group normalisation (THEORY.md section 10).
PENALTY_PLACEMENTS = ("loss", "reward")

#: Named presets: the trainer settings each mirrors, every GRPO field given. Values are
#: the defaults; any field can be overridden, e.g. ``GRPO.preset("trl", beta=0.04)``.
PRESETS: dict[str, dict[str, Any]] = {
    # Vojnovic & Yun (arXiv:2502.18548): population std, no epsilon, k3 penalty in the
    # loss. G and beta as in DeepSeekMath's GRPO (Shao et al. 2024): 64 and 0.04.
    "paper": dict(
        group_size=64,
        beta=0.04,
        normalization="shift_scale",
        ddof=0,
        eps=0.0,
        penalty="k3",
        aggregation="sequence_mean",
        penalty_in="loss",
    ),
    # Hugging Face TRL GRPOConfig (checked in TRL 1.16.0's source): num_generations=8,
    # beta=0.0 (no penalty, no reference model), scale_rewards="group" =
    # (r - mean) / (torch.std(r) + 1e-4) with the sample std, and the k3 term in the loss
    # multiplied by the importance ratio (use_bias_correction_kl=True, the default since
    # TRL 1.10): d(rho k3)/d logp = x at rho = 1, k2's psi (THEORY.md section 10.3), so
    # penalty="k2" (the direct KL's gradient; "kl", psi = x + 1, has the same end point only
    # under a constant aggregation). With use_bias_correction_kl=False (the only behaviour
    # of TRL before 0.26) use penalty="k3". loss_type="dapo" (the default,
    # grpo_config.py:801-802) divides the summed token losses by a token count shared by
    # the whole batch (grpo_trainer.py:3168-3173): aggregation "constant" in the
    # many-groups limit.
    "trl": dict(
        group_size=8,
        beta=0.0,
        normalization="shift_scale",
        ddof=1,
        eps=TRL_EPS,
        penalty="k2",
        aggregation="constant",
        penalty_in="loss",
    ),
    # verl (0.9.1) algorithm.adv_estimator=grpo, norm_adv_by_std_in_grpo=True:
    # (r - mean) / (torch.std(r) + 1e-6); actor.use_kl_loss=True, kl_loss_type=low_var_kl
    # (k3), kl_loss_coef=0.001; rollout.n=5 as in verl's GRPO examples. loss_agg_mode
    # "token-mean" (the default) divides by the global batch's token count
    # (core_algos.py:1172-1177): "constant" in the many-groups limit.
    "verl": dict(
        group_size=5,
        beta=0.001,
        normalization="shift_scale",
        ddof=1,
        eps=VERL_EPS,
        penalty="k3",
        aggregation="constant",
        penalty_in="loss",
    ),
    # OpenRLHF (0.11.2; same in 0.9.10) --advantage_estimator group_norm:
    # (r - mean) / (std + 1e-9) with torch's sample std; GRPO example: --use_kl_loss
    # --kl_estimator k3 --init_kl_coef 1e-3, --n_samples_per_prompt 8. Its default
    # aggregation is a token mean over the (global) batch: "constant" in the many-groups limit.
    "openrlhf": dict(
        group_size=8,
        beta=0.001,
        normalization="shift_scale",
        ddof=1,
        eps=OPENRLHF_EPS,
        penalty="k3",
        aggregation="constant",
        penalty_in="loss",
    ),
    # Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"): no std scaling,
    # no length normalisation (sum over tokens / a constant: aggregation "constant"),
    # beta = 0 (TRL: loss_type="dr_grpo", scale_rewards="none").
    "dr_grpo": dict(
        group_size=8,
        beta=0.0,
        normalization="shift",
        ddof=0,
        eps=0.0,
        penalty="k3",
        aggregation="constant",
        penalty_in="loss",
    ),
    # RLOO (Ahmadian et al. 2024; TRL 1.16 RLOOConfig: num_generations=2, beta=0.05,
    # normalize_advantages=False) subtracts beta times the sequence k1, sum_t (old - ref),
    # from the reward before the leave-one-out baseline (rloo_trainer.py:1664-1690): the
    # penalty in the reward, as it is run (THEORY.md section 10.5). For atomic outputs the
    # k2 penalty in the loss has the same stationary policy, but not on token sequences.
    # Its loss sums each sequence's token log-probs (one sequence-level ratio) and averages
    # over sequences (rloo_trainer.py:1822-1833): aggregation "constant".
    "rloo": dict(
        group_size=2,
        beta=0.05,
        normalization="rloo",
        ddof=0,
        eps=0.0,
        penalty="k1",
        penalty_in="reward",
        aggregation="constant",
    ),
}


#: the largest finite group size: beyond 2**53 an integer G has no exact float
MAX_GROUP_SIZE = 2**53


def _finite_real(value: Any) -> bool:
    """A real number (not a bool) whose float is finite; huge integers do not overflow here."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond the float range
        return False


def _short(value: Any) -> str:
    """``repr`` for a message, with huge integers by their number of digits."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and abs(int(value)) >= 10**20:
        return f"an integer of {len(str(abs(int(value))))} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class GRPO:
    """A GRPO variant: group size, penalty weight, advantage normalisation and penalty.

    Parameters
    ----------
    group_size : int or math.inf
        G, outputs sampled per context per step (>= 2); ``math.inf`` gives the
        G -> infinity limit (THEORY.md section 8).
    beta : float
        Penalty weight (>= 0). beta = 0 leaves no interior stationary policy.
    normalization : {"shift_scale", "shift", "rloo", "raw"}
        Group advantage normalisation, THEORY.md section 2.
    ddof : {0, 1}
        Standard deviation of ``shift_scale``: 0 population (the paper), 1 sample (TRL, verl).
    eps : float
        Added to the standard deviation of ``shift_scale`` (>= 0).
    penalty : {"k3", "k2", "k1", "abs", "kl"}
        Penalty estimator in the loss, THEORY.md section 3; ``kl`` is the exact direct KL.
    aggregation : {"sequence_mean", "group_token_mean", "constant"}
        Weight of each output's per-token terms (THEORY.md section 10): 1/|o_i| (GRPO, TRL
        "grpo"), 1/sum_j |o_j| over the group (DAPO paper), or a constant (Dr. GRPO; TRL
        "dapo"/"bnpo" normalise by a count shared by the whole batch, which is "constant"
        in the many-groups limit). Matters only for outputs of different token lengths.
    penalty_in : {"loss", "reward"}
        "loss": a per-token penalty term in the loss. "reward": beta k(o) (k1, k2 or k3 of
        the sequence log-ratio log pi(o)/pi_ref(o)) is subtracted from the reward before the
        group normalisation and the loss has no penalty (verl use_kl_in_reward, RLOO).
        OpenRLHF without --use_kl_loss adds the penalty to the advantage after the
        normalisation, which is a penalty in the loss (docs/trainers.md).
    """

    group_size: float = 8
    beta: float = 0.04
    normalization: str = "shift_scale"
    ddof: int = 0
    eps: float = 0.0
    penalty: Penalty = "k3"
    aggregation: str = "sequence_mean"
    penalty_in: str = "loss"

    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    def __post_init__(self) -> None:
        g = self.group_size
        # numbers.Real so that numpy scalars (np.int64 from a grid) are accepted
        if isinstance(g, bool) or not isinstance(g, numbers.Real):
            raise InputError("group_size", f"expected an integer >= 2 or math.inf, got {_short(g)}")
        if g != math.inf:
            # compared as numbers, never converted to float: 10**400 must not overflow
            integral = isinstance(g, numbers.Integral) or (math.isfinite(g) and g == int(g))
            if not integral or not 2 <= g <= MAX_GROUP_SIZE:
                raise InputError(
                    "group_size",
                    f"expected an integer >= 2 (at most 2**53) or math.inf (the limit), got {_short(g)}",
                )
            object.__setattr__(self, "group_size", int(g))
        for name in ("beta", "eps"):
            value = getattr(self, name)
            if not _finite_real(value) or value < 0:
                raise InputError(name, f"expected a finite number >= 0, got {_short(value)}")
            object.__setattr__(self, name, float(value))
        if self.normalization not in NORMALIZATIONS:
            raise InputError(
                "normalization", f"unknown {self.normalization!r}; expected one of {', '.join(NORMALIZATIONS)}"
            )
        if isinstance(self.ddof, bool) or self.ddof not in (0, 1):
            raise InputError("ddof", f"expected 0 (population std) or 1 (sample std), got {self.ddof!r}")
        object.__setattr__(self, "ddof", int(self.ddof))
        # (a mapping: an unhashable value must not reach ``in``)
        if not isinstance(self.penalty, str) or self.penalty not in PENALTIES:
            raise InputError("penalty", f"unknown {self.penalty!r}; expected one of {', '.join(PENALTIES)}")
        if self.aggregation not in AGGREGATIONS:
            raise InputError("aggregation", f"unknown {self.aggregation!r}; expected one of {', '.join(AGGREGATIONS)}")
        if self.penalty_in not in PENALTY_PLACEMENTS:
            raise InputError(
                "penalty_in", f"unknown {self.penalty_in!r}; expected one of {', '.join(PENALTY_PLACEMENTS)}"
            )
        if self.penalty_in == "reward" and not PENALTIES[self.penalty].in_reward:
            raise InputError(
                "penalty",
                f"{self.penalty!r} cannot be put in the reward; expected k1, k2 or k3 with penalty_in='reward'",
            )

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GRPO:
        """The specification a named trainer runs: one of ``GRPO.presets``.

        >>> GRPO.preset("trl", beta=0.04)
        GRPO(group_size=8, beta=0.04, normalization='shift_scale', ddof=1, eps=0.0001, penalty='k2', aggregation='constant', penalty_in='loss')
        """
        if name not in PRESETS:
            raise InputError("preset", f"unknown {name!r}; expected one of {', '.join(PRESETS)}")
        _check_field_names(overrides)
        return cls(**{**PRESETS[name], **overrides})

    def replace(self, **changes: Any) -> GRPO:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @property
    def is_limit(self) -> bool:
        """True for the G -> infinity limit."""
        return self.group_size == math.inf

    @property
    def regularised(self) -> bool:
        """Whether the penalty pulls toward pi_ref (beta > 0 and not k1 in the loss)."""
        return self.beta > 0 and (PENALTIES[self.penalty].regularises or self.penalty_in == "reward")

    @property
    def pairwise_scale(self) -> float:
        """s in A_1 = s sign(r_1 - r_2) at G = 2 (THEORY.md section 7)."""
        if self.group_size != 2:
            raise InputError("group_size", "the pairwise scale is defined for G = 2 only")
        if self.normalization == "shift_scale":
            if self.eps > 0:
                raise InputError("eps", "the pairwise form at G = 2 needs eps = 0 (it scales by 1/(std + eps))")
            return 1.0 if self.ddof == 0 else 1.0 / math.sqrt(2.0)
        raise InputError("normalization", "the pairwise form at G = 2 holds for shift_scale only")


def _field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(GRPO))


def _check_field_names(given: Any) -> None:
    """Every keyword a GRPO field; an unknown one is an InputError naming it and the nearest field."""
    names = _field_names()
    for key in given:
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise InputError(str(key), f"not a GRPO field; {hint}expected one of {', '.join(names)}")


def _checked_init(init: Callable[..., None]) -> Callable[..., None]:
    """The dataclass ``__init__`` behind a check of the keywords: ``GRPO(foo=1)`` is an
    ``InputError`` naming ``foo`` and the nearest field, not a TypeError, so the CLI and the
    API report it on one line like every other bad value. Signature, fields, ``replace``,
    equality and repr stay the dataclass's own."""

    @functools.wraps(init)
    def __init__(self: GRPO, *args: Any, **kwargs: Any) -> None:
        names = _field_names()
        if len(args) > len(names):
            raise InputError(
                "GRPO", f"takes at most {len(names)} positional values ({', '.join(names)}), got {len(args)}"
            )
        _check_field_names(kwargs)
        twice = [key for key in names[: len(args)] if key in kwargs]
        if twice:
            raise InputError(twice[0], "given both by position and by name; give it once")
        init(self, *args, **kwargs)

    return __init__


GRPO.__init__ = _checked_init(GRPO.__init__)  # type: ignore[method-assign]
