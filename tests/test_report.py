"""Aggregation: numbers checked against values computed by hand, every non-completed run accounted for,
the report files written (also for an empty directory), and the two notebooks run end to end.

The fixture is written by ``make_results`` below rather than committed: the accuracies sit next to the
expected means, stds and ranks they were computed from.
"""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from fggp.report import (average_rank, load_results, overview, paper_table, plot_accuracy_vs_sparsity, problems,
                         summary, write_report)
from fggp.train import RunConfig

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# (recipe, target sparsity) -> final test accuracy of seeds 1, 2, 3, ...
ACCURACIES = {
    ("dense", 0.0): [0.95, 0.96, 0.97],
    ("fggp", 0.9): [0.92, 0.93, 0.94],
    ("gmp", 0.9): [0.91, 0.94, 0.97],
    ("granet", 0.9): [0.935],
    ("fggp", 0.95): [0.88, 0.90],
    ("gmp", 0.95): [0.89, 0.91, 0.93],
}
# By hand, in percent: mean, sample std (ddof=1), n.
#   dense       95 96 97  -> 96.0, sqrt((1+0+1)/2) = 1.0, 3
#   fggp  0.9   92 93 94  -> 93.0, 1.0, 3
#   gmp   0.9   91 94 97  -> 94.0, sqrt((9+0+9)/2) = 3.0, 3
#   granet 0.9  93.5      -> 93.5, undefined, 1
#   fggp  0.95  88 90     -> 89.0, sqrt((1+1)/1) = 1.414.., 2
#   gmp   0.95  89 91 93  -> 91.0, sqrt((4+0+4)/2) = 2.0, 3
EXPECTED = {
    ("dense", 0.0): (96.0, 1.0, 3),
    ("fggp", 0.9): (93.0, 1.0, 3),
    ("gmp", 0.9): (94.0, 3.0, 3),
    ("granet", 0.9): (93.5, math.nan, 1),
    ("fggp", 0.95): (89.0, math.sqrt(2), 2),
    ("gmp", 0.95): (91.0, 2.0, 3),
}


def config(recipe, target, seed, **kw):
    return RunConfig(arch="tiny", dataset="digits", recipe=recipe, target_sparsity=target, seed=seed, epochs=15,
                     prune_end_epoch=10, progress=False, **kw)


