"""Sweeps: grid validation, expansion, skip-on-rerun, a failing point recorded, and the report."""

import ast
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from fggp.report import REPORT_FILES
from fggp.sweep import expand, load_grid, status, sweep


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
        ("grid: []\n", r"^grid: an empty list gives no runs"),
        ("grid: [{seed: [1]}, 3]\n", r"^grid\[1\]: must be a mapping of RunConfig fields$"),
        ("grid: [{seed: [1]}, {colour: [red]}]\n", r"^grid\[1\].colour: unknown field"),
        ("grid: [{seed: [1]}, {seed: []}]\n", r"^grid\[1\].seed: an empty list gives no runs"),
        ("grid: [{seed: [1]}, {}]\n", r"^grid\[1\]: no field to vary"),
        ("grid: [{seed: [1]}, {epochs: [2]}]\nfixed: {epochs: 3}\n", r"^fixed.epochs: also in grid\[1\]"),
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


def test_a_list_of_grids_is_the_union_of_their_products(tmp_path):
    fixed = {"arch": "tiny", "dataset": "synthetic", "epochs": 2, "prune_end_epoch": 1}
    spec = {"grid": [{"seed": [1, 2], "recipe": ["dense", "fggp", "gmp"], "target_sparsity": [0.9, 0.95]},
                     {"seed": [3, 4], "recipe": ["dense", "fggp"], "target_sparsity": [0.95]},
                     {"seed": [1], "recipe": ["fggp"], "target_sparsity": [0.9]}],  # already in the first
            "fixed": fixed}
    configs = expand(spec)
    expected = {("dense", 0.0, s) for s in (1, 2, 3, 4)} | {(r, t, s) for r in ("fggp", "gmp") for t in (0.9, 0.95)
                                                            for s in (1, 2)} | {("fggp", 0.95, 3), ("fggp", 0.95, 4)}
    assert sorted((c.recipe, c.target_sparsity, c.seed) for c in configs) == sorted(expected)
    assert len({c.run_id for c in configs}) == len(configs) == 14
    assert [c.seed for c in configs[:2]] == [1, 1]  # order: grid by grid, first field slowest
    # One grid file, the same ids as the single grids it joins: adding seeds later keeps the finished runs.
    alone = expand({"grid": spec["grid"][0], "fixed": fixed})
    assert {c.run_id for c in alone} <= {c.run_id for c in configs}
    path = write(tmp_path, "grid:\n  - {seed: [1, 2], recipe: [dense, fggp]}\n  - {seed: [3], recipe: [fggp]}\n"
                           "fixed: {arch: tiny, dataset: synthetic, epochs: 2, prune_end_epoch: 1}\n")
    table = status(path, tmp_path / "out")
    assert list(table.columns[:2]) == ["seed", "recipe"] and len(table) == 5
    assert sorted(table["seed"]) == [1, 1, 2, 2, 3]


@pytest.fixture
def broken_cifar(tmp_path):
    """A data dir whose CIFAR-10 archive is garbage: the point fails fast, with no network involved."""
    d = tmp_path / "broken_data"
    d.mkdir()
    (d / "cifar-10-python.tar.gz").write_bytes(b"not a tarball")
    return d


