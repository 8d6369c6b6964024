"""The figures: mean final accuracy with its 95% interval against target sparsity, and against the FLOPs that
remain (the second view of the Global MP paper), one panel per setup and arch, each seed's own accuracy as a small
dot beside its cell's mean.

Setups never share axes; the legend sits outside the axes, below them, never over the data. No accuracy is drawn
past 100% or below 0%: an interval that passes a bound is clipped there and marked with a small triangle (^ at
100%, v at 0%), as the tables mark it with ^.
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
from .setups import SETTING, _dense, _expanded, _is_dense, _pruned, _recipe_order, setups
from .statistics import ACCURACY_RANGE, FEW_SEEDS, summary


def _no_runs_figure() -> Figure:
    fig = Figure(figsize=(5.5, 3), layout="constrained")
    ax = fig.subplots()
    ax.text(0.5, 0.5, f"no completed runs yet:\n{NO_RUNS_HINT.replace('`', '')}", ha="center", va="center",
            transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def _clipped(low, high) -> tuple[np.ndarray, np.ndarray]:
    """The interval ends as drawn: clipped to 0-100% (NaN stays NaN)."""
    bottom, top = ACCURACY_RANGE
    return (np.clip(np.asarray(low, dtype=float), bottom, top), np.clip(np.asarray(high, dtype=float), bottom, top))


def _draw_clip_marks(ax, x, low, high, color: str) -> None:
    """A small triangle where an interval was clipped: ^ at 100%, v at 0% (the tables' ^ mark)."""
    bottom, top = ACCURACY_RANGE
    x, low, high = np.asarray(x, dtype=float), np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    for ends, bound, marker in ((high > top, top, "^"), (low < bottom, bottom, "v")):
        if ends.any():
            ax.plot(x[ends], np.full(ends.sum(), bound), marker, ms=6, color=color, mec="k", mew=0.6, ls="",
                    zorder=6, clip_on=False)


def _draw_dense(ax, here: pd.DataFrame, handles: dict) -> None:
    """Dense as the dashed ceiling, its 95% interval (clipped to 0-100%) as a grey band."""
    for r in here[_dense(here["recipe"])].itertuples():
        line = ax.axhline(r.mean_pct, color="k", ls="--", lw=1)
        handles.setdefault(r.recipe, line)
        if r.n > 1 and not math.isnan(r.ci95_low_pct):
            low, high = _clipped(r.ci95_low_pct, r.ci95_high_pct)
            ax.axhspan(float(low), float(high), color="k", alpha=0.07, lw=0)


SEED_DOT = dict(marker="o", ms=3.5, ls="", alpha=0.75, mew=0, zorder=3)  # one seed's final accuracy


def _draw_seeds(ax, x, seeds: list, color: str) -> bool:
    """Each seed's final accuracy as a small dot at ``x`` (one x per cell, ``seeds`` its accuracies)."""
    xs = [xi for xi, acc in zip(x, seeds) for _ in acc]
    ys = [a for acc in seeds for a in acc]
    if xs:
        ax.plot(xs, ys, color=color, **SEED_DOT)
    return bool(xs)


def _draw_series(ax, x, g: pd.DataFrame, color: str, style: str, name: str, handles: dict) -> None:
    """One recipe's cells: mean with its 95% interval (clipped to 0-100%, a triangle where clipped), hollow where
    n < 3, a cross where a run collapsed."""
    low, high = _clipped(g["ci95_low_pct"], g["ci95_high_pct"])
    mean = g["mean_pct"].to_numpy(float)
    yerr = np.vstack([mean - low, high - mean])
    bars = ax.errorbar(x, mean, yerr=np.nan_to_num(yerr), color=color, ls=style,
                       marker="o", ms=5, capsize=3, label=name)
    _draw_clip_marks(ax, x, g["ci95_low_pct"], g["ci95_high_pct"], color)
    few = (g["n"] < FEW_SEEDS).to_numpy()
    if few.any():  # hollow markers: too few seeds to trust the interval
        ax.plot(x[few], mean[few], "o", ms=5, mfc="white", color=color, zorder=4)
    collapsed = (g["collapsed_runs"] > 0).to_numpy()
    if collapsed.any():
        ax.plot(x[collapsed], mean[collapsed], "x", ms=9, mew=1.5, color="k", zorder=5)
    handles.setdefault(name, bars)


def _cell_seeds(done: pd.DataFrame, setup: str, arch: str, label: str, initial: float, targets) -> list:
    """Per target of one series, the final accuracies (percent) of its completed seeds."""
    mine = done[(done["setup"] == setup) & (done["arch"] == arch) & (done["recipe"] == label)
                & (done["initial_sparsity"] == initial)] if len(done) else done
    return [100 * mine.loc[mine["target_sparsity"] == t, "final_test_acc"].to_numpy(float) for t in targets]


def _accuracy_axis(ax, here: pd.DataFrame, setup: str, arch: str, seeds=()) -> None:
    """The y range over the means, the intervals as drawn (clipped) and every seed's dot, never past 0-100% (a
    clipped interval's triangle is drawn over the bound, unclipped by the axes)."""
    low, high = _clipped(here["ci95_low_pct"], here["ci95_high_pct"])
    values = pd.Series([*here["mean_pct"], *low, *high, *seeds], dtype=float).dropna()
    ax.set_ylim(max(ACCURACY_RANGE[0], values.min() - 3), min(ACCURACY_RANGE[1], values.max() + 3))
    ax.set_title(arch if setup == ONE_SETUP else f"{arch}\n{setup}", fontsize="medium")
    ax.set_ylabel("final test accuracy (%)")
    ax.grid(alpha=0.3)


def _legend(fig: Figure, handles: dict, cells: pd.DataFrame, panels: list, seeds: bool = False) -> None:
    """Below the axes, never over the data: dense first, then the recipes, then what the marks mean."""
    names = sorted(handles, key=lambda k: (not _is_dense(k), _recipe_order(k)))
    handles = {k: handles[k] for k in names}
    if seeds:
        handles["small dots: each seed"] = Line2D([], [], color="0.3", **SEED_DOT)
    if len(cells) and (cells["n"] < FEW_SEEDS).any():
        handles[f"hollow: n < {FEW_SEEDS} seeds"] = Line2D([], [], ls="", marker="o", mfc="white", color="0.3")
    if len(cells) and (cells["collapsed_runs"] > 0).any():
        handles["cross: a run collapsed a layer"] = Line2D([], [], ls="", marker="x", ms=8, mew=1.5, color="k")
    if len(cells) and cells["ci95_clipped"].fillna(False).astype(bool).any():
        handles["triangle: interval clipped at 100% (or 0%)"] = Line2D([], [], ls="", marker="^", ms=6,
                                                                        color="0.6", mec="k", mew=0.6)
    fig.legend(list(handles.values()), [f"{k} (dashed)" if _is_dense(k) else k for k in handles],
               loc="outside lower center", ncols=min(len(handles), max(2, int(fig.get_figwidth() // 2.4))),
               fontsize="small",
               frameon=False)


def _series(pruned: pd.DataFrame) -> list:
    """One panel's (recipe, initial sparsity) series in recipe order, each with its cells."""
    series = list(pruned.groupby(["recipe", "initial_sparsity"], sort=False)) if len(pruned) else []
    return sorted(series, key=lambda item: (_recipe_order(item[0][0]), item[0][1]))


def recipe_step(count: int) -> float:
    """The sideways step between the recipes of one sparsity on the category axis (1 apart): 0.11, so that six
    recipes span 0.55 of it, narrower for more so that neighbouring sparsities never overlap."""
    return min(0.11, 0.8 / max(count, 1))


SEED_SHIFT = 0.4  # a cell's seed dots sit this fraction of a recipe step to the right of its mean


def plot_accuracy_vs_sparsity(df: pd.DataFrame) -> Figure:
    """Mean final accuracy against target sparsity: one panel per setup and arch (setups never share
    axes), one line per recipe, 95% t intervals as error bars (clipped to 0-100%, a triangle where clipped),
    each seed's final accuracy as a small dot beside the mean, hollow markers where n < 3, a cross on a cell with
    a collapsed layer, dense as the dashed ceiling with its interval as a band.

    The sparsities are evenly spaced categories (90, 95, 99% are where recipes differ; on a linear axis
    they crowd together) and each recipe is nudged sideways by ``recipe_step`` so that equal means stay visible;
    panels widen with the recipes and sparsities they hold. The legend sits outside the axes, below them, never
    over the data.
    """
    s = summary(df)
    cells = _table_cells(df)
    cells = _pruned(cells[cells["state"] == "completed"]) if len(cells) else cells
    panels = [(st, arch) for st in setups(df) for arch in sorted(set(s.loc[s["setup"] == st, "arch"]))]
    if not panels:
        return _no_runs_figure()
    done = _expanded(df)
    fig, axes, colors, styles, initials = _canvas(s, panels)
    handles: dict[str, object] = {}
    any_seeds = False
    for ax, (setup, arch) in zip(axes, panels):
        here = s[(s["setup"] == setup) & (s["arch"] == arch)]
        pruned = cells[(cells["setup"] == setup) & (cells["arch"] == arch)] if len(cells) else cells
        _draw_dense(ax, here, handles)
        targets = sorted(set(pruned["target_sparsity"])) if len(pruned) else []
        series = _series(pruned)
        step, shown = recipe_step(len(series)), []
        for i, ((label, initial), g) in enumerate(series):
            g = g.sort_values("target_sparsity")
            x = np.array([targets.index(t) for t in g["target_sparsity"]]) + step * (i - (len(series) - 1) / 2)
            style = styles[initials.index(initial) % len(styles)]
            name = label if len(initials) == 1 else f"{label}, initial {initial:g}"
            _draw_series(ax, x, g, colors[label], style, name, handles)
            seeds = _cell_seeds(done, setup, arch, label, initial, g["target_sparsity"])
            any_seeds |= _draw_seeds(ax, x + SEED_SHIFT * step, seeds, colors[label])
            shown += [a for acc in seeds for a in acc]
        ax.set_xticks(range(len(targets)), [f"{100 * t:g}%" for t in targets])
        ax.set_xlim(-0.5, max(len(targets), 1) - 0.5)
        _accuracy_axis(ax, here, setup, arch, shown)
        ax.set_xlabel("target sparsity")
    _legend(fig, handles, cells, panels, any_seeds)
    return fig


def _canvas(s: pd.DataFrame, panels: list) -> tuple:
    """One panel per (setup, arch), a colour per pruned recipe and a line style per initial sparsity: the same
    in both accuracy figures, so a recipe looks alike in each. A panel is wide enough for its sparsities times its
    series (about 0.3 inch per recipe and sparsity, 5 inches at least; every panel as wide as the widest)."""
    pruned = _pruned(s)
    widest = 0
    for setup, arch in panels:
        mine = pruned[(pruned["setup"] == setup) & (pruned["arch"] == arch)]
        series = len(mine.groupby(["recipe", "initial_sparsity"])) if len(mine) else 0
        widest = max(widest, mine["target_sparsity"].nunique() * series)
    width = min(14.0, max(5.0, 1.6 + 0.3 * widest))
    fig = Figure(figsize=(width * len(panels), 5.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0])
    labels = sorted(set(s["recipe"]), key=_recipe_order)
    colors = {lab: f"C{i % 10}" for i, lab in enumerate(lab for lab in labels if not _is_dense(lab))}
    return fig, axes, colors, ["-", "--", ":", "-."], sorted(set(pruned["initial_sparsity"]))


NUDGE_DECADES = 0.015  # recipes' sideways offset on the log FLOPs axis: x 1.035 per recipe


def plot_accuracy_vs_flops(df: pd.DataFrame) -> Figure:
    """Mean final accuracy against remaining FLOPs (sparse / dense, in percent on a log axis), beside accuracy
    against sparsity: two recipes at one sparsity can leave very different arithmetic, since a layer's weights
    cost as many FLOPs as its output positions (Gupta et al. 2024 plot both). Same canvas as
    ``plot_accuracy_vs_sparsity``: one panel per setup and arch, one line per recipe through its targets (at the
    cell's mean remaining FLOPs over its runs; recipes nudged apart by ``NUDGE_DECADES`` each, about 3.5%, so that
    equal points stay visible), 95% intervals clipped to 0-100%, each seed's accuracy as a small dot beside the
    mean, hollow where n < 3, a cross on a collapsed cell; dense is the dashed ceiling and a black point at 100%.
    Cells whose runs recorded no FLOPs are left out, and the panel says how many."""
    s = summary(df)
    cells = _table_cells(df)
    cells = cells[cells["state"] == "completed"] if len(cells) else cells
    panels = [(st, arch) for st in setups(df) for arch in sorted(set(s.loc[s["setup"] == st, "arch"]))]
    if not panels:
        return _no_runs_figure()
    done = _expanded(df)
    flops = size_speed(df)[["setup", *SETTING, "recipe", "flops_remaining"]]
    cells = cells.merge(flops, on=["setup", *SETTING, "recipe"], how="left")
    dense_cells = cells[_dense(cells["recipe"])].drop_duplicates(["setup", "arch", "recipe"])  # one per column
    cells = _pruned(cells)
    fig, axes, colors, styles, initials = _canvas(s, panels)
    handles: dict[str, object] = {}
    any_seeds = False
    for ax, (setup, arch) in zip(axes, panels):
        here = s[(s["setup"] == setup) & (s["arch"] == arch)]
        pruned = cells[(cells["setup"] == setup) & (cells["arch"] == arch)]
        _draw_dense(ax, here, handles)
        shown = []
        for r in dense_cells[(dense_cells["setup"] == setup) & (dense_cells["arch"] == arch)].itertuples():
            low, high = _clipped(r.ci95_low_pct, r.ci95_high_pct)
            half = [[r.mean_pct - low], [high - r.mean_pct]]
            ax.errorbar([100.0], [r.mean_pct], yerr=np.nan_to_num(half), color="k", marker="o", ms=5, capsize=3,
                        mfc="white" if r.n < FEW_SEEDS else "k", zorder=4)
            _draw_clip_marks(ax, [100.0], [r.ci95_low_pct], [r.ci95_high_pct], "k")
            seeds = _cell_seeds(done, setup, arch, r.recipe, r.initial_sparsity, [r.target_sparsity])
            any_seeds |= _draw_seeds(ax, [100.0 * 10 ** (-SEED_SHIFT * NUDGE_DECADES)], seeds, "k")
            shown += list(seeds[0])
        known = pruned[pruned["flops_remaining"].notna()]
        series = _series(known)
        for i, ((label, initial), g) in enumerate(series):
            g = g.sort_values("flops_remaining")
            style = styles[initials.index(initial) % len(styles)]
            name = label if len(initials) == 1 else f"{label}, initial {initial:g}"
            x = 100 * g["flops_remaining"].to_numpy(float) * 10 ** (NUDGE_DECADES * (i - (len(series) - 1) / 2))
            _draw_series(ax, x, g, colors[label], style, name, handles)
            seeds = _cell_seeds(done, setup, arch, label, initial, g["target_sparsity"])
            # beside the mean, fewer FLOPs side (the axis is inverted: to the right, as in the sparsity figure)
            any_seeds |= _draw_seeds(ax, x * 10 ** (-SEED_SHIFT * NUDGE_DECADES), seeds, colors[label])
            shown += [a for acc in seeds for a in acc]
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
        _accuracy_axis(ax, here, setup, arch, shown)
        ax.set_xlabel("remaining FLOPs (sparse / dense), fewer →")
    shown_cells = pd.concat([cells[cells["flops_remaining"].notna()], dense_cells.assign(collapsed_runs=0)])
    _legend(fig, handles, shown_cells, panels, any_seeds)  # the marks of the cells shown
    return fig
