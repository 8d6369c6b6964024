"""The figures: mean final accuracy with its 95% interval against target sparsity, and against the FLOPs that
remain (the second view of the Global MP paper), one panel per setup and arch.

Setups never share axes; the legend sits outside the axes, below them, never over the data.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .cells import _table_cells
from .efficiency import size_speed
from .loading import NO_RUNS_HINT, ONE_SETUP
from .setups import SETTING, _dense, _is_dense, _pruned, _recipe_order, setups
from .statistics import FEW_SEEDS, summary


def _no_runs_figure() -> Figure:
    fig = Figure(figsize=(5.5, 3), layout="constrained")
    ax = fig.subplots()
    ax.text(0.5, 0.5, f"no completed runs yet:\n{NO_RUNS_HINT.replace('`', '')}", ha="center", va="center",
            transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def _draw_dense(ax, here: pd.DataFrame, handles: dict) -> None:
    """Dense as the dashed ceiling, its 95% interval as a grey band."""
    for r in here[_dense(here["recipe"])].itertuples():
        line = ax.axhline(r.mean_pct, color="k", ls="--", lw=1)
        handles.setdefault(r.recipe, line)
        if r.n > 1 and not math.isnan(r.ci95_low_pct):
            ax.axhspan(r.ci95_low_pct, r.ci95_high_pct, color="k", alpha=0.07, lw=0)


def _draw_series(ax, x, g: pd.DataFrame, color: str, style: str, name: str, handles: dict) -> None:
    """One recipe's cells: mean with its 95% interval, hollow where n < 3, a cross where a run collapsed."""
    yerr = np.vstack([g["mean_pct"] - g["ci95_low_pct"], g["ci95_high_pct"] - g["mean_pct"]])
    bars = ax.errorbar(x, g["mean_pct"], yerr=np.nan_to_num(yerr), color=color, ls=style,
                       marker="o", ms=5, capsize=3, label=name)
    few = (g["n"] < FEW_SEEDS).to_numpy()
    if few.any():  # hollow markers: too few seeds to trust the interval
        ax.plot(x[few], g["mean_pct"][few], "o", ms=5, mfc="white", color=color, zorder=4)
    collapsed = (g["collapsed_runs"] > 0).to_numpy()
    if collapsed.any():
        ax.plot(x[collapsed], g["mean_pct"][collapsed], "x", ms=9, mew=1.5, color="k", zorder=5)
    handles.setdefault(name, bars)


def _accuracy_axis(ax, here: pd.DataFrame, setup: str, arch: str) -> None:
    lows = pd.concat([here["mean_pct"], here["ci95_low_pct"]]).dropna()
    highs = pd.concat([here["mean_pct"], here["ci95_high_pct"]]).dropna()
    ax.set_ylim(max(0.0, lows.min() - 3), min(100.0, highs.max() + 3))
    ax.set_title(arch if setup == ONE_SETUP else f"{arch}\n{setup}", fontsize="medium")
    ax.set_ylabel("final test accuracy (%)")
    ax.grid(alpha=0.3)


def _legend(fig: Figure, handles: dict, cells: pd.DataFrame, panels: list) -> None:
    """Below the axes, never over the data: dense first, then the recipes, then what the marks mean."""
    names = sorted(handles, key=lambda k: (not _is_dense(k), _recipe_order(k)))
    handles = {k: handles[k] for k in names}
    if len(cells) and (cells["n"] < FEW_SEEDS).any():
        handles[f"hollow: n < {FEW_SEEDS} seeds"] = Line2D([], [], ls="", marker="o", mfc="white", color="0.3")
    if len(cells) and (cells["collapsed_runs"] > 0).any():
        handles["cross: a run collapsed a layer"] = Line2D([], [], ls="", marker="x", ms=8, mew=1.5, color="k")
    fig.legend(list(handles.values()), [f"{k} (dashed)" if _is_dense(k) else k for k in handles],
               loc="outside lower center", ncols=min(4, 2 * len(panels), len(handles)), fontsize="small",
               frameon=False)


def plot_accuracy_vs_sparsity(df: pd.DataFrame) -> Figure:
    """Mean final accuracy against target sparsity: one panel per setup and arch (setups never share
    axes), one line per recipe, 95% t intervals as error bars, hollow markers where n < 3, a cross on a
    cell with a collapsed layer, dense as the dashed ceiling with its interval as a band.

    The sparsities are evenly spaced categories (90, 95, 99% are where recipes differ; on a linear axis
    they crowd together) and each recipe is nudged sideways so that equal means stay visible. The
    legend sits outside the axes, below them, never over the data.
    """
    s = summary(df)
    cells = _table_cells(df)
    cells = _pruned(cells[cells["state"] == "completed"]) if len(cells) else cells
    panels = [(st, arch) for st in setups(df) for arch in sorted(set(s.loc[s["setup"] == st, "arch"]))]
    if not panels:
        return _no_runs_figure()
    fig, axes, colors, styles, initials = _canvas(s, panels)
    handles: dict[str, object] = {}
    for ax, (setup, arch) in zip(axes, panels):
        here = s[(s["setup"] == setup) & (s["arch"] == arch)]
        pruned = cells[(cells["setup"] == setup) & (cells["arch"] == arch)] if len(cells) else cells
        _draw_dense(ax, here, handles)
        targets = sorted(set(pruned["target_sparsity"])) if len(pruned) else []
        series = list(pruned.groupby(["recipe", "initial_sparsity"], sort=False)) if len(pruned) else []
        series.sort(key=lambda item: (_recipe_order(item[0][0]), item[0][1]))
        for i, ((label, initial), g) in enumerate(series):
            g = g.sort_values("target_sparsity")
            x = np.array([targets.index(t) for t in g["target_sparsity"]]) + 0.07 * (i - (len(series) - 1) / 2)
            style = styles[initials.index(initial) % len(styles)]
            name = label if len(initials) == 1 else f"{label}, initial {initial:g}"
            _draw_series(ax, x, g, colors[label], style, name, handles)
        ax.set_xticks(range(len(targets)), [f"{100 * t:g}%" for t in targets])
        ax.set_xlim(-0.5, max(len(targets), 1) - 0.5)
        _accuracy_axis(ax, here, setup, arch)
        ax.set_xlabel("target sparsity")
    _legend(fig, handles, cells, panels)
    return fig


