"""Aggregate run directories into the paper's comparison, telling signal from noise.

Every run directory is one row, whatever state it is in, and every point a sweep planned but never
started is a ``missing`` row: a comparison that quietly leaves out the runs that crashed looks better
than it is. Points the sweep found infeasible are ``not_applicable`` rows: shown as "n/a", never a
problem. Only completed runs enter the numbers, and the number is the *final* test accuracy (the
best-over-epochs one chooses an epoch by looking at the test set).

Three rules keep the comparison honest:

- Runs that differ in budget or data (epochs, schedule, dataset, lr, ... anything but arch, recipe,
  sparsities, seed and a recipe's own knobs) form separate *setups*: each gets its own table and its
  own ranks, and setups are never ranked against each other. A recipe knob (``rate``) becomes part of
  the row label instead, e.g. ``fggp (rate=0.3)``: a variant of a recipe within one setup.
- Each cell carries a 95% t interval over seeds and its n; cells with n < 3 are marked.
- In each column the best recipe is compared with the runner-up by a paired t test over seeds (same
  seed: same initialization and data order), so a gap within noise is called so.

A fourth check reads the final masks: a layer left with fewer kept weights than it has outputs is
flagged as collapsed (see ``layer_collapse``).
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import stats

from .models import build_model
from .pruning import RECIPES
from .train import RunConfig
from .train.config import NOT_IDENTITY
from .train.checkpoint import atomic_write, epochs_done

COLUMNS = ["run_id", "arch", "dataset", "recipe", "target_sparsity", "initial_sparsity", "seed", "status",
           "final_test_acc", "best_test_acc", "final_sparsity", "epochs_done", "wall_seconds", "error",
           "diverged_step", "reason", "variant", "setup", "layer_density", "layer_shapes", "prunable_weights",
           "mask_hash", "finished_at", "device", "versions", "run_dir"]
SETTING = ["arch", "initial_sparsity", "target_sparsity"]
STAT_COLUMNS = ["n", "mean_pct", "std_pct", "ci95_low_pct", "ci95_high_pct"]
SUMMARY_COLUMNS = ["setup", *SETTING, "recipe", *STAT_COLUMNS]
TABLE_CSV_COLUMNS = ["setup", *SETTING, "recipe", "state", *STAT_COLUMNS, "n_below_3", "collapsed_runs",
                     "rank", "best"]
COMPARISON_COLUMNS = ["setup", *SETTING, "best", "runner_up", "pairs", "diff_mean_pct", "diff_ci95_low_pct",
                      "diff_ci95_high_pct", "p_value", "p_adjusted", "verdict"]
COLLAPSE_COLUMNS = ["run_id", "status", "setup", "recipe", "arch", "target_sparsity", "seed", "layer", "kept",
                    "size", "outputs", "density_pct"]
PROBLEM_COLUMNS = ["run_id", "status", "setup", "arch", "recipe", "target_sparsity", "initial_sparsity", "seed",
                   "epochs_done", "diverged_step", "error"]
NOT_APPLICABLE = "not_applicable"
STATUS_ORDER = ["completed", "failed", "diverged", "incomplete", "missing", "unreadable", NOT_APPLICABLE]
# Fields that name a run's place in the comparison: never a setup or a variant.
KEY_FIELDS = {"arch", "recipe", "target_sparsity", "initial_sparsity", "seed"}
RECIPE_KNOBS = {"rate", "grad_window"}  # differ legitimately between recipes; a variant only within one
PRUNING_ONLY = RECIPE_KNOBS | {"prune_start_epoch", "prune_end_epoch", "prune_every"}  # meaningless for dense
SHOWN_SETUP = ("dataset", "epochs", "prune_start_epoch", "prune_end_epoch", "prune_every", "lr", "batch_size")
ONE_SETUP = "one setup"
EMPTY_CELL = "—"
NA_CELL = "n/a"
FEW_SEEDS = 3  # cells with fewer completed seeds than this are marked
FEW_MARK = "†"
COLLAPSE_MARK = "‡"
ALPHA = 0.05
NO_RUNS_HINT = "run notebook 02 or `make quick` first"
FIGURE_NAME = "accuracy_vs_sparsity"
REPORT_FILES = ("summary.csv", "table.md", "table.csv", "comparisons.csv", "collapse.csv",
                f"{FIGURE_NAME}.png", f"{FIGURE_NAME}.svg")

# ------------------------------------------------------------------------------------------- loading

def _read_json(path: Path):
    return json.loads(path.read_text())


def _row(run_id, config: dict, status: str, run_dir: Path | None, result: dict | None = None, **extra) -> dict:
    result = result or {}
    row = {
        "run_id": run_id,
        **{k: config.get(k) for k in ("arch", "dataset", "recipe", "target_sparsity", "initial_sparsity", "seed")},
        "status": status,
        **{k: result.get(k) for k in ("final_test_acc", "best_test_acc", "final_sparsity", "epochs_done",
                                      "wall_seconds", "error", "diverged_step", "layer_density",
                                      "layer_shapes", "prunable_weights", "mask_hash", "finished_at", "device",
                                      "versions")},
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


def _show(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _applies(config: dict, key: str) -> bool:
    return not (config.get("recipe") == "dense" and key in PRUNING_ONLY)


def _labels(configs: list[dict]) -> tuple[list[str], list[dict], list[str]]:
    """Per run: the recipe-knob variant label, the setup (budget/data fields that vary across the runs,
    as a dict), and the fields every run shares that a reader needs to know the budget."""
    defaults = RunConfig().to_dict()
    # Not from identity() of a default config: a field left out of the id while off (a validation split of
    # 0) still separates the runs that turn it on.
    ignored = KEY_FIELDS | set(NOT_IDENTITY)
    full = [{**defaults, **c} for c in configs]
    keys = sorted(set().union(*full) - ignored) if full else []
    setup_keys = [k for k in keys if k not in RECIPE_KNOBS
                  and len({_canonical(c.get(k)) for c in full if _applies(c, k)}) > 1]
    knobs = {}
    for key in RECIPE_KNOBS:
        by_recipe: dict[str, set] = {}
        for c in full:
            by_recipe.setdefault(c.get("recipe"), set()).add(_canonical(c.get(key)))
        knobs[key] = {r for r, values in by_recipe.items() if len(values) > 1}
    variants, setups = [], []
    for c in full:
        shown = [k for k in sorted(RECIPE_KNOBS) if c.get("recipe") in knobs[k]]
        variants.append(", ".join(f"{k}={_show(c.get(k))}" for k in shown))
        setups.append({k: c.get(k) for k in setup_keys if _applies(c, k)})
    shared = [f"{k}={_show(full[0].get(k))}" for k in SHOWN_SETUP if full and k not in setup_keys
              and len({_canonical(c.get(k)) for c in full if _applies(c, k)}) == 1
              and any(_applies(c, k) for c in full)]
    return variants, setups, shared


def _setup_label(setup: dict) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in setup.items()) or ONE_SETUP


def load_results(runs_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per run directory, plus one ``missing`` row per sweep point that never got a directory
    and one ``not_applicable`` row (with its ``reason``) per point the sweep found infeasible.

    ``status`` is the run's own (completed, failed, diverged), ``incomplete`` when it has a config but
    no result yet (running, or killed), ``missing`` when the sweep planned it and nothing was started,
    ``unreadable`` when its files cannot be parsed. Accuracies are fractions, as the runs write them.
    ``setup`` names the budget/data fields that differ between runs (``one setup`` when none do; for
    dense only the fields that matter without pruning); ``variant`` the recipe knobs that differ.
    ``df.attrs["shared_setup"]`` lists the budget fields every run shares.
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
        run_id = point.get("run_id")
        if run_id is not None and run_id in seen:
            continue
        seen.add(run_id)
        if point.get("state") == NOT_APPLICABLE:
            rows.append(_row(run_id, point.get("config", {}), NOT_APPLICABLE, None, reason=point.get("reason")))
            continue
        d = runs_dir / run_id
        started = d.is_dir()  # a directory with neither file: a sweep took the point and died before the run began
        rows.append(_row(run_id, point.get("config", {}), "incomplete" if started else "missing",
                         d if started else None))
    if not rows:
        df = pd.DataFrame(columns=COLUMNS)
        df.attrs["shared_setup"] = []
        return df
    variants, setups, shared = _labels([r.pop("_config") for r in rows])
    for row, variant, setup in zip(rows, variants, setups):
        row["variant"], row["_setup"] = variant, setup
        row["setup"] = _setup_label(setup)
    df = pd.DataFrame(rows, columns=[*COLUMNS, "_setup"])
    for column in ("seed", "epochs_done", "diverged_step", "prunable_weights"):  # whole numbers, some absent
        df[column] = pd.to_numeric(df[column], errors="coerce").astype("Int64")
    for column in ("final_test_acc", "best_test_acc", "final_sparsity", "wall_seconds", "target_sparsity",
                   "initial_sparsity"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    order = df["status"].map({s: i for i, s in enumerate(STATUS_ORDER)})
    df = (df.assign(_order=order).sort_values(["arch", "recipe", "initial_sparsity", "target_sparsity", "seed",
                                               "_order", "run_id"], na_position="last")
            .drop(columns="_order").reset_index(drop=True))
    df.attrs["shared_setup"] = shared
    return df


# ------------------------------------------------------------------------------------------- setups

def _label(recipe: str, variant) -> str:
    return f"{recipe} ({variant})" if isinstance(variant, str) and variant else recipe


def _is_dense(label: str) -> bool:
    return label == "dense" or label.startswith("dense (")


def _recipe_order(label: str) -> tuple:
    names = list(RECIPES)
    base = label.split(" (", 1)[0]
    return (names.index(base) if base in names else len(names), label)


def _sort_value(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, _canonical(value))


def _setup_dicts(df: pd.DataFrame) -> list[dict]:
    if "_setup" in df:
        return list(df["_setup"])
    return [{} for _ in range(len(df))]


def _setups_of_rows(df: pd.DataFrame) -> list[list[str]]:
    """The setup(s) each row belongs to: its own, except that a dense run joins every pruned setup that
    agrees with it on the fields dense has (its pruning window is meaningless), so each setup's table
    has its dense ceiling."""
    dicts = _setup_dicts(df)
    dense = [isinstance(r, str) and r == "dense" for r in df["recipe"]]
    pruned = {}
    for d, is_dense in zip(dicts, dense):
        if not is_dense:
            pruned.setdefault(_setup_label(d), d)
    out = []
    for d, is_dense in zip(dicts, dense):
        if not is_dense:
            out.append([_setup_label(d)])
            continue
        matches = [label for label, p in pruned.items() if all(_canonical(p.get(k)) == _canonical(v)
                                                                 for k, v in d.items())]
        out.append(matches or [_setup_label(d)])
    return out


def setups(df: pd.DataFrame) -> list[str]:
    """Setup labels in a stable order (by the values of the fields that differ)."""
    dicts = {}
    for d, labels in zip(_setup_dicts(df), _setups_of_rows(df)):
        if _setup_label(d) in labels:  # every label is some row's own: a pruned one, or a dense one alone
            dicts.setdefault(_setup_label(d), d)
    return sorted(dicts, key=lambda lab: [(k, _sort_value(v)) for k, v in dicts[lab].items()])


def _expanded(df: pd.DataFrame, status: str | None = "completed") -> pd.DataFrame:
    """Rows (of one status) repeated once per setup they belong to, with ``recipe`` the row label."""
    rows = []
    for (_, row), labels in zip(df.iterrows(), _setups_of_rows(df)):
        if status is not None and row["status"] != status:
            continue
        for label in labels:
            rows.append({**row.drop(labels=["_setup"], errors="ignore").to_dict(), "setup": label,
                         "recipe": _label(row["recipe"], row.get("variant"))})
    out = pd.DataFrame(rows, columns=[c for c in df.columns if c != "_setup"])
    # two dense runs differing only in their (unused) pruning window are one training: count it once
    return out.drop_duplicates(["setup", "recipe", *SETTING, "seed", "status"]) if len(out) else out


# --------------------------------------------------------------------------------------- statistics

def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of ``values`` (NaN, NaN with fewer than two)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    mean, sem = x.mean(), x.std(ddof=1) / math.sqrt(len(x))
    if sem == 0:
        return float(mean), float(mean)
    low, high = stats.t.interval(confidence, len(x) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Long form over completed runs, per setup, arch, sparsities and recipe label: n, mean, std (ddof=1)
    and the 95% t interval of the final test accuracy, in percent. NaN where one seed gives no spread."""
    done = _expanded(df)
    if done.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    records = []
    for key, g in done.groupby(["setup", *SETTING, "recipe"], sort=False):
        acc = 100 * g["final_test_acc"].astype(float).to_numpy()
        low, high = t_interval(acc)
        records.append(dict(zip(["setup", *SETTING, "recipe"], key), n=len(acc), mean_pct=acc.mean(),
                            std_pct=acc.std(ddof=1) if len(acc) > 1 else math.nan,
                            ci95_low_pct=low, ci95_high_pct=high))
    out = pd.DataFrame(records, columns=SUMMARY_COLUMNS)
    order = {label: i for i, label in enumerate(setups(df))}
    out = out.assign(_s=out["setup"].map(order), _r=out["recipe"].map(_recipe_order))
    return out.sort_values(["_s", *SETTING, "_r"]).drop(columns=["_s", "_r"]).reset_index(drop=True)


