"""Figures of one layer's |w| and |g| and of which weights each pruning order removes.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so nothing is shown or kept
open behind the caller's back: a notebook displays the returned figure, a script saves it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..layer_scores import (
    LayerScores,
    fggp_pool,
    jaccard,
    kernel_matrix,
    label,
    overlap_table,
    prune_count,
    pruned_sets,
)

MAX_POINTS = 50_000  # scatter points per panel; larger layers are drawn from a fixed random subsample
KEPT, PRUNED = "0.72", "tab:red"


def _log_floor(mag: np.ndarray) -> float:
    """Half the smallest nonzero magnitude: where exact zeros are drawn on a log axis."""
    positive = mag[mag > 0]
    return float(positive.min()) / 2 if positive.size else 1e-12


def _points(scores: LayerScores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|w|, |g|) with zeros lifted to the log floor, and the flat indices drawn (all, or a subsample)."""
    w, g = scores.w_mag.numpy(), scores.g_mag.numpy()
    w, g = np.maximum(w, _log_floor(w)), np.maximum(g, _log_floor(g))
    idx = np.arange(w.size)
    if w.size > MAX_POINTS:
        idx = np.sort(np.random.default_rng(0).choice(w.size, MAX_POINTS, replace=False))
    return w, g, idx


def _limits(v: np.ndarray) -> tuple[float, float]:
    return float(v.min()) / 1.5, float(v.max()) * 1.5


def _scatter(ax, pruned: torch.Tensor, points) -> None:
    """All weights in grey, the pruned ones on top in red (the collection labelled 'pruned')."""
    w, g, idx = points
    hit = pruned.numpy()[idx]
    ax.scatter(w[idx][~hit], g[idx][~hit], s=3, c=KEPT, linewidths=0, rasterized=True, label="kept")
    ax.scatter(w[idx][hit], g[idx][hit], s=4, c=PRUNED, linewidths=0, rasterized=True, label="pruned")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.minorticks_off()  # hundreds of minor log ticks would triple the drawing time and add nothing here
    ax.set_xlim(*_limits(w))
    ax.set_ylim(*_limits(g))
    ax.set_xlabel("|w|")
    ax.set_ylabel("|g|")


def _subsample_note(scores: LayerScores) -> str:
    return f" (drawing {MAX_POINTS} of {scores.n} weights)" if scores.n > MAX_POINTS else ""


def plot_heatmaps(scores: LayerScores) -> Figure:
    """|w| and |g| side by side in ``kernel_matrix`` layout, colour on a log scale.

    Magnitudes span orders of magnitude, so a linear colour scale would show a few bright pixels on
    black. The scale starts at the 1% quantile of the nonzero values; exact zeros are black.
    """
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="black")
    for ax, (title, tensor) in zip(axes, (("|w|", scores.weight), ("|g|", scores.grad))):
        image = kernel_matrix(tensor.abs()).numpy()
        positive = image[image > 0]
        vmin = float(np.quantile(positive, 0.01)) if positive.size else 1e-12
        vmax = max(float(image.max()), vmin * 10)
        shown = ax.imshow(image, cmap=cmap, norm=LogNorm(vmin, vmax), aspect="auto", interpolation="nearest")
        fig.colorbar(shown, ax=ax, label=f"{title} (log scale)")
        ax.set_title(f"{title} of {scores.name} {list(scores.weight.shape)}")
        conv = tensor.dim() == 4
        ax.set_ylabel("output channel x kernel row" if conv else "output unit")
        ax.set_xlabel("input channel x kernel column" if conv else "input unit")
    return fig


def plot_histograms(scores: LayerScores) -> Figure:
    """Histograms of |w| and |g|, on a log x axis when the nonzero values span more than 100x.

    On a log axis exact zeros cannot be drawn; their count is given in the title instead.
    """
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (title, mag) in zip(axes, (("|w|", scores.w_mag), ("|g|", scores.g_mag))):
        v = mag.numpy()
        positive = v[v > 0]
        zeros = v.size - positive.size
        log = positive.size > 1 and positive.max() / positive.min() > 100
        if log:
            ax.hist(positive, bins=np.geomspace(positive.min(), positive.max(), 60), color="tab:blue")
            ax.set_xscale("log")
        else:
            ax.hist(v, bins=60, color="tab:blue")
        note = f", {zeros} exact zeros not shown" if log and zeros else ""
        ax.set_title(f"{title} of {scores.name}: median {np.median(v):.2e}{note}")
        ax.set_xlabel(title + (" (log scale)" if log else ""))
        ax.set_ylabel("weights")
    return fig


