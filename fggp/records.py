"""A sweep's compact records: the files `fggp results` reads, small enough to commit.

    fggp records outputs/fashion docs/results/fashion

Why: the evidence document is rebuilt from these without rerunning anything, and a long grid can be
finished in a later sitting (its planned points are in sweep.json, so the unfinished ones show as missing).
Per run: ``result.json``, ``config.json``, ``metrics.jsonl`` (and ``export/export.json`` where the run was
exported); no checkpoints, notebooks or figures. A run not finished yet keeps what it has (config, metrics so
far): the document counts it as incomplete, as it would the sweep's own folder. Only whole runs are copied: a result.json that does not
match its digest, or a completed run whose metrics do not match it, is left out and named. The copy is
made beside ``dest`` and renamed into place, so ``dest`` is the old records or the new ones, never half.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .train.checkpoint import _umask, check_out_dir, metrics_problem, read_result, result_problem, write_json

RUN_RECORDS = ("result.json", "config.json", "metrics.jsonl", "export/export.json")
SWEEP_FILE = "sweep.json"


def _shown(path: Path) -> str:
    """``path`` relative to the current directory where it lies below it (a repository-relative grid)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _problem(run_dir: Path, result: dict | None) -> str | None:
    if result is None:
        return None  # no result: not a finished run (the sweep's plan lists the point)
    problem = result_problem(result)
    if problem is None and result.get("status") == "completed" and "digest" in result:
        problem = metrics_problem(run_dir, result)  # a result made before digests is copied unchecked
    return problem


def write_records(sweep_out, dest, log=print) -> dict:
    """Copy the records of every finished run under ``sweep_out/runs`` and the sweep's plan to ``dest``.

    Returns ``{"copied": n, "left_out": {run_id: why}, "unfinished": m}``. ``sweep.json`` keeps its points; its
    ``grid`` becomes a path relative to the current directory and ``out`` records ``sweep_out`` (the
    document's reproduce command names the sweep's folder, not the records').
    """
    if sweep_out is None or not str(sweep_out).strip():
        raise ValueError(f"sweep: {str(sweep_out)!r} is empty; give a sweep's --out folder, e.g. outputs/fashion")
    source = Path(sweep_out)
    runs = source / "runs"
    if not runs.is_dir():
        raise ValueError(f"sweep: {str(sweep_out)!r} has no runs/ folder (pass a sweep's --out directory)")
    if not (source / SWEEP_FILE).is_file():
        raise ValueError(f"sweep: {str(sweep_out)!r} has no {SWEEP_FILE} (records are made of a sweep's folder)")
    try:
        plan = json.loads((source / SWEEP_FILE).read_text())
    except ValueError as err:
        raise ValueError(f"sweep: {source / SWEEP_FILE} is not valid JSON ({err})") from None
    target = check_out_dir(dest, "dest")
    if target == source.absolute() or source.absolute() in target.parents:
        raise ValueError(f"dest: {str(dest)!r} is inside the sweep's folder {str(sweep_out)!r}; give another place")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    copied, left_out, unfinished = 0, {}, 0
    try:
        for run_dir in sorted(d for d in runs.iterdir() if d.is_dir()):
            result = read_result(run_dir)
            problem = _problem(run_dir, result)
            if problem:
                left_out[run_dir.name] = problem
                continue
            names = [n for n in RUN_RECORDS if (run_dir / n).is_file()]
            if not names:
                continue  # not a run (no config, no result)
            for name in names:
                (staging / "runs" / run_dir.name / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(run_dir / name, staging / "runs" / run_dir.name / name)
            if result is None:
                unfinished += 1  # its config and metrics so far: the document counts it as incomplete
            else:
                copied += 1
        (staging / "runs").mkdir(exist_ok=True)
        grid = plan.get("grid")
        write_json(staging / SWEEP_FILE, {**plan, "grid": _shown(Path(grid)) if grid else grid,
                                          "out": _shown(source)})
        for path in [staging, *staging.rglob("*")]:  # mkdtemp's 0700 would hide the records from the group
            os.chmod(path, 0o777 & ~_umask() if path.is_dir() else 0o666 & ~_umask())
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
            os.replace(target, old / "records")
        try:
            os.replace(staging, target)
        except BaseException:
            if old is not None:
                if not target.exists():  # the old records go back where they were
                    os.replace(old / "records", target)
                shutil.rmtree(old, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for run_id, why in left_out.items():
        log(f"records: left out {run_id} ({why})")
    log(f"records: {copied} runs of {_shown(source)} in {_shown(target)}" + (f", {len(left_out)} left out" if left_out else "")
        + (f", {unfinished} unfinished (config and metrics so far)" if unfinished else ""))
    return {"copied": copied, "left_out": left_out, "unfinished": unfinished}


__all__ = ["write_records", "RUN_RECORDS"]
