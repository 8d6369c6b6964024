"""Figures and a summary table for one run directory (what notebook 02 shows after training).

Everything is read back from the run's files (``config.json``, ``metrics.jsonl``, ``result.json``),
never from live objects, so the same figures can be redrawn for any finished, failed or half-done run.
Figures are built with ``matplotlib.figure.Figure`` rather than pyplot: nothing is registered globally,
nothing is shown by side effect, and a loop over many runs leaks no open figures.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..models import build_model
from ..parameters import check_parameters
from ..pruning import cubic_sparsity, get_recipe
from ..train.checkpoint import atomic_write

TRAIN_COLOR, TEST_COLOR = "tab:blue", "tab:orange"
BEST_LABEL = "best test acc (max over epochs, optimistic)"
# Notebook 02's parameters (its tagged cell, in order: the RunConfig fields fggp.executors passes by name, then
# out_dir and extra_config; tests hold them equal).
NOTEBOOK_PARAMETERS = ("arch", "dataset", "recipe", "target_sparsity", "initial_sparsity", "rate", "epochs",
                       "batch_size", "lr", "prune_start_epoch", "prune_end_epoch", "prune_every", "seed", "device",
                       "data_dir", "deterministic", "out_dir", "extra_config")


def check_notebook(namespace: dict) -> None:
    """Notebook 02's parameters (``fggp.parameters.check_parameters``), in its first cell after them: papermill's
    ``-p epoch 1`` (for ``epochs``) is injected as a new variable and only warned about, so the run would go on
    with every default; here it is one line naming it."""
    check_parameters(namespace, NOTEBOOK_PARAMETERS)


def notebook_config(extra_config, **parameters):
    """Notebook 02's RunConfig from its named parameters and ``extra_config`` (any other field), checked as
    ``fggp run`` checks it, before any data loads. A field in both is refused: the named one used to win
    without a word. ``progress`` is off (a notebook prints its own table)."""
    from ..train import RunConfig

    if not isinstance(extra_config, dict):
        raise ValueError(f"extra_config: {extra_config!r} must be a mapping of other RunConfig fields, "
                         f"e.g. {{'bn_recalibrate': 10}}")
    both = sorted(set(extra_config) & set(parameters))
    if both:
        raise ValueError(f"extra_config: {both[0]!r} is also a parameter of this notebook; set {both[0]} itself")
    return RunConfig.from_dict({**extra_config, **parameters, "progress": False})


@dataclass
class RunRecord:
    """A run as it is on disk; ``result`` is None while the run has not finished."""

    run_dir: Path
    config: dict
    metrics: list[dict] = field(default_factory=list)
    result: dict | None = None

    @property
    def run_id(self) -> str:
        return self.run_dir.name


def load_run(run_dir: str | os.PathLike) -> RunRecord:
    """Read a run directory; only ``config.json`` is required (a run writes it before training)."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"run_dir: {str(run_dir)!r} has no config.json; is it a run directory?")
    config = json.loads(config_path.read_text())
    metrics_path = run_dir / "metrics.jsonl"
    metrics = []
    if metrics_path.is_file():
        metrics = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    result_path = run_dir / "result.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else None
    return RunRecord(run_dir, config, metrics, result)


def _record(run) -> RunRecord:
    return run if isinstance(run, RunRecord) else load_run(run)


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def plot_training_curves(run_dir) -> Figure:
    """Loss and accuracy per epoch, train against test, with the pruning window shaded.

    The gap between the train and test curves is the overfitting signal; a dip in both while the
    window is shaded is the cost of pruning, and what follows it is the network recovering.
    """
    rec = _record(run_dir)
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [m["epoch"] for m in rec.metrics]
    for ax, key, scale, ylabel in ((ax_loss, "loss", 1, "cross-entropy loss"), (ax_acc, "acc", 100, "accuracy (%)")):
        if not rec.metrics:
            _note(ax, "no epoch finished yet")
        else:
            ax.plot(epochs, [m[f"train_{key}"] * scale for m in rec.metrics], "o-", ms=3, color=TRAIN_COLOR, label="train")
            recalibrated = f"test_{key}_running_bn" in rec.metrics[0]
            ax.plot(epochs, [m[f"test_{key}"] * scale for m in rec.metrics], "o-", ms=3, color=TEST_COLOR,
                    label="test (BN recalibrated)" if recalibrated else "test")
            if recalibrated:
                ax.plot(epochs, [m[f"test_{key}_running_bn"] * scale for m in rec.metrics], "s--", ms=3,
                        color=TEST_COLOR, alpha=0.6, label="test (running BN statistics)")
            start, end = rec.config.get("prune_start_epoch", 0), rec.config.get("prune_end_epoch", 0)
            if rec.config.get("recipe") != "dense" and end > start:
                ax.axvspan(start, end, color="0.9", zorder=0, label="pruning window")
            ax.legend()
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    fig.suptitle(run_title(rec.config), fontsize="medium")
    return fig


