"""Build the report: run the sections with progress, then write every file atomically.

Layout of the output folder::

    index.html          self-contained page (figures embedded as base64 PNG)
    report.md           Markdown twin, referencing figures/*.png
    figures/*.png|svg   every figure
    data/*.json|csv     the data behind every figure and table
    summary.json        per section: name, claim, verdict (pass, fail or skip), measured numbers
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from grpo_align.errors import InputError
from grpo_align.extras import MissingExtraError
from grpo_align.files import atomic_write_bytes
from grpo_align.report import (
    basins,
    binary,
    direct_kl,
    large_groups,
    limits,
    lm,
    pairwise,
    paper_figures,
    pooling,
    practice,
    predict,
    reverse_kl,
    sequences,
    training,
    variants,
)
from grpo_align.report.html import render_html
from grpo_align.report.markdown import render_markdown
from grpo_align.report.model import ReportConfig, SectionResult, SectionSpec, Verdict
from grpo_align.report.style import style_context
from grpo_align.report.writers import figure_bytes, json_bytes, table_csv_bytes

__all__ = [
    "MODULES",
    "SECTIONS",
    "ReportOutcome",
    "build_report",
    "build_section",
    "remove_stale",
    "resolve_sections",
    "run_sections",
    "write_report",
]

#: The section modules, in report order: the only source of the sections' numbers.
MODULES: tuple[ModuleType, ...] = (
    binary,
    paper_figures,
    pooling,
    reverse_kl,
    pairwise,
    large_groups,
    variants,
    direct_kl,
    basins,
    training,
    practice,
    lm,
    predict,
    limits,
    sequences,
)


def _spec(module: ModuleType, number: int) -> SectionSpec:
    """A section module (KEY, TITLE, CLAIM, compute, verdict, render) as a numbered spec."""
    return SectionSpec(
        key=module.KEY,
        number=number,
        title=module.TITLE,
        claim=module.CLAIM,
        compute=module.compute,
        verdict=module.verdict,
        render=module.render,
        notes=tuple(getattr(module, "NOTES", ())),
    )


#: The findings of the paper, numbered 1..N in report order (``--only`` keeps these numbers).
SECTIONS: tuple[SectionSpec, ...] = tuple(_spec(m, i) for i, m in enumerate(MODULES, start=1))


def build_section(spec: SectionSpec, cfg: ReportConfig) -> SectionResult:
    """compute, verdict and render of one section, assembled under the spec's number."""
    data = spec.compute(cfg)
    return SectionResult(
        key=spec.key,
        number=spec.number,
        title=spec.title,
        claim=spec.claim_text(data),
        verdict=spec.verdict(data),
        figures=spec.render(data),
        tables=list(data.tables),
        measured=data.measured(),
        data=data,
        notes=list(spec.notes),
    )


@dataclass
class ReportOutcome:
    """What ``build_report`` produced: the sections (with verdicts) and the files written."""

    out: Path
    sections: list[SectionResult]
    files: list[Path]
    seconds: float

    @property
    def passed(self) -> bool:
        """No section failed (skipped sections, whose extra is missing, do not count against it)."""
        return not any(s.verdict.failed for s in self.sections)

    @property
    def skipped(self) -> list[SectionResult]:
        return [s for s in self.sections if s.verdict.skipped]

    def __repr__(self) -> str:
        n = sum(s.verdict.passed for s in self.sections)
        return (
            f"ReportOutcome(out={str(self.out)!r}, passed={n}/{len(self.sections)}, skipped={len(self.skipped)}, "
            f"files={len(self.files)}, seconds={self.seconds:.1f})"
        )


def resolve_sections(only: Iterable[str] | None) -> list[SectionSpec]:
    """Sections selected by ``--only``: keys ("binary") or numbers ("1"), in report order."""
    if not only:
        return list(SECTIONS)
    by_name = {s.key: s for s in SECTIONS} | {str(s.number): s for s in SECTIONS}
    unknown = [name for name in only if name not in by_name]
    if unknown:
        raise InputError(
            "--only",
            f"unknown section(s) {', '.join(unknown)}; expected keys or numbers of {', '.join(s.key for s in SECTIONS)}",
        )
    chosen = {by_name[name].key for name in only}
    return [s for s in SECTIONS if s.key in chosen]


def _failed_section(spec: SectionSpec, exc: BaseException) -> SectionResult:
    """A section that raised: reported as a failed verdict, with the error, not hidden."""
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return SectionResult(
        key=spec.key,
        number=spec.number,
        title=spec.title,
        claim="(the section raised an error before it could be measured)",
        verdict=Verdict(False, f"error while building the section: {last}"),
        notes=["".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-2000:]],
        measured={"error": last},
    )


def _skipped_section(spec: SectionSpec, exc: MissingExtraError) -> SectionResult:
    """A section whose optional extra is missing: skipped, with the install command."""
    return SectionResult(
        key=spec.key,
        number=spec.number,
        title=spec.title,
        claim="(not measured: the section needs an optional extra that is not installed)",
        verdict=Verdict.skip(str(exc)),
        measured={"available": False, "extra": exc.extra, "missing": list(exc.missing), "install": exc.hint},
    )


