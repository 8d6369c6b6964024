"""Numbers over seeds: each cell's mean and 95% t interval, and the best recipe of a column against the
runner-up by a paired t test, adjusted over a setup's columns (Benjamini-Hochberg).

Only completed runs count, and only their final test accuracy (the best-over-epochs one picks an epoch by
looking at the test set). Pairing by seed removes the seed-to-seed spread two recipes share (same seed: same
initialization and data order), so a gap within noise is called so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from .setups import SETTING, _expanded, _pruned, _recipe_order, setups

STAT_COLUMNS = ["n", "mean_pct", "std_pct", "ci95_low_pct", "ci95_high_pct"]
SUMMARY_COLUMNS = ["setup", *SETTING, "recipe", *STAT_COLUMNS]
COMPARISON_COLUMNS = ["setup", *SETTING, "best", "runner_up", "pairs", "diff_mean_pct", "diff_ci95_low_pct",
                      "diff_ci95_high_pct", "p_value", "p_adjusted", "verdict"]
ALPHA = 0.05
FEW_SEEDS = 3  # cells with fewer completed seeds than this are marked


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
