"""The tables as text: GitHub Markdown for table.md, the notebook and the evidence document.

Cells read ``mean [95% CI] n=N`` in percent with their marks (an interval past 0% or 100% shown clipped, ^); the
paired tests print the difference in percentage points with its interval, p, p (BH), a verdict in words and, for a
gap within noise, the seeds a paired test would need to separate it; an empty table is a sentence.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .cells import CLIP_MARK, COLLAPSE_MARK, EMPTY_CELL, FEW_MARK, NA_CELL, _table_cells, average_rank
from .collapse import layer_collapse
from .efficiency import NOT_RECORDED, size_speed, size_text, speed_text
from .identical import identical_masks, identical_reason
from .loading import NO_RUNS_HINT, NOT_APPLICABLE, ONE_SETUP
from .setups import SETTING, _is_dense, _recipe_order, setups
from .statistics import ALPHA, FEW_SEEDS, POWER, SEEDS_SHOWN, clipped_interval, comparisons
from .views import not_applicable, problems, runs_view, short_id


def format_cell(mean: float, low: float, high: float, n: int) -> str:
    """Percent with one decimal: ``mean [low, high] n=N`` (the 95% interval), and the few-seeds mark. An interval
    past 100% or below 0% is shown clipped at the bound and marked: ``89.0 [76.3, 100.0]^ n=2 †``."""
    mark = f" {FEW_MARK}" if n < FEW_SEEDS else ""
    if n < 2 or math.isnan(low):
        return f"{mean:.1f} n={n}{mark}"
    low, high, clipped = clipped_interval(low, high)
    return f"{mean:.1f} [{low:.1f}, {high:.1f}]{CLIP_MARK if clipped else ''} n={n}{mark}"


def column_title(col: tuple) -> str:
    """``tiny · 90%``, or ``tiny · 50→90%`` with an initial sparsity; ``tiny · dense`` for dense-only."""
    arch, initial, target = col
    if target == 0 and initial == 0:
        return f"{arch} · dense"
    start = f"{100 * initial:g}→" if initial else ""
    return f"{arch} · {start}{100 * target:g}%"


def paper_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One table per setup: recipes x columns (``column_title``), cells ``mean [95% CI] n=N`` in percent.

    Dense is the first row and the upper bound, repeated in every column of its arch. The best mean of
    each column among the pruned recipes is in Markdown bold (all of them, on an exact tie); "n/a" is a
    point the sweep found infeasible; † marks n < 3, ‡ a cell with a collapsed-layer run.
    """
    cells = _table_cells(df)
    tables = {}
    for setup in setups(df):
        here = cells[cells["setup"] == setup]
        if here.empty:
            continue
        columns = sorted(set(here[SETTING].itertuples(index=False, name=None)))
        labels = sorted(set(here["recipe"]), key=lambda lab: (not _is_dense(lab), _recipe_order(lab)))
        data = {}
        for col in columns:
            in_col = here[(here["arch"] == col[0]) & (here["initial_sparsity"] == col[1])
                          & (here["target_sparsity"] == col[2])]
            column = {}
            for r in in_col.itertuples():
                if r.state == NOT_APPLICABLE:
                    column[r.recipe] = NA_CELL
                    continue
                text = format_cell(r.mean_pct, r.ci95_low_pct, r.ci95_high_pct, r.n)
                if r.collapsed_runs:
                    text += f" {COLLAPSE_MARK}"
                column[r.recipe] = f"**{text}**" if r.best else text
            data[column_title(col)] = [column.get(lab, EMPTY_CELL) for lab in labels]
        tables[setup] = pd.DataFrame(data, index=pd.Index(labels, name="recipe"))
    return tables


