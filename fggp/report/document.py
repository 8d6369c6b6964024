"""The report as files: table.md (the whole comparison in Markdown), the numbers as CSV and the figure,
each written atomically into the report directory.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd

from ..train.checkpoint import atomic_write
from .cells import _table_cells
from .collapse import layer_collapse
from .figures import plot_accuracy_vs_sparsity
from .loading import load_results
from .statistics import comparisons, summary
from .tables import (TABLE_LEGEND, collapse_markdown, not_applicable_markdown, paper_tables, problems_markdown,
                     setup_sections)
from .views import not_applicable, overview

FIGURE_NAME = "accuracy_vs_sparsity"
REPORT_FILES = ("summary.csv", "table.md", "table.csv", "comparisons.csv", "collapse.csv",
                f"{FIGURE_NAME}.png", f"{FIGURE_NAME}.svg")


def report_markdown(df: pd.DataFrame, runs_dir, figure_name: str | None = FIGURE_NAME + ".png") -> str:
    """The whole comparison as one Markdown document (what table.md holds)."""
    lines = [f"# Pruning comparison: `{runs_dir}`", "", overview(df), ""]
    if paper_tables(df):
        lines += ["## Final test accuracy (%)", "", TABLE_LEGEND, "", setup_sections(df), ""]
        if figure_name:
            lines += [f"![accuracy vs sparsity]({figure_name})", ""]
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


def write_report(runs_dir: str | os.PathLike, report_dir: str | os.PathLike) -> dict[str, Path]:
    """Write table.md, the numbers as CSV (summary, table cells, comparisons, collapse) and the figure
    (png, svg) into ``report_dir``, each atomically. Works on an empty or absent ``runs_dir``."""
    runs_dir, report_dir = Path(runs_dir), Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    df = load_results(runs_dir)
    paths = {name: report_dir / name for name in REPORT_FILES}
    _write_text(paths["summary.csv"], summary(df).to_csv(index=False))
    _write_text(paths["table.csv"], _table_cells(df).to_csv(index=False))
    _write_text(paths["comparisons.csv"], comparisons(df).to_csv(index=False))
    _write_text(paths["collapse.csv"], layer_collapse(df).to_csv(index=False))
    _write_text(paths["table.md"], report_markdown(df, runs_dir))
    fig = plot_accuracy_vs_sparsity(df)
    for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=150, bbox_inches="tight")
        atomic_write(paths[f"{FIGURE_NAME}.{fmt}"], lambda f: f.write(buffer.getvalue()))
    return paths
