"""Sweeps: grid validation, expansion, skip-on-rerun, a failing point recorded, and the report."""

import json
import os
import subprocess
import sys

import pytest

from fggp.sweep import expand, load_grid, sweep


def write(tmp_path, text, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("grid: [unclosed", r"^grid: .* is not valid YAML"),
        ("- a\n- b\n", r"^grid: .* must be a mapping"),
        ("grid: {arch: [tiny]}\nsweeps: 3\n", r"^grid key: 'sweeps' is not one of name, grid, fixed"),
        ("grid: {colour: [red]}\n", r"^grid.colour: unknown field"),
        ("grid: {arch: [tiny]}\nfixed: {epoch: 3}\n", r"^fixed.epoch: unknown field"),
        ("grid: {recipe: [fggp, obd]}\n", r"^recipe: 'obd' is not one of"),
        ("grid: {target_sparsity: [0.9, 1.2]}\n", r"^target_sparsity: 1.2 is outside"),
    ],
)
def test_bad_grids_are_refused_before_any_run(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        expand(load_grid(write(tmp_path, text)))
    with pytest.raises(ValueError, match=message):
        sweep(write(tmp_path, text), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_expand_is_the_product_with_dense_once():
    spec = {"grid": {"recipe": ["dense", "fggp", "gmp"], "target_sparsity": [0.9, 0.95], "seed": [1, 2]},
            "fixed": {"arch": "tiny", "dataset": "synthetic", "epochs": 2, "prune_end_epoch": 1}}
    configs = expand(spec)
    assert len(configs) == 2 * (1 + 2 * 2)
    assert sum(c.recipe == "dense" for c in configs) == 2
    assert {c.target_sparsity for c in configs if c.recipe == "gmp"} == {0.9, 0.95}
    assert all(c.epochs == 2 and c.arch == "tiny" for c in configs)


@pytest.fixture
def broken_cifar(tmp_path):
    """A data dir whose CIFAR-10 archive is garbage: the point fails fast, with no network involved."""
    d = tmp_path / "broken_data"
    d.mkdir()
    (d / "cifar-10-python.tar.gz").write_bytes(b"not a tarball")
    return d


def test_sweep_runs_skips_records_failures_and_reports(tmp_path, broken_cifar):
    grid = write(tmp_path, f"""
name: tiny-test
grid:
  recipe: [fggp, gmp]
  dataset: [synthetic, cifar10]
fixed:
  arch: tiny
  epochs: 2
  prune_end_epoch: 1
  prune_every: 5
  target_sparsity: 0.8
  data_dir: {broken_cifar}
""")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "fggp.cli", "sweep", str(grid), "--jobs", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "2 completed, 2 failed" in done.stdout
    runs = {p.name: json.loads((p / "result.json").read_text()) for p in (out / "runs").iterdir() if p.is_dir()}
    assert sorted(r["status"] for r in runs.values()) == ["completed", "completed", "failed", "failed"]
    for run_id, result in runs.items():
        run_dir = out / "runs" / run_id
        assert (run_dir / "02_cifar10_run.ipynb").exists()
        if result["status"] == "failed":
            assert "cifar10" in run_id and "Checksum" in (run_dir / "error.txt").read_text()
    table = (out / "report" / "table.md").read_text()
    failed = [k for k, r in runs.items() if r["status"] == "failed"]
    assert all(run_id in table for run_id in failed)

    stamps = {k: r.get("finished_at") for k, r in runs.items()}
    again = subprocess.run([sys.executable, "-m", "fggp.cli", "sweep", str(grid), "--out", str(out)],
                           capture_output=True, text=True, timeout=600)
    assert "2 skipped" in again.stdout and "2 failed" in again.stdout
    for k, r in runs.items():
        if r["status"] == "completed":
            assert json.loads((out / "runs" / k / "result.json").read_text())["finished_at"] == stamps[k]


def test_concurrent_kernels_share_the_cores(monkeypatch):
    from fggp.sweep import _share_cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    _share_cpu_threads(1)
    assert "OMP_NUM_THREADS" not in os.environ
    _share_cpu_threads(4)
    assert os.environ["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own setting wins
    _share_cpu_threads(4)
    assert os.environ["OMP_NUM_THREADS"] == "3"


def test_dry_run_reports_where_every_point_stands_and_runs_nothing(tmp_path, monkeypatch, capsys):
    import fcntl

    from fggp.cli import main
    from fggp.pruning import Pruner
    from fggp.sweep import status
    from fggp.train import run
    from fggp.train.checkpoint import write_json

    grid = write(tmp_path, """
grid: {lr: [0.05, 1000.0], seed: [1, 2, 3]}
fixed: {arch: tiny, dataset: synthetic, epochs: 2, prune_end_epoch: 1, prune_every: 5}
""")
    out = tmp_path / "out"
    runs = out / "runs"
    points = {(c.lr, c.seed): c for c in expand(load_grid(grid))}
    run(points[0.05, 1], runs)  # completed
    run(points[1000.0, 1], runs)  # diverged in its first epoch
    original = Pruner.after_step

    def stop_in_second_epoch(self):
        original(self)
        if self.step == 20:  # 16 steps per epoch
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Pruner, "after_step", stop_in_second_epoch)
        with pytest.raises(KeyboardInterrupt):
            run(points[0.05, 2], runs)  # interrupted after one epoch
    failed = runs / points[1000.0, 2].run_id
    failed.mkdir()
    write_json(failed / "result.json", {"status": "failed", "error": "RuntimeError: boom"})  # as execute_point records it
    busy = runs / points[0.05, 3].run_id
    busy.mkdir()

    with open(busy / ".run.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a live process training this point
        before = sorted(p.relative_to(out) for p in out.rglob("*"))
        table = status(grid, out).set_index(["lr", "seed"])
        assert main(["sweep", str(grid), "--out", str(out), "--dry-run"]) == 0
    assert table.loc[(0.05, 1), ["state", "epochs"]].tolist() == ["completed", "2/2"]
    assert table.loc[(0.05, 2), ["state", "epochs"]].tolist() == ["interrupted", "1/2"]
    assert table.loc[(0.05, 3), "state"] == "running"
    assert table.loc[(1000.0, 1), "state"] == "diverged"
    assert table.loc[(1000.0, 2), "state"] == "failed"
    assert table.loc[(1000.0, 3), ["state", "epochs"]].tolist() == ["pending", "0/2"]
    assert status(grid, out).set_index(["lr", "seed"]).loc[(0.05, 3), "state"] == "pending"  # lock released
    printed = capsys.readouterr().out
    assert printed.rstrip().endswith(
        "sweep: 6 runs: 1 completed, 1 failed, 1 diverged, 1 running, 1 interrupted, 1 pending")
    assert points[0.05, 2].run_id in printed
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing run, nothing written
