"""The figures: mean final accuracy with its 95% interval against target sparsity, one panel per setup and arch.

Setups never share axes; the legend sits outside the axes, below them, never over the data.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .cells import _table_cells
from .loading import NO_RUNS_HINT, ONE_SETUP
from .setups import _dense, _is_dense, _pruned, _recipe_order, setups
from .statistics import FEW_SEEDS, summary


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
        fig = Figure(figsize=(5.5, 3), layout="constrained")
        ax = fig.subplots()
        ax.text(0.5, 0.5, f"no completed runs yet:\n{NO_RUNS_HINT.replace('`', '')}", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    fig = Figure(figsize=(max(5.0, 4.6 * len(panels)), 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    labels = sorted(set(s["recipe"]), key=_recipe_order)
    colors = {lab: f"C{i % 10}" for i, lab in enumerate(lab for lab in labels if not _is_dense(lab))}
    styles = ["-", "--", ":", "-."]
    initials = sorted(set(_pruned(s)["initial_sparsity"]))
    handles: dict[str, object] = {}
    for ax, (setup, arch) in zip(axes, panels):
        here = s[(s["setup"] == setup) & (s["arch"] == arch)]
        pruned = cells[(cells["setup"] == setup) & (cells["arch"] == arch)] if len(cells) else cells
        for r in here[_dense(here["recipe"])].itertuples():
            line = ax.axhline(r.mean_pct, color="k", ls="--", lw=1)
            handles.setdefault(r.recipe, line)
            if r.n > 1 and not math.isnan(r.ci95_low_pct):
                ax.axhspan(r.ci95_low_pct, r.ci95_high_pct, color="k", alpha=0.07, lw=0)
        targets = sorted(set(pruned["target_sparsity"])) if len(pruned) else []
        series = list(pruned.groupby(["recipe", "initial_sparsity"], sort=False)) if len(pruned) else []
        series.sort(key=lambda item: (_recipe_order(item[0][0]), item[0][1]))
        for i, ((label, initial), g) in enumerate(series):
            g = g.sort_values("target_sparsity")
            x = np.array([targets.index(t) for t in g["target_sparsity"]]) + 0.07 * (i - (len(series) - 1) / 2)
            style = styles[initials.index(initial) % len(styles)]
            name = label if len(initials) == 1 else f"{label}, initial {initial:g}"
            yerr = np.vstack([g["mean_pct"] - g["ci95_low_pct"], g["ci95_high_pct"] - g["mean_pct"]])
            bars = ax.errorbar(x, g["mean_pct"], yerr=np.nan_to_num(yerr), color=colors[label], ls=style,
                               marker="o", ms=5, capsize=3, label=name)
            few = (g["n"] < FEW_SEEDS).to_numpy()
            if few.any():  # hollow markers: too few seeds to trust the interval
                ax.plot(x[few], g["mean_pct"][few], "o", ms=5, mfc="white", color=colors[label], zorder=4)
            collapsed = (g["collapsed_runs"] > 0).to_numpy()
            if collapsed.any():
                ax.plot(x[collapsed], g["mean_pct"][collapsed], "x", ms=9, mew=1.5, color="k", zorder=5)
            handles.setdefault(name, bars)
        ax.set_xticks(range(len(targets)), [f"{100 * t:g}%" for t in targets])
        ax.set_xlim(-0.5, max(len(targets), 1) - 0.5)
        lows = pd.concat([here["mean_pct"], here["ci95_low_pct"]]).dropna()
        highs = pd.concat([here["mean_pct"], here["ci95_high_pct"]]).dropna()
        ax.set_ylim(max(0.0, lows.min() - 3), min(100.0, highs.max() + 3))
        ax.set_title(arch if setup == ONE_SETUP else f"{arch}\n{setup}", fontsize="medium")
        ax.set_xlabel("target sparsity")
        ax.set_ylabel("final test accuracy (%)")
        ax.grid(alpha=0.3)
    names = sorted(handles, key=lambda k: (not _is_dense(k), _recipe_order(k)))
    handles = {k: handles[k] for k in names}
    if len(cells) and (cells["n"] < FEW_SEEDS).any():
        handles[f"hollow: n < {FEW_SEEDS} seeds"] = Line2D([], [], ls="", marker="o", mfc="white", color="0.3")
    if len(cells) and (cells["collapsed_runs"] > 0).any():
        handles["cross: a run collapsed a layer"] = Line2D([], [], ls="", marker="x", ms=8, mew=1.5, color="k")
    fig.legend(list(handles.values()), [f"{k} (dashed)" if _is_dense(k) else k for k in handles],
               loc="outside lower center", ncols=min(4, 2 * len(panels), len(handles)), fontsize="small",
               frameon=False)
    return fig
