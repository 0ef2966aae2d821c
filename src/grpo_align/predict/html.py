"""``index.html`` of ``predict``: one self-contained page (inline CSS, figures as base64 PNG,
no scripts, no external resources) with the headline numbers and four figures:
histograms of p0 and of the end point, the end point against p0, and a planner (mean end
point and mean KL against beta for several G, the config's own point marked). Where some
prompts' solves failed, a line under the table says over how many prompts the means are
(or that there are none); the failed prompts have no end point in the figures.
"""

from __future__ import annotations

import base64
import io
import math
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from grpo_align.style import COLORS, group_key, group_label, new_figure, style_context
from grpo_align.theory import GRPO

if TYPE_CHECKING:
    from grpo_align.predict.pipeline import PredictSummary

__all__ = ["render_page"]

CSS = """
:root { --ink: #1f2328; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink);
       max-width: 1120px; margin: 0 auto; padding: 24px 28px 64px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; } h2 { font-size: 1.25em; border-bottom: 1px solid var(--line); padding-bottom: 6px; }
.sub, figcaption { color: var(--muted); font-size: 0.9em; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 0.9em; }
th, td { border: 1px solid var(--line); padding: 3px 9px; text-align: left; } th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 12px 0 18px; } figure img { width: 100%; height: auto; display: block; }
code { background: #f6f8fa; padding: 0 4px; border-radius: 4px; }
"""

#: up to this many prompts the scatter shows each one's interval
ERROR_BARS_UP_TO = 300

#: colour of a group size not in the palette
OTHER_GROUP = "#6a3d9a"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    with style_context():
        fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)]


def _histograms(cols: dict[str, np.ndarray], quantity: str) -> str:
    with style_context():
        fig, axes = new_figure(10.0, 3.2, ncols=2)
        p0, pred = _finite(cols["p0"]), _finite(cols["predicted"])
        both = np.concatenate([p0, pred]) if p0.size + pred.size else np.array([0.0, 1.0])
        lo, hi = float(min(both.min(), 0.0)), float(max(both.max(), 1.0))
        bins = np.linspace(lo, hi, 41)
        axes[0, 0].hist(p0, bins=bins, color=COLORS["reference"])
        axes[0, 0].set(xlabel=f"reference {quantity} (p0)", ylabel="prompts", title="before training")
        axes[0, 1].hist(pred, bins=bins, color=COLORS["k3"])
        axes[0, 1].set(xlabel=f"predicted {quantity} at the end point", ylabel="prompts", title="end point")
        return _png(fig)


def _scatter(cols: dict[str, np.ndarray], algo: GRPO, kind: str, quantity: str) -> str:
    from grpo_align.predict.engine import binary_end_points

    with style_context():
        fig, axes = new_figure(10.0, 4.0, ncols=2)
        ax, ax_kl = axes[0]
        p0, pred = cols["p0"], cols["predicted"]
        if kind == "counts" and p0.size <= ERROR_BARS_UP_TO:
            err = np.abs(np.stack([cols["predicted_low"], cols["predicted_high"]]) - pred)
            ax.errorbar(p0, pred, yerr=err, fmt="none", ecolor="#bbbbbb", elinewidth=0.8, zorder=1)
        ax.scatter(p0, pred, s=9, color=COLORS["k3"], zorder=2, label="prompts")
        ax_kl.scatter(p0, cols["kl"], s=9, color=COLORS["k3"], zorder=2, label="prompts")
        if kind != "rewards":
            # the end point depends on p0 alone: the curve every binary prompt lies on
            grid = np.linspace(0.001, 0.999, 121)
            curve = binary_end_points(grid, algo)
            ax.plot(grid, curve.predicted, color=COLORS["k3"], lw=1.0, alpha=0.6, label="GRPO end point")
            ax_kl.plot(grid, curve.kl, color=COLORS["k3"], lw=1.0, alpha=0.6, label="GRPO end point")
            if algo.beta > 0:
                from scipy.special import expit, logit

                label = f"RLHF, beta = {algo.beta:g}"
                ax.plot(grid, expit(logit(grid) + 1.0 / algo.beta), color=COLORS["rlhf"], lw=1.0, ls="--", label=label)
        lims = [min(0.0, float(np.nanmin(p0, initial=0.0))), max(1.0, float(np.nanmax(pred, initial=1.0)))]
        ax.plot(lims, lims, color=COLORS["reference"], lw=0.8, ls=":", label="no change")
        ax.set(xlabel=f"reference {quantity} (p0)", ylabel=f"predicted {quantity}", title="end point against p0")
        ax_kl.set(xlabel=f"reference {quantity} (p0)", ylabel="KL(pi || pi_ref), nats", title="KL at the end point")
        ax.legend(loc="lower right")
        return _png(fig)


