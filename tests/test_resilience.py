"""Nothing lost, nothing confusing: real processes killed at the worst moments, and every bad input.

The bad-input cases are the table in docs/bad_inputs.md, read from there.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import shutil
from pathlib import Path

import pytest
import torch

from fggp.cli import main

ROOT = Path(__file__).resolve().parent.parent
RUN = ["arch=tiny", "dataset=synthetic", "recipe=fggp", "target_sparsity=0.9", "epochs=3", "prune_end_epoch=2",
       "prune_every=5", "deterministic=true", "progress=false"]


def bad_input_table():
    text = (ROOT / "docs" / "bad_inputs.md").read_text()
    text = text[text.index("## Bad input"):text.index("## Accepted as written")]
    rows = re.findall(r"^\| ([^|]+) \| `([^`]+)` \| `([^`]+)` \|$", text, flags=re.M)
    assert len(rows) >= 15
    return rows


def expand_placeholders(command: str, tmp_path: Path) -> list[str]:
    out, i, n = [], 0, 0
    while (start := command.find("{grid:", i)) >= 0:
        depth, j = 0, start
        while True:
            depth += {"{": 1, "}": -1}.get(command[j], 0)
            if depth == 0:
                break
            j += 1
        n += 1
        grid = tmp_path / f"grid{n}.yaml"
        grid.write_text(command[start + len("{grid:"):j] + "\n")
        out.append(command[i:start] + str(grid))
        i = j + 1
    command = "".join(out) + command[i:]
    (tmp_path / "a_file").write_text("not a directory")
    (tmp_path / "empty").mkdir(exist_ok=True)
    (tmp_path / "readonly").mkdir(exist_ok=True)
    (tmp_path / "readonly").chmod(0o555)
    for name, path in (("file", "a_file"), ("empty", "empty"), ("readonly", "readonly")):
        command = command.replace("{" + name + "}", str(tmp_path / path))
    return shlex.split(command)


@pytest.mark.parametrize("case, command, prefix", bad_input_table(), ids=lambda v: v if " " in v else None)
def test_bad_input_is_rejected_in_one_line(tmp_path, capsys, monkeypatch, resilience, case, command, prefix):
    if "{readonly}" in command and os.geteuid() == 0:
        pytest.skip("root can write any directory")
    monkeypatch.chdir(tmp_path)
    resilience["bad_inputs_tried"] += 1
    code = main(expand_placeholders(command, tmp_path))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"fggp: error: {prefix}"), err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "outputs").exists()  # nothing was started
    placeholders = {"a_file", "empty", "readonly"}  # nor written anywhere else (--out "" is the current directory)
    assert {p.name for p in tmp_path.iterdir()} - placeholders <= {f"grid{i}.yaml" for i in range(1, 9)}
    assert not list((tmp_path / "empty").iterdir())
    resilience["bad_inputs_rejected"] += 1


def accepted_input_table():
    text = (ROOT / "docs" / "bad_inputs.md").read_text()
    section = text[text.index("## Accepted as written"):text.index("## Faults")]
    rows = re.findall(r"^\| ([^|]+) \| `([^`]+)` \| `([^`]+)` \|$", section, flags=re.M)
    assert len(rows) >= 2
    return rows


@pytest.mark.parametrize("case, command, shown", accepted_input_table(), ids=lambda v: v if " " in v else None)
def test_input_that_reads_as_written_is_accepted(tmp_path, capsys, monkeypatch, case, command, shown):
    """What YAML allows and a sweep used to refuse: 1e-3 (a string to YAML 1.1), merge keys."""
    monkeypatch.chdir(tmp_path)
    assert main(expand_placeholders(command, tmp_path)) == 0, capsys.readouterr().err
    assert shown in capsys.readouterr().out


def test_cli_error_from_a_real_process_has_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fggp.cli", "run", "arch=alexnet"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    from fggp.models import MODELS

    expected = f"fggp: error: arch: 'alexnet' is not one of {', '.join(sorted(MODELS))}"
    assert done.stderr.strip().splitlines() == [expected]


def fggp_run(out: Path, fault: str | None = None, *extra: str):
    env = {k: v for k, v in os.environ.items() if k != "FGGP_FAULT"}
    if fault:
        env["FGGP_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "fggp.cli", "run", *RUN, *extra, "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)


def metrics_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# Differ between two runs of one config: the time taken (also each history row's "seconds"), and what covers it.
TIMING = ("wall_seconds", "finished_at", "history", "metrics_sha256", "digest")


def the_result(out: Path) -> dict:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    result = json.loads((run_dir / "result.json").read_text())
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in result["history"]] == \
        [{k: v for k, v in row.items() if k != "seconds"} for row in metrics_rows(run_dir)]
    return {k: v for k, v in result.items() if k not in TIMING}


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    assert fggp_run(out).returncode == 0
    return out


@pytest.fixture(scope="module")
def reference(reference_dir):
    return the_result(reference_dir)


# epoch_end:3: the last epoch's checkpoint is in place, its metrics row is not (the row must not be lost)
@pytest.mark.parametrize("fault", ["step:20", "prune:5", "checkpoint_write:2", "checkpoint_rotate:2", "epoch_end:3"])
def test_killed_run_resumes_to_the_same_result(tmp_path, reference, reference_dir, resilience, fault):
    resilience["faults_injected"] += 1
    killed = fggp_run(tmp_path, fault)
    assert killed.returncode == -signal.SIGKILL
    (run_dir,) = list(tmp_path.iterdir())
    assert not (run_dir / "result.json").exists()
    resumed = fggp_run(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout
    assert the_result(tmp_path) == reference  # accuracies, sparsity, mask_hash, per-epoch-independent fields
    assert not list(run_dir.glob(".*.tmp"))
    (ref_dir,) = list(reference_dir.iterdir())
    assert [r["epoch"] for r in metrics_rows(run_dir)] == [1, 2, 3]
    assert [r["test_acc"] for r in metrics_rows(run_dir)] == [r["test_acc"] for r in metrics_rows(ref_dir)]
    resilience["faults_survived"] += 1


def test_lost_metrics_of_a_completed_run_are_rewritten(tmp_path, capsys, reference, reference_dir, resilience):
    resilience["faults_injected"] += 1
    (ref_dir,) = list(reference_dir.iterdir())
    run_dir = tmp_path / ref_dir.name
    shutil.copytree(ref_dir, run_dir)
    (run_dir / "metrics.jsonl").unlink()
    assert main(["run", *RUN, "--out", str(tmp_path)]) == 0  # completed: nothing trained, in this process
    assert "metrics.jsonl is missing; rewritten from result.json's copy of the history (3 epochs)" in \
        capsys.readouterr().out
    assert metrics_rows(run_dir) == metrics_rows(ref_dir)
    assert the_result(tmp_path) == reference
    resilience["faults_survived"] += 1


def old_style(run_dir: Path) -> None:
    """result.json as runs wrote it before digests: no history copy, no digest (still read, unchecked)."""
    result = json.loads((run_dir / "result.json").read_text())
    for key in ("history", "metrics_sha256", "digest"):
        del result[key]
    (run_dir / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


def edit_metrics(run_dir: Path) -> None:
    rows = metrics_rows(run_dir)
    rows[-1]["test_acc"] = 0.999
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def edit_result(run_dir: Path) -> None:
    result = json.loads((run_dir / "result.json").read_text())
    result["final_test_acc"] = 0.999
    (run_dir / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


def remove(*names):
    return lambda run_dir: [(run_dir / name).unlink() for name in names]


# (damage done to a completed run, what the rerun says, whether metrics.jsonl is back)
LOST_HISTORY = {
    "metrics-and-checkpoints-deleted": (
        [remove("metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt")],
        "metrics.jsonl is missing; rewritten from result.json's copy of the history (3 epochs)", True),
    "metrics-deleted-checkpoints-damaged": (
        [remove("metrics.jsonl"), lambda d: (truncate(d / "checkpoint.pt"), flip_a_byte(d / "checkpoint.prev.pt"))],
        "metrics.jsonl is missing; rewritten from result.json's copy of the history (3 epochs)", True),
    "old-result-metrics-deleted": (
        [old_style, remove("metrics.jsonl")],
        "metrics.jsonl is missing; rewritten from the checkpoint's history (3 epochs)", True),
    "old-result-metrics-and-checkpoints-deleted": (
        [old_style, remove("metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt")],
        "metrics.jsonl is missing and cannot be rebuilt (no readable checkpoint, and result.json holds no copy of "
        "the history: it predates them); the result is kept", False),
    "metrics-edited": (
        [edit_metrics],
        "metrics.jsonl does not match result.json's digest (edited or damaged); rewritten from result.json's copy "
        "of the history (3 epochs)", True),
    "config-deleted": ([remove("config.json")], "config.json rewritten from result.json", True),
}


@pytest.mark.parametrize("case", list(LOST_HISTORY))
def test_lost_history_is_rebuilt_or_said_in_one_line(tmp_path, capsys, reference_dir, resilience, case):
    """A completed run whose files were lost or edited: rewritten from what is left, and said; when nothing is
    left to rebuild metrics.jsonl from, one line says so and the result stands (exit 0, nothing trained)."""
    damages, message, restored = LOST_HISTORY[case]
    resilience["faults_injected"] += 1
    (ref_dir,) = list(reference_dir.iterdir())
    run_dir = tmp_path / ref_dir.name
    shutil.copytree(ref_dir, run_dir)
    for damage in damages:
        damage(run_dir)
    before = (run_dir / "result.json").read_bytes()
    assert main(["run", *RUN, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{run_dir.name}: {message}\n" in out and "already completed; loaded, not trained again" in out
    assert (run_dir / "result.json").read_bytes() == before  # the result is kept as it was
    assert (run_dir / "config.json").read_text() == (ref_dir / "config.json").read_text()
    if restored:
        assert (run_dir / "metrics.jsonl").read_bytes() == (ref_dir / "metrics.jsonl").read_bytes()
    else:
        assert not (run_dir / "metrics.jsonl").exists()
    assert main(["run", *RUN, "--out", str(tmp_path)]) == 0  # then whole: one line; a history that is gone, again
    assert capsys.readouterr().out.count("\n") == (1 if restored else 2)
    resilience["faults_survived"] += 1


def test_edited_result_is_rebuilt_from_the_final_checkpoint_or_refused(tmp_path, capsys, reference, reference_dir,
                                                                       resilience):
    """An edited result.json is not returned as the run's: the final checkpoint rebuilds it (no epoch trained);
    without one the run stops in one line and the file is left for the user to look at."""
    resilience["faults_injected"] += 2
    (ref_dir,) = list(reference_dir.iterdir())
    run_dir = tmp_path / ref_dir.name
    shutil.copytree(ref_dir, run_dir)
    edit_result(run_dir)
    assert main(["run", *RUN, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{run_dir.name}: result.json does not match its digest (edited or damaged); rebuilding it from the final " \
           f"checkpoint (epoch 3)" in out and "epoch 1/3" not in out
    assert the_result(tmp_path) == reference
    resilience["faults_survived"] += 1
    edit_result(run_dir)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run_dir / name).unlink()
    edited = (run_dir / "result.json").read_bytes()
    assert main(["run", *RUN, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fggp: error: result.json: ") and "does not match its digest" in err and "\n" not in err
    assert (run_dir / "result.json").read_bytes() == edited
    resilience["faults_survived"] += 1


def test_run_files_are_readable_by_the_group(reference_dir):
    umask = os.umask(0o022)
    os.umask(umask)
    (run_dir,) = list(reference_dir.iterdir())
    for name in ("config.json", "metrics.jsonl", "result.json", "checkpoint.pt"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def scale_64_floats(path: Path) -> None:
    """Double 64 floats of the largest weight in place: the file still unpickles, with other weights."""
    data = path.read_bytes()
    weight = max(torch.load(path, weights_only=True)["model"].values(), key=lambda t: t.numel())
    head = weight.flatten()[:64].contiguous()
    at = data.index(head.numpy().tobytes())
    path.write_bytes(data[:at] + (head * 2).numpy().tobytes() + data[at + len(head.numpy().tobytes()):])


@pytest.fixture(scope="module")
def killed_after_two_epochs(tmp_path_factory):
    out = tmp_path_factory.mktemp("killed")
    assert fggp_run(out, "step:40").returncode == -signal.SIGKILL  # after two epoch-end checkpoints
    return out


@pytest.mark.parametrize("damage, damaged, message", [
    (truncate, ["checkpoint.pt"], "resuming from checkpoint.prev.pt"),
    (truncate, ["checkpoint.pt", "checkpoint.prev.pt"], "no readable checkpoint left; starting afresh"),
    (flip_a_byte, ["checkpoint.pt"], "resuming from checkpoint.prev.pt"),
    (scale_64_floats, ["checkpoint.pt"], "resuming from checkpoint.prev.pt"),
], ids=["truncated", "both-truncated", "flipped-byte", "scaled-floats"])
def test_damaged_checkpoint_falls_back_and_says_so(tmp_path, killed_after_two_epochs, reference, resilience, damage,
                                                   damaged, message):
    resilience["faults_injected"] += 1
    shutil.copytree(killed_after_two_epochs, tmp_path, dirs_exist_ok=True)
    (run_dir,) = list(tmp_path.iterdir())
    for name in damaged:
        damage(run_dir / name)
    resumed = fggp_run(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "is damaged" in resumed.stdout and message in resumed.stdout
    assert "Traceback" not in resumed.stdout + resumed.stderr
    assert the_result(tmp_path) == reference
    resilience["faults_survived"] += 1


def test_diverging_run_reports_the_step(tmp_path, capsys):
    done = subprocess.run([sys.executable, "-m", "fggp.cli", "run", *RUN, "lr=1e3", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    result = the_result(tmp_path)
    assert result["status"] == "diverged" and result["diverged_step"] >= 1
    assert "diverged at step" in done.stdout
    assert main(["run", *RUN, "lr=1e3", "--out", str(tmp_path)]) == 1
    again = capsys.readouterr().out
    assert "diverged before" in again and "diverged at step" not in again
    assert the_result(tmp_path) == result  # not trained again
    assert main(["run", *RUN, "lr=1e3", "--retry-diverged", "--out", str(tmp_path)]) == 1
    assert "diverged at step" in capsys.readouterr().out


GRID = """
grid:
  recipe: [fggp, gmp]
  seed: [1, 2]