def test_sweep_runs_skips_records_failures_and_reports(tmp_path, broken_cifar, monkeypatch, capfd):
    """Two points at a time, a relative --out: the report lands in OUT/report and lists every run.

    Papermill's ``cwd`` used to chdir the whole process for each notebook; two points in threads raced on
    it and the relative --out then resolved inside a run directory. Any chdir during the sweep fails this
    test, every time, not only when the threads interleave badly.
    """
    from fggp.cli import main

    grid = write(tmp_path, f"""
name: tiny-test
grid:
  recipe: [fggp, gmp]
  dataset: [synthetic, cifar10]
fixed:
  arch: tiny
  epochs: 1
  prune_end_epoch: 1
  prune_every: 5
  target_sparsity: 0.8
  data_dir: {broken_cifar}
""")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    configs = expand(load_grid(grid))
    stale = tmp_path / "out" / "runs" / next(c.run_id for c in configs if c.dataset == "synthetic") / "error.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("RuntimeError: an old failure\n")
    moves = []
    monkeypatch.setattr(os, "chdir", lambda path: moves.append(path))
    assert main(["sweep", "grid.yaml", "--jobs", "2", "--out", "out"]) == 1
    log = capfd.readouterr()
    assert moves == []
    assert "2 completed, 2 failed" in log.out
    assert "without encryption" not in log.out + log.err and "KeyboardInterrupt" not in log.out + log.err
    assert "Checksum" in log.out  # a failing cell's error still reaches the log ...
    out = tmp_path / "out"
    runs = {p.name: json.loads((p / "result.json").read_text()) for p in (out / "runs").iterdir() if p.is_dir()}
    assert sorted(r["status"] for r in runs.values()) == ["completed", "completed", "failed", "failed"]
    for run_id, result in runs.items():
        run_dir = out / "runs" / run_id
        nbformat.read(run_dir / "02_cifar10_run.ipynb", as_version=4)  # whole, valid notebooks
        if result["status"] == "failed":  # ... and its record
            assert "cifar10" in run_id and "Checksum" in (run_dir / "error.txt").read_text()
        else:
            assert not (run_dir / "error.txt").exists()  # a stale failure record goes with a success
            assert result["epochs_done"] == 1
            assert {"training_curves.png", "sparsity.png", "layer_density.png"} <= {p.name for p in run_dir.iterdir()}
    assert not list(out.rglob("*.partial.ipynb"))
    assert all((out / "report" / name).is_file() for name in REPORT_FILES)
    table = (out / "report" / "table.md").read_text()
    assert "4 runs: 2 completed, 2 failed." in table
    failed = [k for k, r in runs.items() if r["status"] == "failed"]
    assert all(run_id in table for run_id in failed)
    assert not list(out.glob("runs/*/out")) and not list(out.glob("runs/*/report"))

    stamps = {k: r.get("finished_at") for k, r in runs.items()}
    assert main(["sweep", "grid.yaml", "--out", "out"]) == 1
    again = capfd.readouterr().out
    assert "2 skipped" in again and "2 failed" in again
    for k, r in runs.items():
        if r["status"] == "completed":
            assert json.loads((out / "runs" / k / "result.json").read_text())["finished_at"] == stamps[k]
    assert moves == []


TWO_POINTS = ("grid: {recipe: [fggp, gmp]}\nfixed: {arch: tiny, dataset: synthetic, epochs: 1, prune_end_epoch: 1, "
              "prune_every: 5, target_sparsity: 0.8}\n")
CHECK = """
import json, sys
from pathlib import Path
import nbformat
out = Path(sys.argv[1])
state = {"bad_notebooks": [], "empty_errors": [], "leftovers": [], "status": {}}
for nb in out.rglob("*.ipynb"):
    try:
        nbformat.read(nb, as_version=4)
    except Exception:
        state["bad_notebooks"].append(str(nb))
state["empty_errors"] = [str(p) for p in out.rglob("error.txt") if p.stat().st_size == 0]
state["errors"] = [str(p) for p in out.rglob("error.txt")]
state["leftovers"] = [str(p) for p in out.rglob("*") if p.name.endswith((".tmp", ".partial.ipynb"))]
for d in (out / "runs").iterdir():
    try:
        state["status"][d.name] = json.loads((d / "result.json").read_text())["status"]
    except (OSError, ValueError):
        state["status"][d.name] = None
state["report"] = (out / "report" / "table.md").read_text() if (out / "report" / "table.md").exists() else None
print(json.dumps(state))
"""


@functools.cache
def _tmpfs_possible() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt || "
                            "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _tmpfs_possible(), reason="no user namespace to mount a small tmpfs in")
