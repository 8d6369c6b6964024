"""Run directories into one table: a row per run whatever its state, a row per sweep point never started.

A comparison that quietly leaves out the runs that crashed looks better than it is, so every run directory is
a row and every planned point without one is ``missing``; infeasible points are ``not_applicable`` rows. The
setup and variant labels are computed here, at load, from the configs of all the runs together.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ..train import RunConfig
from ..train.checkpoint import epochs_done
from ..train.config import NOT_IDENTITY

COLUMNS = ["run_id", "arch", "dataset", "recipe", "target_sparsity", "initial_sparsity", "seed", "status",
           "final_test_acc", "best_test_acc", "final_sparsity", "epochs_done", "wall_seconds", "error",
           "diverged_step", "reason", "variant", "setup", "layer_density", "layer_shapes", "prunable_weights",
           "mask_hash", "finished_at", "device", "versions", "dense_flops", "sparse_flops", "dense_bytes",
           "sparse_bytes", "export", "export_error", "run_dir"]
NOT_APPLICABLE = "not_applicable"
STATUS_ORDER = ["completed", "failed", "diverged", "incomplete", "missing", "unreadable", NOT_APPLICABLE]
# Fields that name a run's place in the comparison: never a setup or a variant.
KEY_FIELDS = {"arch", "recipe", "target_sparsity", "initial_sparsity", "seed"}
RECIPE_KNOBS = {"rate", "grad_window"}  # differ legitimately between recipes; a variant only within one
PRUNING_ONLY = RECIPE_KNOBS | {"prune_start_epoch", "prune_end_epoch", "prune_every"}  # meaningless for dense
SHOWN_SETUP = ("dataset", "epochs", "prune_start_epoch", "prune_end_epoch", "prune_every", "lr", "batch_size")
# Shown too when every run shares them at a value other than the default: a budget a reader must know of.
SHOWN_IF_SET = ("optimizer", "weight_decay", "lr_schedule", "warmup_epochs", "val_size", "train_subset")
ONE_SETUP = "one setup"
NO_RUNS_HINT = "run notebook 02 or `make quick` first"
EXPORT_JSON = Path("export") / "export.json"  # written by `fggp export RUN_DIR`
SPARSE_FILE = "model.sparse.safetensors"


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
                                      "versions", "dense_flops", "sparse_flops")},
        **_model_bytes(result.get("model_bytes")),
        "export": None, "export_error": None,
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
    row = _row(run_dir.name, config, result.get("status", "unreadable"), run_dir, result)
    try:
        row["export"] = read_export(run_dir)
    except ValueError as err:  # an export is optional: a broken one costs its numbers, never the run
        row["export_error"] = str(err)
    if row["export"] is not None and row["sparse_bytes"] is None:  # a run older than model_bytes: the export's
        row["dense_bytes"], row["sparse_bytes"] = row["export"]["dense_bytes"], row["export"]["sparse_bytes"]
    return row


def _model_bytes(value) -> dict:
    """result.json's optional ``model_bytes`` ({"dense": ..., "sparse": ...}) as two columns; None when absent."""
    value = value if isinstance(value, dict) else {}
    return {f"{k}_bytes": v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
            for k, v in (("dense", value.get("dense")), ("sparse", value.get("sparse")))}


def _number(value, field: str, path: Path) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"export.json: {path}: {field} is {value!r}, not a number")
    return float(value)


