"""Sweeps: expand a grid into runs, execute the run notebook once per point with papermill, report.

    fggp sweep configs/quick.yaml --jobs 2 --out outputs
    fggp sweep configs/quick.yaml --dry-run          # where each point stands; runs nothing
    fggp sweep configs/fashion.yaml --from-records docs/results/fashion --out outputs/fashion
                                                     # train only what the committed records lack

A grid file has ``grid`` (RunConfig field -> non-empty list of values; the runs are their product, or
a list of such mappings: the union of their products, e.g. more seeds for some recipes only),
``fixed`` (RunConfig field -> value, for every run) and an optional ``name``. The file, every point and
``--out`` are checked before anything is written; a duplicate key anywhere is an error, not "last one
wins". Completed points are skipped, interrupted ones resume from their checkpoint, a failing point (a
full disk included) is recorded in its run directory and the others go on. A point the recipe cannot
reach (``fggp.pruning.Infeasible``) is ``not_applicable``: listed, never executed, never failed. Runs land
in ``OUT/runs/<run_id>``, the executed notebooks beside them, the report in ``OUT/report``; every path is
made absolute once, before any point runs. ``--from-records`` copies the finished runs of a records
folder (``fggp records``) into ``OUT/runs`` first: they are ``recorded`` (results, no checkpoints), not run.
"""

from __future__ import annotations

import dataclasses
import fcntl
import itertools
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from .executors import (ERROR_FILE, EXECUTORS, KERNEL, NOTEBOOKS, RUN_NOTEBOOK, ClusterOptions, Outcome, completion,
                        execute, execute_notebook, execute_point, notebook_parameters)
from .pruning import RECIPES, Infeasible
from .records import check_records, record_for, seed_runs
from .train import RunConfig
from .train.checkpoint import check_out_dir, epochs_done, has_training, read_result, write_json
from .train.config import identity_of, knob_applies, run_id_of

REPORT_NOTEBOOK = NOTEBOOKS / "03_aggregate_results.ipynb"
GRID_KEYS = ("name", "grid", "fixed")
ANCHOR_PREFIX = "x-"  # top-level keys ignored by the sweep (as in docker compose): a place for YAML anchors
RECIPE_KNOBS = ("rate", "grad_window")

__all__ = ["Outcome", "NotApplicable", "execute_point", "notebook_parameters", "load_grid", "expand", "sweep",
           "report", "status", "point_status", "summarize", "count_states", "check_options", "STATES", "RUN_NOTEBOOK",
           "REPORT_NOTEBOOK", "KERNEL"]


@dataclass
class NotApplicable:
    """A grid point the recipe cannot reach (e.g. per-layer floors above the target): shown, never run."""

    run_id: str
    config: dict
    reason: str

    def point(self) -> dict:
        return {"run_id": self.run_id, "config": self.config, "state": "not_applicable", "reason": self.reason}


class Outcomes(list):
    """The outcomes of a sweep's points, and the report's failure (one line) if it could not be written."""

    report_error: str | None = None


