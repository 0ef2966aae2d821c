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

and the per-token losses are aggregated over the valid tokens (``mask``) in one of three
ways: "sequence_mean" (GRPO: mean over each sequence's tokens, then over sequences),
"token_mean" (DAPO: sum over all tokens / their number), "constant" (Dr. GRPO: sum over all
tokens / (B * max_length)).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from grpo_align.errors import InputError
from grpo_align.theory.spec import GRPO

__all__ = ["AGGREGATIONS", "LossOutput", "aggregation_weights", "grpo_loss", "penalty_per_token"]

AGGREGATIONS = ("sequence_mean", "token_mean", "constant")


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
    x = logp_new - logp_ref
    if penalty == "k3":
        return torch.exp(-x) + x - 1.0
    if penalty == "k2":
        return 0.5 * x * x
    if penalty == "k1":
        return x
    if penalty == "abs":
        return x.abs()
    if penalty == "kl":
        return (torch.exp(logp_new - logp_old) if ratio is None else ratio) * x
    raise InputError("penalty", f"unknown {penalty!r}; expected one of k3, k2, k1, abs, kl")


def aggregation_weights(mask: torch.Tensor, aggregation: str, max_length: int) -> torch.Tensor:
    """Per-token weights w with aggregate(l) = sum(w * l), (B, T).

    sequence_mean: mask / (B * valid tokens of the sequence) (a sequence without valid
    tokens contributes 0, not 0/0); token_mean: mask / valid tokens in all;
    constant: mask / (B * max_length).
    """
    n_seq = mask.shape[0]
    if aggregation == "sequence_mean":
        return mask / (n_seq * mask.sum(dim=1, keepdim=True).clamp(min=1.0))
    if aggregation == "token_mean":
        return mask / mask.sum().clamp(min=1.0)
    return mask / (n_seq * max_length)


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
    aggregation: str = "sequence_mean",
    max_length: int | None = None,
) -> LossOutput:
    """The clipped GRPO surrogate plus the penalty, aggregated (see the module docstring).

    Parameters
    ----------
    logp_new : (B, T) log-probabilities of the sampled tokens under the current parameters.
    logp_old : (B, T) the same under the sampling policy; treated as a constant (detached).
    logp_ref : (B, T) the same under pi_ref (detached); may be None when ``algo.beta == 0``.
    advantages : (B,) group advantages of the sequences (``ga.group_advantages``).
    mask : (B, T) 1 for valid tokens, 0 for padding.
    algo : GRPO; its ``beta`` and ``penalty`` are used (the advantages already carry the
        normalisation).
    clip_eps_low, clip_eps_high : the clip range [1 - eps_low, 1 + eps_high];
        ``clip_eps_high`` defaults to ``clip_eps_low`` (DAPO's clip-higher sets it larger).
    aggregation : "sequence_mean", "token_mean" or "constant".
    max_length : the constant of "constant" aggregation (Dr. GRPO's max completion length);
        defaults to T.
    """
    if not isinstance(algo, GRPO):
        raise InputError("algo", "expected a grpo_align.GRPO")
    if algo.penalty_in != "loss":
        raise InputError("penalty_in", "the trainers put the penalty in the loss only so far; use penalty_in='loss'")
    logp_new = _check("logp_new", logp_new, None, 2)
    shape = tuple(logp_new.shape)
    logp_old = _check("logp_old", logp_old, shape, 2).detach()
    mask = _check("mask", mask, shape, 2).to(logp_new.dtype)
    advantages = _check("advantages", advantages, shape[:1], 1).detach().to(logp_new.dtype)
    if logp_ref is None:
        if algo.beta != 0:
            raise InputError("logp_ref", "required when beta > 0")
    else:
        logp_ref = _check("logp_ref", logp_ref, shape, 2).detach()
    eps_low = float(clip_eps_low)
    eps_high = eps_low if clip_eps_high is None else float(clip_eps_high)
    if not 0 <= eps_low < 1:
        raise InputError("clip_eps_low", f"expected a number in [0, 1), got {clip_eps_low!r}")
    if not eps_high >= 0:
        raise InputError("clip_eps_high", f"expected a number >= 0, got {clip_eps_high!r}")
    if aggregation not in AGGREGATIONS:
        raise InputError("aggregation", f"unknown {aggregation!r}; expected one of {', '.join(AGGREGATIONS)}")
    if max_length is None:
        max_length = shape[1]
    elif not isinstance(max_length, int) or max_length < 1:
        raise InputError("max_length", f"expected a positive integer, got {max_length!r}")

    adv = advantages[:, None]  # (B, 1): one advantage for every token of a sequence
    weights = aggregation_weights(mask, aggregation, max_length)  # (B, T)
    ratio = torch.exp(logp_new - logp_old)  # (B, T)
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv)
    if logp_ref is None or algo.beta == 0:
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
            pen = penalty_per_token(algo.penalty, logp_new, logp_old, logp_ref, ratio)
        penalty = (pen * weights).sum() if pen is not None else torch.zeros((), dtype=logp_new.dtype)
        # the clip removes the gradient where rho left the range on the side A pushes it
        clipped = torch.where(adv > 0, ratio > 1.0 + eps_high, ratio < 1.0 - eps_low)
        clip_fraction = (clipped * mask).sum() / mask.sum().clamp(min=1.0)
    return LossOutput(loss, policy_loss.detach(), penalty.detach(), clip_fraction)
