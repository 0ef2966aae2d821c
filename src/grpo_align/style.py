"""Figure style for the report and the predict page: the Agg backend, one colour per variant,
one figure factory (base layer: imported by ``predict.html`` and every report section).

Every figure of the report takes its colours from ``COLORS`` so that a variant (a group
size, a penalty, a normalisation, a trainer preset) has the same colour in every section.
Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot state), so many
can be made in one process without leaking. matplotlib is imported on first use, so the
sections' ``compute`` (which uses only the palette and labels) runs without it.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CLOSED_FORM_MARKER", "COLORS", "RC", "color", "group_key", "group_label", "new_figure", "style_context"]

#: The one palette: every variant drawn anywhere in the report. Colour-blind safe
#: (Okabe-Ito plus a few Tol colours); families are kept apart so two families can share
#: a figure without clashing.
COLORS: dict[str, str] = {
    # reference policy and RLHF's logarithmic pooling
    "reference": "#8c8c8c",
    "rlhf": "#111111",
    # group sizes (sequential: small G light, G -> infinity dark)
    "G=2": "#9ecae1",
    "G=4": "#4292c6",
    "G=8": "#2171b5",
    "G=16": "#08519c",
    "G=64": "#08306b",
    "G=inf": "#d55e00",
    # penalties (THEORY.md section 3)
    "k3": "#0072b2",
    "k2": "#cc79a7",
    "kl": "#e69f00",
    "k1": "#999933",
    "abs": "#882255",
    # normalisations (THEORY.md section 2)
    "shift_scale": "#0072b2",
    "shift_scale ddof=1": "#56b4e9",
    "shift": "#009e73",
    "rloo": "#6a3d9a",
    "raw": "#661100",
    # aggregations of the per-token loss (THEORY.md section 10)
    "sequence_mean": "#0072b2",
    "group_token_mean": "#e69f00",
    "constant": "#cc79a7",
    # pairwise-preference problems (G = 2)
    "pairwise": "#44aa99",
    # NLHF's regularised Nash policy
    "nash": "#cc79a7",
    # trainer presets (section 8)
    "paper": "#0072b2",
    "trl": "#e69f00",
    "trl beta=0.04": "#f5c266",
    "verl": "#009e73",
    "openrlhf": "#56b4e9",
    "dr_grpo": "#d55e00",
    "rloo preset": "#cc79a7",
    # outputs of a small problem, when bars are stacked per output
    "output 1": "#1b7837",
    "output 2": "#7fbf7b",
    "output 3": "#d9f0d3",
    "output 4": "#af8dc3",
    "output 5": "#762a83",
}

#: How a closed form is overlaid on a solver curve: open markers, so the line shows through.
CLOSED_FORM_MARKER = dict(marker="o", markersize=5.5, markerfacecolor="none", markeredgewidth=1.2, linestyle="none")

#: matplotlib rc settings of every figure (typed loosely: matplotlib types the keys as a Literal of rc names)
RC: dict[Any, Any] = {
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "lines.linewidth": 1.8,
    "savefig.dpi": 130,
    "savefig.bbox": "tight",
    # identical SVG bytes across runs: fixed element ids, no date
    "svg.hashsalt": "grpo-align",
    "svg.fonttype": "path",
}


def color(key: str) -> str:
    """The colour of a variant; every key lives in ``COLORS`` so colours stay consistent."""
    return COLORS[key]


def group_key(group_size: float) -> str:
    """``COLORS`` key of a group size: "G=8", "G=inf"."""
    return "G=inf" if group_size == math.inf else f"G={int(group_size)}"


def group_label(group_size: float) -> str:
    """Legend text of a group size."""
    return "G → ∞" if group_size == math.inf else f"G = {int(group_size)}"


def _matplotlib() -> ModuleType:
    """matplotlib on the Agg backend (the report is written headless; set before any pyplot import)."""
    import matplotlib

    matplotlib.use("Agg")
    return matplotlib


def style_context() -> AbstractContextManager[None]:
    """Context manager applying ``RC``: wrap both drawing and saving (rc is read at both)."""
    ctx: AbstractContextManager[None] = _matplotlib().rc_context(RC)
    return ctx


def new_figure(
    width: float = 10.0, height: float = 3.6, ncols: int = 1, nrows: int = 1, **kwargs: Any
) -> tuple[Figure, Any]:
    """A figure and its axes (array of shape (nrows, ncols)); width in inches at report width.

    Call inside ``style_context()``.
    """
    _matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes
