"""Where the points of a sweep execute: a local thread pool, submitit's LocalExecutor, or SLURM.

All three call ``execute_point`` for each point, so expand -> execute -> record -> report is one code
path. Under submitit a point is a checkpointable job: on preemption or timeout it is requeued and simply
executes the run notebook again, which resumes from the run's epoch checkpoint.

This module runs notebooks and knows nothing of grids; ``fggp.sweep`` builds on it (never the reverse).
Notebooks never change this process's working directory (papermill's ``cwd`` does, which races between
concurrent points): the kernel is started in its directory instead, and every path it gets is absolute.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import faults
from .train import RunConfig
from .train.checkpoint import atomic_write, metrics_problem, read_result, result_problem, write_json

EXECUTORS = ("local", "submitit-local", "slurm")
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
RUN_NOTEBOOK = NOTEBOOKS / "02_cifar10_run.ipynb"
KERNEL = "python3"
# The kernel's own log, quiet: the "KeyboardInterrupt caught" line at every shutdown is noise in a batch log.
# A failing cell's error travels as a cell output and a dead kernel as nbclient's error, not through this log,
# so both are still recorded. The "running over TCP without encryption" warning is not hidden but removed at
# its cause: the kernel manager gives the kernel CurveZMQ keys (kernel_config), as docs/sweeps.md explains.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
ERROR_FILE = "error.txt"
# A point whose results were copied from committed records (``fggp sweep --from-records``): done, with its
# result, config and metrics, but no checkpoint, notebook or figures, which are never part of the records.
RECORDED_FILE = "recorded.json"
# What notebook 02 saves beside the run files (fggp.viz.runs.save_figures): with the executed notebook,
# config.json and metrics.jsonl, a completed point has all of them, or it is not done.
RUN_FIGURES = ("training_curves.png", "sparsity.png", "layer_density.png")
# RunConfig fields that notebook 02 takes as named parameters; the rest travel in ``extra_config``.
NOTEBOOK_PARAMETERS = ("arch", "dataset", "recipe", "target_sparsity", "initial_sparsity", "rate", "epochs",
                       "batch_size", "lr", "prune_start_epoch", "prune_end_epoch", "prune_every", "seed", "device",
                       "data_dir", "deterministic")


@dataclass
class Outcome:
    run_id: str
    status: str  # completed, failed, diverged, or skipped (completed before)
    error: str | None = None


def _papermill_without_chdir() -> None:
    """Papermill's local file handler chdirs the whole process around every notebook read and save; with
    points in threads that is a race on the working directory. This one joins paths to the same base."""
    from papermill.iorw import LocalHandler, papermill_io

    class AbsoluteLocalHandler(LocalHandler):
        def _path(self, path):
            return os.path.join(self._cwd, path) if self._cwd else path

        def read(self, path):
            try:
                with open(self._path(path), encoding="utf-8") as f:
                    return f.read()
            except OSError as err:
                try:
                    json.loads(path)  # a notebook passed as a string, as papermill's own handler allows
                except ValueError:
                    raise err from None
                return path

        def listdir(self, path):
            return [os.path.join(path, fn) for fn in os.listdir(self._path(path))]

        def write(self, buf, path):
            target = self._path(path)
            if os.path.dirname(target) and not os.path.isdir(os.path.dirname(target)):
                raise FileNotFoundError(f"output folder {os.path.dirname(target)} doesn't exist.")
            with open(target, "w", encoding="utf-8") as f:
                f.write(buf)

    if type(papermill_io.get_handler("local")).__name__ != AbsoluteLocalHandler.__name__:
        papermill_io.register("local", AbsoluteLocalHandler())


def execute_notebook(notebook: Path, output: Path, parameters: dict, cwd: Path) -> None:
    """Execute ``notebook`` with papermill into ``output``, written atomically (old file or whole new one).

    Papermill saves its output after every cell; it saves to a hidden partial file here, which becomes
    ``output`` only once it is a whole notebook. A partial one that cannot be read (a full disk) is dropped.
    Raises whatever papermill raises, after the output is in place.
    """
    import nbformat
    import papermill

    _papermill_without_chdir()
    partial = partial_path(output)
    try:
        papermill.execute_notebook(str(notebook), str(partial), parameters=parameters, kernel_name=KERNEL,
                                   progress_bar=False, extra_arguments=list(KERNEL_ARGUMENTS),
                                   resources={"metadata": {"path": str(Path(cwd).resolve())}},
                                   config=kernel_config())
        faults.reach("notebook_executed")  # the notebook ran (its run and figures are saved), not yet renamed
    finally:
        try:
            executed = nbformat.read(str(partial), as_version=4)
        except Exception:  # missing, truncated, or unreadable: nothing worth keeping
            executed = None
        try:
            if executed is not None:
                atomic_write(output, lambda f: f.write(nbformat.writes(executed).encode()))
        finally:
            partial.unlink(missing_ok=True)


def partial_path(output: Path) -> Path:
    """Where papermill saves ``output`` while it executes (hidden; renamed to ``output`` when whole)."""
    return output.parent / f".{output.stem}.partial{output.suffix}"


def kernel_config():
    """The kernel manager's settings: CurveZMQ transport encryption where pyzmq has it and the kernel spec
    declares it (ipykernel >= 7 does). Without keys the kernel talks plain TCP and warns about it at every
    start; jupyter_client >= 8.10 provisions them, but only when asked (``transport_encryption``)."""
    import zmq
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    if zmq.has("curve") and "transport_encryption" in KernelManager.class_trait_names():
        return Config({"KernelManager": {"transport_encryption": "auto"}})
    return Config()


def notebook_parameters(config: RunConfig, out_dir: Path) -> dict:
    d = config.to_dict()
    params = {k: d.pop(k) for k in NOTEBOOK_PARAMETERS}
    params["data_dir"] = str(Path(params["data_dir"]).resolve())
    params["out_dir"] = str(out_dir.resolve())
    params["extra_config"] = d
    return params


def _status(run_dir: Path) -> str | None:
    return (read_result(run_dir) or {}).get("status")


def completion(run_dir: Path, notebook: Path = RUN_NOTEBOOK) -> tuple[str | None, str]:
    """A point's status from its files, and why, in words: ``completed`` only when result.json says so and
    matches its digest, and config.json, metrics.jsonl (matching result.json), the executed notebook and its
    figures are all there; ``outputs_missing`` when the run completed but any of those is missing or edited
    (a kill between result.json and the notebook, a deleted file): re-executing the notebook makes them
    without training again; ``damaged`` when result.json does not match its digest. A result made before
    digests is read unchecked: ``completed`` with the reason "unverified". ``recorded`` when the result came
    from committed records (``fggp sweep --from-records``): whole, no notebook or figures to make. Other
    states are result.json's own.
    """
    run_dir = Path(run_dir)
    result = read_result(run_dir)
    status = (result or {}).get("status")
    if status != "completed":
        return status, ""
    problem = result_problem(result)
    if problem:
        return "damaged", problem
    reasons = [p for p in [metrics_problem(run_dir, result)] if p]
    missing = [name for name in ("config.json", notebook.name, *RUN_FIGURES) if not (run_dir / name).is_file()]
    if missing:
        if not reasons and "config.json" not in missing and (run_dir / RECORDED_FILE).is_file():
            return "recorded", f"results from {_recorded_from(run_dir)} (no checkpoint, notebook or figures)"
        reasons.append("missing " + ", ".join(missing))
    if reasons:
        return "outputs_missing", "; ".join(reasons)
    return "completed", "" if "digest" in result else "unverified (made before result digests: not checked)"


def _recorded_from(run_dir: Path) -> str:
    try:
        return str(json.loads((run_dir / RECORDED_FILE).read_text()).get("from", "records"))
    except (OSError, ValueError, AttributeError):
        return "records"


def _done(run_dir: Path, notebook: Path = RUN_NOTEBOOK) -> bool:
    """Completed with all its outputs (or copied whole from records), and no failure recorded after it (e.g.
    a full disk while the figures were saved)."""
    return completion(run_dir, notebook)[0] in ("completed", "recorded") and not (run_dir / ERROR_FILE).exists()


def _one_line(err: BaseException) -> str:
    """A failing cell's own exception (papermill's ename/evalue), else this one, as one line."""
    text = f"{getattr(err, 'ename', None) or type(err).__name__}: {getattr(err, 'evalue', None) or err}"
    return text.splitlines()[0] if text.strip() else type(err).__name__


def _record_failure(run_dir: Path, config: RunConfig, error: str, details: str, log) -> None:
    """error.txt and, unless the run itself completed, a failed result.json; a full disk is said, not raised."""
    try:
        atomic_write(run_dir / ERROR_FILE, lambda f: f.write((error + "\n\n" + details).encode()))
        if _status(run_dir) != "completed":
            write_json(run_dir / "result.json", {"status": "failed", "run_id": config.run_id, "error": error,
                                                 "config": config.to_dict()})
    except OSError as err:
        log(f"{config.run_id}: could not record the failure ({_one_line(err)})")


def execute_point(config: RunConfig, runs_dir: Path, notebook: Path = RUN_NOTEBOOK, device: str | None = None,
                  retry_diverged: bool = False, log=print) -> Outcome:
    """Run one grid point through the run notebook, unless it is done.

    This is the unit every executor calls. A lock per run directory makes a second sweep on the same
    outputs wait for the point and then find it done, so no point ever runs twice at once. A diverged
    point stays diverged unless ``retry_diverged``. Any failure, a full disk included, is an Outcome.
    """
    runs_dir = Path(runs_dir).resolve()
    run_dir = runs_dir / config.run_id
    try:
        if _done(run_dir, notebook):
            return Outcome(config.run_id, "skipped")
        if _status(run_dir) == "diverged" and not retry_diverged:
            return Outcome(config.run_id, "diverged", "diverged before; --retry-diverged trains it again")
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel if this process dies
            return _execute_locked(config, runs_dir, run_dir, notebook, device, retry_diverged, log)
    except Exception as err:  # e.g. no space left for the run directory itself
        return Outcome(config.run_id, "failed", _one_line(err))


def _execute_locked(config, runs_dir, run_dir, notebook, device, retry_diverged, log) -> Outcome:
    state, reason = completion(run_dir, notebook)
    if state in ("completed", "recorded") and not (run_dir / ERROR_FILE).exists():
        partial_path(run_dir / notebook.name).unlink(missing_ok=True)  # a kill after the rename left it
        return Outcome(config.run_id, "skipped")
    if state == "diverged":
        if not retry_diverged:
            return Outcome(config.run_id, "diverged", "diverged before; --retry-diverged trains it again")
        (run_dir / "result.json").unlink()
    if state == "outputs_missing":
        log(f"{config.run_id}: completed before; executing its notebook again, without training, for what is "
            f"missing ({reason})")
    # Whatever an earlier execution left is about to be made again; with the lock held, a partial notebook
    # is a killed process's. Removing them first means a notebook in place is always this execution's.
    for name in (notebook.name, partial_path(run_dir / notebook.name).name, *RUN_FIGURES):
        (run_dir / name).unlink(missing_ok=True)
    params = notebook_parameters(config, runs_dir)
    if device is not None:
        params["device"] = device
    try:
        execute_notebook(notebook, run_dir / notebook.name, params, cwd=run_dir)
    except Exception as err:  # PapermillExecutionError, a dead kernel, a full disk, ...: record it, go on
        error = _one_line(err)
        _record_failure(run_dir, config, error, traceback.format_exc(), log)
        return Outcome(config.run_id, "failed", error)
    state, reason = completion(run_dir, notebook)
    if state in ("outputs_missing", "damaged"):  # the notebook ran, yet the point is not whole: say so, not "done"
        error = f"RuntimeError: the notebook finished but the point is not whole ({reason})"
        _record_failure(run_dir, config, error, error, log)
        return Outcome(config.run_id, "failed", error)
    (run_dir / ERROR_FILE).unlink(missing_ok=True)  # an old failure, now stale
    return Outcome(config.run_id, state or "failed")


@dataclass(frozen=True)
class ClusterOptions:
    """SLURM settings (partition, GPUs and time limit per run, array parallelism) and the log folder."""

    folder: Path
    partition: str | None = None
    gpus_per_run: int = 1
    timeout_min: float = 24 * 60
    array_parallelism: int | None = None
    max_requeues: int = 3  # timeouts a job may hit; preemptions do not count
    signal_delay_s: int = 90  # the job is told this long before its time limit, to checkpoint


def _task_class():
    import submitit

    class PointTask(submitit.helpers.Checkpointable):
        """One grid point as a job; requeued as is, since the run checkpoints itself every epoch.

        The notebook runs in a child process of its own session, so that on preemption or timeout the
        job can stop it (its kernel follows its parent) and exit at once instead of waiting on the
        kernel's sockets.
        """

        def __init__(self, config: dict, runs_dir: str, retry_diverged: bool = False):
            self.config, self.runs_dir, self.retry_diverged = config, runs_dir, retry_diverged
            self.attempt = 0
            self._child = None

        def __call__(self):
            self.attempt += 1
            self._child = subprocess.Popen(
                [sys.executable, "-m", "fggp.executors", json.dumps(self.config), self.runs_dir,
                 *(["--retry-diverged"] if self.retry_diverged and self.attempt == 1 else [])],
                stdout=subprocess.PIPE, start_new_session=True, text=True,
            )
            out, _ = self._child.communicate()
            self._child = None
            outcome = Outcome(**json.loads(out.strip().splitlines()[-1]))
            if outcome.status == "skipped" and self.attempt > 1:  # finished by this job's own earlier attempt
                outcome.status = "completed"
            return outcome

        def checkpoint(self, *args, **kwargs):
            child, self._child = self._child, None
            if child is not None and child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
            return super().checkpoint(*args, **kwargs)

    return PointTask


def make_submitit_executor(kind: str, options: ClusterOptions):
    import submitit

    if kind == "slurm":
        executor = submitit.AutoExecutor(folder=options.folder / "%j", cluster="slurm",
                                         slurm_max_num_timeout=options.max_requeues)
        executor.update_parameters(timeout_min=math.ceil(options.timeout_min), gpus_per_node=options.gpus_per_run,
                                   slurm_partition=options.partition, slurm_signal_delay_s=options.signal_delay_s,
                                   name="fggp")
        if options.array_parallelism:
            executor.update_parameters(slurm_array_parallelism=options.array_parallelism)
        return executor
    executor = submitit.LocalExecutor(folder=options.folder / "%j", max_num_timeout=options.max_requeues)
    executor.update_parameters(timeout_min=options.timeout_min, signal_delay_s=options.signal_delay_s)
    return executor


def submit_point(executor, config: RunConfig, runs_dir: Path, retry_diverged: bool = False):
    return executor.submit(_task_class()(config.to_dict(), str(runs_dir), retry_diverged))


def execute(configs: list[RunConfig], runs_dir: Path, jobs: int, kind: str, options: ClusterOptions, log,
            on_done, device_for=lambda index: None, retry_diverged: bool = False) -> list:
    """Outcomes of every point, in grid order; ``on_done(index, outcome)`` as each one ends."""
    if kind == "local":
        def work(index, config):
            outcome = execute_point(config, runs_dir, device=device_for(index), retry_diverged=retry_diverged,
                                    log=log)
            on_done(index, outcome)
            return outcome

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(lambda item: work(*item), enumerate(configs)))

    executor = make_submitit_executor(kind, options)
    limit = jobs if kind == "submitit-local" else len(configs)  # SLURM limits itself (array parallelism)
    pending = list(enumerate(configs))
    running: dict[int, object] = {}
    outcomes: list = [None] * len(configs)
    if kind == "slurm":
        with executor.batch():
            jobs_by_index = {i: submit_point(executor, c, runs_dir, retry_diverged) for i, c in pending}
        running, pending = jobs_by_index, []
        log(f"sweep: submitted a job array of {len(running)} to SLURM; logs in {options.folder}")
    while pending or running:
        while pending and len(running) < limit:
            i, config = pending.pop(0)
            running[i] = submit_point(executor, config, runs_dir, retry_diverged)
        for i, job in list(running.items()):
            if not job.done():
                continue
            del running[i]
            try:
                outcomes[i] = job.result()
            except Exception as err:  # the job itself died (not the notebook): record and go on
                outcomes[i] = Outcome(configs[i].run_id, "failed", f"{type(err).__name__}: {err}")
            on_done(i, outcomes[i])
        time.sleep(0.5)
    return outcomes


if __name__ == "__main__":  # one point, as a submitit job runs it: python -m fggp.executors CONFIG_JSON RUNS_DIR
    point = execute_point(RunConfig.from_dict(json.loads(sys.argv[1])), Path(sys.argv[2]),
                          retry_diverged="--retry-diverged" in sys.argv[3:],
                          log=lambda msg: print(msg, file=sys.stderr))
    print(json.dumps(dataclasses.asdict(point)), flush=True)