class _StrictLoader(yaml.SafeLoader):
    """YAML where a key given twice in one mapping is an error: 'last one wins' silently changes a sweep.

    Merge keys (``<<: *base``) work as YAML defines them: the mapping's own keys override merged ones, so
    only keys written twice in the mapping itself count as duplicates. Numbers such as ``1e-3`` are floats
    (YAML 1.1 wants ``1.0e-3`` and would read a string, which the range check then refuses confusingly).
    """

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ValueError(f"grid: key {key!r} is given twice (line {key_node.start_mark.line + 1}); "
                                 f"give each key once")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_grid(path: str | Path) -> dict:
    """Read and check a grid file; errors name the file and the key."""
    path = Path(path)
    try:
        spec = yaml.load(path.read_text(), Loader=_StrictLoader)
    except OSError as err:
        raise ValueError(f"grid: cannot read {str(path)!r} ({err.strerror})") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise ValueError(f"grid: {str(path)!r} is not valid YAML{at}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"grid: {str(path)!r} must be a mapping with keys {', '.join(GRID_KEYS)}")
    for key in list(spec):
        if isinstance(key, str) and key.startswith(ANCHOR_PREFIX):  # holds YAML anchors for merge keys only
            del spec[key]
        elif key not in GRID_KEYS:
            raise ValueError(f"grid key: {key!r} is not one of {', '.join(GRID_KEYS)} (a key starting with "
                             f"{ANCHOR_PREFIX} may hold YAML anchors, e.g. for <<: *base)")
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    grid = spec.get("grid")
    if isinstance(grid, list):
        if not grid:
            raise ValueError("grid: an empty list gives no runs; give a mapping of fields, or a list of them")
        sections = [(f"grid[{i}]", body) for i, body in enumerate(grid)]
    else:
        sections = [("grid", grid)]
    for section, body in [*sections, ("fixed", spec.get("fixed"))]:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ValueError(f"{section}: must be a mapping of RunConfig fields"
                             + (" (or a list of such mappings)" if section == "grid" else ""))
        for key in body:
            if key not in fields:
                raise ValueError(f"{section}.{key}: unknown field; fields are {', '.join(fields)}")
    for section, body in sections:
        if not body:
            raise ValueError(f"{section}: no field to vary; give at least one RunConfig field a list of values "
                             "(a single run is `fggp run`)")
        for key, values in body.items():
            if isinstance(values, list) and not values:
                raise ValueError(f"{section}.{key}: an empty list gives no runs; give at least one value")
        both = sorted(set(body) & set(spec.get("fixed") or {}))
        if both:
            raise ValueError(f"fixed.{both[0]}: also in {section}; give it in one place")
    return spec


def subgrids(spec: dict) -> list[dict]:
    """The grid's mappings (field -> list of values): one, or each of a list; the runs are their union."""
    grid = spec.get("grid") or {}
    return [{k: (v if isinstance(v, list) else [v]) for k, v in g.items()}
            for g in (grid if isinstance(grid, list) else [grid])]


def _stable_id(fields: dict) -> str:
    """The run id a point would have, computed from its fields (Infeasible stops RunConfig itself)."""
    return run_id_of(identity_of({**_defaults(), **json.loads(json.dumps(fields, default=list))}))


def _defaults() -> dict:
    return json.loads(json.dumps({f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                                  for f in dataclasses.fields(RunConfig)}))


def expand(spec: dict, data_dir: str | None = None) -> list[RunConfig | NotApplicable]:
    """Every point of the grid as a validated RunConfig, duplicates (e.g. dense at several targets) once.

    ``rate`` and ``grad_window`` apply to the points whose recipe reads them (as sparsity does not to
    dense); one that no point's recipe reads is an error. A point the recipe cannot reach
    (``Infeasible``) is a NotApplicable with its reason; any other bad value rejects the whole grid.
    """
    grids = subgrids(spec)
    fixed = dict(spec.get("fixed") or {})
    if data_dir is not None:
        fixed.setdefault("data_dir", data_dir)
    points: dict[str, RunConfig | NotApplicable] = {}
    used = {knob: False for knob in RECIPE_KNOBS}
    for varied in (dict(zip(g, values)) for g in grids for values in itertools.product(*g.values())):
        fields = {**fixed, **varied, "progress": False}
        recipe = fields.get("recipe", RunConfig.recipe)
        for knob in RECIPE_KNOBS:
            if fields.get(knob) is not None and isinstance(recipe, str) and recipe in RECIPES:
                if knob_applies(recipe, knob):
                    used[knob] = True
                else:
                    fields[knob] = None
        try:
            config = RunConfig.from_dict(fields)
        except Infeasible as err:
            key = _stable_id(fields)
            points.setdefault(key, NotApplicable(key, {**_defaults(), **fields}, str(err).splitlines()[0]))
            continue
        except ValueError as err:
            raise ValueError(f"{err} (grid point {json.dumps(varied, default=str)})") from None
        except TypeError as err:  # a value of a type no check foresaw: still one line, naming the point
            raise ValueError(f"grid point {json.dumps(varied, default=str)}: {err}") from None
        points.setdefault(config.run_id, config)
    for knob, applied in used.items():
        given = any(knob in g for g in grids) or fixed.get(knob) is not None
        values = [v for g in grids for v in g.get(knob, [fixed.get(knob)])]
        if given and not applied and any(v is not None for v in values):
            recipes = sorted({c.recipe for c in points.values() if isinstance(c, RunConfig)})
            raise ValueError(f"{knob}: no recipe of the grid reads it ({', '.join(recipes)}); leave it unset")
    return list(points.values())


def _runnable(points) -> list[RunConfig]:
    return [p for p in points if isinstance(p, RunConfig)]


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


def _whole(name: str, value, low: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: {value!r} must be an integer >= {low} ({what})")


def check_options(jobs: int = 1, executor: str = "local", partition: str | None = None, gpus_per_run: int = 1,
                  timeout_min: float = 24 * 60, array_parallelism: int | None = None) -> None:
    """Every option of a sweep, checked before anything is written; none is silently replaced by another
    value (``array_parallelism=0`` used to become ``jobs``)."""
    _whole("jobs", jobs, 1, "points at a time")
    if executor not in EXECUTORS:
        raise ValueError(f"executor: {executor!r} is not one of {', '.join(EXECUTORS)}")
    if partition is not None and (not isinstance(partition, str) or not partition.strip()):
        raise ValueError(f"partition: {partition!r} must be a SLURM partition name; leave it out for the default")
    _whole("gpus_per_run", gpus_per_run, 0, "GPUs per SLURM job")
    if isinstance(timeout_min, bool) or not isinstance(timeout_min, (int, float)) or not (
            math.isfinite(timeout_min) and timeout_min > 0):
        raise ValueError(f"timeout_min: {timeout_min!r} must be a finite number of minutes > 0")
    if array_parallelism is not None:
        _whole("array_parallelism", array_parallelism, 1, "SLURM jobs at a time; leave it out for --jobs")


def sweep(grid_path: str | Path, out: str | Path = "outputs", jobs: int = 1, log=print, executor: str = "local",
          partition: str | None = None, gpus_per_run: int = 1, timeout_min: float = 24 * 60,
          array_parallelism: int | None = None, retry_diverged: bool = False, make_report: bool = True,
          from_records: str | Path | None = None) -> Outcomes:
    """Expand, execute (``jobs`` at a time, on ``executor``), then build the report with notebook 03
    (unless ``make_report=False``: a grid run in parts, or aggregated later by ``fggp report``/``fggp results``).

    Everything is checked before anything is written; a point that fails is an outcome, not an
    exception, and a report that cannot be written (whole) is ``outcomes.report_error``. ``from_records``:
    a records folder whose finished runs are copied in before anything runs (``fggp.records.seed_runs``).
    """
    check_options(jobs=jobs, executor=executor, partition=partition, gpus_per_run=gpus_per_run,
                  timeout_min=timeout_min, array_parallelism=array_parallelism)
    spec = load_grid(grid_path)
    out = check_out_dir(out)  # absolute from here on: no point's notebook can move where it resolves
    if from_records is not None:
        check_records(from_records)
    points = expand(spec)
    configs = _runnable(points)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", {"grid": str(Path(grid_path).absolute()), "name": spec.get("name"),
                                    "points": [p.point() if isinstance(p, NotApplicable)
                                               else {"run_id": p.run_id, "config": p.to_dict()} for p in points]})
    skipped = len(points) - len(configs)
    log(f"sweep: {len(configs)} runs in {runs_dir}" + (f" ({skipped} not applicable)" if skipped else ""))
    if from_records is not None:
        seed_runs(from_records, [c.run_id for c in configs], runs_dir, log)
    for p in points:
        if isinstance(p, NotApplicable):
            log(f"not applicable: {p.run_id}: {p.reason}")
    devices = _devices(jobs)
    _share_cpu_threads(jobs)

    def on_done(index, outcome):
        log(f"[{index + 1}/{len(configs)}] {outcome.run_id}: {outcome.status}"
            + (f" ({outcome.error.splitlines()[0][:200]})" if outcome.error else ""))

    options = ClusterOptions(folder=out / "submitit", partition=partition, gpus_per_run=gpus_per_run,
                             timeout_min=timeout_min,
                             array_parallelism=jobs if array_parallelism is None else array_parallelism)
    outcomes = Outcomes(execute(configs, runs_dir, jobs, executor, options, log, on_done,
                                device_for=lambda index: devices[index % jobs], retry_diverged=retry_diverged))
    outcomes += [Outcome(p.run_id, "not_applicable", p.reason) for p in points if isinstance(p, NotApplicable)]
    if not make_report:
        log(f"report: not made (as asked); make it with: fggp report {runs_dir}")
        return outcomes
    finished = {o.run_id for o in outcomes if o.status in ("completed", "skipped")}
    try:
        report(runs_dir, out / "report", log=log, expect=finished)
    except Exception as err:  # a full disk, a failing report cell: the runs stand; say it in one line
        outcomes.report_error = f"{type(err).__name__}: {getattr(err, 'evalue', None) or err}".splitlines()[0]
        log(f"report: failed ({outcomes.report_error})")
    return outcomes


