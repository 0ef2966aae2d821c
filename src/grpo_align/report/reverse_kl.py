"""Finding 3: the k3 penalty is the reverse KL divergence KL(pi_ref || pi) (THEORY.md section 3).

Both sides are computed independently: the expected gradient of each penalty estimator
(samples from pi_old, gradient at theta = theta_old) by complex-step differentiation of
sum_o pi_old(o) D(o; theta) through the softmax, which is exact to rounding and uses no
autograd; the gradients of the two KL divergences analytically. Then the stationary
policies under k3, k2, exact direct KL and k1 on one problem, side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grpo_align.report.model import JSON, Cell, FigureOut, ReportConfig, Table, Verdict, max_abs
from grpo_align.report.style import color, new_figure
from grpo_align.theory import GRPO, Problem, preference, rlhf_policy, stationary_policy
from grpo_align.theory.penalties import penalty as penalty_record

KEY = "reverse-kl"
TITLE = "The penalty is reverse KL"
TOLERANCE = 1e-10
STEP = 1e-30  # complex step: no subtraction, so any tiny step is exact to rounding
#: k3's expected gradient must miss the direct KL's by far more than rounding
DISTINCT_MIN = 1e-3
#: stationary policies and first-order conditions hold to the solver's accuracy
STATIONARY_TOL = 1e-9
PENALTIES = ("k3", "k2", "kl", "k1")
CLAIM = (
    "GRPO's k3 penalty exp(−x) + x − 1 (x = log π/π_ref), with samples from π_old, has the expected gradient "
    "of the reverse KL divergence KL(π_ref‖π), not of the direct KL(π‖π_ref) that RLHF uses; k2 (x²/2) and the "
    "exact KL give the direct KL, and k1 (x) regularises nothing. So the stationary policies differ by penalty."
)


@dataclass(frozen=True)
class ProblemSpec:
    """The problem of the stationary-policy comparison."""

    rewards: np.ndarray
    ref: np.ndarray
    beta: float
    group_size: int


@dataclass(frozen=True)
class ReverseKLData:
    """Everything the reverse-KL section measured."""

    pi_old: np.ndarray
    ref: np.ndarray
    gradients: dict[str, np.ndarray]
    reverse_kl_gradient: np.ndarray
    direct_kl_gradient: np.ndarray
    problem: ProblemSpec
    policies: dict[str, np.ndarray]
    #: max |expected gradient - its matching KL gradient| per estimator
    gaps: dict[str, float]
    k3_vs_direct: float
    k2_vs_kl_stationary: float
    #: max |gradient of the matching objective| at the k3 and k2 stationary policies
    first_order: dict[str, float]
    k1_limit: bool
    all_success: bool
    tables: tuple[Table, ...]

    def measured(self) -> dict[str, JSON]:
        return dict(
            max_gap_k3_vs_reverse_kl=self.gaps["k3"],
            max_gap_k3_vs_direct_kl=self.k3_vs_direct,
            max_gap_k2_vs_direct_kl=self.gaps["k2"],
            max_gap_kl_vs_direct_kl=self.gaps["kl"],
            max_k1_gradient=self.gaps["k1"],
            k2_vs_kl_stationary=self.k2_vs_kl_stationary,
            k3_reverse_kl_first_order=self.first_order["k3"],
            k2_direct_kl_first_order=self.first_order["k2"],
            k1_limit_on_best_output=self.k1_limit,
        )

    def json(self) -> dict[str, JSON]:
        return dict(
            pi_old=self.pi_old,
            ref=self.ref,
            gradients=dict(self.gradients),
            reverse_kl_gradient=self.reverse_kl_gradient,
            direct_kl_gradient=self.direct_kl_gradient,
            problem=dict(vars(self.problem)),
            policies=dict(self.policies),
        )


def softmax(theta: np.ndarray) -> np.ndarray:
    """Softmax along the last axis; works for complex logits (complex-step derivatives)."""
    z = theta - np.max(theta.real, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def penalty_per_output(name: str, pi_theta: np.ndarray, pi_old: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """D(o) of each estimator, x = log pi_theta(o) - log pi_ref(o) (THEORY.md section 3)."""
    x = np.log(pi_theta) - np.log(ref)
    if name == "k3":
        return np.exp(-x) + x - 1
    if name == "k2":
        return x**2 / 2
    if name == "k1":
        return x
    if name == "kl":  # importance-weighted exact direct KL: rho * x
        return pi_theta / pi_old * x
    raise ValueError(name)


def expected_penalty_gradient(name: str, pi_old: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """d/dtheta of E_{o ~ pi_old}[D(o; theta)] at theta = log pi_old, by complex steps, (N, K)."""
    theta = np.log(pi_old).astype(complex)
    n, k = pi_old.shape
    grad = np.empty((n, k))
    for j in range(k):
        t = theta.copy()
        t[:, j] += 1j * STEP
        value = np.sum(pi_old * penalty_per_output(name, softmax(t), pi_old, ref), axis=-1)
        grad[:, j] = value.imag / STEP
    return grad


def reverse_kl_gradient(pi: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """d/dtheta KL(pi_ref || softmax(theta)) = pi - pi_ref (analytic)."""
    return pi - ref


def direct_kl_gradient(pi: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """d/dtheta KL(softmax(theta) || pi_ref) = pi (log(pi/pi_ref) - KL) (analytic)."""
    log_ratio = np.log(pi / ref)
    return pi * (log_ratio - np.sum(pi * log_ratio, axis=-1, keepdims=True))


def objective_gradient(pi: np.ndarray, ref: np.ndarray, pref: np.ndarray, beta: float, divergence: str) -> np.ndarray:
    """Complex-step gradient in the logits of sum_o pi(o) P(o) - beta * divergence, P frozen."""
    theta = np.log(pi).astype(complex)
    grad = np.empty(pi.shape)
    for j in range(pi.shape[-1]):
        t = theta.copy()
        t[j] += 1j * STEP
        q = softmax(t)
        div = (
            np.sum(ref * (np.log(ref) - np.log(q)))
            if divergence == "reverse"
            else np.sum(q * (np.log(q) - np.log(ref)))
        )
        grad[j] = (np.sum(q * pref) - beta * div).imag / STEP
    return grad


def compute(cfg: ReportConfig) -> ReverseKLData:
    """Expected penalty gradients on random policies, and the stationary policies under each penalty."""
    rng = cfg.rng(KEY)
    n_pairs = 100 if cfg.quick else 400
    k = 6
    pi_old = rng.dirichlet(np.ones(k), size=n_pairs)
    ref = rng.dirichlet(np.ones(k), size=n_pairs)
    rev = reverse_kl_gradient(pi_old, ref)
    fwd = direct_kl_gradient(pi_old, ref)
    zero = np.zeros_like(rev)
    grads = {name: expected_penalty_gradient(name, pi_old, ref) for name in PENALTIES}
    matches = {
        "k3": ("KL(π_ref‖π)", rev),
        "k2": ("KL(π‖π_ref)", fwd),
        "kl": ("KL(π‖π_ref)", fwd),
        "k1": ("0 (nothing)", zero),
    }
    rows: list[list[Cell]] = []
    gaps = {}
    for name, g in grads.items():
        target_name, target = matches[name]
        gaps[name] = max_abs(g, target)
        rows.append([name, target_name, gaps[name], max_abs(g, rev), max_abs(g, fwd)])
    table_grad = Table(
        "expected-gradients",
        [
            "estimator",
            "expected gradient equals ∇ of",
            "max |difference|",
            "max |∇ − ∇KL(π_ref‖π)|",
            "max |∇ − ∇KL(π‖π_ref)|",
        ],
        rows,
        f"{n_pairs} random (π, π_ref) pairs on {k} outputs (Dirichlet(1)); gradients in the softmax logits.",
    )

    # ---- stationary policies under each penalty on one problem
    cfg.status("stationary policies")
    rewards = np.array([1.0, 0.75, 0.5, 0.25, 0.0])
    ref1 = np.array([0.1, 0.15, 0.2, 0.25, 0.3])
    problem = Problem.from_rewards(ref=ref1, rewards=rewards)
    beta, g_size = 0.5, 8
    policies = {}
    first_order = {}
    all_success = True
    for pen in PENALTIES:
        algo = GRPO(group_size=g_size, beta=beta, penalty=penalty_record(pen).name)
        res = stationary_policy(problem, algo)[0]  # the one context
        all_success &= bool(res.success)
        policies[pen] = res.policy
        if pen in ("k3", "k2"):
            # P frozen at the solution: the fixed point maximises sum pi P - beta * divergence
            pref = preference(problem, algo, res.policy)
            first_order[pen] = float(
                np.max(np.abs(objective_gradient(res.policy, ref1, pref, beta, "reverse" if pen == "k3" else "direct")))
            )
    policies["rlhf"] = rlhf_policy(problem, beta)
    table_pol = Table(
        "stationary-policies",
        ["output reward", "π_ref", "k3", "k2", "exact KL", "k1", "RLHF"],
        [[r, ref1[o], *(policies[p][o] for p in ("k3", "k2", "kl", "k1", "rlhf"))] for o, r in enumerate(rewards)],
        f"G = {g_size}, β = {beta}, shift_scale (ddof 0). k1 has no interior stationary policy: the solver reports its limit.",
    )
    return ReverseKLData(
        pi_old=pi_old,
        ref=ref,
        gradients=grads,
        reverse_kl_gradient=rev,
        direct_kl_gradient=fwd,
        problem=ProblemSpec(rewards=rewards, ref=ref1, beta=beta, group_size=g_size),
        policies=policies,
        gaps=gaps,
        k3_vs_direct=max_abs(grads["k3"], fwd),
        k2_vs_kl_stationary=max_abs(policies["k2"], policies["kl"]),
        first_order=first_order,
        k1_limit=bool(policies["k1"][0] == 1.0),
        all_success=all_success,
        tables=(table_grad, table_pol),
    )


def verdict(data: ReverseKLData) -> Verdict:
    """Each estimator's expected gradient matches its divergence; the stationary policies agree with that."""
    gaps, first_order = data.gaps, data.first_order
    passed = (
        all(gaps[name] < TOLERANCE for name in PENALTIES)
        and data.k3_vs_direct > DISTINCT_MIN
        and data.all_success
        and data.k2_vs_kl_stationary < STATIONARY_TOL
        and data.k1_limit
        and max(first_order.values()) < STATIONARY_TOL
    )
    return Verdict(
        passed,
        f"k3's expected gradient = ∇KL(π_ref‖π) to {gaps['k3']:.1e} (tolerance {TOLERANCE:g}) but misses "
        f"∇KL(π‖π_ref) by {data.k3_vs_direct:.2f}; k2 and exact KL match the direct KL to "
        f"{max(gaps['k2'], gaps['kl']):.1e}; k1's is {gaps['k1']:.1e}. Stationary: k2 = exact KL to "
        f"{data.k2_vs_kl_stationary:.1e}; k3's policy zeroes the gradient of Σπ P − β KL(π_ref‖π) to "
        f"{first_order['k3']:.1e}, k2's that of the direct KL to {first_order['k2']:.1e}; "
        f"k1 {'goes to' if data.k1_limit else 'does NOT go to'} the best output.",
    )