def test_full_disk_fails_points_not_the_sweep(tmp_path, resilience):
    """A sweep on a 700 KiB tmpfs (room for about one point): every point is attempted, each one that
    cannot finish is failed, the report says in one line that it failed, no file is left half-written."""
    resilience["faults_injected"] += 1
    grid = write(tmp_path, TWO_POINTS)
    (tmp_path / "check.py").write_text(CHECK)
    disk = tmp_path / "disk"
    disk.mkdir()
    sweep_cmd = f"{shlex.quote(sys.executable)} -m fggp.cli sweep {grid} --out {disk}/sw"
    check_cmd = f"{shlex.quote(sys.executable)} {tmp_path}/check.py {disk}/sw"
    script = (f"mount -t tmpfs -o size=700k tmpfs {disk} && cd {tmp_path} && "
              f"{{ {sweep_cmd} > log1 2>&1; echo $? > rc1; {check_cmd} > state1.json; }}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    log1 = (tmp_path / "log1").read_text()
    first = json.loads((tmp_path / "state1.json").read_text())
    assert (tmp_path / "rc1").read_text().strip() == "1", log1[-3000:]
    assert "Traceback" not in log1 and "[1/2]" in log1 and "[2/2]" in log1  # both points attempted
    assert re.search(r"^sweep: .*failed", log1, flags=re.M), log1[-3000:]
    assert "report: " in log1  # written, or "report: failed (...)" in one line
    assert first["bad_notebooks"] == [] and first["empty_errors"] == [] and first["leftovers"] == []
    done_points = [k for k, v in first["status"].items() if v == "completed"]
    failed_lines = re.findall(r"\] (\S+): failed \(.*No space left on device", log1)
    assert failed_lines and len(set(done_points) | set(failed_lines)) == 2, log1[-3000:]
    for run_id in set(done_points) & set(failed_lines):  # the run finished, its notebook did not: not trusted
        assert any(run_id in path for path in first["errors"])
    resilience["faults_survived"] += 1


@pytest.mark.skipif(_tmpfs_possible(), reason="the real full disk above runs instead")
def test_simulated_full_disk_fails_the_point_and_is_not_trusted_later(tmp_path, monkeypatch, capsys, resilience):
    """Where no tmpfs can be mounted: ENOSPC while the first point's executed notebook is saved (its run
    has completed). The sweep goes on; the next sweep executes that point again and clears its record."""
    import errno

    import fggp.executors
    from fggp.cli import main

    resilience["faults_injected"] += 1
    grid = write(tmp_path, TWO_POINTS)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    first = expand(load_grid(grid))[0].run_id
    real = fggp.executors.atomic_write

    def full_for_the_first_notebook(path, write, fault_point=None):
        if path.suffix == ".ipynb" and path.parent.name == first:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write, fault_point)

    with monkeypatch.context() as m:
        m.setattr(fggp.executors, "atomic_write", full_for_the_first_notebook)
        assert main(["sweep", str(grid), "--out", str(tmp_path / "out")]) == 1
    log = capsys.readouterr().out
    assert f"{first}: failed (OSError: [Errno 28] No space left on device" in log and "1 completed, 1 failed" in log
    run_dir = tmp_path / "out" / "runs" / first
    assert not (run_dir / "02_cifar10_run.ipynb").exists() and not list(run_dir.glob(".*partial*"))
    assert "No space left" in (run_dir / "error.txt").read_text()
    assert main(["sweep", str(grid), "--out", str(tmp_path / "out")]) == 0
    assert "1 completed, 1 skipped" in capsys.readouterr().out
    assert not (run_dir / "error.txt").exists()
    nbformat.read(run_dir / "02_cifar10_run.ipynb", as_version=4)
    resilience["faults_survived"] += 1


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
    run(points[0.05, 1], runs)  # completed, by fggp run: no notebook, no figures yet
    done = runs / points[0.05, 1].run_id
    assert status(grid, out).set_index(["lr", "seed"]).loc[(0.05, 1), ["state", "reason"]].tolist() == [
        "outputs_missing", "missing 02_cifar10_run.ipynb, training_curves.png, sparsity.png, layer_density.png"]
    for name in ("02_cifar10_run.ipynb", "training_curves.png", "sparsity.png", "layer_density.png"):
        (done / name).write_text("as notebook 02 makes it")  # what a sweep's execution adds
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