def run_title(config: dict) -> str:
    """A run as a reader names it: recipe (and its rate), network, data, target sparsity, seed.

    The run id is a hash for machines; figures carry this instead.
    """
    recipe = config.get("recipe", "?")
    rate = config.get("rate")
    if rate is None:
        try:
            known = get_recipe(recipe)
            rate = known.rate if known.order in ("gradient_first", "magnitude_first") else None
        except ValueError:  # a recipe registered in another session
            rate = None
    what = f"{recipe} (rate {rate:g})" if rate is not None else recipe
    target = "dense" if recipe == "dense" else f"target sparsity {100 * config.get('target_sparsity', 0):g}%"
    where = f"{config.get('arch', '?')} / {config.get('dataset', '?')}"
    return f"{what} on {where}, {target}, seed {config.get('seed', '?')}"


def _steps_per_epoch(rec: RunRecord) -> float | None:
    """From a completed result (as the run counted it), else from the last epoch logged."""
    r = rec.result or {}
    if r.get("status") == "completed" and r.get("epochs_done") and r.get("steps_done"):
        return r["steps_done"] / r["epochs_done"]
    if rec.metrics and rec.metrics[-1].get("epoch"):
        return rec.metrics[-1]["step"] / rec.metrics[-1]["epoch"]
    return None


def scheduled_curve(config: dict, steps_per_epoch: float, points: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The target sparsity over the whole run, as the Pruner's schedule computes it (its recipe's kind)."""
    recipe = get_recipe(config["recipe"])
    initial, target = config["initial_sparsity"], config["target_sparsity"]
    start = config["prune_start_epoch"] * steps_per_epoch
    end = config["prune_end_epoch"] * steps_per_epoch
    total = config["epochs"] * steps_per_epoch
    if recipe.schedule == "one_shot":
        return np.array([0, end, end, total]), np.array([initial, initial, target, target])
    power = 1.0 if recipe.schedule == "linear" else recipe.power
    t = np.union1d(np.linspace(0, total, points), [start, end])
    return t, np.array([cubic_sparsity(x, start, end, initial, target, power) for x in t])


def plot_sparsity(run_dir) -> Figure:
    """Measured sparsity at every pruning step on top of the schedule it was asked to follow.

    Markers off the curve would mean the pruner missed its target (a layer floor, a too-small pool);
    on a healthy run every marker sits on the line.
    """
    rec = _record(run_dir)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    spe = _steps_per_epoch(rec)
    if spe:
        try:
            t, s = scheduled_curve(rec.config, spe)
            ax.plot(t, 100 * s, "-", color="0.5", label="scheduled target")
        except ValueError:  # a recipe registered in another session: the schedule kind is unknown here
            _note(ax, f"schedule of recipe {rec.config.get('recipe')!r} unknown in this session")
    if rec.result is not None and "prune_log" in rec.result:
        log = rec.result["prune_log"]
        ax.plot([p[0] for p in log], [100 * p[2] for p in log], "o", ms=4, color="tab:red",
                label="actual (at each pruning step)")
    else:
        ax.plot([m["step"] for m in rec.metrics], [100 * m["sparsity"] for m in rec.metrics], "s", ms=4,
                color="tab:red", label="actual (at epoch ends; no prune log)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("sparsity (% of prunable weights removed)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(f"sparsity schedule: {run_title(rec.config)}", fontsize="small")
    return fig


def _network_order(arch: str | None, names, order=None) -> list[str]:
    """Layers input to output: result.json stores them sorted by name, which puts the classifier first.
    Its ``layer_order`` (recorded since registered models exist) is the order; else the zoo's model."""
    if order and set(names) <= set(order):
        return [n for n in order if n in names]
    try:
        position = {n: i for i, (n, _) in enumerate(build_model(arch).named_parameters())}
    except ValueError:  # an arch not registered here: keep the file's order
        position = {}
    return sorted(names, key=lambda n: (n not in position, position.get(n, 0)))