def _planner_figure(plan: dict[str, Any], algo: GRPO, quantity: str) -> str:
    betas = np.asarray(plan["betas"])
    with style_context():
        fig, axes = new_figure(10.0, 3.8, ncols=2)
        for i, g in enumerate(plan["groups"]):
            key = group_key(g)
            colour = COLORS.get(key, OTHER_GROUP)
            for ax, name in zip(axes[0], ("mean_predicted", "mean_kl"), strict=True):
                ax.plot(betas, np.asarray(plan[name])[i], color=colour, marker=".", label=group_label(g))
        own = plan["groups"].index(algo.group_size)
        for ax, name, label in zip(
            axes[0],
            ("mean_predicted", "mean_kl"),
            (f"mean predicted {quantity}", "mean KL(pi || pi_ref), nats"),
            strict=True,
        ):
            values = np.asarray(plan[name])[own]
            if algo.beta > 0:
                j = int(np.argmin(np.abs(betas - algo.beta)))
                ax.plot(
                    [betas[j]],
                    [values[j]],
                    marker="*",
                    markersize=15,
                    color="#d62728",
                    linestyle="none",
                    label="this config",
                )
            else:
                ax.annotate(
                    "this config: beta = 0, no interior end point",
                    xy=(0.02, 0.95),
                    xycoords="axes fraction",
                    color="#d62728",
                    va="top",
                )
            ax.set(xscale="log", xlabel="beta", ylabel=label)
        axes[0, 0].set_title(f"planner: {plan['prompts']} sampled prompts, config's other fields")
        kl = np.asarray(plan["mean_kl"])
        if np.all(kl[np.isfinite(kl)] > 0):
            axes[0, 1].set_yscale("log")
        axes[0, 1].legend(loc="upper right")
        return _png(fig)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.4g}"
    return escape(str(x))


def _figure(png: str, alt: str, caption: str) -> str:
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{png}"><figcaption>{escape(caption)}</figcaption></figure>'


def render_page(summary: PredictSummary, algo: GRPO, kind: str) -> str:
    """The page as a string (see the module docstring)."""
    from grpo_align.predict.pipeline import means_note

    data = summary.data
    cols = summary.sample.columns
    quantity = data["quantity"]
    sampled = len(summary.sample) < data["prompts"]
    note = f" (a uniform random sample of {len(summary.sample)} of {data['prompts']} prompts)" if sampled else ""
    source = data["source"]
    spec = ", ".join(f"{k} = {_fmt(v)}" for k, v in data["spec"].items())
    rows = [
        ("prompts", data["prompts"]),
        (f"mean reference {quantity} (p0)", data["mean_p0"]),
        (f"mean predicted {quantity}", data["mean_predicted"]),
    ]
    if kind == "counts":
        rows.append(
            (
                "mean predicted at the 95% interval ends",
                f"{_fmt(data['mean_predicted_low'])} – {_fmt(data['mean_predicted_high'])}",
            )
        )
    rows += [
        ("mean RLHF (logarithmic pooling, same beta)", data["mean_rlhf"]),
        ("mean KL(pi || pi_ref), nats", data["mean_kl"]),
    ]
    rows += [(f"status {k}", v) for k, v in data["status"].items()]
    table = "".join(f"<tr><th>{escape(k)}</th><td class='num'>{_fmt(v)}</td></tr>" for k, v in rows)
    over = means_note(data)  # over which prompts the means are, where some failed
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>grpo-align predict: {escape(str(data['input']['path']))}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Predicted end points per prompt</h1>",
        f"<p class='sub'>{escape(str(data['input']['path']))} ({escape(data['input']['format'])}, {escape(kind)}); "
        f"spec from {escape(source['kind'])} <code>{escape(str(source['name']))}</code>: {escape(spec)}</p>",
        f"<table>{table}</table>",
        *([f"<p><strong>{escape(over)}</strong></p>"] if over is not None else []),
        "<h2>Distributions</h2>",
        _figure(_histograms(cols, quantity), "histograms of p0 and of the predicted end point", f"Per prompt{note}."),
        "<h2>End point against p0</h2>",
        _figure(
            _scatter(cols, algo, kind, quantity),
            "predicted end point against p0",
            f"Each dot a prompt{note}; "
            + (
                "bars: the end points at the ends of the 95% Jeffreys interval. "
                if kind == "counts" and len(summary.sample) <= ERROR_BARS_UP_TO
                else ""
            )
            + "Where several stationary policies exist, the one shown is the stable one nearest the reference "
            + "(interior before boundary; nearest pi_ref in max norm).",
        ),
    ]
    if summary.planner is not None:
        parts += [
            "<h2>Planner: how beta and G move it</h2>",
            _figure(
                _planner_figure(summary.planner, algo, quantity),
                "planner: mean predicted and mean KL against beta for several G",
                "Each point solves the sampled prompts at that (G, beta) with the config's normalisation and penalty; the star is this config.",
            ),
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
