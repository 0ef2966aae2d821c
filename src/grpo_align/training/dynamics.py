"""Expected dynamics: the GRPO update with the exact expected gradient instead of samples.

At theta = theta_old the expected gradient of the GRPO objective with respect to the
logits of a tabular softmax policy is (THEORY.md section 5)

    g(o) = pi(o) (P_G(o|pi) - beta phi(o) - c),   c = sum_o pi(o) (P_G(o|pi) - beta phi(o)),

with P_G from ``ga.preference`` and phi from ``ga.penalty_coefficient``. Stepping the same
optimiser with it gives noise-free trajectories: a second route to the stationary policy,
the basin each start falls into where several stationary policies exist, and the step
sizes at which the update cycles instead of converging (THEORY.md section 9). Token
sequences and the penalty in the reward step the per-prefix logits of the trainer's tree
policy along the exact field of THEORY.md eq. 10.5 instead (section 10.9).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from grpo_align.errors import InputError
from grpo_align.theory.preference import preference
from grpo_align.theory.problem import Problem
from grpo_align.theory.sequence_gradient import SequenceModel
from grpo_align.theory.spec import GRPO
from grpo_align.theory.stationary import penalty_coefficient, stationarity_residual
from grpo_align.theory.stationary.tree import needs_tree_solver
from grpo_align.training.config import OPTIMIZERS
from grpo_align.training.results import DynamicsResult
from grpo_align.training.tabular import TabularPolicy, TreePolicy, check_init, make_optimizer, torch_threads

__all__ = ["classify_tail", "expected_dynamics", "expected_gradient", "tree_residual"]

#: the policy counts as converged when the last step moved no probability by more than this
CONVERGED_STEP = 1e-10
#: ... and only when the stationarity residual there is below this (else it has stalled)
STALLED_RESIDUAL = 1e-6
#: On trees a next token below this conditional counts as removed: its residual is only how
#: far the field pulls it back in (the KKT condition, THEORY.md eq. 10.10)
FACE_CONDITIONAL = 1e-8


def expected_gradient(problem: Problem, algo: GRPO, policy: Any) -> np.ndarray:
    """g(o) = pi(o)(P_G(o|pi) - beta phi(o) - c): the expected ascent direction on the logits.

    THEORY.md sections 3-5; shape (K,) or (C, K), zero outside the support.
    """
    pi = problem.check_policy(policy)
    pref = preference(problem, algo, pi)  # (C, K): the output follows the policy's shape
    phi = penalty_coefficient(algo.penalty, pi, problem.ref) if algo.beta != 0 else 0.0
    field = np.where(pi > 0, pref - algo.beta * phi, 0.0)
    c = np.sum(pi * field, axis=1, keepdims=True)
    return problem.like_policy(pi * (field - c), policy)


def classify_tail(trajectory: np.ndarray, max_period: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Converged, oscillating, period and a message per context from a (S+1, C, K) trajectory.

    A p-cycle: the policy returns to where it was p steps ago (to 1e-6 of the size of a
    step) while single steps stay larger than ``CONVERGED_STEP``. Without an exact cycle,
    the run is called oscillating when, over the last tenth of the steps, most steps
    reverse the direction of the previous one and their size has not halved compared with
    the tenth before (a damped oscillation shrinks; a monotone approach does not reverse).
    """
    n_steps = trajectory.shape[0] - 1
    n_ctx = trajectory.shape[1]
    converged = np.zeros(n_ctx, bool)
    oscillating = np.zeros(n_ctx, bool)
    period = np.zeros(n_ctx, np.int64)
    messages = []
    if n_steps < 2:
        return converged, oscillating, period, ["too few steps to judge convergence"] * n_ctx
    last = np.max(np.abs(trajectory[-1] - trajectory[-2]), axis=-1)  # (C,)
    window = max(4, n_steps // 10)
    steps = np.diff(trajectory, axis=0)  # (S, C, K)
    recent = steps[-window:]
    before = steps[-2 * window : -window] if n_steps >= 2 * window else steps[:1]
    size_recent = np.max(np.abs(recent), axis=(0, 2))
    size_before = np.max(np.abs(before), axis=(0, 2))
    # a reversal: consecutive steps point in opposite directions
    dots = np.sum(recent[1:] * recent[:-1], axis=-1)  # (window - 1, C)
    reversal_share = np.mean(dots < 0, axis=0)
    for c in range(n_ctx):
        if last[c] <= CONVERGED_STEP:
            converged[c] = True
            messages.append(f"converged (last step {last[c]:.1e})")
            continue
        for p in range(2, min(max_period, n_steps) + 1):
            if np.max(np.abs(trajectory[-1, c] - trajectory[-1 - p, c])) <= 1e-6 * last[c]:
                period[c] = p
                break
        if period[c]:
            oscillating[c] = True
            messages.append(
                f"oscillating: a {period[c]}-cycle of amplitude {last[c]:.3g}; no fixed point is reached "
                "(lower the step size); the trajectory is not averaged into an answer"
            )
        elif reversal_share[c] > 0.5 and size_recent[c] > 0.5 * size_before[c]:
            oscillating[c] = True
            messages.append(
                f"oscillating: steps keep reversing without shrinking (size {size_recent[c]:.3g}); "
                "no fixed point is reached (lower the step size)"
            )
        else:
            messages.append(f"not converged yet: still moving (last step {last[c]:.1e}); run more steps")
    return converged, oscillating, period, messages


def expected_dynamics(
    problem: Problem,
    algo: GRPO,
    *,
    lr: float,
    steps: int,
    optimizer: str = "sgd",
    init: Any = None,
) -> DynamicsResult:
    """Iterate the GRPO update with the exact expected gradient from ``init`` (pi_ref by default).

    The optimiser (SGD or Adam, as in ``train``) steps the logits along
    ``expected_gradient``; the trajectory has ``steps + 1`` rows (row 0 is the start). The
    end is classified as converged, oscillating (a cycle or undamped reversals: reported,
    never averaged) or still moving.
    """
    if not isinstance(problem, Problem):
        raise InputError("problem", "expected a grpo_align.Problem")
    if not isinstance(algo, GRPO):
        raise InputError("algo", "expected a grpo_align.GRPO")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError("steps", f"expected an integer >= 1, got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not np.isfinite(lr) or lr <= 0:
        raise InputError("lr", f"expected a finite number > 0, got {lr!r}")
    if optimizer not in OPTIMIZERS:
        raise InputError("optimizer", f"unknown {optimizer!r}; expected one of {', '.join(OPTIMIZERS)}")
    if problem.is_preference and algo.group_size != 2:
        raise InputError("group_size", "a pairwise-preference problem defines P_G for G = 2 only")
    if needs_tree_solver(problem, algo):
        return _tree_dynamics(problem, algo, float(lr), steps, optimizer, check_init(problem, init))
    policy = TabularPolicy(problem.ref, check_init(problem, init))
    opt = make_optimizer(optimizer, [policy.logits], float(lr))
    trajectory = np.empty((steps + 1, *problem.ref.shape))
    trajectory[0] = policy.probs()
    with torch_threads(1):
        for t in range(1, steps + 1):
            pi = trajectory[t - 1]
            # ascent on the objective = descent on the loss, as in train
            grad = -expected_gradient(problem, algo, pi)  # (C, K)
            policy.logits.grad = torch.from_numpy(grad)
            opt.step()
            trajectory[t] = policy.probs()
    converged, oscillating, period, messages = classify_tail(trajectory)
    residual, _ = stationarity_residual(problem, algo, trajectory[-1])
    return _result(trajectory, algo, converged, oscillating, period, messages, residual)


def _result(
    trajectory: np.ndarray,
    algo: GRPO,
    converged: np.ndarray,
    oscillating: np.ndarray,
    period: np.ndarray,
    messages: list[str],
    residual: np.ndarray,
) -> DynamicsResult:
    """The verdict per context: converged only with a small stationarity residual."""
    if not algo.regularised:
        for c in range(len(messages)):
            converged[c] = False
            messages[c] = (
                "no interior stationary policy (beta = 0 or the k1 penalty): the mass drifts to the best "
                f"reward class (THEORY.md section 9); largest probability now {np.max(trajectory[-1, c]):.6f}"
            )
    for c in map(int, np.nonzero(converged & (residual > STALLED_RESIDUAL))[0]):
        # near the boundary the softmax gradient (proportional to pi) vanishes: tiny steps
        # there do not make a stationary policy
        converged[c] = False
        messages[c] = (
            f"stalled: the policy barely moves but is not stationary (residual {residual[c]:.1e}); "
            "it was thrown near the boundary of the simplex, where the gradient vanishes; lower the step size"
        )
    return DynamicsResult(
        trajectory=trajectory,
        policy=trajectory[-1],
        converged=converged,
        oscillating=oscillating,
        period=period,
        residual=np.asarray(residual, dtype=float).reshape(trajectory.shape[1]),
        message=tuple(messages),
    )


def tree_residual(model: SequenceModel, cond: np.ndarray) -> float:
    """max |S(ut) - c_u| over next tokens of reachable prefixes (eq. 10.8), where a token with
    pi(t|u) < ``FACE_CONDITIONAL`` counts only by max(S(ut) - c_u, 0) (eq. 10.10)."""
    _, _, dev = model.residual(cond)
    reach = model.tree.reachable(np.where(cond < FACE_CONDITIONAL, 0.0, cond))[model.tree.edge_node]
    dev = np.where(cond < FACE_CONDITIONAL, np.maximum(dev, 0.0), np.abs(dev))
    return float(np.max(np.where(reach, dev, 0.0), initial=0.0))


def _tree_dynamics(
    problem: Problem, algo: GRPO, lr: float, steps: int, optimizer: str, init: np.ndarray | None
) -> DynamicsResult:
    """Expected dynamics in per-prefix logits (THEORY.md eq. 10.5): token sequences or the
    penalty in the reward.

    The optimiser steps the logits of the trainer's own policy (``TreePolicy`` for
    sequences, ``TabularPolicy`` for one-token outputs) along the exact expected gradient
    ``SequenceModel.gradient``, so a sampled run of ``train`` has this flow as its mean.
    """
    n_ctx = problem.n_contexts
    models = [SequenceModel(problem, algo, c) for c in range(n_ctx)]
    tree_policy = problem.has_sequences
    policy: TreePolicy | TabularPolicy = TreePolicy(problem, init) if tree_policy else TabularPolicy(problem.ref, init)
    opt = make_optimizer(optimizer, [policy.logits], lr)

    def conditionals() -> list[np.ndarray]:
        # per edge of each context's tree, from the logits (not from pi: exact where a
        # prefix's mass underflows)
        if isinstance(policy, TreePolicy):
            with torch.no_grad():
                flat = policy._edge_logps().exp().numpy()
            return [flat[c, policy.edge_index[c]] for c in range(n_ctx)]
        pi = policy.probs()
        return [m.tree.conditionals(pi[c]) for c, m in enumerate(models)]

    trajectory = np.empty((steps + 1, *problem.ref.shape))
    trajectory[0] = policy.probs()
    with torch_threads(1):
        for t in range(1, steps + 1):
            grad = np.zeros(tuple(policy.logits.shape))
            flat = grad.reshape(n_ctx, -1)
            for c, (m, cond) in enumerate(zip(models, conditionals(), strict=True)):
                # ascent on the objective = descent on the loss, as in train
                g = -m.gradient(cond)
                if isinstance(policy, TreePolicy):
                    flat[c, policy.edge_index[c]] = g
                else:
                    flat[c, np.asarray(m.tree.edge_token, dtype=np.int64)] = g
            policy.logits.grad = torch.from_numpy(grad)
            opt.step()
            trajectory[t] = policy.probs()
    converged, oscillating, period, messages = classify_tail(trajectory)
    residual = np.array([tree_residual(m, cond) for m, cond in zip(models, conditionals(), strict=True)])
    return _result(trajectory, algo, converged, oscillating, period, messages, residual)
