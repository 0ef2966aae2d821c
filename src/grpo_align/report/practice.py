"""Finding 8: what practical trainers optimise (THEORY.md "Conventions", section 5).

One problem, the stationary policy under each preset of ``ga.GRPO.preset`` (the paper's
setting; TRL with its default beta = 0 and with beta = 0.04; verl; OpenRLHF; Dr. GRPO;
RLOO), beside RLHF's logarithmic pooling, as one figure and one table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from grpo_align.report.common import fmt_small
from grpo_align.report.model import JSON, Cell, FigureOut, ReportConfig, Table, Verdict
from grpo_align.report.style import color, new_figure
from grpo_align.theory import GRPO, Problem, preference, preference_monte_carlo, rlhf_policy, stationary_policy

KEY = "practice"
TITLE = "What practical trainers optimise"
SUCCESS = np.array([0.9, 0.7, 0.4, 0.1])  # chance each answer passes a noisy verifier
REF = np.array([0.05, 0.15, 0.3, 0.5])  # the base model prefers the weaker answers
Z_LIMIT = 4.0

#: (colour key, label, preset name, overrides)
PRESET_ROWS: tuple[tuple[str, str, str, dict[str, float]], ...] = (
    ("paper", "paper (G 64, β 0.04)", "paper", {}),
    ("trl", "TRL default (β 0)", "trl", {}),
    ("trl beta=0.04", "TRL, β 0.04", "trl", {"beta": 0.04}),
    ("verl", "verl", "verl", {}),
    ("openrlhf", "OpenRLHF", "openrlhf", {}),
    ("dr_grpo", "Dr. GRPO", "dr_grpo", {}),
    ("rloo preset", "RLOO, β 0.05 (= RLHF, β 0.05)", "rloo", {}),
)
#: RLHF at the paper's beta, at the rloo preset's own beta (0.05) and at verl's / OpenRLHF's
RLHF_BETAS = (0.04, 0.05, 0.001)
#: the rloo preset (leave-one-out baseline, k2) has RLHF's stationary policy at its own beta
#: (THEORY.md sections 2 and 5: P_G = E r(o) - E_pi r exactly); checked to this tolerance
POOLING_TOL = 1e-9
#: the solver's residual at a converged stationary policy
RESIDUAL_TOL = 1e-9
CLAIM = (
    "The trainers people run optimise different objectives: TRL's default β = 0 and Dr. GRPO have no "
    "stationary policy short of putting everything on the best answer; small β (verl, OpenRLHF) leaves a "
    "little mass on worse answers; the paper's k3 setting and TRL with β = 0.04 keep more; RLOO's preset (unscaled "
    "leave-one-out baseline with a direct KL) is exactly RLHF's logarithmic pooling at its own β = 0.05, while "
    "every k3 preset differs from pooling at its β."
)


@dataclass(frozen=True)
class Entry:
    """One row of the figure: a trainer preset (``algo``), RLHF or the reference (``algo`` None)."""

    key: str
    label: str
    algo: GRPO | None
    policy: np.ndarray
    status: str


@dataclass(frozen=True)
class PracticeData:
    """Everything the practice section measured."""

    entries: tuple[Entry, ...]
    all_solved: bool
    max_residual: float
    limits_ok: bool
    max_z: float
    tables: tuple[Table, ...]
    #: max |rloo preset - RLHF at the rloo beta|, and min over the k3 presets with beta > 0 of |preset - RLHF at its beta|
    rloo_vs_rlhf: float = float("nan")
    k3_vs_rlhf: float = float("nan")

    def measured(self) -> dict[str, JSON]:
        p_best: dict[str, JSON] = {e.label: float(e.policy[0]) for e in self.entries}
        return dict(
            all_solved=self.all_solved,
            max_residual=self.max_residual,
            beta_zero_limits_on_best=self.limits_ok,
            max_abs_z_exact_vs_monte_carlo=self.max_z,
            rloo_preset_vs_rlhf_at_its_beta=self.rloo_vs_rlhf,
            min_k3_preset_vs_rlhf_at_its_beta=self.k3_vs_rlhf,
            p_best=p_best,
        )

    def json(self) -> dict[str, JSON]:
        return dict(
            success=SUCCESS,
            ref=REF,
            policies=[
                dict(
                    label=e.label,
                    policy=e.policy,
                    status=e.status,
                    algo=None if e.algo is None else dict(vars(e.algo)),
                )
                for e in self.entries
            ],
        )


def compute(cfg: ReportConfig) -> PracticeData:
    """The stationary policy under each trainer preset, checked against sampled groups where interior."""
    problem = Problem.from_bernoulli(ref=REF, success=SUCCESS)
    entries: list[Entry] = []
    all_ok = True
    worst_residual = 0.0
    worst_z = 0.0
    limits_ok = True
    for i, (ckey, label, name, over) in enumerate(PRESET_ROWS):
        cfg.status(label)
        algo = GRPO.preset(name, **over)
        res = stationary_policy(problem, algo)[0]  # the one context
        all_ok &= bool(res.success)
        worst_residual = max(worst_residual, float(res.residual))
        if res.status == "limit":
            limits_ok &= bool(res.policy[0] == 1.0)
        else:
            # the exact P_G (with this preset's ddof, eps, G) against sampled groups
            mc = preference_monte_carlo(
                problem, algo, res.policy, samples=4000 if cfg.quick else 20000, seed=cfg.seed + i
            )
            exact = preference(problem, algo, res.policy)
            worst_z = max(worst_z, float(np.max(np.abs(exact - mc.mean) / mc.stderr)))
        entries.append(Entry(key=ckey, label=label, algo=algo, policy=res.policy, status=res.status))
    for beta in RLHF_BETAS:
        entries.append(
            Entry(
                key="rlhf",
                label=f"RLHF, β {beta:g}",
                algo=None,
                policy=rlhf_policy(problem, beta),
                status="closed form",
            )
        )
    rloo = next(e for e in entries if e.key == "rloo preset")
    assert rloo.algo is not None
    rloo_vs_rlhf = float(np.max(np.abs(rloo.policy - np.atleast_2d(rlhf_policy(problem, rloo.algo.beta))[0])))
    k3_vs_rlhf = min(
        float(np.max(np.abs(e.policy - np.atleast_2d(rlhf_policy(problem, e.algo.beta))[0])))
        for e in entries
        if e.algo is not None and e.algo.penalty == "k3" and e.algo.beta > 0
    )
    entries.insert(0, Entry(key="reference", label="reference π_ref", algo=None, policy=REF, status="—"))

    rows: list[list[Cell]] = []
    for e in entries:
        a = e.algo
        reward = float(np.dot(e.policy, SUCCESS))
        if a is None:
            rows.append(
                [
                    e.label,
                    "–",
                    "–",
                    "–",
                    "–",
                    "–",
                    "–",
                    e.policy[0],
                    float(np.sum(e.policy[1:])),
                    reward,
                    e.status,
                ]
            )
        else:
            rows.append(
                [
                    e.label,
                    "∞" if a.group_size == math.inf else a.group_size,
                    a.beta,
                    a.normalization,
                    a.ddof if a.normalization == "shift_scale" else "–",
                    a.eps,
                    a.penalty,
                    e.policy[0],
                    float(np.sum(e.policy[1:])),
                    reward,
                    e.status,
                ]
            )
    table = Table(
        "presets",
        [
            "trainer",
            "G",
            "β",
            "normalisation",
            "ddof",
            "ε",
            "penalty",
            "π(best)",
            "off best",
            "expected reward",
            "solution",
        ],
        rows,
        "Answers pass a noisy verifier with probabilities 90%, 70%, 40%, 10%; π_ref = (0.05, 0.15, 0.3, 0.5). "
        'Bars below 1e-5 are drawn at 1e-5 with their value written. "limit": β = 0 leaves no interior stationary policy; GRPO drives all mass to the best answer.',
    )
    return PracticeData(
        entries=tuple(entries),
        all_solved=all_ok,
        max_residual=worst_residual,
        limits_ok=limits_ok,
        max_z=worst_z,
        tables=(table,),
        rloo_vs_rlhf=rloo_vs_rlhf,
        k3_vs_rlhf=k3_vs_rlhf,
    )


def verdict(data: PracticeData) -> Verdict:
    """Every preset solved, beta = 0 presets on the best answer, exact P_G within Z_LIMIT of Monte Carlo."""
    pooling = data.rloo_vs_rlhf < POOLING_TOL and data.k3_vs_rlhf > 1e3 * POOLING_TOL
    passed = (
        data.all_solved and data.max_residual < RESIDUAL_TOL and data.limits_ok and data.max_z < Z_LIMIT and pooling
    )
    solved = "Every preset was solved" if data.all_solved else "Some preset was NOT solved"
    limits = "reach" if data.limits_ok else "do NOT reach"
    return Verdict(
        passed,
        f"{solved} (largest residual {data.max_residual:.1e}). The β = 0 presets {limits} the best answer. The exact "
        f"P_G at each interior policy matches Monte Carlo groups (largest |z| {data.max_z:.2f}, limit {Z_LIMIT:g}). "
        f"The rloo preset equals RLHF's pooling at its β to {fmt_small(data.rloo_vs_rlhf)} (tolerance "
        f"{POOLING_TOL:g}); the closest k3 preset is {data.k3_vs_rlhf:.1e} away from pooling at its own β.",
    )


def render(data: PracticeData) -> list[FigureOut]:
    """The stationary policy per preset, stacked by answer, and the mass left off the best answer."""
    entries = data.entries
    fig, axes = new_figure(11.0, 4.0, ncols=2, gridspec_kw=dict(width_ratios=[1.5, 1]))
    ax = axes[0, 0]
    y = np.arange(len(entries))[::-1]
    left = np.zeros(len(entries))
    for o in range(len(REF)):
        vals = np.array([e.policy[o] for e in entries])
        ax.barh(
            y,
            vals,
            left=left,
            color=color(f"output {o + 1}"),
            edgecolor="white",
            linewidth=0.6,
            label=f"answer {o + 1} (passes {SUCCESS[o]:.0%})",
        )
        for yi, v, l0 in zip(y, vals, left, strict=False):
            if v > 0.07:
                ax.text(
                    l0 + v / 2,
                    yi,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="white" if o in (0, 4) else "black",
                )
        left += vals
    ax.set_yticks(y, [e.label for e in entries])
    ax.set_xlim(0, 1)
    ax.set_xlabel("stationary probability of each answer")
    ax.set_title("where each trainer's objective puts the policy")
    ax.legend(ncols=2, fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    ax.grid(False)

    ax = axes[0, 1]
    # summed, not 1 - pi(best): RLHF at small beta leaves ~1e-87, below 1 - pi's rounding
    off = np.array([float(np.sum(e.policy[1:])) for e in entries])
    floor = 1e-5
    ax.barh(y, np.maximum(off, floor), color=[color(e.key) for e in entries], edgecolor="0.3", linewidth=0.4)
    for yi, v in zip(y, off, strict=False):
        text = "0 (all on answer 1)" if v == 0 else f"{v:.2g}"
        ax.text(max(v, floor) * 1.4, yi, text, va="center", fontsize=7.5)
    ax.set_xscale("log")
    ax.set_xlim(floor, 30)  # room for the labels right of a bar at 1
    ax.set_xticks([1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    ax.set_yticks(y, [""] * len(y))
    ax.set_xlabel("probability off the best answer (log)")
    ax.set_title("mass left on worse answers")

    return [
        FigureOut(
            "presets",
            fig,
            "Left: stationary policy under each trainer preset (stacked by answer); the RLOO preset and RLHF at "
            "β 0.05 coincide. "
            "Right: probability left on answers other than the best, log scale.",
        )
    ]
