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
