"""Which stationary policy the dynamics reach from each start (THEORY.md section 9).

Direct KL penalty, G = 64, binary question: for reference probabilities with two stable
stationary policies and an unstable one between them, the expected-gradient dynamics
(``training.expected_dynamics``, SGD on the softmax logits) are run from a grid of starts;
each end is labelled with the stationary policy nearest to it in logit. One dimension makes
the prediction exact: a start below the unstable root reaches the lower stable root, a start
above it the upper one. Needs the ``train`` extra (torch); skipped without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

from grpo_align.extras import require
from grpo_align.report.common import binary_problem
from grpo_align.report.model import JSON, FigureOut, ReportConfig, Table, Verdict
from grpo_align.report.style import color, new_figure
from grpo_align.theory import GRPO, stationary_policy

KEY = "basins"
TITLE = "Which stationary policy the dynamics reach"
G, BETA, LR = 64, 1.0, 2.0
#: starts closer than this (in logit) to an unstable root are not judged: rounding decides their side
MARGIN = 0.05

CLAIM = (
    f"With the direct KL penalty at G = {G} and β = {BETA:g}, a binary question can have two stable stationary "
    "policies with an unstable one between them. Run from a grid of starts, the expected GRPO dynamics reach the "
    "lower stable policy from every start below the unstable one and the upper from every start above it: the "
    "unstable policy is the watershed, and the reference start π_ref decides which answer a run gives."
)


@dataclass(frozen=True)
class BasinsData:
    """Everything the basins section measured; rows are reference probabilities, columns starts."""

    p0: np.ndarray
    starts: np.ndarray
    end: np.ndarray
    #: index into ``roots[i]`` of the stationary policy reached, and the one predicted
    reached: np.ndarray
    predicted: np.ndarray
    judged: np.ndarray
    roots: tuple[tuple[float, ...], ...]
    stable: tuple[tuple[bool, ...], ...]
    steps: int
    tables: tuple[Table, ...]

    @property
    def agree(self) -> int:
        return int(np.sum((self.reached == self.predicted) & self.judged))

    @property
    def n_judged(self) -> int:
        return int(np.sum(self.judged))

    @property
    def bistable(self) -> int:
        """Reference probabilities from which both stable policies were reached."""
        return sum(len(set(self.reached[i][self.judged[i]].tolist())) > 1 for i in range(self.p0.size))

    def measured(self) -> dict[str, JSON]:
        return dict(
            starts_judged=self.n_judged,
            starts_reaching_the_predicted_policy=self.agree,
            reference_probabilities_with_two_basins=self.bistable,
            steps=self.steps,
        )

    def json(self) -> dict[str, JSON]:
        return dict(
            group_size=G,
            beta=BETA,
            lr=LR,
            p0=self.p0,
            starts=self.starts,
            end=self.end,
            reached=self.reached,
            predicted=self.predicted,
            roots=[list(r) for r in self.roots],
            stable=[list(s) for s in self.stable],
        )


def predicted_root(start: float, roots: tuple[float, ...], stable: tuple[bool, ...]) -> int:
    """The stable root between the unstable roots that bracket the start (one dimension: the flow is monotone)."""
    lo = max((r for r, s in zip(roots, stable, strict=True) if not s and r < start), default=0.0)
    hi = min((r for r, s in zip(roots, stable, strict=True) if not s and r > start), default=1.0)
    inside = [i for i, (r, s) in enumerate(zip(roots, stable, strict=True)) if s and lo < r < hi]
    if len(inside) != 1:
        return -1  # no single stable root in the basin: the prediction fails, the verdict sees it
    return inside[0]


def nearest(p: float, roots: tuple[float, ...]) -> int:
    """Index of the root nearest to p in logit."""
    return int(np.argmin([abs(logit(r) - logit(p)) for r in roots]))


def compute(cfg: ReportConfig) -> BasinsData:
    """Expected dynamics from a grid of starts per reference probability, each end labelled by its root."""
    require("train", f"report section '{KEY}'")
    from grpo_align.training import expected_dynamics

    algo = GRPO(group_size=G, beta=BETA, penalty="kl")
    p0 = np.geomspace(0.12, 0.26, 6 if cfg.quick else 12)
    starts = expit(np.linspace(-3.0, 8.0, 12 if cfg.quick else 24))
    steps = 1000 if cfg.quick else 3000
    cfg.status("stationary policies")
    res = stationary_policy(binary_problem(p0), algo)
    roots = tuple(tuple(float(r.policy[0]) for r in sorted(rs, key=lambda r: r.policy[0])) for rs in res.roots)
    stable = tuple(tuple(bool(r.stable) for r in sorted(rs, key=lambda r: r.policy[0])) for rs in res.roots)
    cfg.status(f"dynamics from {p0.size * starts.size} starts")
    ref = np.repeat(p0, starts.size)
    init = np.tile(starts, p0.size)
    dyn = expected_dynamics(binary_problem(ref), algo, lr=LR, steps=steps, init=np.stack([init, 1 - init], axis=1))
    end = dyn.policy[:, 0].reshape(p0.size, starts.size)
    reached = np.array([[nearest(float(e), roots[i]) for e in end[i]] for i in range(p0.size)])
    predicted = np.array([[predicted_root(float(s), roots[i], stable[i]) for s in starts] for i in range(p0.size)])
    judged = np.array(
        [
            [
                all(st or abs(logit(s) - logit(r)) > MARGIN for r, st in zip(roots[i], stable[i], strict=True))
                for s in starts
            ]
            for i in range(p0.size)
        ]
    )
    table = Table(
        "roots",
        ["p₀", "stationary policies (p, stable)", "starts reaching the lower", "starts reaching the upper"],
        [
            [
                float(p0[i]),
                ", ".join(f"{r:.4f} {'stable' if s else 'unstable'}" for r, s in zip(roots[i], stable[i], strict=True)),
                int(np.sum(reached[i] == 0)),
                int(np.sum(reached[i] == len(roots[i]) - 1)) if len(roots[i]) > 1 else 0,
            ]
            for i in range(p0.size)
        ],
        f"Direct KL, G = {G}, β = {BETA:g}; SGD on the logits with the exact expected gradient, step {LR:g}, "
        f"{steps} steps, from {starts.size} starts per p₀ (uniform in logit from −3 to 8).",
    )
    return BasinsData(
        p0=p0,
        starts=starts,
        end=end,
        reached=reached,
        predicted=predicted,
        judged=judged,
        roots=roots,
        stable=stable,
        steps=steps,
        tables=(table,),
    )


def verdict(data: BasinsData) -> Verdict:
    """Every judged start reaches the predicted stable policy, and some p0 has two basins."""
    passed = data.n_judged > 0 and data.agree == data.n_judged and data.bistable > 0
    return Verdict(
        passed,
        f"{data.agree} of {data.n_judged} starts reach the stable policy on their side of the unstable one "
        f"(starts within {MARGIN:g} in logit of an unstable policy are not judged); from {data.bistable} of "
        f"{data.p0.size} reference probabilities both stable policies are reached, depending on the start.",
    )


def render(data: BasinsData) -> list[FigureOut]:
    """Starts coloured by the stationary policy reached, with the stationary policies drawn through them."""
    fig, axes = new_figure(7.5, 4.2)
    ax = axes[0, 0]
    for i, a in enumerate(data.p0):
        n = len(data.roots[i])
        for j, s in enumerate(data.starts):
            k = int(data.reached[i, j])
            key = "G=inf" if (n > 1 and k == n - 1) else "G=4"
            ax.plot([a], [s], "o", color=color(key), ms=5, mfc=color(key) if data.judged[i, j] else "white")
    for level in range(3):
        xs = [a for i, a in enumerate(data.p0) if len(data.roots[i]) == 3]
        ys = [data.roots[i][level] for i, _ in enumerate(data.p0) if len(data.roots[i]) == 3]
        if xs:
            ax.plot(xs, ys, color="0.2", ls="-" if level != 1 else "--", lw=1.2)
    ax.plot([], [], "o", color=color("G=4"), label="reaches the lower stable policy")
    ax.plot([], [], "o", color=color("G=inf"), label="reaches the upper stable policy")
    ax.plot([], [], color="0.2", label="stable policies")
    ax.plot([], [], color="0.2", ls="--", label="unstable policy (watershed)")
    ax.plot(data.p0, data.p0, ":", color=color("reference"), label="start at π_ref")
    ax.set_yscale("logit")
    ax.set_xlabel("reference probability p₀")
    ax.set_ylabel("start p (logit scale)")
    ax.set_title(f"direct KL, G = {G}, β = {BETA:g}: where each start ends")
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return [
        FigureOut(
            "basins",
            fig,
            "Each dot is a start of the expected GRPO dynamics, coloured by the stationary policy it reaches; the "
            "dashed unstable policy separates the two basins.",
        )
    ]
