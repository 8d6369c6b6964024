"""A sweep's compact records: the files `fggp results` reads, small enough to commit.

    fggp records outputs/fashion docs/results/fashion

Why: the evidence document is rebuilt from these without rerunning anything, and a long grid can be
finished in a later sitting (its planned points are in sweep.json, so the unfinished ones show as missing).
Per run: ``result.json``, ``config.json``, ``metrics.jsonl`` (and ``export/export.json`` where the run was
exported); no checkpoints, notebooks or figures. A run not finished yet keeps what it has (config, metrics so
far): the document counts it as incomplete, as it would the sweep's own folder. Only whole runs are copied: a result.json that does not
match its digest, or a completed run whose metrics do not match it, is left out and named. The copy is
made beside ``dest`` and renamed into place, so ``dest`` is the old records or the new ones, never half.

The way back: ``fggp sweep GRID --from-records DEST`` copies the finished runs of the records into the
sweep's folder before it runs anything (``seed_runs``), so a fresh checkout trains only what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .executors import RECORDED_FILE
from .train.checkpoint import (_umask, check_out_dir, has_training, metrics_problem, read_result, result_problem,
                               write_json)

RUN_RECORDS = ("result.json", "config.json", "metrics.jsonl", "export/export.json")
SWEEP_FILE = "sweep.json"
FINAL = ("completed", "diverged")  # the states a sweep does not train again


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


def check_records(records) -> Path:
    """``records`` as a folder ``fggp records`` wrote (runs/ and sweep.json), else a one-line error."""
    if records is None or not str(records).strip():
        raise ValueError(f"from_records: {str(records)!r} is empty; give a records folder, e.g. docs/results/fashion")
    folder = Path(records).absolute()
    if not (folder / "runs").is_dir() or not (folder / SWEEP_FILE).is_file():
        raise ValueError(f"from_records: {str(records)!r} is not a records folder (it needs runs/ and {SWEEP_FILE}, "
                         f"as `fggp records SWEEP_OUT DEST` writes them)")
    return folder


def _record_problem(record: Path, run_id: str) -> str | None:
    result = read_result(record)
    if result is None:
        return "unfinished"
    if result.get("status") not in FINAL:
        return f"{result.get('status')}"
    if result.get("run_id") not in (None, run_id):
        return f"result.json is run {result.get('run_id')}, not {run_id}"
    if not (record / "config.json").is_file():
        return "config.json is missing"
    return _problem(record, result)


def _trained_here(run_dir: Path) -> bool:
    """Whether this sweep's folder has anything of the run worth keeping: a result or training done."""
    return run_dir.is_dir() and (read_result(run_dir) is not None or has_training(run_dir))


def seed_runs(records, run_ids, runs_dir, log=print) -> dict:
    """Copy the finished runs of ``records`` among ``run_ids`` into ``runs_dir``, marked as recorded.

    Why: a grid's committed records are its finished points; a sweep seeded with them trains only the
    rest, and `fggp records` afterwards holds them all. A point this folder already has (a result, a
    checkpoint, epochs) is left as it is. A record that is unfinished, damaged or not this point's is not
    copied, and said. Each run lands whole: its files are put together beside ``runs_dir`` and renamed in.
    Returns ``{"seeded": [...], "kept": [...], "not_copied": {run_id: why}}``.
    """
    folder = check_records(records)
    runs_dir = Path(runs_dir)
    seeded, kept, not_copied = [], [], {}
    staging_root = runs_dir.parent / ".from-records"
    for run_id in run_ids:
        record = folder / "runs" / run_id
        if not record.is_dir():
            continue
        problem = _record_problem(record, run_id)
        if problem:
            not_copied[run_id] = problem
            continue
        run_dir = runs_dir / run_id
        if _trained_here(run_dir):
            kept.append(run_id)
            continue
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=staging_root, prefix=f"{run_id}."))
        try:
            for name in RUN_RECORDS:
                if (record / name).is_file():
                    (staging / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(record / name, staging / name)
            write_json(staging / RECORDED_FILE, {"from": _shown(folder)})
            os.chmod(staging, 0o777 & ~_umask())
            if run_dir.exists():  # a pending point's folder (a lock, a config): nothing trained, replaced
                aside = Path(tempfile.mkdtemp(dir=staging_root, prefix=f"{run_id}.", suffix=".old"))
                os.replace(run_dir, aside / "run")
            os.replace(staging, run_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        seeded.append(run_id)
    shutil.rmtree(staging_root, ignore_errors=True)
    for run_id, why in not_copied.items():
        log(f"from records: not copied {run_id} ({why}); it is trained")
    log(f"from records: {len(seeded)} finished runs of {_shown(folder)} copied (results, no checkpoints)"
        + (f", {len(kept)} already in {_shown(runs_dir)} kept" if kept else "")
        + (f", {len(not_copied)} not copied" if not_copied else ""))
    return {"seeded": seeded, "kept": kept, "not_copied": not_copied}


def record_for(records, run_id: str) -> tuple[bool, str]:
    """Whether ``seed_runs`` would copy this point's record, and why not when it would not (the dry run's
    reason; it copies nothing)."""
    record = check_records(records) / "runs" / run_id
    if not record.is_dir():
        return False, ""
    problem = _record_problem(record, run_id)
    return (False, f"its record is not copied ({problem}); it is trained") if problem else (True, "")


__all__ = ["write_records", "seed_runs", "check_records", "record_for", "RUN_RECORDS"]
