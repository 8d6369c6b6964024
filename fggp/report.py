"""Aggregate run directories into the paper's comparison: a table, average ranks, a figure, a problems list.

Every run directory is one row, whatever state it is in, and every point a sweep planned but never
started is a ``missing`` row: a comparison that quietly leaves out the runs that crashed looks better
than it is. Only completed runs enter the numbers, and the number is the *final* test accuracy (the
best-over-epochs one chooses an epoch by looking at the test set).

Runs that differ in anything but arch, recipe, sparsities and seed (epochs, lr, dataset, a recipe's
rate, ...) are never pooled as if they were seeds: the differing fields become part of the row label,
e.g. ``fggp (rate=0.3)``.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .pruning import RECIPES
from .train import RunConfig
from .train.checkpoint import atomic_write, epochs_done

COLUMNS = ["run_id", "arch", "dataset", "recipe", "target_sparsity", "initial_sparsity", "seed", "status",
           "final_test_acc", "best_test_acc", "final_sparsity", "epochs_done", "wall_seconds", "error",
           "diverged_step", "variant", "run_dir"]
SETTING = ["arch", "initial_sparsity", "target_sparsity"]
SUMMARY_COLUMNS = [*SETTING, "recipe", "mean", "std", "n"]
PROBLEM_COLUMNS = ["run_id", "status", "arch", "recipe", "target_sparsity", "initial_sparsity", "seed",
                   "epochs_done", "diverged_step", "error"]
STATUS_ORDER = ["completed", "failed", "diverged", "incomplete", "missing", "unreadable"]
# Fields that name a run's place in the comparison: never a "variant" (nor those outside the run's identity).
KEY_FIELDS = {"arch", "recipe", "target_sparsity", "initial_sparsity", "seed"}
RECIPE_KNOBS = {"rate", "grad_window"}  # differ legitimately between recipes; a variant only within one
PRUNING_ONLY = RECIPE_KNOBS | {"prune_start_epoch", "prune_end_epoch", "prune_every"}  # meaningless for dense
EMPTY_CELL = "—"
FIGURE_NAME = "accuracy_vs_sparsity"


# ------------------------------------------------------------------------------------------- loading

def _read_json(path: Path):
    return json.loads(path.read_text())


def _row(run_id: str, config: dict, status: str, run_dir: Path | None, result: dict | None = None, **extra) -> dict:
    result = result or {}
    row = {
        "run_id": run_id,
        **{k: config.get(k) for k in ("arch", "dataset", "recipe", "target_sparsity", "initial_sparsity", "seed")},
        "status": status,
        **{k: result.get(k) for k in ("final_test_acc", "best_test_acc", "final_sparsity", "epochs_done",
                                      "wall_seconds", "error", "diverged_step")},
        "run_dir": None if run_dir is None else str(run_dir),
    }
    row.update(extra)
    row["_config"] = config
    return row


def _read_if_there(path: Path, problems: list[str]):
    """The JSON in ``path``; None when it is missing, or unreadable (then ``problems`` says so)."""
    if not path.is_file():
        return None
    try:
        return _read_json(path)
    except ValueError as err:
        problems.append(f"{path.name} unreadable: {err}")
        return None


def _read_run(run_dir: Path) -> dict | None:
    """One row for a directory holding config.json or result.json (a run that failed before writing
    config.json still has its config inside result.json); None for any other directory."""
    config_path, result_path = run_dir / "config.json", run_dir / "result.json"
    if not (config_path.is_file() or result_path.is_file()):
        return None
    problems: list[str] = []
    result = _read_if_there(result_path, problems)
    config = _read_if_there(config_path, problems)
    if config is None:
        config = (result or {}).get("config") or {}
    if problems:
        return _row(run_dir.name, config, "unreadable", run_dir, error="; ".join(problems))
    if result is None:
        return _row(run_dir.name, config, "incomplete", run_dir, epochs_done=epochs_done(run_dir))
    return _row(run_dir.name, config, result.get("status", "unreadable"), run_dir, result)


def _sweep_points(runs_dir: Path) -> list[dict]:
    points = []
    for path in (runs_dir / "sweep.json", runs_dir.parent / "sweep.json"):
        if path.is_file():
            try:
                points += _read_json(path).get("points", [])
            except ValueError as err:
                raise ValueError(f"sweep.json: {path} is not valid JSON ({err})") from None
    return points


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def _variants(configs: list[dict]) -> list[str]:
    """Per run, the identity fields that vary across the runs (recipe knobs: within its recipe)."""
    base = RunConfig()
    defaults = base.to_dict()
    ignored = KEY_FIELDS | (set(defaults) - set(base.identity()))
    full = [{**defaults, **c} for c in configs]

    def applies(c: dict, key: str) -> bool:
        return not (c.get("recipe") == "dense" and key in PRUNING_ONLY)

    keys = sorted(set().union(*full) - ignored) if full else []
    varying = set()
    for key in keys:
        if key in RECIPE_KNOBS:
            continue
        if len({_canonical(c.get(key)) for c in full if applies(c, key)}) > 1:
            varying.add(key)
    knobs = {}
    for key in RECIPE_KNOBS:
        by_recipe: dict[str, set] = {}
        for c in full:
            by_recipe.setdefault(c.get("recipe"), set()).add(_canonical(c.get(key)))
        knobs[key] = {r for r, values in by_recipe.items() if len(values) > 1}
    labels = []
    for c in full:
        shown = [k for k in keys if applies(c, k) and (k in varying or c.get("recipe") in knobs.get(k, ()))]
        labels.append(", ".join(f"{k}={_show(c.get(k))}" for k in shown))
    return labels


def _show(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return f"{value:g}" if isinstance(value, float) else str(value)


def load_results(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per run directory, plus one ``missing`` row per sweep point that never got a directory.

    ``status`` is the run's own (completed, failed, diverged), ``incomplete`` when it has a config but
    no result yet (running, or killed), ``missing`` when the sweep planned it and nothing was started,
    ``unreadable`` when its files cannot be parsed. Accuracies are fractions, as the runs write them.
    """
    runs_dir = Path(runs_dir)
    rows = []
    if runs_dir.is_dir():
        for d in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
            row = _read_run(d)
            if row is not None:
                rows.append(row)
    seen = {r["run_id"] for r in rows}
    for point in _sweep_points(runs_dir):
        if point["run_id"] in seen:
            continue
        seen.add(point["run_id"])
        d = runs_dir / point["run_id"]
        started = d.is_dir()  # a directory with neither file: a sweep took the point and died before the run began
        rows.append(_row(point["run_id"], point.get("config", {}), "incomplete" if started else "missing",
                         d if started else None))
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    for row, variant in zip(rows, _variants([r.pop("_config") for r in rows])):
        row["variant"] = variant
    df = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("seed", "epochs_done", "diverged_step"):  # whole numbers, some absent: not floats
        df[column] = pd.to_numeric(df[column], errors="coerce").astype("Int64")
    order = df["status"].map({s: i for i, s in enumerate(STATUS_ORDER)})
    return (df.assign(_order=order).sort_values(["arch", "recipe", "initial_sparsity", "target_sparsity", "seed",
                                                 "_order", "run_id"], na_position="last")
              .drop(columns="_order").reset_index(drop=True))


