"""The GRPO loss, shared by the tabular trainer and the language-model trainer.

One sampled sequence i of a group has per-token log-probabilities under the current
parameters (``logp_new``), under the policy that sampled it (``logp_old``, detached) and
under the reference policy (``logp_ref``). Per token t (THEORY.md section 1, eq. J(theta)):

    rho = exp(logp_new - logp_old)
    l_t = -min(rho A_i, clip(rho, 1 - eps_low, 1 + eps_high) A_i) + beta D_t,

with the penalty D of THEORY.md section 3 on x = logp_new - logp_ref:

    k3  exp(-x) + x - 1      k2  x^2 / 2      k1  x      abs  |x|
    kl  rho x                (importance-weighted: its expectation over pi_old is the exact
                              direct KL(pi_theta || pi_ref) of the token)

The batch holds whole groups: rows g*G .. g*G + G - 1 are group g (G = ``algo.group_size``).
The per-token losses are aggregated with the weights of THEORY.md eq. 10.2, named by
``algo.aggregation`` (the engine's names), averaged over the groups of the batch:

    sequence_mean     1 / (G |o_i|)          GRPO; TRL loss_type "grpo"
    group_token_mean  1 / sum_j |o_j|        the DAPO paper's token mean, over the group
    constant          1 / (G max_length)     Dr. GRPO, TRL "dr_grpo" (``constant_by="max_length"``)
                      1 / valid tokens of    TRL "dapo"/"bnpo" (``constant_by="batch_tokens"``):
                          the batch          a count shared by the whole batch, a constant
                                             in the many-groups limit

With ``algo.penalty_in == "reward"`` (THEORY.md eq. 10.7) the penalty is not in the loss:
``penalised_rewards`` subtracts beta k(x(o)) from the rewards before the group
normalisation, x(o) the sequence log-ratio of the sampling policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from grpo_align.errors import InputError
from grpo_align.theory.reward_penalty import sequence_penalty
from grpo_align.theory.spec import AGGREGATIONS, GRPO

__all__ = [
    "AGGREGATIONS",
    "CONSTANT_BY",
    "LossOutput",
    "aggregation_weights",
    "grpo_loss",
    "penalised_rewards",
    "penalty_per_token",
    "sequence_log_ratio",
]

#: the normaliser of "constant" aggregation: B * max_length (Dr. GRPO) or the batch's valid
#: tokens (TRL "dapo"/"bnpo" in one process); either is one number for the whole batch
CONSTANT_BY = ("max_length", "batch_tokens")


class LossOutput(NamedTuple):
    """The GRPO loss and its parts, each aggregated like the loss.

    ``loss = policy_loss + beta * penalty`` carries the gradient; ``policy_loss``,
    ``penalty`` (the unweighted penalty D) and ``clip_fraction`` (the fraction of valid
    tokens whose gradient the clip removes: rho > 1 + eps_high with A > 0, or
    rho < 1 - eps_low with A < 0) are detached, for logging.
    """

    loss: torch.Tensor
    policy_loss: torch.Tensor
    penalty: torch.Tensor
    clip_fraction: torch.Tensor


def penalty_per_token(
    penalty: str,
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    logp_ref: torch.Tensor,
    ratio: torch.Tensor | None = None,
) -> torch.Tensor:
    """D per token for the named estimator (THEORY.md section 3), x = logp_new - logp_ref.

    The gradient of E_{pi_old}[D] at pi_theta = pi_old is sum_o phi(o) grad pi(o) with
    phi = 1 - pi_ref/pi (k3), log(pi/pi_ref) (k2), 1 (k1), sign(x) (abs),
    log(pi/pi_ref) + 1 (kl): ``ga.penalty_coefficient``. ``ratio`` (exp(logp_new -
    logp_old)) may be passed to save recomputing it.
    """
    value = _TORCH_VALUE.get(penalty) if isinstance(penalty, str) else None
    if value is None:
        raise InputError("penalty", f"unknown {penalty!r}; expected one of k3, k2, k1, abs, kl")
    x = logp_new - logp_ref
    return value(x, torch.exp(logp_new - logp_old) if ratio is None else ratio)


#: The torch mirrors of the records' ``value`` (``theory.penalties``; theory imports no
#: torch), D(x, rho) with x = logp_new - logp_ref; tests/test_penalties.py checks each
#: against its record on random inputs.
_TORCH_VALUE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "k3": lambda x, rho: torch.exp(-x) + x - 1.0,
    "k2": lambda x, rho: 0.5 * x * x,
    "k1": lambda x, rho: x,
    "abs": lambda x, rho: x.abs(),
    "kl": lambda x, rho: rho * x,
}


def aggregation_weights(
    mask: torch.Tensor, aggregation: str, group_size: int, max_length: int, constant_by: str = "max_length"
) -> torch.Tensor:
    """Per-token weights w with aggregate(l) = sum(w * l), (B, T) (THEORY.md eq. 10.2).

    The B rows are B / G consecutive groups of ``group_size`` = G; each group's weights are
    those of eq. 10.2, divided by the number of groups (the loss is the mean over groups):

    sequence_mean: mask / (B |o_i|) (a sequence without valid tokens contributes 0, not 0/0);
    group_token_mean: mask / (B/G * valid tokens of the group);
    constant: mask / (B * max_length), or with ``constant_by="batch_tokens"`` mask / valid
    tokens of the batch (TRL's "dapo": the same for every token, so also "constant").
    """
    n_seq = mask.shape[0]
    if aggregation == "sequence_mean":
        return mask / (n_seq * mask.sum(dim=1, keepdim=True).clamp(min=1.0))
    if aggregation == "group_token_mean":
        n_groups = n_seq // group_size
        per_group = mask.reshape(n_groups, group_size * mask.shape[1]).sum(dim=1).clamp(min=1.0)  # (B/G,)
        return mask / (n_groups * per_group.repeat_interleave(group_size)[:, None])
    if aggregation == "constant":
        if constant_by == "batch_tokens":
            return mask / mask.sum().clamp(min=1.0)
        return mask / (n_seq * max_length)
    raise InputError("aggregation", f"unknown {aggregation!r}; expected one of {', '.join(AGGREGATIONS)}")


def sequence_log_ratio(logp_old: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x(o) = log pi_old(o) / pi_ref(o): the sum over valid tokens of logp_old - logp_ref, (B,).

    Detached: the penalty in the reward is computed from the sampling policy (eq. 10.7).
    """
    diff = (logp_old.detach() - logp_ref.detach()) * mask
    return diff.sum(dim=1)


def penalised_rewards(
    rewards: torch.Tensor | np.ndarray,
    logp_old: torch.Tensor,
    logp_ref: torch.Tensor,
    mask: torch.Tensor,
    algo: GRPO,
) -> np.ndarray:
    """r' = r - beta k(x(o)) for the penalty in the reward (THEORY.md eq. 10.7), as numpy.

    Parameters
    ----------
    rewards : (B,) or any shape with B elements in row order (e.g. (n_groups, G)).
    logp_old, logp_ref : (B, T) per-token log-probabilities of the sampled tokens under
        the sampling policy and pi_ref; x(o) is the sum of their difference over ``mask``.
    mask : (B, T)
    algo : GRPO with ``penalty_in="reward"`` and penalty k1, k2 or k3; with beta = 0 the
        rewards are returned unchanged.

    Returns
    -------
    ndarray of the shape of ``rewards``: the modified rewards, to be normalised by
    ``ga.group_advantages``.
    """
    r = np.asarray(rewards.detach().cpu().numpy() if isinstance(rewards, torch.Tensor) else rewards, dtype=float)
    if algo.penalty_in != "reward":
        raise InputError("algo.penalty_in", "penalised_rewards is for penalty_in='reward'")
    if algo.beta == 0:
        return r.copy()
    x = sequence_log_ratio(logp_old, logp_ref, mask.to(logp_old.dtype)).detach().cpu().double().numpy()
    if x.size != r.size:
        raise InputError("rewards", f"expected {x.size} rewards (one per sequence), got {r.size}")
    k = sequence_penalty(algo.penalty, x)  # eq. 10.7 (theory.penalties: the record's value)
    return r - algo.beta * k.reshape(r.shape)


def _check(name: str, t: object, shape: tuple[int, ...] | None, ndim: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise InputError(name, "expected a torch.Tensor")
    if t.ndim != ndim or (shape is not None and tuple(t.shape) != shape):
        want = shape if shape is not None else f"{ndim} dimensions"
        raise InputError(name, f"expected shape {want}, got {tuple(t.shape)}")
    return t


def grpo_loss(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    logp_ref: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    algo: GRPO,
    *,
    clip_eps_low: float = 0.2,
    clip_eps_high: float | None = None,
    max_length: int | None = None,
    constant_by: str = "max_length",
) -> LossOutput:
    """The clipped GRPO surrogate plus the penalty, aggregated (see the module docstring).

    Parameters
    ----------
    logp_new : (B, T) log-probabilities of the sampled tokens under the current parameters.
        B is a multiple of ``algo.group_size``: consecutive rows form a group.
    logp_old : (B, T) the same under the sampling policy; treated as a constant (detached).
    logp_ref : (B, T) the same under pi_ref (detached); may be None when ``algo.beta == 0``
        or the penalty is in the reward.
    advantages : (B,) group advantages of the sequences (``ga.group_advantages``, of
        ``penalised_rewards`` when ``algo.penalty_in == "reward"``).
    mask : (B, T) 1 for valid tokens, 0 for padding.
    algo : GRPO; its ``beta``, ``penalty``, ``penalty_in``, ``aggregation`` and
        ``group_size`` are used (the advantages already carry the normalisation).
    clip_eps_low, clip_eps_high : the clip range [1 - eps_low, 1 + eps_high];
        ``clip_eps_high`` defaults to ``clip_eps_low`` (DAPO's clip-higher sets it larger).
    max_length : the constant of "constant" aggregation (Dr. GRPO's max completion length);
        defaults to T. Its value rescales the whole gradient only.
    constant_by : "max_length" (Dr. GRPO) or "batch_tokens" (TRL "dapo"/"bnpo": the batch's
        valid-token count): the normaliser of "constant" aggregation; ignored otherwise.
    """
    if not isinstance(algo, GRPO):
        raise InputError("algo", "expected a grpo_align.GRPO")
    logp_new = _check("logp_new", logp_new, None, 2)
    shape = tuple(logp_new.shape)
    logp_old = _check("logp_old", logp_old, shape, 2).detach()
    mask = _check("mask", mask, shape, 2).to(logp_new.dtype)
    advantages = _check("advantages", advantages, shape[:1], 1).detach().to(logp_new.dtype)
    in_loss = algo.penalty_in == "loss" and algo.beta != 0
    if logp_ref is None:
        if in_loss:
            raise InputError("logp_ref", "required when beta > 0 and the penalty is in the loss")
    else:
        logp_ref = _check("logp_ref", logp_ref, shape, 2).detach()
    group = int(algo.group_size) if not algo.is_limit else 0
    if group < 1 or shape[0] % group:
        raise InputError(
            "logp_new", f"expected whole groups: {shape[0]} rows is not a multiple of group_size={algo.group_size}"
        )
    eps_low = float(clip_eps_low)
    eps_high = eps_low if clip_eps_high is None else float(clip_eps_high)
    if not 0 <= eps_low < 1:
        raise InputError("clip_eps_low", f"expected a number in [0, 1), got {clip_eps_low!r}")
    if not eps_high >= 0:
        raise InputError("clip_eps_high", f"expected a number >= 0, got {clip_eps_high!r}")
    if constant_by not in CONSTANT_BY:
        raise InputError("constant_by", f"unknown {constant_by!r}; expected one of {', '.join(CONSTANT_BY)}")
    if max_length is None:
        max_length = shape[1]
    elif isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise InputError("max_length", f"expected a positive integer, got {max_length!r}")

    adv = advantages[:, None]  # (B, 1): one advantage for every token of a sequence
    weights = aggregation_weights(mask, algo.aggregation, group, max_length, constant_by)  # (B, T)
    ratio = torch.exp(logp_new - logp_old)  # (B, T)
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv)
    if not in_loss or logp_ref is None:
        per_token = -surrogate
        pen = None
    else:
        pen = penalty_per_token(algo.penalty, logp_new, logp_old, logp_ref, ratio)
        per_token = algo.beta * pen - surrogate
    # one aggregation carries the gradient; the parts are reported detached
    loss = (per_token * weights).sum()

    with torch.no_grad():
        policy_loss = -(surrogate * weights).sum()
        if pen is None and logp_ref is not None:
            # logged only (with the penalty in the reward it is in the advantages instead)
            pen = penalty_per_token(algo.penalty, logp_new, logp_old, logp_ref, ratio)
        penalty = (pen * weights).sum() if pen is not None else torch.zeros((), dtype=logp_new.dtype)
        # the clip removes the gradient where rho left the range on the side A pushes it
        clipped = torch.where(adv > 0, ratio > 1.0 + eps_high, ratio < 1.0 - eps_low)
        clip_fraction = (clipped * mask).sum() / mask.sum().clamp(min=1.0)
    return LossOutput(loss, policy_loss.detach(), penalty.detach(), clip_fraction)
