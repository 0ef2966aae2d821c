"""The self-contained HTML page: inline CSS, figures embedded as base64 PNG, no scripts.

It opens offline from a single file; the PNG/SVG files beside it are for reuse elsewhere.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape

from grpo_align.report.model import SectionResult, Verdict
from grpo_align.report.writers import table_text_rows

__all__ = ["render_html"]

CSS = """
:root { --pass: #1a7f37; --fail: #cf222e; --skip: #6e7781; --ink: #1f2328; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink);
       max-width: 1120px; margin: 0 auto; padding: 24px 28px 64px; background: #fff; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 0 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 6px; }
.sub { color: var(--muted); margin: 0 0 18px; }
.overall { display: inline-block; padding: 4px 12px; border-radius: 6px; color: #fff; font-weight: 600; }
.overall.pass, .badge.pass { background: var(--pass); } .overall.fail, .badge.fail { background: var(--fail); }
.badge.skip { background: var(--skip); }
.badge { display: inline-block; min-width: 3.4em; text-align: center; padding: 1px 8px; border-radius: 10px;
         color: #fff; font-size: 0.8em; font-weight: 600; vertical-align: middle; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 0.88em; }
th, td { border: 1px solid var(--line); padding: 3px 9px; text-align: right; }
th { background: #f6f8fa; text-align: left; } td:first-child, th:first-child { text-align: left; }
table.summary td { text-align: left; } table.summary td.verdict-text { color: var(--muted); font-size: 0.95em; }
section.finding { margin: 34px 0; }
.claim { background: #f6f8fa; border-left: 4px solid #0969da; padding: 8px 14px; margin: 8px 0 12px; }
figure { margin: 10px 0 14px; } figure img { max-width: 100%; height: auto; display: block; }
figcaption, .caption { color: var(--muted); font-size: 0.88em; margin-top: 2px; }
.verdict { padding: 8px 14px; border-radius: 6px; margin: 10px 0; }
.verdict.pass { background: #dafbe1; border: 1px solid #4ac26b; } .verdict.fail { background: #ffebe9; border: 1px solid #ff8182; }
.verdict.skip { background: #f6f8fa; border: 1px solid var(--line); }
.notes { color: var(--muted); font-size: 0.9em; }
a { color: #0969da; text-decoration: none; } a:hover { text-decoration: underline; }
"""


def _table_html(columns: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _badge(verdict: Verdict) -> str:
    return f'<span class="badge {verdict.label.lower()}">{verdict.label}</span>'


def _overall(sections: Sequence[SectionResult]) -> str:
    """The headline: how many findings were verified (and how many skipped for a missing extra)."""
    n_pass = sum(s.verdict.passed for s in sections)
    n_skip = sum(s.verdict.skipped for s in sections)
    text = f"{n_pass} of {len(sections)} findings verified"
    if n_skip:
        text += f", {n_skip} skipped (optional extra not installed)"
    return text


def render_html(sections: Sequence[SectionResult], pngs: dict[tuple[str, str], bytes], header: dict[str, str]) -> str:
    """The report page. ``pngs`` maps (section key, figure name) to PNG bytes."""
    all_pass = not any(s.verdict.failed for s in sections)
    summary_rows = "".join(
        f'<tr><td>{s.number}</td><td><a href="#{escape(s.key)}">{escape(s.title)}</a></td>'
        f'<td>{_badge(s.verdict)}</td><td class="verdict-text">{escape(s.verdict.text)}</td></tr>'
        for s in sections
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(header['title'])}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{escape(header['title'])}</h1>",
        f'<p class="sub">{escape(header["subtitle"])}</p>',
        f'<p><span class="overall {"pass" if all_pass else "fail"}">{escape(_overall(sections))}</span></p></header>',
        '<nav><table class="summary"><thead><tr><th>#</th><th>finding</th><th>verdict</th><th>measured</th></tr></thead>',
        f"<tbody>{summary_rows}</tbody></table></nav>",
    ]
    for s in sections:
        parts.append(
            f'<section class="finding" id="{escape(s.key)}" data-verdict="{s.verdict.label.lower()}">'
            f"<h2>{s.number}. {escape(s.title)} {_badge(s.verdict)}</h2>"
            f'<p class="claim"><strong>Claim.</strong> {escape(s.claim)}</p>'
        )
        for fig in s.figures:
            data = base64.b64encode(pngs[(s.key, fig.name)]).decode("ascii")
            alt = fig.alt or fig.caption
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}" data-figure="{escape(s.key)}-{escape(fig.name)}">'
                f"<figcaption>Figure {s.number}.{s.figures.index(fig) + 1}. {escape(fig.caption)}</figcaption></figure>"
            )
        for table in s.tables:
            parts.append(_table_html(table.columns, table_text_rows(table)))
            if table.caption:
                parts.append(f'<p class="caption">{escape(table.caption)}</p>')
        for note in s.notes:
            parts.append(f'<p class="notes">{escape(note)}</p>')
        parts.append(
            f'<p class="verdict {s.verdict.label.lower()}"><strong>Verdict: '
            f"{s.verdict.label}.</strong> {escape(s.verdict.text)}</p></section>"
        )
    parts.append(f'<footer class="notes">{escape(header["footer"])}</footer></body></html>')
    return "\n".join(parts) + "\n"