def _canvas(s: pd.DataFrame, panels: list) -> tuple:
    """One panel per (setup, arch), a colour per pruned recipe and a line style per initial sparsity: the same
    in both accuracy figures, so a recipe looks alike in each."""
    fig = Figure(figsize=(max(5.0, 4.6 * len(panels)), 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    labels = sorted(set(s["recipe"]), key=_recipe_order)
    colors = {lab: f"C{i % 10}" for i, lab in enumerate(lab for lab in labels if not _is_dense(lab))}
    return fig, axes, colors, ["-", "--", ":", "-."], sorted(set(_pruned(s)["initial_sparsity"]))


NUDGE_DECADES = 0.01  # recipes' sideways offset on the log FLOPs axis: x 1.023 per recipe


def plot_accuracy_vs_flops(df: pd.DataFrame) -> Figure:
    """Mean final accuracy against remaining FLOPs (sparse / dense, in percent on a log axis), beside accuracy
    against sparsity: two recipes at one sparsity can leave very different arithmetic, since a layer's weights
    cost as many FLOPs as its output positions (Gupta et al. 2024 plot both). Same style as
    ``plot_accuracy_vs_sparsity``: one panel per setup and arch, one line per recipe through its targets (at the
    cell's mean remaining FLOPs over its runs; recipes nudged apart by ``NUDGE_DECADES`` each, about 2%, so that
    equal points stay visible), 95% intervals, hollow where n < 3, a cross on a collapsed cell; dense is the
    dashed ceiling and a black point at 100%. Cells whose runs recorded no FLOPs are left out, and the panel says
    how many."""
    s = summary(df)
    cells = _table_cells(df)
    cells = cells[cells["state"] == "completed"] if len(cells) else cells
    panels = [(st, arch) for st in setups(df) for arch in sorted(set(s.loc[s["setup"] == st, "arch"]))]
    if not panels:
        return _no_runs_figure()
    flops = size_speed(df)[["setup", *SETTING, "recipe", "flops_remaining"]]
    cells = cells.merge(flops, on=["setup", *SETTING, "recipe"], how="left")
    dense_cells = cells[_dense(cells["recipe"])].drop_duplicates(["setup", "arch", "recipe"])  # one per column
    cells = _pruned(cells)
    fig, axes, colors, styles, initials = _canvas(s, panels)
    handles: dict[str, object] = {}
    for ax, (setup, arch) in zip(axes, panels):
        here = s[(s["setup"] == setup) & (s["arch"] == arch)]
        pruned = cells[(cells["setup"] == setup) & (cells["arch"] == arch)]
        _draw_dense(ax, here, handles)
        for r in dense_cells[(dense_cells["setup"] == setup) & (dense_cells["arch"] == arch)].itertuples():
            half = [[r.mean_pct - r.ci95_low_pct], [r.ci95_high_pct - r.mean_pct]]
            ax.errorbar([100.0], [r.mean_pct], yerr=np.nan_to_num(half), color="k", marker="o", ms=5, capsize=3,
                        mfc="white" if r.n < FEW_SEEDS else "k", zorder=4)
        known = pruned[pruned["flops_remaining"].notna()]
        series = list(known.groupby(["recipe", "initial_sparsity"], sort=False))
        series.sort(key=lambda item: (_recipe_order(item[0][0]), item[0][1]))
        for i, ((label, initial), g) in enumerate(series):
            g = g.sort_values("flops_remaining")
            style = styles[initials.index(initial) % len(styles)]
            name = label if len(initials) == 1 else f"{label}, initial {initial:g}"
            x = 100 * g["flops_remaining"].to_numpy(float) * 10 ** (NUDGE_DECADES * (i - (len(series) - 1) / 2))
            _draw_series(ax, x, g, colors[label], style, name, handles)
        ax.set_xscale("log")
        low = 100 * known["flops_remaining"].min() if len(known) else 10.0
        ax.set_xlim(low / 1.6, 100 * 1.6)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.invert_xaxis()  # left to right: fewer and fewer FLOPs, as sparsity rises in the other figure
        missing = len(pruned) - len(known)
        if missing and known.empty:
            ax.text(0.5, 0.5, "no run here recorded its FLOPs", ha="center", va="center", color="0.35",
                    transform=ax.transAxes)
            ax.tick_params(axis="x", which="both", labelbottom=False, bottom=False)
        elif missing:
            ax.text(0.02, 0.02, f"{missing} cell{'s' * (missing != 1)} without FLOPs not shown", fontsize="small",
                    color="0.35", transform=ax.transAxes)
        _accuracy_axis(ax, here, setup, arch)
        ax.set_xlabel("remaining FLOPs (sparse / dense), fewer →")
    _legend(fig, handles, cells[cells["flops_remaining"].notna()], panels)  # the marks of the cells shown
    return fig