def _dense(labels: pd.Series) -> pd.Series:
    """A boolean mask (also for an empty column, where ``map`` would not give booleans)."""
    return pd.Series([_is_dense(lab) for lab in labels], index=labels.index, dtype=bool)


def _pruned(s: pd.DataFrame) -> pd.DataFrame:
    return s[~_dense(s["recipe"])]


def _columns_of(s: pd.DataFrame, na: pd.DataFrame) -> list[tuple]:
    columns = set(_pruned(s)[SETTING].itertuples(index=False, name=None))
    columns |= set(_pruned(na)[SETTING].itertuples(index=False, name=None)) if len(na) else set()
    for arch in set(s["arch"]) - {c[0] for c in columns}:  # only dense runs: still worth a column
        columns.add((arch, 0.0, 0.0))
    return sorted(columns)


def paired_comparison(best: pd.Series, runner_up: pd.Series) -> dict:
    """Paired t test (``scipy.stats.ttest_rel``) of two recipes' accuracies matched by seed (Series
    indexed by seed, percent): same seed means same initialization and data order, so the pairing
    removes the seed-to-seed spread both share. Fewer than two pairs: not testable."""
    seeds = sorted(set(best.index) & set(runner_up.index))
    out = dict(pairs=len(seeds), diff_mean_pct=math.nan, diff_ci95_low_pct=math.nan, diff_ci95_high_pct=math.nan,
               p_value=math.nan)
    if len(seeds) < 2:
        return {**out, "verdict": f"not testable ({len(seeds)} paired seed{'s' if len(seeds) != 1 else ''})"}
    a, b = best[seeds].to_numpy(float), runner_up[seeds].to_numpy(float)
    diff = a - b
    out["diff_mean_pct"] = float(diff.mean())
    if np.allclose(diff, diff[0], rtol=0, atol=1e-9):  # no spread: the t statistic is undefined or infinite
        same = float(diff[0])
        out.update(diff_ci95_low_pct=same, diff_ci95_high_pct=same, p_value=1.0 if same == 0 else 0.0)
        return {**out, "verdict": "identical on every seed" if same == 0 else "separated (same gap on every seed)"}
    test = stats.ttest_rel(a, b)
    ci = test.confidence_interval(1 - ALPHA)
    out.update(diff_ci95_low_pct=float(ci.low), diff_ci95_high_pct=float(ci.high), p_value=float(test.pvalue))
    return {**out, "verdict": "separated" if test.pvalue < ALPHA else "within noise"}