def plot_layer_density(result: dict) -> Figure:
    """Share of weights kept per layer (%); the dashed line is the global density.

    Global recipes decide per layer: bars above the line are layers the criterion found important
    (often the first conv and the classifier), bars below are where most weights went.
    """
    density = result.get("layer_density") or {}
    fig = Figure(figsize=(max(6, 0.35 * len(density) + 2), 4.5), layout="constrained")
    ax = fig.subplots()
    if not density:
        _note(ax, "no layer densities in this result")
        return fig
    names = _network_order(result.get("config", {}).get("arch"), density, result.get("layer_order"))
    ax.bar(range(len(names)), [100 * density[n] for n in names], color="tab:green")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize="small")
    if result.get("prunable_weights"):
        overall = result["kept_weights"] / result["prunable_weights"]
    else:
        overall = 1.0 - result.get("final_sparsity", 0.0)
    ax.axhline(100 * overall, color="k", ls="--", lw=1, label=f"global density {100 * overall:.2f}%")
    ax.set_ylabel("density (% of weights kept)")
    ax.set_ylim(0, 105)
    ax.legend()
    ax.set_title("per-layer density", fontsize="medium")
    return fig


CONFIG_GROUPS = {
    "model and data": ("arch", "dataset", "train_subset", "augment", "batch_size"),
    "pruning": ("recipe", "target_sparsity", "initial_sparsity", "rate", "grad_window", "prune_start_epoch",
                "prune_end_epoch", "prune_every", "pattern", "include", "exclude"),
    "optimizer": ("epochs", "optimizer", "lr", "momentum", "nesterov", "betas", "eps", "weight_decay",
                  "lr_schedule", "lr_milestones", "lr_gamma", "warmup_epochs"),
    "evaluation": ("val_size", "bn_recalibrate"),
    "run": ("seed", "device", "precision", "deterministic", "compile", "plugins"),
}


def config_view(config) -> pd.DataFrame:
    """A config (``RunConfig`` or its dict) as one line per group instead of one per field.

    Fields outside the groups (new ones, ``extra`` labels) land in a last "other" row, so nothing is
    hidden; where data lives and whether a progress bar is drawn are left out.
    """
    d = config if isinstance(config, dict) else config.to_dict()
    rows, shown = {}, set()
    for group, names in CONFIG_GROUPS.items():
        present = [n for n in names if n in d]
        shown.update(present)
        if present:
            rows[group] = ", ".join(f"{n}={_knob(d, n)}" for n in present)
    other = [n for n in d if n not in shown and n not in ("data_dir", "download", "progress", "channels_last")
             and not (n == "extra" and not d[n])]
    if other:
        rows["other"] = ", ".join(f"{n}={_short(d[n])}" for n in other)
    return pd.DataFrame({"settings": list(rows.values())}, index=pd.Index(list(rows), name="group"))


def _knob(d: dict, name: str) -> str:
    """A field's value; ``rate``/``grad_window`` left at None show the value the recipe resolves them to
    (as the run's title does), or that the recipe does not read them."""
    if name not in ("rate", "grad_window") or d.get(name) is not None:
        return _short(d[name])
    try:
        from ..train.config import knob_applies

        recipe = get_recipe(d.get("recipe"))
        if not knob_applies(d.get("recipe"), name):
            return f"none (not read by {d.get('recipe')})"
    except ValueError:  # a recipe registered in another session
        return "none (the recipe's own)"
    return f"{_short(getattr(recipe, name))} (the recipe's)"


def _short(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) or "()"
    return f"{v:g}" if isinstance(v, float) else str(v)


EPOCH_COLUMNS = (  # (metrics key, header, format); accuracies and sparsity as %, like the figures
    ("train_loss", "train loss", "{:>10.4f}"),
    ("train_acc", "train acc", "{:>8.2%}"),
    ("test_loss", "test loss", "{:>9.4f}"),
    ("test_acc", "test acc", "{:>8.2%}"),
    ("test_acc_running_bn", "test acc (running BN)", "{:>20.2%}"),
    ("sparsity", "sparsity", "{:>7.2%}"),
    ("lr", "lr", "{:>7.4g}"),
    ("seconds", "seconds", "{:>7.1f}"),
)


def epoch_header(row: dict) -> str:
    """The column names of the epoch table for rows like ``row`` (running-BN accuracy only when recorded)."""
    names = [f"{'epoch':>7}"] + [f"{head:>{_width(head, fmt)}}" for key, head, fmt in EPOCH_COLUMNS if key in row]
    return "  ".join(names)


def _width(head: str, fmt: str) -> int:
    return max(len(head), len(fmt.format(0.5)))


def epoch_line(row: dict, epochs: int) -> str:
    """One metrics row under ``epoch_header``."""
    cells = [f"{row['epoch']:>3}/{epochs:<3}"] + [f"{fmt.format(row[key]):>{_width(head, fmt)}}"
                                                  for key, head, fmt in EPOCH_COLUMNS if key in row]
    return "  ".join(cells)


