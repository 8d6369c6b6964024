"""Lists of runs rather than cells: every run in one compact view, the problems (runs that did not complete),
the points the sweep found not applicable, and the one-line overview of counts per status.

Nothing disappears quietly: a failed, diverged, incomplete or missing run is listed with why or where.
"""

from __future__ import annotations

import pandas as pd

from .cells import EMPTY_CELL
from .collapse import layer_collapse
from .loading import NO_RUNS_HINT, NOT_APPLICABLE, STATUS_ORDER
from .setups import _label, _setups_of_rows

PROBLEM_COLUMNS = ["run_id", "status", "setup", "arch", "recipe", "target_sparsity", "initial_sparsity", "seed",
                   "epochs_done", "diverged_step", "error"]


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


def code_versions(df: pd.DataFrame) -> dict:
    """Completed runs per digest of the fggp source that made them (``versions.fggp_source``; None: a run made
    before the digest was recorded), most runs first."""
    done = df[df["status"] == "completed"] if len(df) else df
    counts: dict = {}
    for v in (done["versions"] if "versions" in done else []):
        key = v.get("fggp_source") if isinstance(v, dict) else None
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, str(kv[0]))))


def code_sentence(df: pd.DataFrame) -> str:
    """Said when the completed runs were made by more than one version of the fggp source (or some before it was
    recorded): a difference between them may come from the code, not the recipe. Empty otherwise."""
    counts = code_versions(df)
    recorded = [k for k in counts if k is not None]
    if len(recorded) < 2 and not (recorded and None in counts):
        return ""
    parts = [f"{k} ({n} run{'s' * (n != 1)})" for k, n in counts.items() if k is not None]
    if None in counts:
        parts.append(f"not recorded ({counts[None]} run{'s' * (counts[None] != 1)} made before the digest was)")
    return (f"The completed runs were made by {len(recorded)} version{'s' * (len(recorded) != 1)} of the fggp "
            f"source (versions.fggp_source: {', '.join(parts)}): a gap between runs of different code may come "
            "from the code, not the recipe.")


def overview(df: pd.DataFrame) -> str:
    """One line of counts per status, saying plainly when nothing completed and what to run, and when the
    completed runs were made by different versions of the code (``code_sentence``)."""
    if len(df) == 0:
        return f"No runs found, so no completed runs yet: {NO_RUNS_HINT}."
    counts = df["status"].value_counts()
    names = {NOT_APPLICABLE: "not applicable"}
    parts = ", ".join(f"{counts[s]} {names.get(s, s)}"
                      for s in [*STATUS_ORDER, *sorted(set(counts.index) - set(STATUS_ORDER))] if s in counts)
    runs = f"{len(df)} run{'s' if len(df) != 1 else ''}"
    if counts.get("completed", 0) == 0:
        return f"No completed runs yet ({runs}: {parts}): {NO_RUNS_HINT}."
    code = code_sentence(df)
    return f"{runs}: {parts}." + (f" {code}" if code else "")
