"""A sweep's compact records: what `fggp results` reads, copied whole or not at all, and a document rebuilt
from them equal to the one from the sweep's own folder; docs/RESULTS.md rebuilt from the committed records."""

import json
import os
import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

from fggp.cli import main
from fggp.records import RUN_RECORDS, write_records
from fggp.results import write_results
from fggp.train.checkpoint import write_metrics, write_result
from test_report import make_results

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sweep_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths in the document are shown relative to here
    out = tmp_path / "outputs" / "demo"
    runs, ids = make_results(out)
    plan = json.loads((out / "sweep.json").read_text())
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text("grid: {seed: [1]}\n")
    plan.update(grid=str(tmp_path / "configs" / "demo.yaml"), name="demo")
    (out / "sweep.json").write_text(json.dumps(plan))
    for run_id in (ids["gmp"],):  # a checkpoint and a notebook: never part of the records
        (runs / run_id / "checkpoint.pt").write_bytes(b"x" * 1000)
        (runs / run_id / "02_cifar10_run.ipynb").write_text("{}")
    return out, ids


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_records_hold_what_the_document_reads_and_nothing_else(sweep_dir, capsys):
    out, ids = sweep_dir
    counts = write_records(out, "docs/results/demo")
    dest = Path("docs/results/demo")
    runs = {d.name for d in (out / "runs").iterdir() if (d / "result.json").is_file()}
    assert counts == {"copied": len(runs), "left_out": {}, "unfinished": 1}
    expected = {"sweep.json"} | {f"runs/{d.name}/{n}" for d in (out / "runs").iterdir() for n in RUN_RECORDS
                                 if (d / n).is_file()}
    assert _files(dest) == expected and not any(n.endswith((".pt", ".ipynb", ".png")) for n in _files(dest))
    for name in expected - {"sweep.json"}:
        assert (dest / name).read_bytes() == (out / name).read_bytes()
    plan = json.loads((dest / "sweep.json").read_text())
    assert plan["grid"] == "configs/demo.yaml" and plan["out"] == "outputs/demo"
    assert plan["points"] == json.loads((out / "sweep.json").read_text())["points"]
    assert f"records: {len(runs)} runs of outputs/demo in " in capsys.readouterr().out


def test_a_document_from_the_records_equals_the_one_from_the_sweep(sweep_dir):
    out, _ = sweep_dir
    write_records(out, "docs/results/demo")
    command = "fggp results docs/results/demo --out docs/RESULTS.md"
    Path("a").mkdir()
    Path("b").mkdir()
    write_results([out], "a/RESULTS.md", command, "fggp")
    write_results(["docs/results/demo"], "b/RESULTS.md", command, "fggp")
    text = Path("b/RESULTS.md").read_text()
    assert text == Path("a/RESULTS.md").read_text()
    assert "reproduce with `fggp sweep configs/demo.yaml --jobs 2 --out outputs/demo`" in text
    assert "1 incomplete" in text  # the unfinished run is counted as the sweep's folder counts it


def test_damaged_results_are_left_out_and_named(sweep_dir, capsys):
    out, ids = sweep_dir
    run_dir = out / "runs" / ids["gmp"]
    result = json.loads((run_dir / "result.json").read_text())
    history = [{"epoch": 1, "test_acc": 0.5}]
    write_metrics(run_dir, history)
    write_result(run_dir, result, history=history)  # now with a digest over both
    write_records(out, "docs/results/demo")
    assert (Path("docs/results/demo/runs") / ids["gmp"] / "result.json").is_file()
    edited = json.loads((run_dir / "result.json").read_text())
    edited["final_test_acc"] = 1.0
    (run_dir / "result.json").write_text(json.dumps(edited))
    counts = write_records(out, "docs/results/demo")
    assert list(counts["left_out"]) == [ids["gmp"]] and "digest" in counts["left_out"][ids["gmp"]]
    assert not (Path("docs/results/demo/runs") / ids["gmp"]).exists()  # the old copy went with the old records
    assert f"records: left out {ids['gmp']} (result.json does not match its digest" in capsys.readouterr().out