def comparisons(df: pd.DataFrame) -> pd.DataFrame:
    """Per setup and column: the best pruned recipe (highest mean) against the runner-up, paired by seed."""
    done = _expanded(df)
    s = summary(df)
    records = []
    for setup in setups(df):
        here = _pruned(s[s["setup"] == setup])
        for col, cell in here.groupby(SETTING, sort=True):
            ranked = cell.sort_values(["mean_pct", "recipe"], ascending=[False, True])
            record = dict(zip(["setup", *SETTING], (setup, *col)), best=ranked.iloc[0]["recipe"])
            if len(ranked) < 2:
                records.append({**record, "runner_up": None, "pairs": 0, "verdict": "no runner-up"})
                continue
            record["runner_up"] = ranked.iloc[1]["recipe"]
            runs = column_runs(done, setup, col)
            records.append({**record, **paired_comparison(accuracy_by_seed(runs, record["best"]),
                                                           accuracy_by_seed(runs, record["runner_up"]))})
    return adjust_for_columns(pd.DataFrame(records, columns=COMPARISON_COLUMNS))


def adjust_for_columns(c: pd.DataFrame) -> pd.DataFrame:
    """Add ``p_adjusted``: Benjamini-Hochberg over each setup's tested columns
    (``scipy.stats.false_discovery_control``). One test per column at 5% calls about one gap in twenty
    separated by chance alone; "separated" needs the adjusted p below 5%, and a gap that passes only on its
    own p says so in its verdict."""
    c = c.copy()
    c["p_adjusted"] = math.nan
    if c.empty:
        return c
    for _, rows in c.groupby("setup", sort=False):
        tested = rows.index[rows["p_value"].notna()]
        if not len(tested):
            continue
        c.loc[tested, "p_adjusted"] = stats.false_discovery_control(c.loc[tested, "p_value"].to_numpy(float))
        weak = tested[(c.loc[tested, "verdict"] == "separated") & (c.loc[tested, "p_adjusted"] >= ALPHA)]
        c.loc[weak, "verdict"] = f"within noise over {len(tested)} columns (p < {ALPHA} alone)"
    return c