def test_yaml_numbers_merge_keys_and_duplicates(tmp_path):
    """1e-3 is a number (YAML 1.1 reads a string), a merge key works and overrides nothing written out, and a
    key written twice is still an error, merge or not."""
    spec = load_grid(write(tmp_path, """
x-base: &base {arch: tiny, dataset: synthetic, epochs: 1, prune_end_epoch: 1}
grid: {lr: [1e-3, 2E-2, 1.5e+1], seed: [1]}
fixed:
  <<: *base
  weight_decay: 1e-4
  epochs: 2
"""))
    assert spec["grid"]["lr"] == [0.001, 0.02, 15.0]
    assert spec["fixed"] == {"arch": "tiny", "dataset": "synthetic", "epochs": 2, "prune_end_epoch": 1,
                             "weight_decay": 1e-4} and "x-base" not in spec
    assert [(c.lr, c.epochs, c.weight_decay) for c in expand(spec)] == [(0.001, 2, 1e-4), (0.02, 2, 1e-4),
                                                                        (15.0, 2, 1e-4)]
    with pytest.raises(ValueError, match=r"^grid: key 'epochs' is given twice \(line 6\)"):
        load_grid(write(tmp_path, "x-b: &b {arch: tiny}\ngrid: {seed: [1]}\n"
                                  "fixed:\n  <<: *b\n  epochs: 1\n  epochs: 2\n"))
    with pytest.raises(ValueError, match=r"^grid key: 'base' is not one of name, grid, fixed \(a key starting with x-"):
        load_grid(write(tmp_path, "base: &b {arch: tiny}\ngrid: {seed: [1]}\nfixed: {<<: *b}\n"))


def test_sweep_options_are_checked_and_never_replaced(tmp_path):
    from fggp.sweep import check_options

    grid = write(tmp_path, TWO_POINTS)
    for option, value, message in [("jobs", 0, "^jobs: 0 must be an integer >= 1"),
                                   ("array_parallelism", 0, "^array_parallelism: 0 must be an integer >= 1"),
                                   ("gpus_per_run", -1, "^gpus_per_run: -1 must be an integer >= 0"),
                                   ("timeout_min", float("inf"), "^timeout_min: inf must be a finite number"),
                                   ("timeout_min", 0, "^timeout_min: 0 must be"),
                                   ("partition", "", "^partition: '' must be"),
                                   ("executor", "pbs", "^executor: 'pbs' is not one of")]:
        with pytest.raises(ValueError, match=message):
            check_options(**{option: value})
        with pytest.raises(ValueError, match=message):
            sweep(grid, tmp_path / "out", **{option: value})
    assert not (tmp_path / "out").exists()
    check_options(jobs=2, gpus_per_run=0, timeout_min=0.5, array_parallelism=1, partition="gpu", executor="slurm")


def test_recipe_knobs_apply_to_the_recipes_that_read_them():
    spec = {"grid": {"recipe": ["fggp", "gmp"], "rate": [0.3, 0.5]},
            "fixed": {"arch": "tiny", "dataset": "synthetic", "epochs": 2, "prune_end_epoch": 1}}
    configs = expand(spec)
    assert sorted((c.recipe, c.rate) for c in configs) == [("fggp", 0.3), ("fggp", 0.5), ("gmp", None)]


