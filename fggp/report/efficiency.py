"""What a pruned network saves, per cell: its file against the dense one, its FLOPs, and the speed measured.

Accuracy alone does not say whether pruning bought a smaller, faster network. FLOPs are what the masks remove
in arithmetic (every result.json records ``dense_flops`` and ``sparse_flops``); the file size is what a sparse
format stores (``model_bytes`` in result.json, else the export's); the speedup is what a machine measured
(``fggp export``), and it is often far below the FLOP ratio: unstructured sparsity needs a sparse kernel, and a
small batch is dominated by overhead. Both numbers are shown side by side. All three are optional: a run that
lacks one shows "-" and never fails.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .setups import SETTING, _expanded, _recipe_order, setups

NOT_RECORDED = "-"
SIZE_COLUMNS = ["runs", "sized_runs", "sparse_bytes", "dense_bytes", "size_ratio", "flops_runs", "flops_remaining",
                "flop_ratio", "exported_runs", "measured_on"]


def _remaining(row) -> float:
    """One run's sparse / dense FLOPs, from result.json, else from the export's ratio; NaN when neither."""
    dense, sparse = row.get("dense_flops"), row.get("sparse_flops")
    if dense is not None and sparse is not None and not (pd.isna(dense) or pd.isna(sparse)) and dense > 0:
        return float(sparse) / float(dense)
    export = row.get("export")
    ratio = export.get("flop_ratio") if isinstance(export, dict) else None
    return 1.0 / ratio if ratio else math.nan


def size_speed(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell (setup, arch, initial and target sparsity, recipe label), over its completed runs: the mean
    sparse-file and dense-state_dict bytes and the mean of their ratio (over the runs that recorded sizes), the
    mean remaining FLOPs (sparse / dense) and ``flop_ratio`` = its inverse, and for exported runs the mean
    measured speedup at each batch size (``speedup_batch_<B>``, dense ms / sparse ms) and where it was measured.
    NaN where no run of the cell recorded the number."""
    done = _expanded(df)
    if done.empty:
        return pd.DataFrame(columns=["setup", *SETTING, "recipe", *SIZE_COLUMNS])
    records, batches = [], set()
    for key, g in done.groupby(["setup", *SETTING, "recipe"], sort=False):
        rows = [r for _, r in g.iterrows()]
        sized = [(r["sparse_bytes"], r["dense_bytes"]) for r in rows
                 if _present(r.get("sparse_bytes")) and _present(r.get("dense_bytes")) and r["dense_bytes"] > 0]
        remaining = [x for x in map(_remaining, rows) if not math.isnan(x)]
        exports = [r["export"] for r in rows if isinstance(r.get("export"), dict) and r["export"].get("latency")]
        record = dict(zip(["setup", *SETTING, "recipe"], key), runs=len(rows), sized_runs=len(sized),
                      sparse_bytes=_mean([s for s, _ in sized]), dense_bytes=_mean([d for _, d in sized]),
                      size_ratio=_mean([s / d for s, d in sized]), flops_runs=len(remaining),
                      flops_remaining=_mean(remaining), exported_runs=len(exports),
                      measured_on="; ".join(sorted({_where(e) for e in exports})))
        record["flop_ratio"] = 1 / record["flops_remaining"] if record["flops_remaining"] > 0 else math.nan
        for e in exports:
            for batch, m in e["latency"].items():
                if m.get("speedup") is not None:
                    record.setdefault(f"_b{batch}", []).append(m["speedup"])
                    batches.add(batch)
        records.append(record)
    speed = [f"speedup_batch_{b}" for b in sorted(batches)]
    for record in records:
        for b in sorted(batches):
            record[f"speedup_batch_{b}"] = _mean(record.pop(f"_b{b}", []))
    out = pd.DataFrame(records, columns=["setup", *SETTING, "recipe", *SIZE_COLUMNS, *speed])
    order = {label: i for i, label in enumerate(setups(df))}
    out = out.assign(_s=out["setup"].map(order), _r=out["recipe"].map(_recipe_order))
    return out.sort_values(["_s", *SETTING, "_r"]).drop(columns=["_s", "_r"]).reset_index(drop=True)


def recorded_flops(df: pd.DataFrame) -> bool:
    """Whether any completed run recorded its FLOPs (then the accuracy-against-FLOPs figure has points)."""
    s = size_speed(df)
    return bool(len(s) and s["flops_runs"].sum())


def _present(x) -> bool:
    return x is not None and not pd.isna(x)


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _where(export: dict) -> str:
    threads = export.get("threads")
    return ", ".join(str(x) for x in (export.get("device") or "device unknown",
                                      f"{threads} threads" if threads else None, export.get("torch") and
                                      f"torch {export['torch']}") if x)


def file_size(n_bytes: float) -> str:
    """``115 KB``: decimal units (1 KB = 1000 bytes), three significant digits."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes:.0f} B"


def times(x: float) -> str:
    """A ratio as ``x0.84``, ``x3.6``, ``x50``: two significant digits, whole numbers from 10 up."""
    if x >= 10:
        return f"x{x:.0f}"
    return f"x{x:.1f}" if x >= 1 else f"x{x:.2f}"


def _of(k: int, n: int) -> str:
    return f" ({k} of {n} runs)" if k < n else ""


def size_text(r) -> str:
    """``115 KB = 0.11x dense`` (the sparse file's size) for one row of ``size_speed``; "-" when no run
    recorded sizes."""
    if not r["sized_runs"]:
        return NOT_RECORDED
    ratio = f"{r['size_ratio']:.2g}" if r["size_ratio"] < 1 else f"{r['size_ratio']:.2f}"
    return f"{file_size(r['sparse_bytes'])} = {ratio}x dense{_of(r['sized_runs'], r['runs'])}"


def speed_text(r) -> str:
    """``FLOPs x50, measured x0.84 / x3.6 / x5.0 at batch 1 / 64 / 256``: the FLOP ratio (dense / sparse) and,
    for exported runs, the speedup measured at each batch size; "-" when neither was recorded."""
    parts = []
    if r["flops_runs"]:
        parts.append(f"FLOPs {times(r['flop_ratio'])}{_of(r['flops_runs'], r['runs'])}")
    speed = {int(k.rsplit("_", 1)[1]): r[k] for k in r.index if k.startswith("speedup_batch_") and _present(r[k])}
    if speed:
        parts.append(f"measured {' / '.join(times(v) for v in speed.values())} at batch "
                     f"{' / '.join(str(b) for b in speed)}{_of(r['exported_runs'], r['runs'])}")
    return ", ".join(parts) or NOT_RECORDED