# --------------------------------------------------------------------------------------- aggregation

def _label(recipe: str, variant) -> str:
    return f"{recipe} ({variant})" if isinstance(variant, str) and variant else recipe


def _is_dense(label: str) -> bool:
    return label == "dense" or label.startswith("dense (")


def _recipe_order(label: str) -> tuple:
    names = list(RECIPES)
    base = label.split(" (", 1)[0]
    return (names.index(base) if base in names else len(names), label)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Long form over completed runs: mean, std (ddof=1; NaN for one seed) and n of final_test_acc
    (fractions) per arch, initial sparsity, target sparsity and recipe label."""
    done = df[df["status"] == "completed"]
    if done.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    variant = done["variant"] if "variant" in done else pd.Series("", index=done.index)
    done = done.assign(recipe=[_label(r, v) for r, v in zip(done["recipe"], variant)])
    out = (done.groupby(SETTING + ["recipe"])["final_test_acc"]
               .agg(mean="mean", std=lambda x: x.std(ddof=1), n="count").reset_index())
    out["n"] = out["n"].astype(int)
    out["_order"] = out["recipe"].map(_recipe_order)
    return out.sort_values(SETTING + ["_order"]).drop(columns="_order").reset_index(drop=True)[SUMMARY_COLUMNS]


def format_cell(mean: float, std: float, n: int) -> str:
    """Percent with one decimal: ``mean ± std (n=N)``, or ``mean (n=1)`` where no spread exists."""
    if n == 1 or std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{100 * mean:.1f} (n={n})"
    return f"{100 * mean:.1f} ± {100 * std:.1f} (n={n})"


def _columns(s: pd.DataFrame) -> list[tuple]:
    pruned = s[~s["recipe"].map(_is_dense)]
    columns = set(pruned[SETTING].itertuples(index=False, name=None))
    for arch in set(s["arch"]) - set(pruned["arch"]):  # only dense runs: still worth a column
        columns.add((arch, 0.0, 0.0))
    return sorted(columns)


def paper_table(df: pd.DataFrame) -> pd.DataFrame:
    """Recipes x (arch, initial sparsity, target sparsity), cells ``mean ± std (n=N)`` in percent.

    Dense is the first row and the upper bound, repeated in every column of its arch. The best mean
    of each column among the pruned recipes is in Markdown bold (all of them, on an exact tie).
    """
    s = summary(df)
    if s.empty:
        return pd.DataFrame(index=pd.Index([], name="recipe"))
    columns = _columns(s)
    labels = sorted(set(s["recipe"]), key=lambda lab: (not _is_dense(lab), _recipe_order(lab)))
    cells = {}
    for col in columns:
        arch = col[0]
        here = s[(s["arch"] == arch) & (s["initial_sparsity"] == col[1]) & (s["target_sparsity"] == col[2])]
        pruned = here[~here["recipe"].map(_is_dense)]
        best = pruned["mean"].max() if len(pruned) else None
        dense = s[(s["arch"] == arch) & s["recipe"].map(_is_dense)]
        column = {}
        for r in list(pruned.itertuples()) + list(dense.itertuples()):
            text = format_cell(r.mean, r.std, r.n)
            if not _is_dense(r.recipe) and np.isclose(r.mean, best, rtol=0, atol=1e-12):
                text = f"**{text}**"
            column[r.recipe] = text
        cells[col] = [column.get(lab, EMPTY_CELL) for lab in labels]
    table = pd.DataFrame(cells, index=pd.Index(labels, name="recipe"))
    table.columns = pd.MultiIndex.from_tuples(columns, names=SETTING)
    return table


def average_rank(df: pd.DataFrame) -> pd.Series:
    """Mean over settings of each pruned recipe's rank by mean final accuracy (1 = best; ties share the
    average rank); a recipe is averaged over the settings where it has results. Lower is better."""
    s = summary(df)
    s = s[~s["recipe"].map(_is_dense)]
    if s.empty:
        return pd.Series(dtype=float, name="average rank", index=pd.Index([], name="recipe"))
    ranks = s.groupby(SETTING)["mean"].rank(method="average", ascending=False)
    mean_rank = ranks.groupby(s["recipe"]).mean()
    order = sorted(mean_rank.index, key=lambda lab: (mean_rank[lab], lab))
    return mean_rank[order].rename("average rank").rename_axis("recipe")


def problems(df: pd.DataFrame) -> pd.DataFrame:
    """Every run that did not complete, with why (error) or where (diverged_step) it stopped."""
    bad = df[df["status"] != "completed"]
    order = bad["status"].map({s: i for i, s in enumerate(STATUS_ORDER)})
    return (bad.assign(_order=order).sort_values(["_order", "run_id"]).drop(columns="_order")
               .reset_index(drop=True)[PROBLEM_COLUMNS])


def overview(df: pd.DataFrame) -> str:
    """One line of counts per status, saying plainly when nothing completed."""
    if len(df) == 0:
        return "No runs found: no completed runs to compare."
    counts = df["status"].value_counts()
    parts = ", ".join(f"{counts[s]} {s}" for s in [*STATUS_ORDER, *sorted(set(counts.index) - set(STATUS_ORDER))]
                      if s in counts)
    runs = f"{len(df)} run{'s' if len(df) != 1 else ''}"
    if counts.get("completed", 0) == 0:
        return f"No completed runs to compare ({runs}: {parts})."
    return f"{runs}: {parts}."


# ---------------------------------------------------------------------------------------------- figure

def plot_accuracy_vs_sparsity(df: pd.DataFrame) -> Figure:
    """Mean final accuracy against target sparsity, one panel per arch, one line per recipe (line style
    per initial sparsity), std over seeds as error bars, dense as the dashed ceiling."""
    s = summary(df)
    archs = sorted(set(s["arch"])) or [None]
    fig = Figure(figsize=(5.5 * len(archs), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(archs), squeeze=False)[0])
    if s.empty:
        axes[0].text(0.5, 0.5, "no completed runs", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
        return fig
    labels = sorted(set(s["recipe"]), key=_recipe_order)
    colors = {lab: f"C{i % 10}" for i, lab in enumerate(labels)}
    styles = ["-", "--", ":", "-."]
    initials = sorted(set(s.loc[~s["recipe"].map(_is_dense), "initial_sparsity"]))
    for ax, arch in zip(axes, archs):
        here = s[s["arch"] == arch]
        for r in here[here["recipe"].map(_is_dense)].itertuples():
            ax.axhline(100 * r.mean, color="k", ls="--", lw=1, label=f"{r.recipe} ({100 * r.mean:.1f})")
            if r.n > 1:
                ax.axhspan(100 * (r.mean - r.std), 100 * (r.mean + r.std), color="k", alpha=0.06, lw=0)
        pruned = here[~here["recipe"].map(_is_dense)]
        for (label, initial), g in pruned.groupby(["recipe", "initial_sparsity"], sort=False):
            g = g.sort_values("target_sparsity")
            style = styles[initials.index(initial) % len(styles)]
            name = label if len(initials) == 1 else f"{label}, initial {initial:g}"
            ax.errorbar(g["target_sparsity"], 100 * g["mean"], yerr=100 * g["std"].fillna(0), color=colors[label],
                        ls=style, marker="o", ms=4, capsize=3, label=name)
        if len(pruned):
            ax.set_xticks(sorted(set(pruned["target_sparsity"])))
        ax.set_title(arch)
        ax.set_xlabel("target sparsity")
        ax.set_ylabel("final test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------- report

def _cell(value) -> str:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    text = f"{value:g}" if isinstance(value, float) else str(value)
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


def report_markdown(df: pd.DataFrame, runs_dir, figure_name: str | None = FIGURE_NAME + ".png") -> str:
    """The whole comparison as one Markdown document (what table.md holds)."""
    lines = [f"# Pruning comparison: `{runs_dir}`", "", overview(df), ""]
    table = paper_table(df)
    if len(table):
        ranks = average_rank(df)
        settings = summary(df).groupby("recipe").size()
        lines += [
            "## Final test accuracy (%)", "",
            "Mean ± std over seeds (std with ddof=1), n = completed seeds. Columns: arch · initial sparsity · "
            "target sparsity. Dense is the unpruned upper bound; **bold** is the best pruned recipe of the column.",
            "", markdown_table(table), "",
            "## Average rank", "",
            "Rank of each pruned recipe per column by mean final accuracy (1 = best, ties share the average), "
            "averaged over the columns where it has results.", "",
            markdown_table(pd.DataFrame({"average rank": ranks.round(3), "settings": settings[ranks.index]})), "",
        ]
        if figure_name:
            lines += [f"![accuracy vs sparsity]({figure_name})", ""]
    lines += ["## Problems", ""]
    bad = problems(df)
    lines += [markdown_table(bad, index=False, empty="None: every run completed."), ""]
    return "\n".join(lines)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_report(runs_dir: str | os.PathLike, report_dir: str | os.PathLike) -> dict[str, Path]:
    """Write summary.csv, table.md, table.csv and the figure (png, svg) into ``report_dir``, each atomically.

    Works on an empty or absent ``runs_dir``: the report then says there are no completed runs.
    """
    runs_dir, report_dir = Path(runs_dir), Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    df = load_results(runs_dir)
    paths = {name: report_dir / name for name in
             ("summary.csv", "table.md", "table.csv", f"{FIGURE_NAME}.png", f"{FIGURE_NAME}.svg")}
    _write_text(paths["summary.csv"], summary(df).to_csv(index=False))
    table = paper_table(df)
    _write_text(paths["table.csv"], table.to_csv() if len(table) else "recipe\n")
    _write_text(paths["table.md"], report_markdown(df, runs_dir))
    fig = plot_accuracy_vs_sparsity(df)
    for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=150)
        atomic_write(paths[f"{FIGURE_NAME}.{fmt}"], lambda f: f.write(buffer.getvalue()))
    return paths


__all__ = ["load_results", "summary", "paper_table", "average_rank", "problems", "overview",
           "plot_accuracy_vs_sparsity", "markdown_table", "report_markdown", "write_report", "format_cell"]