def column_runs(done: pd.DataFrame, setup: str, col: tuple) -> pd.DataFrame:
    """The rows of ``done`` (as ``_expanded`` gives them) in one setup's column (arch, initial, target)."""
    return done[(done["setup"] == setup) & (done["arch"] == col[0]) & (done["initial_sparsity"] == col[1])
                & (done["target_sparsity"] == col[2])]


def accuracy_by_seed(runs: pd.DataFrame, label: str) -> pd.Series:
    """One recipe label's final accuracies in percent, indexed by seed: what ``paired_comparison`` pairs."""
    r = runs[runs["recipe"] == label]
    return pd.Series(100 * r["final_test_acc"].to_numpy(float), index=r["seed"].astype(int).to_numpy())


def format_cell(mean: float, low: float, high: float, n: int) -> str:
    """Percent with one decimal: ``mean [low, high] n=N`` (the 95% interval), and the few-seeds mark."""
    mark = f" {FEW_MARK}" if n < FEW_SEEDS else ""
    if n < 2 or math.isnan(low):
        return f"{mean:.1f} n={n}{mark}"
    return f"{mean:.1f} [{low:.1f}, {high:.1f}] n={n}{mark}"


def column_title(col: tuple) -> str:
    """``tiny · 90%``, or ``tiny · 50→90%`` with an initial sparsity; ``tiny · dense`` for dense-only."""
    arch, initial, target = col
    if target == 0 and initial == 0:
        return f"{arch} · dense"
    start = f"{100 * initial:g}→" if initial else ""
    return f"{arch} · {start}{100 * target:g}%"


