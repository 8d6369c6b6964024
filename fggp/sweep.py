"""Sweeps: expand a grid into runs, execute the run notebook once per point with papermill, report.

    fggp sweep configs/quick.yaml --jobs 2 --out outputs
    fggp sweep configs/quick.yaml --dry-run          # where each point stands; runs nothing

A grid file has ``grid`` (RunConfig field -> list of values; the runs are their product), ``fixed``
(RunConfig field -> value, for every run) and an optional ``name``. Every point is validated before
anything runs. Completed points are skipped, interrupted ones resume from their checkpoint, a failing
notebook is recorded in its run directory and the others go on. Runs land in ``OUT/runs/<run_id>``,
the executed notebooks beside them, the report in ``OUT/report``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import itertools
import json
import os
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from .executors import EXECUTORS, ClusterOptions, execute
from .train import RunConfig
from .train.checkpoint import epochs_done, read_result, write_json

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
RUN_NOTEBOOK = NOTEBOOKS / "02_cifar10_run.ipynb"
REPORT_NOTEBOOK = NOTEBOOKS / "03_aggregate_results.ipynb"
KERNEL = "python3"
GRID_KEYS = ("name", "grid", "fixed")
# RunConfig fields that notebook 02 takes as named parameters; the rest travel in ``extra_config``.
NOTEBOOK_PARAMETERS = ("arch", "dataset", "recipe", "target_sparsity", "initial_sparsity", "rate", "epochs",
                       "batch_size", "lr", "prune_start_epoch", "prune_end_epoch", "prune_every", "seed", "device",
                       "data_dir", "deterministic")


@dataclass
class Outcome:
    run_id: str
    status: str  # completed, failed, diverged, or skipped (completed before)
    error: str | None = None


def load_grid(path: str | Path) -> dict:
    """Read and check a grid file; errors name the file and the key."""
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ValueError(f"grid: cannot read {str(path)!r} ({err.strerror})") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise ValueError(f"grid: {str(path)!r} is not valid YAML{at}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"grid: {str(path)!r} must be a mapping with keys {', '.join(GRID_KEYS)}")
    for key in spec:
        if key not in GRID_KEYS:
            raise ValueError(f"grid key: {key!r} is not one of {', '.join(GRID_KEYS)}")
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    for section in ("grid", "fixed"):
        body = spec.get(section) or {}
        if not isinstance(body, dict):
            raise ValueError(f"{section}: must be a mapping of RunConfig fields")
        for key in body:
            if key not in fields:
                raise ValueError(f"{section}.{key}: unknown field; fields are {', '.join(fields)}")
    return spec


def expand(spec: dict, data_dir: str | None = None) -> list[RunConfig]:
    """Every point of the grid as a validated RunConfig, duplicates (e.g. dense at several targets) once."""
    grid = {k: (v if isinstance(v, list) else [v]) for k, v in (spec.get("grid") or {}).items()}
    fixed = dict(spec.get("fixed") or {})
    if data_dir is not None:
        fixed.setdefault("data_dir", data_dir)
    points: dict[str, RunConfig] = {}
    for values in itertools.product(*grid.values()):
        fields = {**fixed, **dict(zip(grid, values)), "progress": False}
        try:
            config = RunConfig.from_dict(fields)
        except ValueError as err:
            raise ValueError(f"{err} (grid point {json.dumps(dict(zip(grid, values)))})") from None
        points.setdefault(config.run_id, config)
    return list(points.values())


def notebook_parameters(config: RunConfig, out_dir: Path) -> dict:
    d = config.to_dict()
    params = {k: d.pop(k) for k in NOTEBOOK_PARAMETERS}
    params["data_dir"] = str(Path(params["data_dir"]).resolve())
    params["out_dir"] = str(out_dir.resolve())
    params["extra_config"] = d
    return params


def _status(run_dir: Path) -> str | None:
    return (read_result(run_dir) or {}).get("status")


def execute_point(config: RunConfig, runs_dir: Path, notebook: Path = RUN_NOTEBOOK, device: str | None = None) -> Outcome:
    """Run one grid point through the run notebook, unless it is done.

    This is the unit every executor calls. A lock per run directory makes a second sweep on the same
    outputs wait for the point and then find it done, so no point ever runs twice at once.
    """
    import papermill

    run_dir = runs_dir / config.run_id
    if _status(run_dir) == "completed":
        return Outcome(config.run_id, "skipped")
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel if this process dies
        if _status(run_dir) == "completed":
            return Outcome(config.run_id, "skipped")
        params = notebook_parameters(config, runs_dir)
        if device is not None:
            params["device"] = device
        try:
            papermill.execute_notebook(str(notebook), str(run_dir / notebook.name), parameters=params,
                                       kernel_name=KERNEL, progress_bar=False, cwd=str(run_dir))
        except Exception as err:  # PapermillExecutionError, a dead kernel, ...: record it, go on
            error = f"{type(err).__name__}: {getattr(err, 'evalue', None) or err}"
            (run_dir / "error.txt").write_text(error + "\n\n" + traceback.format_exc())
            if _status(run_dir) != "completed":
                write_json(run_dir / "result.json", {"status": "failed", "run_id": config.run_id, "error": error,
                                                     "config": config.to_dict()})
            return Outcome(config.run_id, "failed", error)
        return Outcome(config.run_id, _status(run_dir) or "failed")


def _share_cpu_threads(jobs: int) -> None:
    """Give each of ``jobs`` concurrent kernels its share of the cores (they inherit the environment);
    two runs with all threads each on the same cores run slower together than one after the other."""
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))


def _devices(jobs: int) -> list[str | None]:
    """One GPU per concurrent run when several exist; otherwise leave the config's device alone."""
    import torch

    n = torch.cuda.device_count()
    return [f"cuda:{i % n}" for i in range(jobs)] if n > 1 else [None] * jobs


