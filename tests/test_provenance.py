"""Which code made a run: the digest of the fggp source in every result, and the report saying when a folder's
runs were made by more than one version of it."""

import json
import shutil
from pathlib import Path

from fggp.provenance import PACKAGE, digest_of, source_digest
from fggp.report import code_versions, load_results, overview
from test_report import config, write_run


def test_the_digest_names_the_files_exactly(tmp_path):
    copy = tmp_path / "fggp"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert digest_of(copy) == source_digest() == digest_of(PACKAGE)  # the same files anywhere
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "x.py").write_text("compiled noise")
    assert digest_of(copy) == source_digest()
    target = copy / "pruning" / "selection.py"
    target.write_text(target.read_text() + "\n# an edit\n")
    edited = digest_of(copy)
    assert edited != source_digest()
    (copy / "extra.py").write_text("")
    assert digest_of(copy) not in (edited, source_digest())  # an added file counts too
    target.rename(copy / "pruning" / "selection2.py")
    assert digest_of(copy) not in (edited, source_digest())  # and a path


def test_a_run_records_the_source_that_made_it(tmp_path, monkeypatch):
    from fggp.train import RunConfig, run

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = run(RunConfig(arch="tiny", dataset="synthetic", epochs=1, prune_end_epoch=1, prune_every=5,
                           progress=False), tmp_path)
    assert result["status"] == "completed" and result["versions"]["fggp_source"] == source_digest()
    saved = json.loads(next(tmp_path.glob("*/result.json")).read_text())
    assert saved["versions"]["fggp_source"] == source_digest()


def test_the_overview_says_when_runs_come_from_different_code(tmp_path):
    runs = tmp_path / "runs"
    for seed, source in ((1, "aaaaaaaaaaaa"), (2, "aaaaaaaaaaaa"), (3, "bbbbbbbbbbbb")):
        write_run(runs, config("fggp", 0.9, seed), "completed", 0.9, versions={"fggp": "0.1.0", "fggp_source": source})
    write_run(runs, config("gmp", 0.9, 1), "completed", 0.9)  # made before the digest was recorded
    df = load_results(runs)
    assert code_versions(df) == {"aaaaaaaaaaaa": 2, "bbbbbbbbbbbb": 1, None: 1}
    assert overview(df) == (
        "4 runs: 4 completed. The completed runs were made by 2 versions of the fggp source (versions.fggp_source: "
        "aaaaaaaaaaaa (2 runs), bbbbbbbbbbbb (1 run), not recorded (1 run made before the digest was)): a gap "
        "between runs of different code may come from the code, not the recipe.")
    one = tmp_path / "one"
    for seed in (1, 2):
        write_run(one, config("fggp", 0.9, seed), "completed", 0.9, versions={"fggp_source": "aaaaaaaaaaaa"})
    assert overview(load_results(one)) == "2 runs: 2 completed."
    old = tmp_path / "old"
    write_run(old, config("fggp", 0.9, 1), "completed", 0.9)
    assert overview(load_results(old)) == "1 run: 1 completed."  # nothing recorded: nothing to compare