def _table_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Every cell of every setup's table, as numbers (what table.csv holds) with its rank and best flag."""
    s = summary(df)
    na = _expanded(df, NOT_APPLICABLE)
    done = _expanded(df)
    flagged = set(layer_collapse(df)["run_id"])
    records = []
    for setup in setups(df):
        here, na_here = s[s["setup"] == setup], na[na["setup"] == setup] if len(na) else na
        for col in _columns_of(here, na_here):
            in_col = here[(here["arch"] == col[0]) & (here["initial_sparsity"] == col[1])
                          & (here["target_sparsity"] == col[2])]
            pruned = _pruned(in_col)
            ranks = pruned["mean_pct"].rank(method="average", ascending=False)
            # a recipe alone in its column is neither best nor ranked: there is nothing to beat
            best = pruned["mean_pct"].max() if len(pruned) > 1 else math.nan
            dense = here[(here["arch"] == col[0]) & _dense(here["recipe"])]
            for r in list(pruned.itertuples()) + list(dense.itertuples()):
                runs = done[(done["setup"] == setup) & (done["recipe"] == r.recipe) & (done["arch"] == r.arch)
                            & (done["initial_sparsity"] == r.initial_sparsity)
                            & (done["target_sparsity"] == r.target_sparsity)]
                is_dense = _is_dense(r.recipe)
                records.append(dict(zip(["setup", *SETTING], (setup, *col)), recipe=r.recipe, state="completed",
                                    **{c: getattr(r, c) for c in STAT_COLUMNS}, n_below_3=r.n < FEW_SEEDS,
                                    collapsed_runs=int(runs["run_id"].isin(flagged).sum()),
                                    rank=math.nan if is_dense or len(pruned) < 2 else float(ranks[r.Index]),
                                    best=(not is_dense) and bool(np.isclose(r.mean_pct, best, rtol=0, atol=1e-9))))
            if len(na_here):
                shown = {rec["recipe"] for rec in records if rec["setup"] == setup
                         and (rec["arch"], rec["initial_sparsity"], rec["target_sparsity"]) == col}
                col_na = na_here[(na_here["arch"] == col[0]) & (na_here["initial_sparsity"] == col[1])
                                 & (na_here["target_sparsity"] == col[2])]
                for label in sorted(set(col_na["recipe"]) - shown, key=_recipe_order):
                    records.append(dict(zip(["setup", *SETTING], (setup, *col)), recipe=label, state=NOT_APPLICABLE,
                                        n=0, n_below_3=False, collapsed_runs=0, best=False))
    return pd.DataFrame(records, columns=TABLE_CSV_COLUMNS)


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