fixed: {arch: tiny, dataset: synthetic, epochs: 1, prune_end_epoch: 1, prune_every: 5, target_sparsity: 0.8}
"""


FIGURES = ("training_curves.png", "sparsity.png", "layer_density.png")  # what notebook 02 saves per point


def start_sweep(grid: Path, out: Path) -> subprocess.Popen:
    """No report: these tests are about the runs (the report has its own tests), and it costs a kernel."""
    return subprocess.Popen([sys.executable, "-m", "fggp.cli", "sweep", str(grid), "--out", str(out), "--no-report"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def completed(out: Path) -> dict[str, str]:
    found = {}
    for result in (out / "runs").glob("*/result.json"):
        data = json.loads(result.read_text())
        if data.get("status") == "completed":
            found[result.parent.name] = data["finished_at"]
    return found


def test_killed_sweep_reruns_only_unfinished_points(tmp_path, capsys, resilience):
    """SIGKILL of a sweep after its first point's notebook ran (result.json completed, figures saved) and before
    the executed notebook is renamed into place (FGGP_FAULT=notebook_executed:1): that point is not completed,
    only a hidden partial notebook was left. The dry run says what is missing; the next sweep executes the
    notebook again over the finished run, without training, and trains only the point that never started."""
    resilience["faults_injected"] += 1
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID.replace("seed: [1, 2]", "seed: [1]"))  # two points: one done, one never started
    out = tmp_path / "out"
    env = {**os.environ, "FGGP_FAULT": "notebook_executed:1"}
    killed = subprocess.run([sys.executable, "-m", "fggp.cli", "sweep", str(grid), "--out", str(out), "--no-report"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    before = completed(out)
    assert len(before) == 1
    (first,) = before
    run_dir = out / "runs" / first
    assert (run_dir / ".02_cifar10_run.partial.ipynb").exists() and not (run_dir / "02_cifar10_run.ipynb").exists()
    assert all((run_dir / name).exists() for name in FIGURES)
    assert main(["sweep", str(grid), "--out", str(out), "--dry-run"]) == 0  # before the fix: "completed", skipped
    printed = capsys.readouterr().out
    assert re.search(rf"{first}\s+outputs_missing\s+1/1\s+missing 02_cifar10_run.ipynb$", printed, re.M), printed
    assert printed.rstrip().endswith("sweep: 2 runs: 1 outputs missing, 1 pending")
    again = subprocess.run([sys.executable, "-m", "fggp.cli", "sweep", str(grid), "--out", str(out), "--no-report"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    after = completed(out)
    assert len(after) == 2
    assert after[first] == before[first]  # kept, not trained again
    assert f"{first}: completed before; executing its notebook again, without training, for what is missing " \
           f"(missing 02_cifar10_run.ipynb)" in again.stdout and "sweep: 2 completed" in again.stdout
    assert "loaded, not trained again" in (run_dir / "02_cifar10_run.ipynb").read_text()
    assert not list(out.rglob("*partial*"))
    for run_id in after:
        assert all((out / "runs" / run_id / name).is_file() for name in ("02_cifar10_run.ipynb", *FIGURES))
    assert f"report: not made (as asked); make it with: fggp report {out / 'runs'}" in again.stdout
    assert not (out / "report").exists()
    resilience["faults_survived"] += 1


def test_two_sweeps_at_once_never_run_a_point_twice(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID.replace("seed: [1, 2]", "seed: [1]"))
    out = tmp_path / "out"
    first, second = start_sweep(grid, out), start_sweep(grid, out)
    logs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, logs
    ran = [re.findall(r"\] (\S+): completed", log) for log in logs]
    assert len(completed(out)) == 2
    assert sorted(ran[0] + ran[1]) == sorted(completed(out))  # each point executed by exactly one sweep


POINT = "grid: {seed: [18]}\nfixed: {" + ", ".join(f"{k}: {v}" for k, v in (pair.split("=") for pair in RUN)
                                                   if k not in ("seed", "progress")) + "}\n"


def sweep_over_the_reference(tmp_path: Path, reference_dir: Path) -> tuple[Path, Path, Path]:
    """A one-point grid whose point is the reference run (RUN), already completed by `fggp run`: a sweep over it
    only executes notebook 02, which loads the run and draws it (no training)."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(POINT)
    (ref_dir,) = list(reference_dir.iterdir())
    out = tmp_path / "out"
    run_dir = out / "runs" / ref_dir.name
    shutil.copytree(ref_dir, run_dir)
    return grid, out, run_dir


