"""Every cell of every setup's table as numbers (what table.csv holds): the cell's statistics, how many of its
runs collapsed a layer, its rank in the column and whether it is the column's best; and average ranks.

A column is one (arch, initial sparsity, target sparsity) of one setup; dense is the ceiling of every column of
its arch and is never ranked. The marks a cell shows are defined here, where the cells are.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .collapse import layer_collapse
from .loading import NOT_APPLICABLE
from .setups import SETTING, _dense, _expanded, _is_dense, _pruned, _recipe_order, setups
from .statistics import FEW_SEEDS, STAT_COLUMNS, column_runs, ranking_means, summary

TABLE_CSV_COLUMNS = ["setup", *SETTING, "recipe", "state", *STAT_COLUMNS, "n_below_3", "collapsed_runs",
                     "rank", "best"]
EMPTY_CELL = "—"
NA_CELL = "n/a"
FEW_MARK = "†"
COLLAPSE_MARK = "‡"
CLIP_MARK = "^"  # after an interval shown clipped at 0% or 100%


def _columns_of(s: pd.DataFrame, na: pd.DataFrame) -> list[tuple]:
    columns = set(_pruned(s)[SETTING].itertuples(index=False, name=None))
    columns |= set(_pruned(na)[SETTING].itertuples(index=False, name=None)) if len(na) else set()
    for arch in set(s["arch"]) - {c[0] for c in columns}:  # only dense runs: still worth a column
        columns.add((arch, 0.0, 0.0))
    return sorted(columns)


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
            # ranked over the seeds every recipe of the column has (their own means when they have the same)
            means, _ = ranking_means(pruned, column_runs(done, setup, col))
            ranks = means.rank(method="average", ascending=False)
            # a recipe alone in its column is neither best nor ranked: there is nothing to beat
            best = means.max() if len(pruned) > 1 else math.nan
            dense = here[(here["arch"] == col[0]) & _dense(here["recipe"])]
            for r in list(pruned.itertuples()) + list(dense.itertuples()):
                runs = done[(done["setup"] == setup) & (done["recipe"] == r.recipe) & (done["arch"] == r.arch)
                            & (done["initial_sparsity"] == r.initial_sparsity)
                            & (done["target_sparsity"] == r.target_sparsity)]
                is_dense = _is_dense(r.recipe)
                records.append(dict(zip(["setup", *SETTING], (setup, *col)), recipe=r.recipe, state="completed",
                                    **{c: getattr(r, c) for c in STAT_COLUMNS}, n_below_3=r.n < FEW_SEEDS,
                                    collapsed_runs=int(runs["run_id"].isin(flagged).sum()),
                                    rank=math.nan if is_dense or len(pruned) < 2 else float(ranks[r.recipe]),
                                    best=(not is_dense) and bool(np.isclose(means[r.recipe], best, rtol=0,
                                                                            atol=1e-9))))
            if len(na_here):
                shown = {rec["recipe"] for rec in records if rec["setup"] == setup
                         and (rec["arch"], rec["initial_sparsity"], rec["target_sparsity"]) == col}
                col_na = na_here[(na_here["arch"] == col[0]) & (na_here["initial_sparsity"] == col[1])
                                 & (na_here["target_sparsity"] == col[2])]
                for label in sorted(set(col_na["recipe"]) - shown, key=_recipe_order):
                    records.append(dict(zip(["setup", *SETTING], (setup, *col)), recipe=label, state=NOT_APPLICABLE,
                                        n=0, ci95_clipped=False, n_below_3=False, collapsed_runs=0, best=False))
    return pd.DataFrame(records, columns=TABLE_CSV_COLUMNS)


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