def render(data: ReverseKLData) -> list[FigureOut]:
    """k3's expected gradient against both KL gradients; the stationary policies under each penalty."""
    rev, fwd, k3 = data.reverse_kl_gradient, data.direct_kl_gradient, data.gradients["k3"]
    policies, prob = data.policies, data.problem
    fig, axes = new_figure(10.5, 3.8, ncols=2, gridspec_kw=dict(width_ratios=[1, 1.35]))
    ax = axes[0, 0]
    lim = float(np.max(np.abs(np.concatenate([rev.ravel(), k3.ravel()])))) * 1.05
    ax.plot([-lim, lim], [-lim, lim], color="0.6", lw=1, ls=":")
    ax.plot(rev.ravel(), k3.ravel(), "o", color=color("k3"), ms=3, alpha=0.8, label="vs ∇ KL(π_ref‖π) (reverse)")
    ax.plot(fwd.ravel(), k3.ravel(), "x", color=color("k2"), ms=3, alpha=0.6, label="vs ∇ KL(π‖π_ref) (direct)")
    ax.set_xlabel("analytic gradient of the KL divergence")
    ax.set_ylabel("expected gradient of the k3 penalty")
    ax.set_title(f"k3 on {data.pi_old.shape[0]} random policies")
    ax.legend(loc="upper left")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)

    ax = axes[0, 1]
    bars = [
        ("reference", prob.ref, "π_ref"),
        ("k3", policies["k3"], "k3 (reverse KL)"),
        ("k2", policies["k2"], "k2"),
        ("kl", policies["kl"], "exact direct KL"),
        ("k1", policies["k1"], "k1 (limit)"),
        ("rlhf", policies["rlhf"], "RLHF"),
    ]
    width = 0.8 / len(bars)
    x = np.arange(len(prob.rewards))
    for i, (key, pol, label) in enumerate(bars):
        ax.bar(
            x + (i - (len(bars) - 1) / 2) * width,
            pol,
            width,
            color=color(key),
            label=label,
            edgecolor="white",
            linewidth=0.4,
        )
    ax.set_xticks(x, [f"r = {r:g}" for r in prob.rewards])
    ax.set_xlabel("output (deterministic reward)")
    ax.set_ylabel("probability")
    ax.set_title(f"stationary policies, G = {prob.group_size}, β = {prob.beta}")
    ax.legend(ncols=2, loc="upper right")
    ax.set_ylim(0, 1.05)
    return [
        FigureOut(
            "gradients-and-policies",
            fig,
            "Left: expected k3 gradient against the analytic gradients of "
            "both KL divergences (reverse: on the diagonal). Right: stationary policies under each penalty.",
        )
    ]
