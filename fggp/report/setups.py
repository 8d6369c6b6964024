"""Which runs are compared with which: setups, recipe labels, and the dense ceiling of each setup.

Runs that differ in budget or data form separate setups and are never ranked together; a recipe knob makes a
variant label (``fggp (rate=0.3)``) inside one setup; a dense run joins every pruned setup it agrees with on
the fields dense has, so each table has its ceiling.
"""

from __future__ import annotations

import pandas as pd

from ..pruning import RECIPES
from .loading import _canonical, _setup_label

SETTING = ["arch", "initial_sparsity", "target_sparsity"]


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


def _dense(labels: pd.Series) -> pd.Series:
    """A boolean mask (also for an empty column, where ``map`` would not give booleans)."""
    return pd.Series([_is_dense(lab) for lab in labels], index=labels.index, dtype=bool)


def _pruned(s: pd.DataFrame) -> pd.DataFrame:
    return s[~_dense(s["recipe"])]
