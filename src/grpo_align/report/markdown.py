"""The Markdown twin of the report: same sections, figures referenced as PNG files."""

from __future__ import annotations

from collections.abc import Sequence

from grpo_align.report.model import SectionResult
from grpo_align.report.writers import table_text_rows

__all__ = ["render_markdown"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table_md(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(sections: Sequence[SectionResult], header: dict[str, str]) -> str:
    """The report as Markdown: summary table, then each section with its figures and verdict."""
    n_pass = sum(s.verdict.passed for s in sections)
    n_skip = sum(s.verdict.skipped for s in sections)
    skipped = f", {n_skip} skipped (optional extra not installed)" if n_skip else ""
    out = [
        f"# {header['title']}",
        "",
        header["subtitle"],
        "",
        f"**{n_pass} of {len(sections)} findings verified{skipped}.**",
        "",
    ]
    out.append(
        _table_md(
            ["#", "finding", "verdict", "measured"],
            [[str(s.number), f"[{s.title}](#{s.key})", s.verdict.label, s.verdict.text] for s in sections],
        )
    )
    for s in sections:
        out += ["", f'<a id="{s.key}"></a>', f"## {s.number}. {s.title} — {s.verdict.label}", ""]
        out += [f"**Claim.** {s.claim}", ""]
        for i, fig in enumerate(s.figures, 1):
            out += [
                f"![{fig.caption}](figures/{s.key}-{fig.name}.png)",
                "",
                f"*Figure {s.number}.{i}. {fig.caption}* ([SVG](figures/{s.key}-{fig.name}.svg))",
                "",
            ]
        for table in s.tables:
            out += [_table_md(table.columns, table_text_rows(table)), ""]
            if table.caption:
                out += [f"*{table.caption}*", ""]
        for note in s.notes:
            out += [f"> {note}", ""]
        out += [f"**Verdict: {s.verdict.label}.** {s.verdict.text}", ""]
        out += [
            f"Data: [data/{s.key}.json](data/{s.key}.json)"
            + "".join(f", [data/{s.key}-{t.name}.csv](data/{s.key}-{t.name}.csv)" for t in s.tables),
            "",
        ]
    out += ["---", header["footer"], ""]
    return "\n".join(out)