# (damage to a completed point with all its outputs, the state a dry run shows, its reason)
POINT_DAMAGE = {
    "whole": (lambda d: None, "completed", ""),
    "notebook-missing": (remove("02_cifar10_run.ipynb"), "outputs_missing", "missing 02_cifar10_run.ipynb"),
    "a-figure-missing": (remove("sparsity.png"), "outputs_missing", "missing sparsity.png"),
    "metrics-missing": (remove("metrics.jsonl"), "outputs_missing", "metrics.jsonl is missing"),
    "config-missing": (remove("config.json"), "outputs_missing", "missing config.json"),
    "metrics-edited": (edit_metrics, "outputs_missing",
                       "metrics.jsonl does not match result.json's digest (edited or damaged)"),
    "result-edited": (edit_result, "damaged", "result.json does not match its digest (edited or damaged)"),
    "result-without-digest": (old_style, "completed", "unverified (made before result digests: not checked)"),
    "notebook-failed-after-the-run": (lambda d: (d / "error.txt").write_text("OSError: [Errno 28] No space\n"),
                                      "failed", "the run completed, its notebook failed: OSError: [Errno 28] No space"),
}


@pytest.mark.parametrize("case", list(POINT_DAMAGE))
def test_dry_run_tells_a_whole_point_from_one_with_outputs_missing(tmp_path, reference_dir, resilience, case):
    """A point is completed only with all its documented outputs (result.json matching its digest, metrics.jsonl
    matching result.json, config.json, the executed notebook, its three figures); the sweep skips exactly
    those, and the dry run names what is missing or edited."""
    from fggp.executors import _done
    from fggp.sweep import point_status

    damage, state, reason = POINT_DAMAGE[case]
    resilience["faults_injected"] += 1
    _, _, run_dir = sweep_over_the_reference(tmp_path, reference_dir)
    for name in ("02_cifar10_run.ipynb", *FIGURES):
        (run_dir / name).write_text("as notebook 02 makes it")
    damage(run_dir)
    assert point_status(run_dir)[::2] == (state, reason)
    assert _done(run_dir) == (state == "completed")  # what the sweep skips
    resilience["faults_survived"] += 1


