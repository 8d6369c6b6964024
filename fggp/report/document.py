"""The report as files: table.md (the whole comparison in Markdown), the numbers as CSV and the figures,
each written atomically into the report directory, after its inputs are checked (nothing is written for a
runs_dir without runs).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd

from ..train.checkpoint import atomic_write
from .cells import _table_cells
from .checks import check_report_dir, check_runs_dir
from .collapse import layer_collapse
from .efficiency import recorded_flops, size_speed
from .figures import plot_accuracy_vs_flops, plot_accuracy_vs_sparsity
from .loading import load_results
from .noise import noise_sentences
from .setups import SETTING
from .statistics import comparisons, summary
from .tables import (TABLE_LEGEND, collapse_markdown, not_applicable_markdown, paper_tables, problems_markdown,
                     setup_sections, size_speed_markdown)
from .versus import SUBJECT, resolve_subject, subject_vs_each, versus_markdown
from .views import not_applicable, overview

FIGURE_NAME = "accuracy_vs_sparsity"
FLOPS_FIGURE_NAME = "accuracy_vs_flops"
REPORT_FILES = ("summary.csv", "table.md", "table.csv", "comparisons.csv", "versus.csv", "collapse.csv",
                f"{FIGURE_NAME}.png", f"{FIGURE_NAME}.svg", f"{FLOPS_FIGURE_NAME}.png", f"{FLOPS_FIGURE_NAME}.svg")


def report_markdown(df: pd.DataFrame, runs_dir, figure_name: str | None = FIGURE_NAME + ".png",
                    flops_figure_name: str | None = FLOPS_FIGURE_NAME + ".png", subject: str | None = None) -> str:
    """The whole comparison as one Markdown document (what table.md holds); its first lines say, per setup, which
    differences are within noise at this number of seeds (``noise_sentences``); the FLOPs figure is linked only
    when some run recorded its FLOPs. ``subject`` (default: fggp, where it ran) is compared with every other
    recipe, paired by seed (``versus_markdown``)."""
    subject = resolve_subject(df, subject)
    lines = [f"# Pruning comparison: `{runs_dir}`", "", overview(df), ""]
    noise = noise_sentences(df)
    if noise:
        lines += [*[f"- {x}" for x in noise], ""]
    if paper_tables(df):
        lines += ["## Final test accuracy (%)", "", TABLE_LEGEND, "", setup_sections(df), ""]
        versus = versus_markdown(df, subject) if subject else ""
        if versus:
            lines += [f"## {subject} against every recipe, paired by seed", "", versus]
        if figure_name:
            lines += [f"![accuracy vs sparsity]({figure_name})", ""]
        if flops_figure_name and recorded_flops(df):
            lines += [f"![accuracy vs remaining FLOPs]({flops_figure_name})", ""]
        lines += ["## Size and speed", "", size_speed_markdown(df), ""]
    lines += ["## Layer collapse", "",
              "Runs whose final mask left a layer with fewer kept weights than the layer has outputs "
              "(some outputs then ignore the input entirely).", "", collapse_markdown(df), ""]
    if len(not_applicable(df)):
        lines += ["## Not applicable", "", "Grid points the sweep skipped as infeasible (not problems):", "",
                  not_applicable_markdown(df), ""]
    lines += ["## Problems", "", problems_markdown(df), ""]
    return "\n".join(lines)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def summary_with_size(df: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with each cell's size, FLOPs and measured speedup columns (``size_speed``): summary.csv."""
    size = size_speed(df).drop(columns="runs")
    return summary(df).merge(size, on=["setup", *SETTING, "recipe"], how="left")


def write_report(runs_dir: str | os.PathLike, report_dir: str | os.PathLike, subject: str | None = None) -> dict[str, Path]:
    """Write table.md, the numbers as CSV (summary, table cells, comparisons, collapse) and the figures
    (accuracy against sparsity and against remaining FLOPs, png and svg) into ``report_dir``, each atomically.
    A ``runs_dir`` that is absent or holds no run is refused first (``check_runs_dir``); one whose runs have
    not completed yet still gets a report saying so."""
    runs_dir, report_dir = check_runs_dir(runs_dir), check_report_dir(report_dir)
    df = load_results(runs_dir)
    subject = resolve_subject(df, subject)  # a subject that is not a recipe here: one line, nothing written
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: report_dir / name for name in REPORT_FILES}
    _write_text(paths["summary.csv"], summary_with_size(df).to_csv(index=False))
    _write_text(paths["table.csv"], _table_cells(df).to_csv(index=False))
    _write_text(paths["comparisons.csv"], comparisons(df).to_csv(index=False))
    versus = subject_vs_each(df, subject if subject else SUBJECT)  # no subject here: the columns, no rows
    _write_text(paths["versus.csv"], versus.to_csv(index=False))
    _write_text(paths["collapse.csv"], layer_collapse(df).to_csv(index=False))
    _write_text(paths["table.md"], report_markdown(df, runs_dir, subject=subject))
    for name, plot in ((FIGURE_NAME, plot_accuracy_vs_sparsity), (FLOPS_FIGURE_NAME, plot_accuracy_vs_flops)):
        fig = plot(df)
        for fmt in ("png", "svg"):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=150, bbox_inches="tight")
            atomic_write(paths[f"{name}.{fmt}"], lambda f: f.write(buffer.getvalue()))
    return paths