def run_sections(
    specs: Sequence[SectionSpec], cfg: ReportConfig, console: Console | None = None
) -> list[SectionResult]:
    """Build each section under a rich progress display (on stderr)."""
    console = console or Console(stderr=True)
    results: list[SectionResult] = []
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task("report", total=len(specs))
        for spec in specs:
            label = f"{spec.number}. {spec.title}"
            progress.update(overall, description=label)

            def status(msg: str, label: str = label) -> None:
                progress.update(overall, description=f"{label}: {msg}")

            run_cfg = ReportConfig(quick=cfg.quick, seed=cfg.seed, status=status)
            started = time.perf_counter()
            try:
                result = build_section(spec, run_cfg)
            except MissingExtraError as exc:
                result = _skipped_section(spec, exc)
            except Exception as exc:  # a broken section is a failed verdict, the rest still runs
                result = _failed_section(spec, exc)
            results.append(result)
            colour = {"passed": "green", "failed": "red", "skipped": "yellow"}[result.verdict.status]
            mark = f"[{colour}]{result.verdict.label}[/{colour}]"
            progress.console.print(
                f"{mark} {escape(label)} ({time.perf_counter() - started:.0f} s): {escape(result.verdict.text)}",
                highlight=False,
            )
            progress.advance(overall)
        progress.update(overall, description="writing report")
    return results


def write_report(out: Path, sections: Sequence[SectionResult], cfg: ReportConfig) -> list[Path]:
    """Write every file of the report under ``out`` (each atomically); returns the paths."""
    from grpo_align import __version__

    out = Path(out)
    written: list[Path] = []

    def put(rel: str, data: bytes | str) -> None:
        atomic_write_bytes(out / rel, data.encode("utf-8") if isinstance(data, str) else data)
        written.append(out / rel)

    pngs: dict[tuple[str, str], bytes] = {}
    for s in sections:
        for fig in s.figures:
            png, svg = figure_bytes(fig)
            pngs[(s.key, fig.name)] = png
            put(f"figures/{s.key}-{fig.name}.png", png)
            put(f"figures/{s.key}-{fig.name}.svg", svg)
        put(
            f"data/{s.key}.json",
            json_bytes(
                {
                    "section": s.key,
                    "seed": cfg.seed,
                    "quick": cfg.quick,
                    "data": {} if s.data is None else s.data.json(),
                    "measured": s.measured,
                }
            ),
        )
        for table in s.tables:
            put(f"data/{s.key}-{table.name}.csv", table_csv_bytes(table))
    summary = {
        "report": "grpo-align reproduce",
        "version": __version__,
        "seed": cfg.seed,
        "quick": cfg.quick,
        "passed": not any(s.verdict.failed for s in sections),
        "skipped": [s.key for s in sections if s.verdict.skipped],
        "sections": [
            {
                "name": s.key,
                "number": s.number,
                "title": s.title,
                "claim": s.claim,
                "verdict": s.verdict.label.lower(),
                "status": s.verdict.status,
                "verdict_text": s.verdict.text,
                "measured": s.measured,
            }
            for s in sections
        ],
    }
    put("summary.json", json_bytes(summary))
    mode = "quick" if cfg.quick else "full"
    header = {
        "title": "What is the alignment objective of GRPO? — reproduced",
        "subtitle": (
            f"Findings of Vojnovic & Yun (arXiv:2502.18548), each computed, plotted and verified by grpo-align "
            f"{__version__} ({mode} run, seed {cfg.seed})."
        ),
        "footer": (
            f"Generated by `grpo-align reproduce{' --quick' if cfg.quick else ''} --seed {cfg.seed}`. "
            "The data behind every figure is in data/, the figures as PNG and SVG in figures/, the verdicts in summary.json."
        ),
    }
    put("index.html", render_html(sections, pngs, header))
    put("report.md", render_markdown(sections, header))
    remove_stale(out, [s.key for s in sections], written)
    return written


def section_of(name: str, keys: Iterable[str]) -> str | None:
    """The section a file of figures/ or data/ belongs to: the longest key it starts with, then "-" or "."."""
    owners = [k for k in keys if name.startswith(f"{k}-") or name.startswith(f"{k}.")]
    return max(owners, key=len) if owners else None


def remove_stale(out: Path, rebuilt: Sequence[str], written: Sequence[Path]) -> list[Path]:
    """Delete the figures and data files of the rebuilt sections that this run did not write.

    A section rebuilt with ``--only`` (or whose figures were renamed) must not keep files from
    an earlier run beside its new ones; files of sections not rebuilt are left alone.
    """
    keep = {Path(p).resolve() for p in written}
    keys = {s.key for s in SECTIONS} | set(rebuilt)
    removed: list[Path] = []
    for folder in ("figures", "data"):
        for path in sorted((Path(out) / folder).glob("*")):
            if path.is_file() and path.resolve() not in keep and section_of(path.name, keys) in rebuilt:
                path.unlink()
                removed.append(path)
    return removed


def build_report(
    out: Path | str = "report",
    *,
    quick: bool = False,
    only: Iterable[str] | None = None,
    seed: int = 0,
    console: Console | None = None,
) -> ReportOutcome:
    """Run the selected sections and write the report to ``out``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError("--seed", f"expected a non-negative integer, got {seed!r}")
    if Path(out).exists() and not Path(out).is_dir():
        raise InputError("--out", f"{out} is a file; expected a folder for the report")
    specs = resolve_sections(only)
    cfg = ReportConfig(quick=quick, seed=seed)
    start = time.perf_counter()
    with style_context():
        sections = run_sections(specs, cfg, console)
        files = write_report(Path(out), sections, cfg)
    return ReportOutcome(Path(out), sections, files, time.perf_counter() - start)
