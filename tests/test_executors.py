"""Sweeps through submitit: a grid completes on the LocalExecutor, and a job signalled mid-run (as SLURM
does at a time limit or on preemption) requeues and resumes from its run's checkpoint to the same result
as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fggp.executors import ClusterOptions, make_submitit_executor, submit_point
from fggp.train import RunConfig, run

pytest.importorskip("submitit")


def test_grid_completes_on_submitit_local(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid: {recipe: [fggp, gmp]}\nfixed: {arch: tiny, dataset: synthetic, epochs: 1, "
                    "prune_end_epoch: 1, prune_every: 5, target_sparsity: 0.8}\n")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "fggp.cli", "sweep", str(grid), "--executor", "submitit-local",
                           "--jobs", "2", "--timeout-min", "10", "--out", str(out), "--no-report"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "2 completed" in done.stdout
    results = [json.loads(p.read_text()) for p in (out / "runs").glob("*/result.json")]
    assert sorted(r["config"]["recipe"] for r in results) == ["fggp", "gmp"]
    assert all(r["status"] == "completed" for r in results)
    assert any((out / "submitit").rglob("*_log.out"))  # submitit's own logs, one folder per job
    assert not (out / "report").exists()  # --no-report: the report's own tests are in test_sweep


def _task_processes(controller_pid: int) -> list[int]:
    """The job's task processes: children of submitit's local controller."""
    children = Path(f"/proc/{controller_pid}/task/{controller_pid}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the job's process through /proc")
def test_signalled_job_requeues_and_resumes(tmp_path):
    config = RunConfig(arch="tiny", dataset="synthetic", recipe="fggp", target_sparsity=0.9, epochs=5,
                       prune_end_epoch=3, prune_every=20, deterministic=True, progress=False)
    reference = run(config, tmp_path / "reference")
    runs_dir = tmp_path / "runs"
    job = submit_point(make_submitit_executor("submitit-local", ClusterOptions(folder=tmp_path / "submitit")),
                       config, runs_dir)
    checkpoint = runs_dir / config.run_id / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and not job.done():
        time.sleep(0.1)
    tasks = _task_processes(job._process.pid)
    assert checkpoint.exists() and len(tasks) == 1, "the job must be signalled mid-run"
    os.kill(tasks[0], signal.SIGUSR2)  # what SLURM sends before a time limit or on preemption
    outcome = job.result()
    assert outcome.status == "completed"
    assert job.stdout().count("Requeued job") == 1
    executed = (runs_dir / config.run_id / "02_cifar10_run.ipynb").read_text()
    assert "resuming from checkpoint" in executed
    result = json.loads((runs_dir / config.run_id / "result.json").read_text())
    # config: data_dir is made absolute (run_id stays); the history's per-epoch seconds, and the digest over it
    ignore = ("wall_seconds", "finished_at", "config", "history", "metrics_sha256", "digest")
    assert {k: v for k, v in result.items() if k not in ignore} == {k: v for k, v in reference.items() if k not in ignore}