def report(runs_dir: str | Path = "outputs/runs", report_dir: str | Path | None = None, log=print,
           expect: set[str] | None = None, subject: str | None = None) -> Path:
    """Execute the aggregation notebook over ``runs_dir``; the executed notebook lands in the report dir.
    ``subject``: the recipe compared with every other (default: fggp, where it ran); checked before the notebook.

    A ``runs_dir`` that does not exist or holds no runs is an error (a misspelt path would give a report of
    nothing), and so is a report that misses any completed run named in ``expect``.
    """
    from .report import check_runs_dir, load_results, resolve_subject

    if runs_dir is None or not str(runs_dir).strip():  # Path("") is "." : a report of whatever is here
        raise ValueError(f"runs_dir: {str(runs_dir)!r} is empty; give a sweep's runs directory, e.g. outputs/runs")
    runs_dir = check_runs_dir(Path(runs_dir).absolute())  # holds runs: an empty folder is not a report either
    report_dir = check_out_dir(report_dir if report_dir is not None else runs_dir.parent / "report", "report_dir")
    params = {"runs_dir": str(runs_dir), "report_dir": str(report_dir)}
    if subject is not None:
        resolve_subject(load_results(runs_dir), subject)  # one line before the notebook starts
        params["subject"] = subject
    report_dir.mkdir(parents=True, exist_ok=True)
    execute_notebook(REPORT_NOTEBOOK, report_dir / REPORT_NOTEBOOK.name, params, cwd=report_dir)
    if expect:
        df = load_results(runs_dir)
        found = set(df.loc[df["status"] == "completed", "run_id"])
        if not (report_dir / "table.md").is_file() or not expect <= found:
            raise RuntimeError(f"report: {report_dir} lists {len(found & expect)} of the {len(expect)} completed runs")
    log(f"report: {report_dir}")
    return report_dir


