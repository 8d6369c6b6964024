"""What the seeds can tell apart, said first: per setup, one sentence with the number of seeds, which columns'
best is separated from the runner-up and which gaps are within noise at that size, how many seeds each of those
would need (``seeds_needed``), and the smallest gap the seeds at hand could separate (``detectable_gap``).

Every number in it comes from ``comparisons``; nothing is typed.
"""

from __future__ import annotations

import math

import pandas as pd

from .setups import SETTING, _pruned, setups
from .statistics import ACCURACY_RANGE, ALPHA, POWER, SEEDS_SHOWN, comparisons, seeds_needed, summary
from .tables import column_title


MAX_GAP = ACCURACY_RANGE[1] - ACCURACY_RANGE[0]  # no two accuracies are further apart than this


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def seeds_clause(gap: float, needed: float, verdict: str = "", sd: float = math.nan, columns: int = 1) -> str:
    """How many seeds a within-noise gap would need, in words: ``34 seeds would separate a 1.00 pp gap at this
    spread``, ``more than 1000 seeds would be needed to separate a 0.01 pp gap at this spread: practically equal``,
    ``equal means: no number of seeds separates them``; empty where there is no estimate.

    ``needed`` is for the unadjusted test at 5%. A gap below 5% on its own but not after the adjustment over
    ``columns`` (its verdict says "alone") also gets the seeds at 0.05 / columns (from ``sd``): any p below that
    is separated by Benjamini-Hochberg whatever the other columns, so the adjusted test needs between the two."""
    if needed is None or pd.isna(needed):
        return ""
    if math.isinf(needed):
        return "equal means: no number of seeds separates them"
    if needed > SEEDS_SHOWN:
        return (f"more than {SEEDS_SHOWN} seeds would be needed to separate a {abs(gap):.2f} pp gap at this spread: "
                "practically equal")
    text = f"{needed:.0f} seeds would separate a {abs(gap):.2f} pp gap at this spread"
    if "alone" in verdict:
        bound = seeds_needed(gap, sd, alpha=ALPHA / columns)
        text = f"at p < {ALPHA} on its own {text}"
        if math.isfinite(bound):
            text += (f", after the adjustment over {columns} columns up to {bound:.0f} (enough at {ALPHA}/{columns} "
                     "whatever the other columns)")
    return text


def _seeds_per_cell(ns: pd.Series) -> str:
    low, high = int(ns.min()), int(ns.max())
    return f"{_plural(high, 'seed')} per cell" if low == high else f"{low} to {high} seeds per cell"


def _titles(rows: pd.DataFrame) -> str:
    return ", ".join(column_title(t) for t in rows[SETTING].itertuples(index=False, name=None))


def noise_sentence(c: pd.DataFrame, ns: pd.Series) -> str:
    """One setup's sentence from its rows of ``comparisons`` (``c``) and its pruned cells' seed counts (``ns``):
    e.g. "With 3 seeds per cell, no column's best is separated from its runner-up (2 columns); within noise at
    this size in 2 (tiny · 90%: gmp − fggp = +1.00 pp, 34 seeds would separate a 1.00 pp gap at this spread; ...).
    The smallest gap 3 seeds separate with 80% power at the observed spread is 0.72 pp (tiny · 80%)." Empty
    without comparisons."""
    if c.empty or ns.empty:
        return ""
    head = f"With {_seeds_per_cell(ns)}"
    tested = c[c["pairs"] >= 2]
    if tested.empty:
        return (f"{head}, no column's best can be tested against a runner-up: a paired t test needs two seeds in "
                "common.")
    verdicts = c["verdict"].astype(str)
    sep = c[verdicts.str.startswith("separated")]
    noise = c[verdicts.str.startswith("within noise")]
    same = c[verdicts == "identical on every seed"]
    untested = c[verdicts.str.startswith("not testable")]
    parts = [f"the best is separated from the runner-up in {len(sep)} of {_plural(len(c), 'column')} "
             f"({_titles(sep)})" if len(sep) else
             f"no column's best is separated from its runner-up ({_plural(len(c), 'column')})"]
    if len(noise):
        columns = int(c["p_value"].notna().sum())  # the tested columns the adjustment runs over
        items = [f"{column_title(t)}: {b} − {r} = {d:+.2f} pp"
                 + (f", {x}" if (x := seeds_clause(d, n, v, sd, columns)) else "")
                 for t, b, r, d, n, v, sd in zip(noise[SETTING].itertuples(index=False, name=None), noise["best"],
                                                 noise["runner_up"], noise["diff_mean_pct"], noise["seeds_needed"],
                                                 noise["verdict"], noise["diff_std_pct"])]
        parts.append(f"within noise at this size in {len(noise)} ({'; '.join(items)})")
    if len(same):
        parts.append(f"identical on every seed in {len(same)} ({_titles(same)})")
    if len(untested):
        parts.append(f"not testable in {len(untested)} ({_titles(untested)}: fewer than two seeds in common)")
    text = f"{head}, " + "; ".join(parts) + "."
    spread = c[c["detectable_gap_pct"].notna()] if "detectable_gap_pct" in c else c.iloc[:0]
    if len(spread):
        spread = spread.sort_values("detectable_gap_pct")
        pairs = set(spread["pairs"])
        who = _plural(int(pairs.pop()), "seed") if len(pairs) == 1 else "the paired seeds of a column"
        low, high = spread.iloc[0], spread.iloc[-1]
        where = column_title(tuple(low[SETTING]))
        if low["detectable_gap_pct"] > MAX_GAP:
            text += (f" At the observed spread {who} separate no gap two accuracies can have with {100 * POWER:g}% "
                     f"power: the smallest they could is {low['detectable_gap_pct']:.0f} pp ({where}), more than the "
                     f"{MAX_GAP:.0f} pp between 0% and 100%.")
            return text
        text += (f" The smallest gap {who} separate with {100 * POWER:g}% power at the observed spread is "
                 f"{low['detectable_gap_pct']:.2f} pp ({where})")
        if len(spread) > 1 and f"{high['detectable_gap_pct']:.2f}" != f"{low['detectable_gap_pct']:.2f}":
            widest = column_title(tuple(high[SETTING]))
            text += (f", {high['detectable_gap_pct']:.2f} pp at the widest ({widest})"
                     if high["detectable_gap_pct"] <= MAX_GAP else
                     f"; at the widest ({widest}) no gap two accuracies can have ({high['detectable_gap_pct']:.0f} pp, "
                     f"more than the {MAX_GAP:.0f} pp between 0% and 100%)")
        text += "."
    return text


def noise_sentences(df: pd.DataFrame, comps: pd.DataFrame | None = None) -> list[str]:
    """``noise_sentence`` for each setup with pruned recipes to compare, ``[setup] `` first when there are
    several: what the report and the evidence document say first."""
    comps = comparisons(df) if comps is None else comps
    cells = _pruned(summary(df))
    labels = setups(df)
    out = []
    for setup in labels:
        text = noise_sentence(comps[comps["setup"] == setup], cells.loc[cells["setup"] == setup, "n"])
        if text:
            out.append(text if len(labels) == 1 else f"[{setup}] {text}")
    return out