def sweep(grid_path: str | Path, out: str | Path = "outputs", jobs: int = 1, log=print, executor: str = "local",
          partition: str | None = None, gpus_per_run: int = 1, timeout_min: float = 24 * 60,
          array_parallelism: int | None = None) -> list[Outcome]:
    """Expand, execute (``jobs`` at a time, on ``executor``), then build the report with notebook 03."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: {jobs!r} must be an integer >= 1")
    if executor not in EXECUTORS:
        raise ValueError(f"executor: {executor!r} is not one of {', '.join(EXECUTORS)}")
    if not timeout_min > 0:
        raise ValueError(f"timeout_min: {timeout_min!r} must be > 0")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {str(out)!r} is a file; it must be a directory")
    spec = load_grid(grid_path)
    configs = expand(spec)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", {"grid": str(grid_path), "name": spec.get("name"),
                                    "points": [{"run_id": c.run_id, "config": c.to_dict()} for c in configs]})
    log(f"sweep: {len(configs)} runs in {runs_dir}")
    devices = _devices(jobs)
    _share_cpu_threads(jobs)

    def on_done(index, outcome):
        log(f"[{index + 1}/{len(configs)}] {outcome.run_id}: {outcome.status}"
            + (f" ({outcome.error.splitlines()[0][:200]})" if outcome.error else ""))

    options = ClusterOptions(folder=(out / "submitit").resolve(), partition=partition, gpus_per_run=gpus_per_run,
                             timeout_min=timeout_min, array_parallelism=array_parallelism or jobs)
    outcomes = execute(configs, runs_dir.resolve(), jobs, executor, options, log, on_done,
                       device_for=lambda index: devices[index % jobs])
    report(runs_dir, out / "report", log=log)
    return outcomes


def report(runs_dir: str | Path = "outputs/runs", report_dir: str | Path | None = None, log=print) -> Path:
    """Execute the aggregation notebook over ``runs_dir``; the executed notebook lands in the report dir."""
    import papermill

    runs_dir = Path(runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise ValueError(f"runs_dir: {str(runs_dir)!r} is a file; it must be a directory")
    report_dir = Path(report_dir) if report_dir is not None else runs_dir.parent / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(REPORT_NOTEBOOK), str(report_dir / REPORT_NOTEBOOK.name),
                               parameters={"runs_dir": str(runs_dir.resolve()), "report_dir": str(report_dir.resolve())},
                               kernel_name=KERNEL, progress_bar=False, cwd=str(report_dir))
    log(f"report: {report_dir}")
    return report_dir


STATES = ("completed", "failed", "diverged", "running", "interrupted", "pending")


def _held(lock: Path) -> bool:
    """Whether a live process holds this lock file (a dead holder's lock is released by the kernel)."""
    if not lock.exists():
        return False
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def point_state(run_dir: Path) -> tuple[str, int]:
    """Where one run stands, read from its directory alone: one of STATES, and the epochs it has done."""
    epochs = epochs_done(run_dir)
    state = _status(run_dir)
    if state in ("completed", "diverged"):
        return state, epochs
    if _held(run_dir / ".lock") or _held(run_dir / ".run.lock"):
        return "running", epochs
    if state == "failed":
        return state, epochs
    return ("interrupted" if epochs or (run_dir / "checkpoint.pt").exists() else "pending"), epochs


def status(grid_path: str | Path, out: str | Path = "outputs") -> pd.DataFrame:
    """One row per grid point: the fields the grid varies, the run id, its state and epochs done. Runs nothing.

    ``running`` means a live process holds the point's lock; ``interrupted`` that it has a checkpoint or
    epochs but no result (a sweep run again resumes it).
    """
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"out: {str(out)!r} is a file; it must be a directory")
    spec = load_grid(grid_path)
    varied = [k for k, v in (spec.get("grid") or {}).items() if isinstance(v, list) and len(v) > 1]
    rows = []
    for config in expand(spec):
        state, done = point_state(Path(out) / "runs" / config.run_id)
        rows.append({**{k: getattr(config, k) for k in varied}, "run_id": config.run_id, "state": state,
                     "epochs": f"{done}/{config.epochs}"})
    return pd.DataFrame(rows, columns=[*varied, "run_id", "state", "epochs"])


def count_states(table: pd.DataFrame) -> str:
    counts = table["state"].value_counts()
    return f"sweep: {len(table)} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES if s in counts)


def summarize(outcomes: list[Outcome]) -> tuple[str, bool]:
    """One line of counts, and whether every point ended well (completed now or before)."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    ok = all(o.status in ("completed", "skipped") for o in outcomes)
    return "sweep: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), ok


if __name__ == "__main__":  # one point, as a submitit job runs it: python -m fggp.sweep CONFIG_JSON RUNS_DIR
    import sys

    point = execute_point(RunConfig.from_dict(json.loads(sys.argv[1])), Path(sys.argv[2]))
    print(json.dumps(dataclasses.asdict(point)), flush=True)