STATES = ("completed", "recorded", "outputs_missing", "damaged", "failed", "diverged", "running", "interrupted", "pending",
          "not_applicable")


def _status(run_dir: Path) -> str | None:
    return (read_result(run_dir) or {}).get("status")


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


def point_status(run_dir: Path) -> tuple[str, int, str]:
    """Where one run stands, read from its directory alone: one of STATES, the epochs it has done, and why
    (in words, for the states that need it: what is missing or damaged; "unverified" for a result made
    before digests). The same test the sweep applies before it skips a point."""
    run_dir = Path(run_dir)
    epochs = epochs_done(run_dir)
    state, reason = completion(run_dir)
    if state in ("completed", "recorded", "diverged"):
        if state != "diverged" and (run_dir / ERROR_FILE).exists():  # the run finished, its notebook did not
            return "failed", epochs, f"the run completed, its notebook failed: {_first_line(run_dir / ERROR_FILE)}"
        return state, epochs, reason
    if _held(run_dir / ".lock") or _held(run_dir / ".run.lock"):
        return "running", epochs, ""
    if state in ("outputs_missing", "damaged", "failed"):
        if (run_dir / ERROR_FILE).exists():
            reason = f"{reason}; last attempt: {_first_line(run_dir / ERROR_FILE)}" if reason else \
                _first_line(run_dir / ERROR_FILE)
        return ("failed" if state == "failed" else state), epochs, reason
    return ("interrupted" if has_training(run_dir) else "pending"), epochs, ""