def average_rank(df: pd.DataFrame) -> pd.DataFrame:
    """Per setup, the mean over its columns of each pruned recipe's rank by mean final accuracy (1 = best;
    ties share the average rank), and over how many columns; only columns with two or more pruned
    recipes count. Setups are never ranked together."""
    cells = _table_cells(df)
    cells = cells[cells["rank"].notna()] if len(cells) else cells
    if cells.empty:
        return pd.DataFrame(columns=["setup", "recipe", "average_rank", "columns"])
    out = (cells.groupby(["setup", "recipe"], sort=False)["rank"].agg(average_rank="mean", columns="count")
                .reset_index())
    order = {label: i for i, label in enumerate(setups(df))}
    out = out.assign(_s=out["setup"].map(order)).sort_values(["_s", "average_rank", "recipe"])
    return out.drop(columns="_s").reset_index(drop=True)


# ------------------------------------------------------------------------------------------ collapse

@functools.cache
def _layer_shapes(arch: str) -> dict[str, tuple[int, int]] | None:
    """Per parameter: (size, outputs = its first dimension), from the architecture built on the meta
    device (no memory, no init cost). None for an arch this session does not know."""
    try:
        with torch.device("meta"):
            model = build_model(arch)
    except ValueError:
        return None
    return {n: (p.numel(), int(p.shape[0])) for n, p in model.named_parameters()}


def collapsed_layers(arch: str, layer_density: dict, prunable_weights=None, layer_shapes: dict | None = None
                     ) -> list[dict]:
    """The layers of one final mask that keep fewer weights than they have outputs (an empty layer always).

    Why this line: a layer that keeps fewer weights than its output units (conv output channels, the
    classifier's classes) has outputs with no incoming weight at all, whose value no longer depends on
    the input; at the classifier, classes the network can never be driven to. It needs no tuning and
    scales with the layer: a 512-channel VGG conv needs 512 of its 2.4 M weights (0.02%), the 10-class
    classifier 10. Without the layer shapes (an arch unknown here, or sizes that do not add up to the
    run's prunable_weights) only empty layers are flagged. ``layer_shapes`` (name -> weight shape, as a
    result.json may record them) is used first: it is right whatever the input shape the model was built for.
    """
    if isinstance(layer_shapes, dict) and layer_shapes:
        shapes = {n: (math.prod(shape), int(shape[0])) for n, shape in layer_shapes.items()}
    else:
        shapes = _layer_shapes(arch) if isinstance(arch, str) else None
    if shapes is not None and (any(n not in shapes for n in layer_density) or (
            prunable_weights is not None and not pd.isna(prunable_weights)
            and sum(shapes[n][0] for n in layer_density) != int(prunable_weights))):
        shapes = None
    flagged = []
    for name, density in layer_density.items():
        if shapes is None:
            if density == 0:
                flagged.append(dict(layer=name, kept=0, size=None, outputs=None, density_pct=0.0))
            continue
        size, outputs = shapes[name]
        kept = round(density * size)
        if kept < outputs:
            flagged.append(dict(layer=name, kept=kept, size=size, outputs=outputs, density_pct=100 * density))
    return flagged