def test_infeasible_points_are_not_applicable(tmp_path, monkeypatch, capsys):
    """Until RunConfig raises Infeasible itself (per-layer floors above the target), a stand-in does."""
    from fggp.cli import main
    from fggp.executors import Outcome
    from fggp.pruning import Infeasible
    from fggp.train import RunConfig

    original = RunConfig.__post_init__

    def floors_too_high(self):
        original(self)
        if self.recipe == "gmp" and self.target_sparsity == 0.95:
            raise Infeasible("target_sparsity: 0.95 keeps fewer weights than the per-layer floors of gmp")

    monkeypatch.setattr(RunConfig, "__post_init__", floors_too_high)
    grid = write(tmp_path, "grid: {recipe: [fggp, gmp], target_sparsity: [0.9, 0.95]}\n"
                           "fixed: {arch: tiny, dataset: synthetic, epochs: 1, prune_end_epoch: 1}\n")
    out = tmp_path / "out"
    table = status(grid, out).set_index(["recipe", "target_sparsity"])
    assert table.loc[("gmp", 0.95), "state"] == "not_applicable"
    assert table.loc[("gmp", 0.95), "reason"].startswith("target_sparsity: 0.95 keeps fewer")
    assert (table["state"] == "pending").sum() == 3
    assert main(["sweep", str(grid), "--out", str(out), "--dry-run"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("sweep: 4 runs: 3 pending, 1 not applicable")
    assert not out.exists()

    executed = []
    monkeypatch.setattr("fggp.sweep.execute", lambda configs, *a, **k: [executed.append(c.run_id) or
                                                                        Outcome(c.run_id, "completed") for c in configs])
    monkeypatch.setattr("fggp.sweep.report", lambda *a, **k: None)
    assert main(["sweep", str(grid), "--out", str(out)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("sweep: 3 completed, 1 not applicable")
    points = json.loads((out / "sweep.json").read_text())["points"]
    (na,) = [p for p in points if p.get("state") == "not_applicable"]
    assert na["config"]["recipe"] == "gmp" and na["config"]["target_sparsity"] == 0.95
    assert na["reason"].startswith("target_sparsity: 0.95") and na["run_id"] not in executed
    assert len(executed) == 3 and na["run_id"].startswith("tiny-synthetic-gmp-s0.95-i0-seed18-")
    assert na["run_id"] == expand(load_grid(grid))[-1].run_id  # stable across expansions


def test_a_report_that_misses_completed_runs_is_an_error(tmp_path, monkeypatch):
    from fggp.sweep import report
    from fggp.train import RunConfig

    monkeypatch.setattr("fggp.sweep.execute_notebook", lambda *a, **k: None)  # a report written elsewhere
    (tmp_path / "runs").mkdir()
    config = RunConfig(arch="tiny", dataset="synthetic", recipe="fggp", target_sparsity=0.8, seed=1, epochs=2,
                       prune_end_epoch=1)  # planned by the sweep (so the folder is a sweep's), never run
    (tmp_path / "sweep.json").write_text(json.dumps({"points": [{"run_id": config.run_id, "config": config.to_dict()}]}))
    with pytest.raises(RuntimeError, match="lists 0 of the 1 completed runs"):
        report(tmp_path / "runs", tmp_path / "report", expect={"tiny-synthetic-fggp-s0.8-i0-seed1-0123456789"})


def test_executors_do_not_import_the_sweep_layer():
    tree = ast.parse((Path(__file__).resolve().parents[1] / "fggp" / "executors.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert not {m for m in imported if m and m.split(".")[-1] in ("sweep", "report", "cli")}


@pytest.mark.parametrize("notebook", sorted(p.name for p in (Path(__file__).parent.parent / "notebooks").glob("*.ipynb")))
def test_papermill_reads_every_parameter_of_every_notebook(notebook, caplog):
    """A comment papermill cannot parse drops that parameter from its help and warns on every sweep point."""
    import papermill

    path = Path(__file__).parent.parent / "notebooks" / notebook
    cells = [c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    assigned = [t.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
                for t in node.targets]
    with caplog.at_level("WARNING", logger="papermill"):
        inferred = papermill.inspect_notebook(str(path))
    assert list(inferred) == assigned and assigned
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()]