def write_run(runs_dir: Path, c: RunConfig, status: str | None, acc: float | None = None, config_file=True, **extra):
    d = runs_dir / c.run_id
    d.mkdir(parents=True)
    if config_file:
        (d / "config.json").write_text(json.dumps(c.to_dict()))
    if status is None:  # still running: config and one epoch of metrics, no result
        (d / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_acc": 0.5}) + "\n")
        return c
    result = {"status": status, "run_id": c.run_id, "config": c.to_dict(), **extra}
    if acc is not None:
        result.update(final_test_acc=acc, best_test_acc=acc + 0.005, final_sparsity=c.target_sparsity,
                      epochs_done=15, steps_done=15 * 14, wall_seconds=6.0, prune_log=[],
                      layer_density={"features.0.weight": 1 - c.target_sparsity})
    (d / "result.json").write_text(json.dumps(result))
    return c


def make_results(root: Path) -> tuple[Path, dict]:
    """15 completed runs, plus one failed, one diverged, one incomplete and one missing (sweep.json only)."""
    runs = root / "runs"
    runs.mkdir(parents=True)
    points = []
    for (recipe, target), accs in ACCURACIES.items():
        for seed, acc in enumerate(accs, start=1):
            points.append(write_run(runs, config(recipe, target, seed), "completed", acc))
    bad = {
        # a sweep-style failure before the run wrote config.json: result.json with its config only
        "failed": write_run(runs, config("fggp", 0.95, 3), "failed", config_file=False, error="RuntimeError: boom"),
        "diverged": write_run(runs, config("gmp", 0.95, 4), "diverged", 0.10, diverged_step=123),
        "incomplete": write_run(runs, config("fggp", 0.9, 4), None),
        "missing": config("gmp", 0.9, 5),
    }
    (runs / "scratch").mkdir()  # not a run: no config, no result, not in the sweep
    points += bad.values()
    (root / "sweep.json").write_text(json.dumps({"points": [{"run_id": c.run_id, "config": c.to_dict()}
                                                            for c in points]}))
    return runs, {status: c.run_id for status, c in bad.items()}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    runs, bad = make_results(tmp_path_factory.mktemp("sweep"))
    return runs, load_results(runs), bad


def test_load_results_has_one_row_per_run_and_sweep_point(results):
    runs, df, bad = results
    assert len(df) == 19
    assert df["status"].value_counts().to_dict() == {"completed": 15, "failed": 1, "diverged": 1, "incomplete": 1,
                                                     "missing": 1}
    for status, run_id in bad.items():
        assert df.loc[df["run_id"] == run_id, "status"].tolist() == [status]
    row = df[df["run_id"] == bad["failed"]].iloc[0]
    assert (row["recipe"], row["target_sparsity"], row["seed"], row["error"]) == ("fggp", 0.95, 3, "RuntimeError: boom")
    assert df.loc[df["run_id"] == bad["incomplete"], "epochs_done"].item() == 1
    assert set(df["variant"]) == {""}
    assert "scratch" not in set(df["run_id"])


def test_summary_means_stds_and_counts_match_hand_computation(results):
    s = summary(results[1])
    assert list(s.columns) == ["arch", "initial_sparsity", "target_sparsity", "recipe", "mean", "std", "n"]
    assert len(s) == len(EXPECTED)
    for (recipe, target), (mean, std, n) in EXPECTED.items():
        row = s[(s["recipe"] == recipe) & (s["target_sparsity"] == target)]
        assert len(row) == 1, (recipe, target)
        row = row.iloc[0]
        assert row["arch"] == "tiny" and row["initial_sparsity"] == 0.0
        assert 100 * row["mean"] == pytest.approx(mean)
        assert row["n"] == n
        if math.isnan(std):
            assert math.isnan(row["std"])
        else:
            assert 100 * row["std"] == pytest.approx(std)


def test_paper_table_cells_bold_best_and_dense_row(results):
    table = paper_table(results[1])
    assert list(table.index) == ["dense", "fggp", "gmp", "granet"]
    assert list(table.columns) == [("tiny", 0.0, 0.9), ("tiny", 0.0, 0.95)]
    assert list(table.columns.names) == ["arch", "initial_sparsity", "target_sparsity"]
    assert table.to_dict("index") == {
        "dense": {("tiny", 0.0, 0.9): "96.0 ± 1.0 (n=3)", ("tiny", 0.0, 0.95): "96.0 ± 1.0 (n=3)"},
        "fggp": {("tiny", 0.0, 0.9): "93.0 ± 1.0 (n=3)", ("tiny", 0.0, 0.95): "89.0 ± 1.4 (n=2)"},
        "gmp": {("tiny", 0.0, 0.9): "**94.0 ± 3.0 (n=3)**", ("tiny", 0.0, 0.95): "**91.0 ± 2.0 (n=3)**"},
        "granet": {("tiny", 0.0, 0.9): "93.5 (n=1)", ("tiny", 0.0, 0.95): "—"},
    }


def test_average_rank_matches_hand_computation(results):
    # 0.9: gmp 94.0 -> 1, granet 93.5 -> 2, fggp 93.0 -> 3;  0.95: gmp 91.0 -> 1, fggp 89.0 -> 2
    ranks = average_rank(results[1])
    assert list(ranks.index) == ["gmp", "granet", "fggp"]
    assert ranks.tolist() == pytest.approx([1.0, 2.0, 2.5])


def test_average_rank_ties_share_the_average():
    rows = [("a", 0.9, 0.5), ("b", 0.9, 0.5), ("c", 0.9, 0.4),  # a, b tie: 1.5 each, c 3
            ("a", 0.95, 0.6), ("b", 0.95, 0.5), ("c", 0.95, 0.4),  # a 1, b 2, c 3
            ("dense", 0.0, 0.99)]  # never ranked
    df = pd.DataFrame([dict(arch="tiny", initial_sparsity=0.0, target_sparsity=t, recipe=r, status="completed",
                            final_test_acc=acc) for r, t, acc in rows])
    ranks = average_rank(df)
    assert ranks.to_dict() == {"a": 1.25, "b": 1.75, "c": 3.0}


def test_problems_lists_exactly_the_runs_that_did_not_complete(results):
    _, df, bad = results
    p = problems(df)
    assert p["status"].tolist() == ["failed", "diverged", "incomplete", "missing"]
    assert p["run_id"].tolist() == [bad[s] for s in ("failed", "diverged", "incomplete", "missing")]
    assert p.loc[0, "error"] == "RuntimeError: boom"
    assert p.loc[1, "diverged_step"] == 123


def test_configs_that_differ_are_not_pooled_as_seeds(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, config("fggp", 0.9, 1), "completed", 0.90)
    write_run(runs, config("fggp", 0.9, 1, rate=0.3), "completed", 0.80)
    write_run(runs, config("gmp", 0.9, 1), "completed", 0.85)
    s = summary(load_results(runs)).set_index("recipe")
    assert s["n"].to_dict() == {"fggp (rate=0.3)": 1, "fggp (rate=None)": 1, "gmp": 1}
    write_run(runs, config("gmp", 0.9, 2, lr=0.01), "completed", 0.70)
    labels = set(summary(load_results(runs))["recipe"])
    assert labels == {"fggp (lr=0.1, rate=0.3)", "fggp (lr=0.1, rate=None)", "gmp (lr=0.1)", "gmp (lr=0.01)"}


def test_accuracy_vs_sparsity_figure(results):
    fig = plot_accuracy_vs_sparsity(results[1])
    (ax,) = fig.axes
    assert ax.get_title() == "tiny"
    lines = {c.get_label(): c.lines[0] for c in ax.containers}
    assert set(lines) == {"fggp", "gmp", "granet"}
    assert list(lines["gmp"].get_xdata()) == [0.9, 0.95]
    assert list(lines["gmp"].get_ydata()) == pytest.approx([94.0, 91.0])
    dense = [ln for ln in ax.lines if ln.get_label().startswith("dense")]
    assert len(dense) == 1 and list(dense[0].get_ydata()) == pytest.approx([96.0, 96.0])


def test_write_report_writes_every_file(results, tmp_path):
    runs, _, bad = results
    paths = write_report(runs, tmp_path / "report")
    assert set(paths) == {"summary.csv", "table.md", "table.csv", "accuracy_vs_sparsity.png",
                          "accuracy_vs_sparsity.svg"}
    assert all(p.parent == tmp_path / "report" and p.stat().st_size > 0 for p in paths.values())
    assert sorted(q.name for q in (tmp_path / "report").iterdir()) == sorted(paths)  # no temp files left
    md = paths["table.md"].read_text()
    assert "| dense | 96.0 ± 1.0 (n=3) | 96.0 ± 1.0 (n=3) |" in md
    assert "| gmp | **94.0 ± 3.0 (n=3)** | **91.0 ± 2.0 (n=3)** |" in md
    assert "| granet | 93.5 (n=1) | — |" in md
    assert "| gmp | 1 | 2 |" in md  # average rank, over 2 settings
    assert all(run_id in md for run_id in bad.values())
    assert len(pd.read_csv(paths["summary.csv"])) == 6
    table = pd.read_csv(paths["table.csv"], header=[0, 1, 2], index_col=0)
    assert table.shape == (4, 2)
    assert paths["accuracy_vs_sparsity.png"].read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in paths["accuracy_vs_sparsity.svg"].read_bytes()[:500]


@pytest.mark.parametrize("make", ["absent", "empty", "only_failed"])
def test_write_report_without_completed_runs(tmp_path, make):
    runs = tmp_path / "runs"
    if make != "absent":
        runs.mkdir()
    if make == "only_failed":
        write_run(runs, config("fggp", 0.9, 1), "failed", error="ValueError: bad")
    paths = write_report(runs, tmp_path / "report")
    assert all(p.is_file() for p in paths.values())
    md = paths["table.md"].read_text()
    assert "no completed runs" in md.lower()
    assert ("ValueError: bad" in md) == (make == "only_failed")
    assert "no completed runs" in overview(load_results(runs)).lower()


def test_notebooks_run_end_to_end(tmp_path):
    """02 trains one run, 03 aggregates it: the sweep's two steps, as papermill executes them."""
    papermill = pytest.importorskip("papermill")
    runs, report = tmp_path / "runs", tmp_path / "report"
    params = dict(dataset="synthetic", epochs=2, prune_end_epoch=1, prune_every=5, out_dir=str(runs))
    papermill.execute_notebook(str(NOTEBOOKS / "02_cifar10_run.ipynb"), str(tmp_path / "02.ipynb"), parameters=params,
                               kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    (run_dir,) = runs.iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["epochs_done"] == 2
    assert {"training_curves.png", "sparsity.png", "layer_density.png"} <= {p.name for p in run_dir.iterdir()}
    papermill.execute_notebook(str(NOTEBOOKS / "03_aggregate_results.ipynb"), str(tmp_path / "03.ipynb"),
                               parameters=dict(runs_dir=str(runs), report_dir=str(report)), kernel_name="python3",
                               progress_bar=False, cwd=str(tmp_path))
    for name in ("summary.csv", "table.md", "table.csv", "accuracy_vs_sparsity.png", "accuracy_vs_sparsity.svg"):
        assert (report / name).is_file(), name
    assert "1 run: 1 completed" in (report / "table.md").read_text()
