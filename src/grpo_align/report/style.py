"""The report's figure style: ``grpo_align.style`` (a base-level module, so that
``predict.html`` draws with the same palette without importing the report)."""

from grpo_align.style import (
    CLOSED_FORM_MARKER,
    COLORS,
    RC,
    color,
    group_key,
    group_label,
    new_figure,
    style_context,
)

__all__ = ["CLOSED_FORM_MARKER", "COLORS", "RC", "color", "group_key", "group_label", "new_figure", "style_context"]