def layer_collapse(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, layer) whose final mask left the layer collapsed (``collapsed_layers``)."""
    records = []
    for _, row in df.iterrows():
        density = row.get("layer_density")
        if not isinstance(density, dict) or not density:
            continue
        for layer in collapsed_layers(row["arch"], density, row.get("prunable_weights"), row.get("layer_shapes")):
            records.append({"run_id": row["run_id"], "status": row["status"], "setup": row["setup"],
                            "recipe": _label(row["recipe"], row.get("variant")), "arch": row["arch"],
                            "target_sparsity": row["target_sparsity"], "seed": row["seed"], **layer})
    out = pd.DataFrame(records, columns=COLLAPSE_COLUMNS)
    order = out["recipe"].map(_recipe_order)
    return (out.assign(_r=order).sort_values(["setup", "_r", "target_sparsity", "seed"], kind="stable")
               .drop(columns="_r").reset_index(drop=True))


# -------------------------------------------------------------------------------------- views, lists

def problems(df: pd.DataFrame) -> pd.DataFrame:
    """Every run that did not complete, with why (error) or where (diverged_step) it stopped; points the
    sweep found not applicable are not problems."""
    bad = df[~df["status"].isin(["completed", NOT_APPLICABLE])]
    order = bad["status"].map({s: i for i, s in enumerate(STATUS_ORDER)})
    return (bad.assign(_order=order).sort_values(["_order", "run_id"]).drop(columns="_order")
               .reset_index(drop=True)[PROBLEM_COLUMNS])


def not_applicable(df: pd.DataFrame) -> pd.DataFrame:
    """The grid points the sweep skipped as infeasible, with its one-line reason."""
    na = df[df["status"] == NOT_APPLICABLE]
    columns = ["setup", "arch", "recipe", "target_sparsity", "initial_sparsity", "seed", "reason"]
    return na[columns].reset_index(drop=True)


def short_id(run_id) -> str:
    """The config digest at the end of a run id: unique per config, and the rest is in other columns."""
    return run_id.rsplit("-", 1)[-1] if isinstance(run_id, str) else EMPTY_CELL


def runs_view(df: pd.DataFrame) -> pd.DataFrame:
    """The every-run table, compact: short ids, percentages, one note (error, divergence, collapse, n/a)."""
    collapse = layer_collapse(df).groupby("run_id")["layer"].agg(", ".join)
    notes = []
    for _, r in df.iterrows():
        if r["status"] == NOT_APPLICABLE:
            notes.append(r["reason"] or "")
        elif r["status"] == "diverged":
            notes.append(f"diverged at step {r['diverged_step']}")
        elif isinstance(r["error"], str) and r["error"]:
            notes.append(r["error"].splitlines()[0][:60])
        elif r["run_id"] in collapse.index:
            notes.append(f"collapsed: {collapse[r['run_id']]}")
        else:
            notes.append("")
    view = pd.DataFrame({
        "id": df["run_id"].map(short_id),
        "setup": ["; ".join(labels) for labels in _setups_of_rows(df)],
        "recipe": [_label(r, v) for r, v in zip(df["recipe"], df["variant"])],
        "sparsity %": [f"{100 * i:g}→{100 * t:g}" if i else f"{100 * t:g}"
                       for i, t in zip(df["initial_sparsity"].fillna(0), df["target_sparsity"].fillna(0))],
        "seed": df["seed"],
        "status": df["status"].replace({NOT_APPLICABLE: "n/a"}),
        "final acc %": (100 * df["final_test_acc"]).round(1),
        "epochs": df["epochs_done"],
        "note": notes,
    })
    if df["arch"].nunique() > 1:
        view.insert(1, "arch", df["arch"])
    if df["setup"].nunique() <= 1:
        view = view.drop(columns="setup")
    return view


def runs_markdown(df: pd.DataFrame) -> str:
    """``runs_view`` as a Markdown table (compact in a notebook and on GitHub); a sentence when empty."""
    return markdown_table(runs_view(df), index=False, empty=f"(no runs: {NO_RUNS_HINT})")


def overview(df: pd.DataFrame) -> str:
    """One line of counts per status, saying plainly when nothing completed and what to run."""
    if len(df) == 0:
        return f"No runs found, so no completed runs yet: {NO_RUNS_HINT}."
    counts = df["status"].value_counts()
    names = {NOT_APPLICABLE: "not applicable"}
    parts = ", ".join(f"{counts[s]} {names.get(s, s)}"
                      for s in [*STATUS_ORDER, *sorted(set(counts.index) - set(STATUS_ORDER))] if s in counts)
    runs = f"{len(df)} run{'s' if len(df) != 1 else ''}"
    if counts.get("completed", 0) == 0:
        return f"No completed runs yet ({runs}: {parts}): {NO_RUNS_HINT}."
    return f"{runs}: {parts}."


# ---------------------------------------------------------------------------------------------- figure

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


# ---------------------------------------------------------------------------------------------- report

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


def paired_columns(c: pd.DataFrame, difference: str, p_format: str = ".3f") -> dict:
    """A paired test's columns as printed (``difference`` names the first): the mean difference and its
    interval in percentage points, p, p (BH) and the verdict. Shared by every table of paired tests."""
    def p_text(p: float) -> str:
        return "" if math.isnan(p) else format(p, p_format)

    return {
        difference: c["diff_mean_pct"].map(_signed),
        "95% CI (pp)": [f"[{lo:+.2f}, {hi:+.2f}]" if not math.isnan(lo) else ""
                        for lo, hi in zip(c["diff_ci95_low_pct"], c["diff_ci95_high_pct"])],
        "p": c["p_value"].map(p_text), "p (BH)": c["p_adjusted"].map(p_text), "verdict": c["verdict"],
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
        lines += [markdown_table(table), "", "Best against runner-up, paired by seed:", "",
                  comparisons_markdown(comps[comps["setup"] == setup]), ""]
        r = ranks[ranks["setup"] == setup].set_index("recipe")[["average_rank", "columns"]]
        if r["columns"].max() > 1:
            lines += ["Average rank over this setup's columns (1 = best):", "",
                      markdown_table(r.rename(columns={"average_rank": "average rank"})), ""]
    return "\n".join(lines)


TABLE_LEGEND = (f"Cells: mean final test accuracy in percent, its 95% t interval over seeds in brackets, n = "
                f"completed seeds; {FEW_MARK} marks n < {FEW_SEEDS} (an interval from two seeds is very wide, "
                f"from one there is none); {COLLAPSE_MARK} marks a cell with a run whose final mask collapsed a "
                f"layer; {NA_CELL}: the sweep found the point infeasible; {EMPTY_CELL}: no completed run. "
                "Dense is the unpruned upper bound. **Bold** is the best pruned mean of the column; whether it "
                f"is really ahead is the paired test below each table (separated when p < {ALPHA} after the "
                "Benjamini-Hochberg adjustment over the table's columns, p (BH); 'within noise' means the seeds "
                "cannot tell the two apart).")


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


__all__ = ["load_results", "summary", "t_interval", "paired_comparison", "comparisons", "adjust_for_columns",
           "paper_tables", "average_rank", "collapsed_layers", "layer_collapse", "problems", "not_applicable",
           "runs_view", "overview", "setups", "plot_accuracy_vs_sparsity", "markdown_table", "setup_sections",
           "comparisons_markdown", "paired_columns", "collapse_markdown", "problems_markdown", "runs_markdown",
           "not_applicable_markdown", "report_markdown", "write_report", "format_cell", "column_title"]
