"""Where the points of a sweep execute: a local thread pool, submitit's LocalExecutor, or SLURM.

All three call ``fggp.sweep.execute_point`` for each point, so expand -> execute -> record -> report
is one code path. Under submitit a point is a checkpointable job: on preemption or timeout it is
requeued and simply executes the run notebook again, which resumes from the run's epoch checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .train import RunConfig

EXECUTORS = ("local", "submitit-local", "slurm")


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

        def __init__(self, config: dict, runs_dir: str):
            self.config, self.runs_dir = config, runs_dir
            self.attempt = 0
            self._child = None

        def __call__(self):
            from .sweep import Outcome

            self.attempt += 1
            self._child = subprocess.Popen(
                [sys.executable, "-m", "fggp.sweep", json.dumps(self.config), self.runs_dir],
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
        executor.update_parameters(timeout_min=int(options.timeout_min), gpus_per_node=options.gpus_per_run,
                                   slurm_partition=options.partition, slurm_signal_delay_s=options.signal_delay_s,
                                   name="fggp")
        if options.array_parallelism:
            executor.update_parameters(slurm_array_parallelism=options.array_parallelism)
        return executor
    executor = submitit.LocalExecutor(folder=options.folder / "%j", max_num_timeout=options.max_requeues)
    executor.update_parameters(timeout_min=options.timeout_min, signal_delay_s=options.signal_delay_s)
    return executor


def submit_point(executor, config: RunConfig, runs_dir: Path):
    return executor.submit(_task_class()(config.to_dict(), str(runs_dir)))


def execute(configs: list[RunConfig], runs_dir: Path, jobs: int, kind: str, options: ClusterOptions, log,
            on_done, device_for=lambda index: None) -> list:
    """Outcomes of every point, in grid order; ``on_done(index, outcome)`` as each one ends."""
    from .sweep import Outcome, execute_point

    if kind == "local":
        def work(index, config):
            outcome = execute_point(config, runs_dir, device=device_for(index))
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
            jobs_by_index = {i: submit_point(executor, c, runs_dir) for i, c in pending}
        running, pending = jobs_by_index, []
        log(f"sweep: submitted a job array of {len(running)} to SLURM; logs in {options.folder}")
    while pending or running:
        while pending and len(running) < limit:
            i, config = pending.pop(0)
            running[i] = submit_point(executor, config, runs_dir)
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