@pytest.mark.parametrize("notebook, typo, message", [
    ("02_cifar10_run.ipynb", {"epoch": 1}, "epoch: not a parameter of this notebook (did you mean epochs?); its "
                                           "parameters are arch, batch_size, "),
    ("01_layer_scores.ipynb", {"rates_": [0.3]}, "rates_: not a parameter of this notebook (did you mean rates?); "
                                                 "its parameters are arch, checkpoint, "),
], ids=["02", "01"])
def test_notebook_refuses_a_parameter_it_does_not_define(tmp_path, resilience, notebook, typo, message):
    """papermill -p epoch 1 (for epochs) only warned, and the notebook ran its 15-epoch default; now the cell
    after the parameters stops it, before any data loads, with one line naming it."""
    import papermill

    from fggp.executors import kernel_config

    resilience["bad_inputs_tried"] += 1
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(str(ROOT / "notebooks" / notebook), str(tmp_path / notebook), parameters=typo,
                                   kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
                                   execution_timeout=120, config=kernel_config())
    assert err.value.ename == "ValueError" and err.value.evalue.startswith(message), err.value.evalue
    assert "\n" not in err.value.evalue
    assert sorted(p.name for p in tmp_path.iterdir()) == [notebook]  # no run directory, no data
    resilience["bad_inputs_rejected"] += 1
