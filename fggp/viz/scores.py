"""Figures of one layer's |w| and |g| and of which weights each pruning order removes.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so nothing is shown or kept
open behind the caller's back: a notebook displays the returned figure, a script saves it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..layer_scores import (
    LayerScores,
    fggp_pool,
    is_two_step,
    jaccard,
    kernel_matrix,
    label,
    overlap_table,
    prune_count,
    pruned_sets,
)
from ..pruning.selection import pool_size

MAX_POINTS = 50_000  # scatter points per panel; larger layers are drawn from a fixed random subsample
KEPT, PRUNED = "0.72", "tab:red"


def _log_floor(mag: np.ndarray) -> float:
    """Half the smallest nonzero magnitude: where exact zeros are drawn on a log axis."""
    positive = mag[mag > 0]
    return float(positive.min()) / 2 if positive.size else 1e-12


def _points(scores: LayerScores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(|w|, |g|) with zeros lifted to the log floor, and the flat indices drawn: the active weights (all,
    or a subsample). Weights a checkpoint's run pruned are not drawn: no order can choose them."""
    w, g = scores.w_mag.numpy(), scores.g_mag.numpy()
    w, g = np.maximum(w, _log_floor(w)), np.maximum(g, _log_floor(g))
    idx = np.flatnonzero(scores.active.numpy())
    if idx.size > MAX_POINTS:
        idx = np.sort(np.random.default_rng(0).choice(idx, MAX_POINTS, replace=False))
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
    return f" (drawing {MAX_POINTS} of {scores.n_active} weights)" if scores.n_active > MAX_POINTS else ""


def _pruned_before(scores: LayerScores) -> str:
    """The line that says a checkpoint's run pruned some of the layer already (empty for a dense layer)."""
    gone = scores.n - scores.n_active
    return f"{gone} of {scores.n} pruned before (checkpoint masks), not drawn" if gone else ""


def _channel_boundaries(ax, shape) -> None:
    """Thin lines between the kernel tiles of output channels (rows) and input channels (columns) of a conv
    weight, so a channel's band can be found; left out beyond 64 channels, where they would hide the image."""
    if len(shape) != 4:
        return
    out, inp, kh, kw = shape
    style = dict(color="white", lw=0.4, alpha=0.6)
    if out <= 64 and kh > 1:
        for o in range(1, out):
            ax.axhline(o * kh - 0.5, **style)
    if inp <= 64 and kw > 1:
        for c in range(1, inp):
            ax.axvline(c * kw - 0.5, **style)