class EpochLog:
    """A ``log`` for ``fggp.train.run`` that prints a table with a header, in %, instead of its raw lines.

    ``run`` writes ``metrics.jsonl`` before it logs an epoch, and ``result.json`` before its last line,
    so this reads the numbers from those files: the epoch lines (``epoch ...``) become table rows and
    the run's closing line (``<run_id>: ...``) a summary. Every other message (resuming, waiting for a
    lock, a lost file rewritten) passes through unchanged. Epochs a resumed or already completed run did
    before are printed too, so the table always covers the whole run; for a run that had completed it
    first says that it was loaded, not trained again (the same table would otherwise pass for a new run).
    """

    def __init__(self, run_dir, print_fn=print):
        self.run_dir = Path(run_dir)
        self.print = print_fn
        self.printed = 0

    def __call__(self, message: str) -> None:
        prefix = f"{self.run_dir.name}: "
        said = message[len(prefix):] if message.startswith(prefix) else None
        closing = said is not None and said.split(" ")[0].rstrip(",;") in ("completed", "diverged", "failed")
        if said is not None and not closing and not said.startswith("already completed"):
            self.print(message)  # the run repairing its files, or refusing: said as it is, nothing else
            return
        if not message.startswith("epoch ") and said is None or said is not None and said.startswith("diverged before"):
            self.print(message)
        rec = load_run(self.run_dir) if (self.run_dir / "config.json").is_file() else None
        if rec is None:
            if said is not None or message.startswith("epoch "):
                self.print(message)
            return
        if said is not None and said.startswith("already completed"):
            when = (rec.result or {}).get("finished_at")
            self.print(f"loaded, not trained again: this run completed{' at ' + when if when else ''}; "
                       f"the table is its metrics.jsonl")
        if len(rec.metrics) > self.printed:
            if not self.printed:
                self.print(epoch_header(rec.metrics[0]))
            for row in rec.metrics[self.printed:]:
                self.print(epoch_line(row, rec.config["epochs"]))
            self.printed = len(rec.metrics)
        if said is not None and rec.result is not None:
            self.print(summary_line(rec.result))


def summary_line(result: dict) -> str:
    """The run's outcome in one line, in the same units as the table above it."""
    line = f"{result.get('status', '?')}"
    if result.get("final_test_acc") is not None:
        line += f": final test acc {_pct(result['final_test_acc'])} at sparsity {_pct(result.get('final_sparsity'))}"
    if result.get("wall_seconds") is not None:
        line += f", {result['wall_seconds']:.0f} s of training on {result.get('device', '?')}"
    if result.get("diverged_step") is not None:
        line += f", diverged at step {result['diverged_step']}"
    return line


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def result_table(result: dict) -> pd.DataFrame:
    """The numbers a reader needs first, as text, one row each.

    Final test accuracy is *the* result; the best-over-epochs one peeks at the test set to choose an
    epoch, so it is labelled optimistic and shown only for reference.
    """
    kept, total = result.get("kept_weights"), result.get("prunable_weights")
    dense, sparse = result.get("dense_flops"), result.get("sparse_flops")
    rows = {
        "run id": result.get("run_id", "—"),
        "status": result.get("status", "—"),
        "final test acc": _pct(result.get("final_test_acc")),
        BEST_LABEL: _pct(result.get("best_test_acc")),
        "final sparsity": _pct(result.get("final_sparsity")),
        "kept / total weights": "—" if not total else f"{kept:,} / {total:,} ({100 * kept / total:.2f}% kept)",
        "dense FLOPs": "—" if dense is None else f"{dense:,}",
        "sparse FLOPs": "—" if sparse is None else f"{sparse:,}" + (f" ({dense / sparse:.1f}x fewer)" if sparse and dense else ""),
        "epochs": result.get("epochs_done", "—"),
        "wall seconds": "—" if result.get("wall_seconds") is None else f"{result['wall_seconds']:.1f}",
        "device": result.get("device", "—"),
    }
    if "diverged_step" in result:
        rows["diverged at step"] = result["diverged_step"]
    if result.get("error"):
        rows["error"] = result["error"]
    return pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=pd.Index(list(rows), name="quantity"))


def save_figures(run_dir, figures: dict[str, Figure], dpi: int = 120) -> dict[str, Path]:
    """Write ``<name>.png`` per figure into the run directory, each atomically (no half-written PNG)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, fig in figures.items():
        path = run_dir / (name if name.endswith(".png") else f"{name}.png")
        atomic_write(path, lambda f, fig=fig: fig.savefig(f, format="png", dpi=dpi))
        paths[name] = path
    return paths


__all__ = ["RunRecord", "load_run", "run_title", "config_view", "EpochLog", "epoch_header", "epoch_line",
           "summary_line", "check_notebook", "notebook_config", "NOTEBOOK_PARAMETERS",
           "plot_training_curves", "plot_sparsity", "plot_layer_density", "result_table",
           "save_figures", "scheduled_curve", "BEST_LABEL"]