def read_export(run_dir: str | os.PathLike) -> dict | None:
    """A run's ``export/export.json`` (``fggp export``) reduced to what the report shows: ``sparse_bytes``,
    ``dense_bytes``, ``flop_ratio`` (dense / sparse FLOPs), ``latency`` {batch: {dense_ms, sparse_ms, speedup}},
    ``device``, ``threads``, ``torch``. None when the run was never exported; ValueError when the file is damaged.

    Both layouts are read: latency as a list of {batch, ...} rows or as {"batch_sizes": {"64": {...}}}, and the
    dense size and FLOP ratio flat (``dense_state_dict_bytes``, ``flop_ratio``) or nested (``bytes``, ``flops``).
    """
    path = Path(run_dir) / EXPORT_JSON
    if not path.is_file():
        return None
    try:
        data = _read_json(path)
    except ValueError as err:
        raise ValueError(f"export.json: {path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"export.json: {path}: not a JSON object")
    files = data.get("files") if isinstance(data.get("files"), dict) else {}
    nested = data.get("bytes") if isinstance(data.get("bytes"), dict) else {}
    flops = data.get("flops") if isinstance(data.get("flops"), dict) else {}
    latency = data.get("latency") or {}
    rows = latency.get("batch_sizes", latency) if isinstance(latency, dict) else latency
    if isinstance(rows, dict):
        rows = [{"batch": b, **r} for b, r in rows.items() if isinstance(r, dict)]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"export.json: {path}: latency is neither a list of rows nor a mapping by batch size")
    measured = {}
    for r in rows:
        try:
            batch = int(r.get("batch"))
        except (TypeError, ValueError):
            raise ValueError(f"export.json: {path}: latency batch {r.get('batch')!r} is not a whole number") from None
        dense_ms, sparse_ms = _number(r.get("dense_ms"), "dense_ms", path), _number(r.get("sparse_ms"), "sparse_ms", path)
        speedup = _number(r.get("speedup"), "speedup", path)
        if speedup is None and dense_ms and sparse_ms:
            speedup = dense_ms / sparse_ms
        measured[batch] = {"dense_ms": dense_ms, "sparse_ms": sparse_ms, "speedup": speedup}
    where = latency if isinstance(latency, dict) else {}
    return {"sparse_bytes": _number(files.get(SPARSE_FILE), SPARSE_FILE, path),
            "dense_bytes": _number(data.get("dense_state_dict_bytes", nested.get("dense_state_dict")),
                                   "dense_state_dict_bytes", path),
            "flop_ratio": _number(data.get("flop_ratio", flops.get("ratio")), "flop_ratio", path),
            "latency": dict(sorted(measured.items())),
            **{k: data.get(k, where.get(k)) for k in ("device", "threads", "torch")}}


def _sweep_points(runs_dir: Path) -> list[dict]:
    points = []
    for path in (runs_dir / "sweep.json", runs_dir.parent / "sweep.json"):
        if path.is_file():
            try:
                points += _read_json(path).get("points", [])
            except ValueError as err:
                raise ValueError(f"sweep.json: {path} is not valid JSON ({err})") from None
    return points


def has_runs(runs_dir: str | os.PathLike) -> bool:
    """Whether ``load_results(runs_dir)`` finds any row: a run directory (config.json or result.json) or a
    point in sweep.json (beside the runs or one folder up)."""
    runs_dir = Path(runs_dir)
    if runs_dir.is_dir() and any((d / "config.json").is_file() or (d / "result.json").is_file()
                                 for d in runs_dir.iterdir() if d.is_dir()):
        return True
    return bool(_sweep_points(runs_dir))


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
    shared = [f"{k}={_show(full[0].get(k))}" for k in SHOWN_SETUP + SHOWN_IF_SET if full and k not in setup_keys
              and len({_canonical(c.get(k)) for c in full if _applies(c, k)}) == 1
              and any(_applies(c, k) for c in full)
              and (k in SHOWN_SETUP or _canonical(full[0].get(k)) != _canonical(defaults.get(k)))]
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
                   "initial_sparsity", "dense_flops", "sparse_flops", "dense_bytes", "sparse_bytes"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    order = df["status"].map({s: i for i, s in enumerate(STATUS_ORDER)})
    df = (df.assign(_order=order).sort_values(["arch", "recipe", "initial_sparsity", "target_sparsity", "seed",
                                               "_order", "run_id"], na_position="last")
            .drop(columns="_order").reset_index(drop=True))
    df.attrs["shared_setup"] = shared
    return df