def plot_heatmaps(scores: LayerScores) -> Figure:
    """|w| and |g| side by side in ``kernel_matrix`` layout, colour on a log scale.

    Magnitudes span orders of magnitude, so a linear colour scale would show a few bright pixels on
    black. The scale starts at the 1% quantile of the nonzero values; exact zeros (pruned weights) are
    black. White lines separate the channels' tiles: rows of tiles are output channels, columns inputs.
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
        _channel_boundaries(ax, tuple(tensor.shape))
        fig.colorbar(shown, ax=ax, label=f"{title} (log scale)")
        ax.set_title(f"{title} of {scores.name} {list(scores.weight.shape)}")
        conv = tensor.dim() == 4
        ax.set_ylabel("output channel x kernel row" if conv else "output unit")
        ax.set_xlabel("input channel x kernel column" if conv else "input unit")
    return fig


def plot_histograms(scores: LayerScores) -> Figure:
    """Histograms of |w| and |g| of the active weights, on a log x axis when the nonzero values span more than
    100x.

    Weights a checkpoint's run pruned are not drawn (as in the scatter): thousands of zeros would dwarf the
    weights that are left; the title counts them. On a log axis exact zeros cannot be drawn either; their
    count is given in the title instead.
    """
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    active = scores.active.numpy()
    gone = scores.n - scores.n_active
    for ax, (title, mag) in zip(axes, (("|w|", scores.w_mag), ("|g|", scores.g_mag))):
        v = mag.numpy()[active] if active.any() else mag.numpy()
        positive = v[v > 0]
        zeros = v.size - positive.size
        log = positive.size > 1 and positive.max() / positive.min() > 100
        if log:
            ax.hist(positive, bins=np.geomspace(positive.min(), positive.max(), 60), color="tab:blue")
            ax.set_xscale("log")
        else:
            ax.hist(v, bins=60, color="tab:blue")
        notes = [f"{zeros} exact zeros not shown"] if log and zeros else []
        notes += [f"{gone} pruned before not shown"] if gone and active.any() else []
        note = "\n" + ", ".join(notes) if notes else ""  # a line of its own: two titles side by side
        ax.set_title(f"{title} of {scores.name}: median {np.median(v):.2e}{note}", fontsize="medium")
        ax.set_xlabel(title + (" (log scale)" if log else ""))
        ax.set_ylabel("weights")
    return fig


def pool_note(n: int, k: int, rate: float, whole: bool = True) -> str:
    """FGGP's pool m = min(n, ceil(k / rate)) of the n active weights in words, saying so when it is all of
    them (the whole layer, unless ``whole`` is False: a checkpoint's run pruned some already).

    Then the first step (the pool) selects nothing and the two-step orders equal their second key alone:
    gradient_first is magnitude, magnitude_first is gradient.
    """
    m = pool_size(k, n, rate)
    if m >= n:
        return f"pool = whole layer ({n})" if whole else f"pool = all {n} active weights"
    return f"pool = {m} of {n} ({100 * m / n:.0f}%)"


def _pool(scores: LayerScores, k: int, rate: float) -> str:
    return pool_note(scores.n_active, k, rate, whole=scores.n_active == scores.n)


def plot_scatter(scores: LayerScores, sets: dict[str, torch.Tensor], rate: float | None = None) -> Figure:
    """|w| against |g| on log-log axes, one panel per order, the weights it prunes in red.

    Exact zeros cannot sit on a log axis, so they are drawn at half the smallest nonzero value of their
    axis (a tiny epsilon floor). Layers above ``MAX_POINTS`` weights are drawn from a fixed subsample;
    the titles still give the true k. With ``rate`` the two-step orders' titles give their pool size.
    One more panel holds the legend and the numbers (n, k, pool), so the grid has no empty slot.
    """
    if not sets:
        raise ValueError("sets: is empty; pass the dict that pruned_sets returns")
    panels = len(sets) + 1
    ncols = min(3, panels)  # the five default orders and the key fill a 2 x 3 grid
    nrows = math.ceil(panels / ncols)
    fig = Figure(figsize=(4.3 * ncols, 3.7 * nrows), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in grid[panels:]:
        ax.remove()
    points = _points(scores)
    k = 0
    for ax, (name, pruned) in zip(grid, sets.items()):
        _scatter(ax, pruned, points)
        k = int(pruned.sum())
        title = f"{name}: k = {k}"
        if rate is not None and is_two_step(name.split("(")[0]):
            title += f"\n{_pool(scores, k, rate)}"
        ax.set_title(title, fontsize="medium")
    key = grid[len(sets)]
    key.axis("off")
    key.legend(*grid[0].get_legend_handles_labels(), loc="upper left", markerscale=4, frameon=False)
    n = scores.n_active
    lines = [f"layer {scores.name}", f"n = {n} weights" + (" active" if n < scores.n else "")]
    lines += [line for line in [_pruned_before(scores)] if line]
    lines += [f"k = {k} pruned ({100 * k / max(n, 1):.0f}%)"]
    if rate is not None:
        lines += [f"rate = {rate:g}: pool m = min(n, ceil(k / rate))", _pool(scores, k, rate)]
        if pool_size(k, n, rate) >= n:
            lines += ["so here gradient_first = magnitude", "and magnitude_first = gradient"]
    key.text(0, 0.62, "\n".join(lines), transform=key.transAxes, va="top", fontsize="medium")
    key.set_label("key")
    setting = f" at sparsity {k / max(scores.n_active, 1):.2f}" + (f", rate {rate:g}" if rate is not None else "")
    fig.suptitle(f"{scores.name}{setting}: which weights each order prunes{_subsample_note(scores)}")
    return fig


AGREEMENT = ("kept by both", "magnitude only", "gradient_first only", "pruned by both", "pruned before")
AGREEMENT_COLOURS = ListedColormap(["0.92", "tab:blue", "tab:orange", "tab:red", "0.25"])


def plot_rate_grid(scores: LayerScores, sparsity: float, rates: Sequence[float]) -> Figure:
    """gradient_first at each rate (rows, from the highest rate down): what it prunes, and where it differs
    from magnitude.

    Left: the scatter with FGGP's pruned weights in red, the pool edge (largest |g| in the pool of
    ceil(k / rate) smallest-|g| weights) as a dashed line and magnitude's cut (largest |w| it prunes)
    as a dotted one. Right: the layer in ``kernel_matrix`` layout coloured by who prunes each weight
    (dark grey: pruned before, by a checkpoint's run). Rows run from the highest rate to the lowest, so
    down the page the rate falls, the pool grows, and the Jaccard index with pure magnitude pruning
    (in each title) rises towards 1.
    """
    rates = sorted(set(rates), reverse=True)
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
        left.set_title(f"{label('gradient_first', rate)}: k = {k}, {_pool(scores, k, rate)}, "
                       f"Jaccard with magnitude = {jaccard(fggp, magnitude):.2f}", fontsize="medium")
        who = (magnitude.long() + 2 * fggp.long()).masked_fill(~scores.active, 4).reshape(scores.weight.shape)
        right.imshow(kernel_matrix(who).numpy(), cmap=AGREEMENT_COLOURS, vmin=-0.5, vmax=4.5, aspect="auto",
                     interpolation="nearest")
        right.set_title("who prunes each weight (kernel layout)", fontsize="medium")
        right.set_xticks([])
        right.set_yticks([])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    shown = len(AGREEMENT) if scores.n_active < scores.n else len(AGREEMENT) - 1
    handles += [Patch(color=AGREEMENT_COLOURS(i)) for i in range(shown)]
    fig.legend(handles, labels + list(AGREEMENT[:shown]), loc="outside lower center", ncols=4, markerscale=3)
    fig.suptitle(f"{scores.name}: gradient_first against magnitude at sparsity {sparsity:g}{_subsample_note(scores)}")
    return fig


def draw(scores: LayerScores, sparsity: float, rate: float) -> tuple[Figure, pd.DataFrame]:
    """The interactive cell's content at one setting: the scatter of every order and their Jaccard table."""
    sets = pruned_sets(scores, sparsity, rate)
    return plot_scatter(scores, sets, rate=rate), overlap_table(sets).round(3)


class Explorer:
    """Sliders for sparsity and rate, and below them the scatter and Jaccard table that ``draw`` returns.

    The figure and table are plain display outputs with a display id, not the content of an Output
    widget: every slider move replaces them in place (``update_display``), so the notebook file always
    holds the drawing of the current values. A saved or exported copy keeps the central figure even
    where the sliders cannot be shown without a kernel, and a headless run (nbclient, papermill) never
    has to echo captured widget output back to the kernel, which used to leave it hanging. ``figure``
    and ``table`` are the current drawing.

    The sliders themselves are widget views. nbclient and papermill store their state in the executed
    notebook's metadata (``store_widget_state``, on by default), so JupyterLab draws them in such a copy,
    disconnected, at the values of the drawing; their text/plain fallback is a sentence, not a repr.
    """

    SLIDER_LAYOUT = dict(width="640px")

    def __init__(self, scores: LayerScores, sparsity: float = 0.2, rate: float = 0.5):
        import ipywidgets as widgets

        self.scores = scores
        style = {"description_width": "70px"}
        self.sliders = dict(
            sparsity=widgets.FloatSlider(value=sparsity, min=0.05, max=0.99, step=0.01, description="sparsity",
                                         continuous_update=False, readout_format=".2f", style=style,
                                         layout=widgets.Layout(**self.SLIDER_LAYOUT)),
            rate=widgets.FloatSlider(value=rate, min=0.01, max=1.0, step=0.01, description="rate",
                                     continuous_update=False, readout_format=".2f", style=style,
                                     layout=widgets.Layout(**self.SLIDER_LAYOUT)),
        )
        self.controls = widgets.VBox(list(self.sliders.values()))
        self.handles = None
        self.redraw()
        for slider in self.sliders.values():
            slider.observe(self.redraw, names="value")

    @property
    def values(self) -> dict[str, float]:
        # 0.3, not the slider's 0.30000000000000004, which would change the pool size ceil(k / rate)
        return {name: round(slider.value, 2) for name, slider in self.sliders.items()}

    def redraw(self, change=None) -> None:
        self.figure, self.table = draw(self.scores, **self.values)
        if self.handles is not None:
            for handle, obj in zip(self.handles, self._shown()):
                handle.update(obj)

    def _shown(self):
        """The figure as PNG bytes (whatever matplotlib backend the kernel has) and the table."""
        from IPython.display import Image

        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=100)
        return Image(data=buffer.getvalue(), format="png"), self.table

    CAPTION = ("Sliders for sparsity and rate, then the drawing of the values chosen last, which every saved "
               "copy keeps. The sliders move while the kernel runs (a copy JupyterLab saved with *Settings > Save "
               "Widget State Automatically* off shows \"Error displaying widget: model not found\" in their place).")
    # What a front-end without the widget (a plain-text view, an untrusted notebook) shows in their place.
    CONTROLS_TEXT = "[sliders for sparsity and rate: they move in a running notebook]"

    def controls_bundle(self) -> dict:
        """The sliders' display data: the widget view, and a sentence instead of the VBox(...) repr."""
        bundle = dict(self.controls._repr_mimebundle_())
        bundle["text/plain"] = self.CONTROLS_TEXT
        return bundle

    def _ipython_display_(self) -> None:
        from IPython.display import Markdown, display

        display(Markdown(self.CAPTION))
        display(self.controls_bundle(), raw=True)
        self.handles = [display(obj, display_id=True) for obj in self._shown()]


def interactive(scores: LayerScores, sparsity: float = 0.2, rate: float = 0.5) -> Explorer:
    """Sliders for sparsity and rate that redraw the scatter and the Jaccard table below them (``Explorer``)."""
    return Explorer(scores, sparsity, rate)