def _cell(value) -> str:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        text = f"{value:.4g}"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, index: bool = True, empty: str = "(none)") -> str:
    """A DataFrame as a GitHub Markdown table (no ``tabulate`` needed); MultiIndex columns as ``a · b · c``.

    An empty frame gives ``empty`` instead: a table with a header and no rows reads as a rendering bug.
    """
    if frame.empty:
        return empty

    def head(col):
        return " · ".join(_cell(c) for c in col) if isinstance(col, tuple) else _cell(col)

    header = ([_cell(frame.index.name or "")] if index else []) + [head(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for key, row in frame.iterrows():
        cells = ([_cell(key)] if index else []) + [_cell(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _signed(x: float) -> str:
    return "" if math.isnan(x) else f"{x:+.2f}"  # two decimals: gaps between good recipes are often < 0.1 pp


def comparisons_markdown(c: pd.DataFrame) -> str:
    """Best against runner-up per column, for reading: difference and interval in percentage points."""
    if c.empty:
        return "(no pruned recipes to compare)"
    view = pd.DataFrame({
        "column": [column_title(t) for t in c[SETTING].itertuples(index=False, name=None)],
        "best": c["best"], "runner-up": c["runner_up"].fillna(EMPTY_CELL), "pairs": c["pairs"],
        **paired_columns(c, "best − runner-up (pp)"),
    })
    return markdown_table(view, index=False)


SEEDS_COLUMN = f"seeds for {100 * POWER:g}% power"


def seeds_text(n: float) -> str:
    """A ``seeds_needed`` as a table shows it: the number, ``> 1000`` beyond ``SEEDS_SHOWN`` (practically equal at
    that spread), ``never (equal means)`` for a zero gap, empty where there is none (not within noise)."""
    if n is None or pd.isna(n):
        return ""
    if math.isinf(n):
        return "never (equal means)"
    return f"> {SEEDS_SHOWN}" if n > SEEDS_SHOWN else f"{n:.0f}"


def paired_columns(c: pd.DataFrame, difference: str, p_format: str = ".3f") -> dict:
    """A paired test's columns as printed (``difference`` names the first): the mean difference and its
    interval in percentage points, p, p (BH), the verdict and, under a verdict within noise, the seeds for 80%
    power (``seeds_text``). Shared by every table of paired tests."""
    def p_text(p: float) -> str:
        return "" if math.isnan(p) else format(p, p_format)

    seeds = c["seeds_needed"] if "seeds_needed" in c else pd.Series(math.nan, index=c.index)
    return {
        difference: c["diff_mean_pct"].map(_signed),
        "95% CI (pp)": [f"[{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else ""
                        for lo, hi in zip(c["diff_ci95_low_pct"], c["diff_ci95_high_pct"])],
        "p": c["p_value"].map(p_text), "p (BH)": c["p_adjusted"].map(p_text), "verdict": c["verdict"],
        SEEDS_COLUMN: seeds.map(seeds_text),
    }


def collapse_markdown(df: pd.DataFrame) -> str:
    """The collapsed layers of ``df``'s runs, by run and layer name, or a sentence saying there are none."""
    c = layer_collapse(df)
    if c.empty:
        if not (df["status"] == "completed").any():
            return "None (no completed runs yet)."
        return "None: every layer of every final mask keeps at least as many weights as it has outputs."
    view = pd.DataFrame({
        "id": c["run_id"].map(short_id), "setup": c["setup"], "recipe": c["recipe"],
        "sparsity %": (100 * c["target_sparsity"]).map(lambda x: f"{x:g}"), "seed": c["seed"], "layer": c["layer"],
        "kept / outputs": [f"{k} / {o}" if o is not None and not pd.isna(o) else f"{k} / ?"
                           for k, o in zip(c["kept"], c["outputs"])],
        "kept %": c["density_pct"].map(lambda x: f"{x:.2g}"),
    })
    if c["setup"].nunique() <= 1:
        view = view.drop(columns="setup")
    return markdown_table(view, index=False)


def _one_setup(frame: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="setup") if df["setup"].nunique() <= 1 else frame


def problems_markdown(df: pd.DataFrame) -> str:
    """The problems with their full run ids (the directory to open); ``none`` said in words when none."""
    return markdown_table(_one_setup(problems(df), df), index=False,
                          empty="None: every run completed." if len(df) else "None (no runs yet).")


def not_applicable_markdown(df: pd.DataFrame) -> str:
    """The infeasible points, one line per configuration with its seeds together."""
    na = not_applicable(df)
    if na.empty:
        return "None: the sweep found every point feasible."
    keys = [c for c in na.columns if c != "seed"]
    grouped = (na.fillna({"reason": ""}).groupby(keys, sort=False, dropna=False)["seed"]
                 .agg(lambda x: ", ".join(str(v) for v in sorted(x.dropna()))).rename("seeds").reset_index())
    return markdown_table(_one_setup(grouped[[*keys[:-1], "seeds", "reason"]], df), index=False)


def unequal_seeds_note(c: pd.DataFrame) -> str:
    """Where a setup's columns hold recipes with different seeds, how they are ranked (``ranking_means``):
    empty when every column's recipes have the same seeds."""
    if "ranked_seeds" not in c or c["ranked_seeds"].isna().all():
        return ""
    def titles(rows):
        return ", ".join(column_title(t) for t in rows[SETTING].itertuples(index=False, name=None))

    rows = c[c["ranked_seeds"].notna()]
    common, few = rows[rows["ranked_seeds"] >= 2], rows[rows["ranked_seeds"] < 2]
    parts = []
    if len(common):
        low, high = int(common["ranked_seeds"].min()), int(common["ranked_seeds"].max())
        seeds = str(low) if low == high else f"{low} to {high}"
        parts.append(f"In {titles(common)} the recipes have different seeds: bold, ranks and best against runner-up "
                     f"compare their means over the {seeds} seeds all of the column's recipes have; a cell shows the "
                     "mean over its own seeds (n).")
    if len(few):
        parts.append(f"In {titles(few)} the recipes have different seeds and fewer than two in common: bold, ranks "
                     "and best against runner-up use each cell's own mean, a mean over other seeds than its "
                     "neighbours'.")
    return " ".join(parts)


def setup_sections(df: pd.DataFrame) -> str:
    """Per setup: its table, the best-vs-runner-up test and the average ranks, in Markdown."""
    tables = paper_tables(df)
    if not tables:
        return f"No completed runs yet: {NO_RUNS_HINT}."
    comps, ranks = comparisons(df), average_rank(df)
    shared = df.attrs.get("shared_setup") or []
    lines = []
    if len(tables) > 1:
        lines += [f"The runs differ in budget or data, so they form {len(tables)} setups: each has its own "
                  "table and ranks, and no recipe is ranked against a run of another setup.", ""]
    if shared:
        lines += [f"Shared by every run: {', '.join(shared)}.", ""]
    for setup, table in tables.items():
        if len(tables) > 1 or setup != ONE_SETUP:
            lines += [f"### Setup: {setup}", ""]
        lines += [markdown_table(table), ""]
        note = unequal_seeds_note(comps[comps["setup"] == setup])
        if note:
            lines += [note, ""]
        lines += ["Best against runner-up, paired by seed:", "", comparisons_markdown(comps[comps["setup"] == setup]), ""]
        notes = identical_masks_notes(df, setup)
        if notes:
            lines += [*notes, ""]
        r = ranks[ranks["setup"] == setup].set_index("recipe")[["average_rank", "columns"]]
        if r["columns"].max() > 1:
            lines += ["Average rank over this setup's columns (1 = best):", "",
                      markdown_table(r.rename(columns={"average_rank": "average rank"})), ""]
    return "\n".join(lines)


def identical_masks_notes(df: pd.DataFrame, setup: str | None = None) -> list[str]:
    """One sentence per pair of recipes that chose identical final masks on every seed (in ``setup``, or in any),
    with why: equal numbers there are one result, not a tie between two methods."""
    same = identical_masks(df)
    if setup is not None:
        same = same[same["setup"] == setup]
    out = []
    for pair, g in same.groupby("recipes", sort=False):
        columns = ", ".join(column_title(t) for t in g[SETTING].itertuples(index=False, name=None))
        out.append(f"{pair.replace(' = ', ' and ')} chose identical final masks on every seed at {columns}: "
                   f"{identical_reason(pair)}. Their rows there are one result, not two.")
    return out


SIZE_LEGEND = ("Sparse file: the bytes of `model.sparse.safetensors` against the dense state_dict, mean over the "
               "cell's runs (1 KB = 1000 bytes). FLOPs xN: the dense network's FLOPs over the pruned one's (the "
               "inverse of the cell's mean remaining FLOPs). Measured: dense ms / sparse ms of one forward pass at "
               "each batch size, for runs exported with `fggp export RUN_DIR`; it stays far below the FLOP ratio "
               "where no sparse kernel serves a layer. (k of n runs): only k of the cell's n runs recorded the "
               f"number. {NOT_RECORDED}: not recorded (runs from before these fields, or never exported).")


def size_speed_markdown(df: pd.DataFrame, heading: str = "###") -> str:
    """Per setup, a compact table of each cell's sparse file against the dense one and its FLOP ratio beside the
    speedup measured, and where it was measured; one sentence when no run recorded any of them."""
    s = size_speed(df)
    if s.empty:
        return f"No completed runs yet: {NO_RUNS_HINT}."
    if not (s["sized_runs"].sum() or s["flops_runs"].sum() or s["exported_runs"].sum()):
        return (f"No run recorded its file size, FLOPs or a measured speed ({NOT_RECORDED} everywhere): the runs are "
                "older than these fields; `fggp export RUN_DIR` measures one.")
    labels = setups(df)
    lines = [SIZE_LEGEND, ""]
    for setup in labels:
        here = s[s["setup"] == setup]
        if here.empty:
            continue
        if len(labels) > 1 or setup != ONE_SETUP:
            lines += [f"{heading} Size and speed, setup: {setup}", ""]
        view = pd.DataFrame({
            "column": [column_title(t) for t in here[SETTING].itertuples(index=False, name=None)],
            "recipe": here["recipe"], "sparse file": [size_text(r) for _, r in here.iterrows()],
            "FLOPs and measured speedup": [speed_text(r) for _, r in here.iterrows()],
        })
        lines += [markdown_table(view, index=False), ""]
        where = sorted({w for m in here["measured_on"] if m for w in m.split("; ")})
        if where:
            lines += [f"Measured on: {'; '.join(where)}.", ""]
    broken = df[(df["status"] == "completed") & df["export_error"].notna()] if "export_error" in df else df.iloc[:0]
    if len(broken):
        lines += [f"Unreadable export.json, its numbers left out: "
                  + "; ".join(f"{short_id(i)} ({e.split(': ', 2)[-1]})" for i, e in zip(broken["run_id"],
                                                                                   broken["export_error"])) + ".", ""]
    return "\n".join(lines)


TABLE_LEGEND = (f"Cells: mean final test accuracy in percent, its 95% t interval over seeds in brackets, n = "
                f"completed seeds; {FEW_MARK} marks n < {FEW_SEEDS} (an interval from two seeds is very wide, "
                f"from one there is none); {COLLAPSE_MARK} marks a cell with a run whose final mask collapsed a "
                f"layer; {NA_CELL}: the sweep found the point infeasible; {EMPTY_CELL}: no completed run. "
                "Dense is the unpruned upper bound. **Bold** is the best pruned mean of the column, where at least two "
                "pruned recipes compete (a recipe alone in its column has nothing to beat); whether it "
                f"is really ahead is the paired test below each table (separated when p < {ALPHA} after the "
                "Benjamini-Hochberg adjustment over the table's columns, p (BH); 'within noise' means the seeds "
                f"cannot tell the two apart). {CLIP_MARK} after an interval: it passed 100% (or 0%), which no accuracy "
                "can, and is shown clipped at the bound (the CSVs keep it as computed). Seeds for "
                f"{100 * POWER:g}% power, under a gap within noise: how many paired seeds a paired t test at p < "
                f"{ALPHA} would need to separate, {100 * POWER:g}% of the time, a true gap the size of the observed "
                "mean difference at the observed spread of the differences (at the unadjusted level: over several "
                f"columns the adjustment needs more); > {SEEDS_SHOWN}: the two are practically equal at that spread.")


def runs_markdown(df: pd.DataFrame) -> str:
    """``runs_view`` as a Markdown table (compact in a notebook and on GitHub); a sentence when empty."""
    return markdown_table(runs_view(df), index=False, empty=f"(no runs: {NO_RUNS_HINT})")