def test_records_are_replaced_whole_or_not_at_all(sweep_dir, monkeypatch):
    out, ids = sweep_dir
    write_records(out, "docs/results/demo")
    before = {n: (Path("docs/results/demo") / n).read_bytes() for n in _files(Path("docs/results/demo"))}
    shutil.rmtree(out / "runs" / ids["global_mp"])
    real = os.replace

    calls = []

    def failing(src, dst):  # the new records cannot be renamed into place (once)
        if Path(dst).name == "demo" and not calls:
            calls.append(src)
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr("fggp.records.os.replace", failing)
    with pytest.raises(OSError):
        write_records(out, "docs/results/demo")
    after = {n: (Path("docs/results/demo") / n).read_bytes() for n in _files(Path("docs/results/demo"))}
    assert after == before  # the old records, untouched
    assert [p.name for p in Path("docs/results").iterdir()] == ["demo"]  # no staging or old copy left
    monkeypatch.setattr("fggp.records.os.replace", real)
    write_records(out, "docs/results/demo")
    assert not (Path("docs/results/demo/runs") / ids["global_mp"]).exists()


@pytest.mark.parametrize("args, message", [
    (["records", "nowhere", "dest"], r"^fggp: error: sweep: 'nowhere' has no runs/ folder"),
    (["records", "", "dest"], r"^fggp: error: sweep: '' is empty"),
    (["records", "outputs/demo", "outputs/demo/runs/x"], r"^fggp: error: dest: .* is inside the sweep's folder"),
    (["records", "outputs/demo", "outputs/demo/sweep.json"], r"^fggp: error: dest: .* is a file"),
])
def test_bad_records_arguments_are_one_line(sweep_dir, capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.match(message, err) and err.count("\n") == 1
    assert not Path("dest").exists()


RECORDED = ["fashion", "fashion_vit", "fashion_collapse"]  # docs/results/<name>: what docs/RESULTS.md is made of


def test_results_document_rebuilds_byte_identical_from_the_committed_records(tmp_path, monkeypatch):
    doc = (ROOT / "docs" / "RESULTS.md").read_text()
    command = re.search(r"^Generated by `(fggp results [^`]+)`", doc, flags=re.M).group(1)
    sweeps = command.split(" --out ")[0].split()[2:]
    assert sweeps == [f"docs/results/{name}" for name in RECORDED]
    monkeypatch.chdir(ROOT)  # the document shows paths relative to the repository
    write_results(sweeps, tmp_path / "RESULTS.md", command, "fggp")
    assert (tmp_path / "RESULTS.md").read_text() == doc
    for figure in (tmp_path / "results").iterdir():  # and the figures it links
        assert (ROOT / "docs" / "results" / figure.name).is_file()


SEEDED_GRID = ("grid: {seed: [1, 2, 3]}\nfixed: {arch: tiny, dataset: synthetic, epochs: 1, prune_end_epoch: 1, "
               "prune_every: 5, target_sparsity: 0.8}\n")


def test_a_sweep_from_records_trains_only_what_they_lack(tmp_path, monkeypatch, capsys):
    """The way a long grid is finished in a later sitting: a fresh folder seeded with the committed records
    trains only the missing point, and the records made of it afterwards hold every run, the copied ones
    byte for byte."""
    from fggp.sweep import expand, load_grid, status
    from fggp.train import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    Path("grid.yaml").write_text(SEEDED_GRID)
    points = expand(load_grid("grid.yaml"))
    first = Path("first")
    for config in points[:2]:  # an earlier sitting finished seeds 1 and 2 (the training is what matters here)
        run(config, first / "runs")
    (first / "sweep.json").write_text(json.dumps({"grid": "grid.yaml", "name": "demo", "points": [
        {"run_id": c.run_id, "config": c.to_dict()} for c in points]}))
    write_records(first, "records")
    capsys.readouterr()

    dry = status("grid.yaml", "later", from_records="records").set_index("seed")
    assert dry["state"].tolist() == ["pending"] * 3
    assert dry.loc[1, "reason"] == dry.loc[2, "reason"] == "in the records: copied when the sweep runs, not trained"
    assert not Path("later").exists()  # the dry run copies nothing

    assert main(["sweep", "grid.yaml", "--out", "later", "--from-records", "records", "--no-report"]) == 0
    log = capsys.readouterr().out
    assert "from records: 2 finished runs of records copied" in log and "1 completed, 2 skipped" in log
    runs = Path("later/runs")
    for config in points[:2]:
        copied = runs / config.run_id
        assert not (copied / "checkpoint.pt").exists() and not (copied / "02_cifar10_run.ipynb").exists()
        for name in ("result.json", "config.json", "metrics.jsonl"):
            assert (copied / name).read_bytes() == (Path("records/runs") / config.run_id / name).read_bytes()
    assert (runs / points[2].run_id / "02_cifar10_run.ipynb").is_file()  # the one point trained
    states = status("grid.yaml", "later").set_index("seed")
    assert states["state"].tolist() == ["recorded", "recorded", "completed"]
    assert states.loc[1, "reason"] == "results from records (no checkpoint, notebook or figures)"

    assert main(["sweep", "grid.yaml", "--out", "later", "--no-report"]) == 0  # again: nothing to do
    assert "3 skipped" in capsys.readouterr().out
    counts = write_records("later", "records")
    assert counts["copied"] == 3 and counts["left_out"] == {}
    assert _files(Path("records")) == {"sweep.json"} | {f"runs/{c.run_id}/{n}" for c in points
                                                        for n in ("result.json", "config.json", "metrics.jsonl")}


def test_seeding_keeps_what_the_folder_has_and_copies_only_whole_records(tmp_path, monkeypatch, capsys):
    """A record that is unfinished, damaged or another run's is not copied (and said); a point this folder has
    trained is kept; a pending point's folder is replaced whole."""
    from fggp.records import seed_runs
    from fggp.train import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    Path("grid.yaml").write_text(SEEDED_GRID)
    from fggp.sweep import expand, load_grid

    points = expand(load_grid("grid.yaml"))
    ids = [c.run_id for c in points]
    for config in points:
        run(config, Path("first/runs"))
    Path("first/sweep.json").write_text(json.dumps({"grid": "grid.yaml", "points": []}))
    write_records("first", "records")
    damaged = Path("records/runs") / ids[0] / "result.json"
    damaged.write_text(json.dumps({**json.loads(damaged.read_text()), "final_test_acc": 0.99}))  # edited
    shutil.copytree(Path("first/runs") / ids[1], Path("later/runs") / ids[1])  # trained here already
    (Path("later/runs") / ids[2]).mkdir(parents=True)
    (Path("later/runs") / ids[2] / ".lock").write_text("")  # a pending point: nothing trained
    before = (Path("later/runs") / ids[1] / "result.json").read_bytes()
    capsys.readouterr()
    outcome = seed_runs("records", [*ids, "not-in-the-records"], Path("later/runs").absolute())
    assert outcome["seeded"] == [ids[2]] and outcome["kept"] == [ids[1]]
    assert list(outcome["not_copied"]) == [ids[0]] and "digest" in outcome["not_copied"][ids[0]]
    assert (Path("later/runs") / ids[1] / "result.json").read_bytes() == before
    assert sorted(p.name for p in (Path("later/runs") / ids[2]).iterdir()) == [
        "config.json", "metrics.jsonl", "recorded.json", "result.json"]
    assert not (Path("later/runs") / ids[0]).exists() and not Path("later/.from-records").exists()
    log = capsys.readouterr().out
    assert f"from records: not copied {ids[0]} (result.json does not match its digest" in log