def plot_scatter(scores: LayerScores, sets: dict[str, torch.Tensor]) -> Figure:
    """|w| against |g| on log-log axes, one panel per order, the weights it prunes in red.

    Exact zeros cannot sit on a log axis, so they are drawn at half the smallest nonzero value of their
    axis (a tiny epsilon floor). Layers above ``MAX_POINTS`` weights are drawn from a fixed subsample;
    the titles still give the true k.
    """
    if not sets:
        raise ValueError("sets: is empty; pass the dict that pruned_sets returns")
    ncols = min(3, len(sets))
    nrows = math.ceil(len(sets) / ncols)
    fig = Figure(figsize=(4.3 * ncols, 3.7 * nrows), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in grid[len(sets):]:
        ax.remove()
    points = _points(scores)
    for ax, (name, pruned) in zip(grid, sets.items()):
        _scatter(ax, pruned, points)
        ax.set_title(f"{name}: k = {int(pruned.sum())}")
    fig.legend(*grid[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, markerscale=3)
    fig.suptitle(f"{scores.name}: which weights each order prunes{_subsample_note(scores)}")
    return fig


AGREEMENT = ("kept by both", "magnitude only", "gradient_first only", "pruned by both")
AGREEMENT_COLOURS = ListedColormap(["0.92", "tab:blue", "tab:orange", "tab:red"])


def plot_rate_grid(scores: LayerScores, sparsity: float, rates: Sequence[float]) -> Figure:
    """gradient_first at each rate (rows): what it prunes, and where it differs from magnitude.

    Left: the scatter with FGGP's pruned weights in red, the pool edge (largest |g| in the pool of
    ceil(k / rate) smallest-|g| weights) as a dashed line and magnitude's cut (largest |w| it prunes)
    as a dotted one. Right: the layer in ``kernel_matrix`` layout coloured by who prunes each weight.
    The title gives the Jaccard index with pure magnitude pruning: it rises to 1 as the rate falls.
    """
    rates = list(rates)
    if not rates:
        raise ValueError("rates: is empty; give at least one rate in (0, 1]")
    k = prune_count(scores, sparsity)
    magnitude = pruned_sets(scores, sparsity, 1.0, ["magnitude"])["magnitude"]
    points = _points(scores)
    fig = Figure(figsize=(11, 3.6 * len(rates)), layout="constrained")
    axes = fig.subplots(len(rates), 2, squeeze=False)
    for (left, right), rate in zip(axes, rates):
        fggp = pruned_sets(scores, sparsity, rate, ["gradient_first"])[label("gradient_first", rate)]
        pool = fggp_pool(scores, sparsity, rate)
        _scatter(left, fggp, points)
        if k:
            left.axhline(float(points[1][pool.numpy()].max()), color="k", ls="--", lw=1, label="pool edge")
            left.axvline(float(points[0][magnitude.numpy()].max()), color="tab:blue", ls=":", lw=1.5,
                         label="magnitude cut")
        left.set_title(f"{label('gradient_first', rate)}: k = {k}, pool = {int(pool.sum())}, "
                       f"Jaccard with magnitude = {jaccard(fggp, magnitude):.2f}", fontsize="medium")
        who = (magnitude.long() + 2 * fggp.long()).reshape(scores.weight.shape)
        right.imshow(kernel_matrix(who).numpy(), cmap=AGREEMENT_COLOURS, vmin=-0.5, vmax=3.5, aspect="auto",
                     interpolation="nearest")
        right.set_title("who prunes each weight (kernel layout)", fontsize="medium")
        right.set_xticks([])
        right.set_yticks([])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles += [Patch(color=AGREEMENT_COLOURS(i)) for i in range(len(AGREEMENT))]
    fig.legend(handles, labels + list(AGREEMENT), loc="outside lower center", ncols=4, markerscale=3)
    fig.suptitle(f"{scores.name}: gradient_first against magnitude at sparsity {sparsity:g}{_subsample_note(scores)}")
    return fig


def interactive(scores: LayerScores, sparsity: float = 0.9, rate: float = 0.5):
    """Sliders for sparsity and rate that redraw the scatter and the Jaccard table below them.

    Only builds the widget, with its first drawing in place; displaying it is the notebook's job. The
    drawings are written into the Output widget's ``outputs`` directly rather than captured with
    ``ipywidgets.interactive`` (``with output:``): captured output makes nbclient/papermill echo every
    item back to the kernel while the cell still runs, which intermittently leaves ipykernel 7 without
    an execute reply and a headless run hanging. The current table is kept in ``widget.table``.
    """
    import ipywidgets as widgets

    sliders = dict(
        sparsity=widgets.FloatSlider(value=sparsity, min=0.05, max=0.99, step=0.01, description="sparsity",
                                     continuous_update=False),
        rate=widgets.FloatSlider(value=rate, min=0.01, max=1.0, step=0.01, description="rate",
                                 continuous_update=False),
    )
    output = widgets.Output()
    widget = widgets.VBox([*sliders.values(), output])

    def redraw(change=None) -> None:
        # 0.3, not the slider's 0.30000000000000004, which would change the pool size ceil(k / rate)
        chosen = {name: round(slider.value, 2) for name, slider in sliders.items()}
        sets = pruned_sets(scores, chosen["sparsity"], chosen["rate"])
        widget.table = overlap_table(sets).round(3)
        output.outputs = (_display_data(plot_scatter(scores, sets)), _display_data(widget.table))

    for slider in sliders.values():
        slider.observe(redraw, names="value")
    redraw()
    return widget


def _display_data(obj) -> dict:
    """``obj`` as one display_data output, formatted as the running shell would (PNG for a figure)."""
    from IPython import get_ipython

    shell = get_ipython()
    data, metadata = shell.display_formatter.format(obj) if shell else ({"text/plain": repr(obj)}, {})
    return {"output_type": "display_data", "data": data, "metadata": metadata}
