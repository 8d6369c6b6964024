"""Recipes that chose the very same final masks: two rows of the table that are one result, and why.

Global MP is global magnitude pruning with a per-layer floor; wherever the floor never binds it prunes exactly as
gmp, and equal accuracies on every seed are then no tie between two methods. Read from each run's ``mask_hash``.
"""

from __future__ import annotations

import pandas as pd

from .setups import SETTING, _expanded, _pruned, _recipe_order

# Why two recipes can pick the same weights, by their base names (a variant label keeps its recipe's reason).
REASONS = {
    frozenset({"gmp", "global_mp"}): "Global MP's per-layer floor never bound, so it pruned exactly as global "
                                     "magnitude pruning (gmp) does",
}
SAME_RANKING = "their rankings selected the same weights at every pruning step"


def identical_masks(df: pd.DataFrame) -> pd.DataFrame:
    """Pairs of pruned recipes whose final masks are the same on every seed of a column (both complete on
    the same two or more seeds): e.g. global_mp and gmp wherever the floor never binds. Read from each
    run's ``mask_hash``."""
    done = _pruned(_expanded(df))
    records = []
    if done.empty:
        return pd.DataFrame(columns=["setup", *SETTING, "recipes", "seeds"])
    for key, col in done.groupby(["setup", *SETTING], sort=True):
        masks = {label: dict(zip(g["seed"].astype(int), g["mask_hash"])) for label, g in col.groupby("recipe")}
        labels = sorted(masks, key=_recipe_order)
        for i, a in enumerate(labels):
            for b in labels[i + 1:]:
                seeds = sorted(set(masks[a]) & set(masks[b]))
                if len(seeds) >= 2 and set(masks[a]) == set(masks[b]) and all(
                        masks[a][s] is not None and masks[a][s] == masks[b][s] for s in seeds):
                    records.append(dict(zip(["setup", *SETTING], key), recipes=f"{a} = {b}", seeds=len(seeds)))
    return pd.DataFrame(records, columns=["setup", *SETTING, "recipes", "seeds"])


def identical_reason(pair: str) -> str:
    """Why the two recipes of ``"a = b"`` (as ``identical_masks`` names them) chose the same masks."""
    names = frozenset(label.split(" (", 1)[0] for label in pair.split(" = "))
    return REASONS.get(names, SAME_RANKING)
