"""Numbers over seeds: each cell's mean and 95% t interval, and the best recipe of a column against the
runner-up by a paired t test, adjusted over a setup's columns (Benjamini-Hochberg); for a gap within noise, the
seeds a paired test would need to separate it (its power, from the noncentral t).

Only completed runs count, and only their final test accuracy (the best-over-epochs one picks an epoch by
looking at the test set). Pairing by seed removes the seed-to-seed spread two recipes share (same seed: same
initialization and data order), so a gap within noise is called so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .setups import SETTING, _expanded, _pruned, _recipe_order, setups

STAT_COLUMNS = ["n", "mean_pct", "std_pct", "ci95_low_pct", "ci95_high_pct", "ci95_clipped"]
SUMMARY_COLUMNS = ["setup", *SETTING, "recipe", *STAT_COLUMNS]
PAIRED_COLUMNS = ["pairs", "diff_mean_pct", "diff_std_pct", "diff_ci95_low_pct", "diff_ci95_high_pct", "p_value",
                  "verdict", "seeds_needed", "detectable_gap_pct"]  # what paired_comparison gives
COMPARISON_COLUMNS = ["setup", *SETTING, "best", "runner_up", "pairs", "diff_mean_pct", "diff_std_pct",
                      "diff_ci95_low_pct", "diff_ci95_high_pct", "p_value", "p_adjusted", "verdict", "seeds_needed",
                      "detectable_gap_pct", "ranked_seeds"]
ALPHA = 0.05
FEW_SEEDS = 3  # cells with fewer completed seeds than this are marked
POWER = 0.8  # the power "seeds needed" and "detectable gap" are computed for
SEEDS_SHOWN = 1000  # more seeds than this needed: shown as "> 1000", the recipes practically equal at that spread
ACCURACY_RANGE = (0.0, 100.0)  # percent: an interval is shown clipped to it, never a mean (it cannot leave it)


def clipped_interval(low: float, high: float) -> tuple[float, float, bool]:
    """``(low, high)`` clipped to 0-100% for showing, and whether either end was clipped (False for NaN). A t
    interval from few seeds can pass 100% or go below 0%; no accuracy can, so tables and figures show the bound
    and mark it, while the CSVs keep the interval as computed."""
    if math.isnan(low) or math.isnan(high):
        return low, high, False
    bottom, top = ACCURACY_RANGE
    shown = max(low, bottom), min(high, top)
    return shown[0], shown[1], shown != (low, high)


def paired_power(gap: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of a two-sided paired t test over ``n`` pairs at ``alpha`` when the true mean difference is ``gap``
    and the differences' standard deviation ``sd``: P(|T| > t(1 - alpha/2, n - 1)) for T noncentral t with n - 1
    degrees of freedom and noncentrality gap / sd * sqrt(n) (``scipy.stats.nct``). The lower tail is the upper
    tail at the opposite noncentrality (nct.cdf loses it to NaN when it is tiny)."""
    df, nc = n - 1, abs(gap) / sd * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def seeds_needed(gap: float, sd: float, power: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest number of pairs n >= 2 for which a two-sided paired t test at ``alpha`` separates a true
    mean difference ``gap`` at the differences' standard deviation ``sd`` with probability ``power``
    (``paired_power``; it grows with n). Exact however large (bisection), ``inf`` for a zero gap (no number of
    seeds separates equal recipes), NaN without a spread (sd 0 or NaN: the test is degenerate)."""
    if not (math.isfinite(gap) and math.isfinite(sd)) or sd <= 0:
        return math.nan
    if gap == 0:
        return math.inf
    low, high = 1, 2  # power(low) < power <= power(high), once found
    while paired_power(gap, sd, high, alpha) < power:
        low, high = high, 2 * high
        if high > 2 ** 53:  # beyond exact integers in a float: a gap this small is no gap
            return math.inf
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if paired_power(gap, sd, mid, alpha) >= power else (mid, high)
    return float(high)


def detectable_gap(sd: float, n: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest true mean difference that a two-sided paired t test over ``n`` pairs at ``alpha`` separates
    with probability ``power`` when the differences' standard deviation is ``sd`` (the inverse of
    ``seeds_needed`` in the gap); NaN with fewer than two pairs or no spread."""
    if n < 2 or not math.isfinite(sd) or sd <= 0:
        return math.nan
    in_sds = optimize.brentq(lambda g: paired_power(g, 1.0, n, alpha) - power, 0.0, 1e4, xtol=1e-12)
    return float(in_sds * sd)


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
    and the 95% t interval of the final test accuracy, in percent. NaN where one seed gives no spread.
    ``ci95_clipped``: the interval passes 0% or 100% (kept as computed here; tables and figures clip it)."""
    done = _expanded(df)
    if done.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    records = []
    for key, g in done.groupby(["setup", *SETTING, "recipe"], sort=False):
        acc = 100 * g["final_test_acc"].astype(float).to_numpy()
        low, high = t_interval(acc)
        records.append(dict(zip(["setup", *SETTING, "recipe"], key), n=len(acc), mean_pct=acc.mean(),
                            std_pct=acc.std(ddof=1) if len(acc) > 1 else math.nan,
                            ci95_low_pct=low, ci95_high_pct=high, ci95_clipped=clipped_interval(low, high)[2]))
    out = pd.DataFrame(records, columns=SUMMARY_COLUMNS)
    order = {label: i for i, label in enumerate(setups(df))}
    out = out.assign(_s=out["setup"].map(order), _r=out["recipe"].map(_recipe_order))
    return out.sort_values(["_s", *SETTING, "_r"]).drop(columns=["_s", "_r"]).reset_index(drop=True)


def paired_comparison(best: pd.Series, runner_up: pd.Series) -> dict:
    """Paired t test (``scipy.stats.ttest_rel``) of two recipes' accuracies matched by seed (Series
    indexed by seed, percent): same seed means same initialization and data order, so the pairing
    removes the seed-to-seed spread both share. Fewer than two pairs: not testable.

    With a spread, also ``seeds_needed`` (the pairs a paired test at 5% would need for 80% power against a true
    gap of the observed mean difference at the observed standard deviation of the differences, ``diff_std_pct``)
    and ``detectable_gap_pct`` (the smallest true gap these pairs separate with 80% power at that spread)."""
    seeds = sorted(set(best.index) & set(runner_up.index))
    out = dict(pairs=len(seeds), diff_mean_pct=math.nan, diff_std_pct=math.nan, diff_ci95_low_pct=math.nan,
               diff_ci95_high_pct=math.nan, p_value=math.nan, seeds_needed=math.nan, detectable_gap_pct=math.nan)
    if len(seeds) < 2:
        return {**out, "verdict": f"not testable ({len(seeds)} paired seed{'s' if len(seeds) != 1 else ''})"}
    a, b = best[seeds].to_numpy(float), runner_up[seeds].to_numpy(float)
    diff = a - b
    out["diff_mean_pct"] = float(diff.mean())
    if np.allclose(diff, diff[0], rtol=0, atol=1e-9):  # no spread: the t statistic is undefined or infinite
        same = float(diff[0])
        out.update(diff_std_pct=0.0, diff_ci95_low_pct=same, diff_ci95_high_pct=same,
                   p_value=1.0 if same == 0 else 0.0)
        return {**out, "verdict": "identical on every seed" if same == 0 else "separated (same gap on every seed)"}
    test = stats.ttest_rel(a, b)
    ci = test.confidence_interval(1 - ALPHA)
    sd = float(diff.std(ddof=1))
    out.update(diff_std_pct=sd, diff_ci95_low_pct=float(ci.low), diff_ci95_high_pct=float(ci.high),
               p_value=float(test.pvalue), seeds_needed=seeds_needed(out["diff_mean_pct"], sd),
               detectable_gap_pct=detectable_gap(sd, len(seeds)))
    return {**out, "verdict": "separated" if test.pvalue < ALPHA else "within noise"}


def ranking_means(cell: pd.DataFrame, runs: pd.DataFrame) -> tuple[pd.Series, int | None]:
    """The means a column is ranked by, per recipe label (percent), and over how many seeds.

    Why: a recipe run with 8 seeds beside one with 3 has a mean over other seeds; ranking those against each
    other can call "best" a recipe that trails the runner-up on every seed both have. Where the column's
    recipes (``cell``, rows of ``summary``) have different seeds, each is ranked by its mean over the seeds
    all of them have (``runs``: the column's completed runs), and the count is returned; where they have the
    same seeds, the cells' own means and None. Fewer than two seeds in common (too few to pair): the own means,
    and that count (0 or 1)."""
    own = pd.Series(cell["mean_pct"].to_numpy(float), index=cell["recipe"].to_numpy())
    by_seed = {label: accuracy_by_seed(runs, label) for label in own.index}
    seed_sets = [set(s.index) for s in by_seed.values()]
    if not seed_sets or all(s == seed_sets[0] for s in seed_sets):
        return own, None
    common = sorted(set.intersection(*seed_sets))
    if len(common) < 2:
        return own, len(common)
    return pd.Series({label: float(s[common].mean()) for label, s in by_seed.items()}), len(common)


def comparisons(df: pd.DataFrame) -> pd.DataFrame:
    """Per setup and column: the best pruned recipe (highest mean) against the runner-up, paired by seed.
    Where the column's recipes have different seeds, best and runner-up are the highest means over the
    seeds all of them have (``ranked_seeds`` says how many; ``ranking_means``), and the test pairs the two
    over every seed they share."""
    done = _expanded(df)
    s = summary(df)
    records = []
    for setup in setups(df):
        here = _pruned(s[s["setup"] == setup])
        for col, cell in here.groupby(SETTING, sort=True):
            runs = column_runs(done, setup, col)
            means, ranked_seeds = ranking_means(cell, runs)
            ranked = sorted(means.index, key=lambda label: (-means[label], label))
            record = dict(zip(["setup", *SETTING], (setup, *col)), best=ranked[0], ranked_seeds=ranked_seeds)
            if len(ranked) < 2:
                records.append({**record, "runner_up": None, "pairs": 0, "verdict": "no runner-up"})
                continue
            record["runner_up"] = ranked[1]
            records.append({**record, **paired_comparison(accuracy_by_seed(runs, record["best"]),
                                                           accuracy_by_seed(runs, record["runner_up"]))})
    return adjust_for_columns(pd.DataFrame(records, columns=COMPARISON_COLUMNS))


def adjust_for_columns(c: pd.DataFrame) -> pd.DataFrame:
    """Add ``p_adjusted``: Benjamini-Hochberg over each setup's tested columns
    (``scipy.stats.false_discovery_control``). One test per column at 5% calls about one gap in twenty
    separated by chance alone; "separated" needs the adjusted p below 5%, and a gap that passes only on its
    own p says so in its verdict. ``seeds_needed`` is kept only where the verdict is within noise: a separated or
    untested gap needs no estimate of how many seeds would separate it."""
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
    if "seeds_needed" in c:
        c.loc[~c["verdict"].astype(str).str.startswith("within noise"), "seeds_needed"] = math.nan
    return c


def column_runs(done: pd.DataFrame, setup: str, col: tuple) -> pd.DataFrame:
    """The rows of ``done`` (as ``_expanded`` gives them) in one setup's column (arch, initial, target)."""
    return done[(done["setup"] == setup) & (done["arch"] == col[0]) & (done["initial_sparsity"] == col[1])
                & (done["target_sparsity"] == col[2])]


def accuracy_by_seed(runs: pd.DataFrame, label: str) -> pd.Series:
    """One recipe label's final accuracies in percent, indexed by seed: what ``paired_comparison`` pairs."""
    r = runs[runs["recipe"] == label]
    return pd.Series(100 * r["final_test_acc"].to_numpy(float), index=r["seed"].astype(int).to_numpy())