def _first_line(path: Path) -> str:
    try:
        return (path.read_text(errors="replace").splitlines() or [""])[0][:200]
    except OSError:
        return ""


def point_state(run_dir: Path) -> tuple[str, int]:
    """Where one run stands: one of STATES and the epochs it has done (``point_status`` adds why)."""
    state, epochs, _ = point_status(run_dir)
    return state, epochs


def status(grid_path: str | Path, out: str | Path = "outputs", from_records: str | Path | None = None) -> pd.DataFrame:
    """One row per grid point: the fields the grid varies, the run id, its state and epochs done. Runs nothing.

    ``outputs_missing`` means the run completed but a file the point makes is missing or edited (the next
    sweep makes it again without training); ``damaged`` that result.json does not match its digest;
    ``running`` that a live process holds the point's lock; ``interrupted`` that it has a checkpoint or
    epochs but no result (a sweep run again resumes it); ``not_applicable`` that the recipe cannot reach
    the point; ``recorded`` that its result was copied from records (``--from-records``). With
    ``from_records``, a pending point the records hold says so in its reason (the dry run copies nothing).
    The ``reason`` column (shown when any row has one) says why.
    """
    if out is None or not str(out).strip():
        raise ValueError(f"out: {str(out)!r} is empty; give the sweep's outputs directory, e.g. outputs")
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"out: {str(out)!r} is a file; it must be a directory")
    spec = load_grid(grid_path)
    if from_records is not None:
        check_records(from_records)
    values: dict[str, list] = {}
    for g in subgrids(spec):
        for k, v in g.items():
            seen = values.setdefault(k, [])
            seen += [x for x in v if x not in seen]
    varied = [k for k, v in values.items() if len(v) > 1]
    rows = []
    for point in expand(spec):
        if isinstance(point, NotApplicable):
            rows.append({**{k: point.config.get(k) for k in varied}, "run_id": point.run_id, "state": "not_applicable",
                         "epochs": "-", "reason": point.reason})
            continue
        state, done, reason = point_status(Path(out) / "runs" / point.run_id)
        if from_records is not None and state == "pending":
            copies, why = record_for(from_records, point.run_id)
            reason = "in the records: copied when the sweep runs, not trained" if copies else why
        rows.append({**{k: getattr(point, k) for k in varied}, "run_id": point.run_id, "state": state,
                     "epochs": f"{done}/{point.epochs}", "reason": reason})
    columns = [*varied, "run_id", "state", "epochs", "reason"]
    table = pd.DataFrame(rows, columns=columns)
    return table if (table["reason"] != "").any() else table.drop(columns="reason")


def count_states(table: pd.DataFrame) -> str:
    counts = table["state"].value_counts()
    return f"sweep: {len(table)} runs: " + ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in STATES
                                                      if s in counts)


def summarize(outcomes: list[Outcome]) -> tuple[str, bool]:
    """One line of counts, and whether every point ended well (completed now or before, or not applicable)
    and the report was written."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    ok = all(o.status in ("completed", "skipped", "not_applicable") for o in outcomes)
    line = "sweep: " + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(counts.items()))
    report_error = getattr(outcomes, "report_error", None)
    if report_error:
        line += f"; report failed ({report_error})"
    return line, ok and not report_error
