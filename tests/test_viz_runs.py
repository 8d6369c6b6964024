"""Run figures on a real (tiny, two-epoch) run: each plot carries the run's data, not just pixels."""

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from fggp.train import RunConfig, run
from fggp.viz.runs import (BEST_LABEL, EpochLog, config_view, epoch_header, epoch_line, load_run, plot_layer_density,
                           plot_sparsity, plot_training_curves, result_table, run_title, save_figures, scheduled_curve)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    config = RunConfig(arch="tiny", dataset="synthetic", epochs=2, prune_end_epoch=1, prune_every=5, progress=False)
    run(config, out, log=lambda msg: None)
    return out / config.run_id


def test_load_run_reads_all_three_files(run_dir):
    rec = load_run(run_dir)
    assert rec.config["epochs"] == 2 and len(rec.metrics) == 2
    assert rec.result["status"] == "completed"
    assert rec.run_id == run_dir.name


def test_training_curves_have_one_point_per_epoch(run_dir):
    fig = plot_training_curves(run_dir)
    assert isinstance(fig, Figure)
    loss, acc = fig.axes
    rec = load_run(run_dir)
    for ax, key, scale in ((loss, "loss", 1), (acc, "acc", 100)):
        train, test = ax.lines
        assert list(train.get_xdata()) == [1, 2]
        assert list(train.get_ydata()) == pytest.approx([m[f"train_{key}"] * scale for m in rec.metrics])
        assert list(test.get_ydata()) == pytest.approx([m[f"test_{key}"] * scale for m in rec.metrics])


def test_sparsity_markers_are_the_prune_log_and_sit_on_the_schedule(run_dir):
    fig = plot_sparsity(run_dir)
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.lines}
    log = load_run(run_dir).result["prune_log"]
    assert len(log) > 1
    actual = lines["actual (at each pruning step)"]
    assert list(actual.get_xdata()) == [p[0] for p in log]
    assert list(actual.get_ydata()) == pytest.approx([100 * p[2] for p in log])  # one unit throughout: %
    curve = lines["scheduled target"]
    steps = [p[0] for p in log]
    # the recomputed curve agrees with the target the Pruner scheduled at each of its steps
    assert np.interp(steps, curve.get_xdata(), curve.get_ydata()) == pytest.approx([100 * p[1] for p in log], abs=0.1)
    assert curve.get_xdata()[-1] == load_run(run_dir).result["steps_done"]


def test_one_shot_schedule_is_a_step():
    config = dict(recipe="global_mp_oneshot", initial_sparsity=0.0, target_sparsity=0.9, prune_start_epoch=0,
                  prune_end_epoch=2, epochs=4)
    t, s = scheduled_curve(config, steps_per_epoch=10)
    assert list(t) == [0, 20, 20, 40] and list(s) == [0.0, 0.0, 0.9, 0.9]


def test_unfinished_run_plots_epoch_end_sparsity(run_dir, tmp_path):
    partial = tmp_path / run_dir.name
    partial.mkdir()
    for name in ("config.json", "metrics.jsonl"):
        shutil.copy(run_dir / name, partial / name)
    rec = load_run(partial)
    assert rec.result is None
    (ax,) = plot_sparsity(partial).axes
    (markers,) = [ln for ln in ax.lines if ln.get_label().startswith("actual")]
    assert list(markers.get_xdata()) == [m["step"] for m in rec.metrics]
    assert len(plot_training_curves(partial).axes[0].lines) == 2


def test_layer_density_bars_and_global_line(run_dir):
    result = load_run(run_dir).result
    fig = plot_layer_density(result)
    (ax,) = fig.axes
    heights = {t.get_text(): p.get_height() for t, p in zip(ax.get_xticklabels(), ax.patches)}
    assert heights == pytest.approx({k: 100 * v for k, v in result["layer_density"].items()})
    assert ax.get_xticklabels()[-1].get_text() == "classifier.weight"  # network order, not alphabetical
    (line,) = ax.lines
    assert line.get_ydata()[0] == pytest.approx(100 * result["kept_weights"] / result["prunable_weights"])


def test_result_table_has_the_key_rows(run_dir):
    result = load_run(run_dir).result
    table = result_table(result)
    assert list(table.columns) == ["value"]
    for row in ("status", "final test acc", BEST_LABEL, "final sparsity", "kept / total weights", "dense FLOPs",
                "sparse FLOPs", "epochs", "wall seconds", "device"):
        assert row in table.index, row
    assert table.loc["status", "value"] == "completed"
    assert table.loc["final test acc", "value"] == f"{100 * result['final_test_acc']:.2f}%"
    assert table.loc["final sparsity", "value"] == f"{100 * result['final_sparsity']:.2f}%"
    assert table.loc["epochs", "value"] == "2"
    failed = result_table({"status": "failed", "error": "RuntimeError: boom"})
    assert failed.loc["error", "value"] == "RuntimeError: boom"
    assert failed.loc["final test acc", "value"] == "—"


def test_save_figures_writes_pngs_atomically(run_dir, tmp_path):
    target = tmp_path / "figs"
    paths = save_figures(target, {"training_curves": plot_training_curves(run_dir),
                                  "sparsity": plot_sparsity(run_dir)})
    assert paths == {"training_curves": target / "training_curves.png", "sparsity": target / "sparsity.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths.values())
    assert sorted(p.name for p in target.iterdir()) == ["sparsity.png", "training_curves.png"]  # no temp files


def test_load_run_requires_a_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"recipe": "fggp"}))
    assert load_run(tmp_path).metrics == [] and load_run(tmp_path).result is None


def test_curves_are_titled_for_a_reader_not_by_the_hash(run_dir):
    config = load_run(run_dir).config
    title = plot_training_curves(run_dir)._suptitle.get_text()
    assert title == run_title(config) == "fggp (rate 0.5) on tiny / synthetic, target sparsity 90%, seed 18"
    assert run_dir.name.split("-")[-1] not in title
    assert run_title({**config, "recipe": "gmp"}).startswith("gmp on tiny")
    assert run_title({**config, "rate": 0.3}).startswith("fggp (rate 0.3)")
    assert "dense," in run_title({**config, "recipe": "dense"})


def test_config_view_is_one_line_per_group_and_hides_nothing_that_matters(run_dir):
    config = load_run(run_dir).config
    view = config_view(config)
    assert list(view.index) == ["model and data", "pruning", "optimizer", "evaluation", "run"]
    text = " ".join(view["settings"])
    for name, value in config.items():
        if name in ("data_dir", "download", "progress", "channels_last", "extra"):
            assert f"{name}=" not in text
        else:
            assert f"{name}=" in text, name
    assert "lr_milestones=0.5,0.75" in text and "target_sparsity=0.9," in text
    assert config_view({**config, "extra": {"note": "x"}, "new_field": 1}).loc["other", "settings"] == \
        "extra={'note': 'x'}, new_field=1"


def test_epoch_log_prints_a_header_and_rows_in_percent(run_dir, tmp_path):
    rec = load_run(run_dir)
    printed = []
    log = EpochLog(run_dir, printed.append)
    log("checkpoint: resuming from checkpoint.pt (epoch 2 done)")  # not the run's line: passes through
    assert printed[0].startswith("checkpoint: resuming")
    assert printed[1].split() == ["epoch", "train", "loss", "train", "acc", "test", "loss", "test", "acc", "sparsity",
                                  "lr", "seconds"]
    assert len(printed) == 4  # then the epochs already on disk
    first = rec.metrics[0]
    assert printed[2].split() == ["1/2", f"{first['train_loss']:.4f}", f"{100 * first['train_acc']:.2f}%",
                                  f"{first['test_loss']:.4f}", f"{100 * first['test_acc']:.2f}%",
                                  f"{100 * first['sparsity']:.2f}%", f"{first['lr']:.4g}", f"{first['seconds']:.1f}"]
    for line in printed[1:4]:  # columns line up under their header
        assert len(line) == len(printed[1])
    with_bn = epoch_header({**first, "test_acc_running_bn": 0.1})
    assert "test acc (running BN)" in with_bn
    assert "10.00%" in epoch_line({**first, "test_acc_running_bn": 0.1}, 2)
    log(f"{run_dir.name}: completed, final test acc 0.1234 at sparsity 0.9000")
    assert len(printed) == 5 and "0.1234" not in printed[4]
    assert printed[4].startswith(f"completed: final test acc {100 * rec.result['final_test_acc']:.2f}% at sparsity "
                                 f"{100 * rec.result['final_sparsity']:.2f}%")


def test_epoch_log_follows_a_live_run(tmp_path):
    config = RunConfig(arch="tiny", dataset="synthetic", epochs=2, prune_end_epoch=1, prune_every=5, progress=False)
    printed = []
    run(config, tmp_path, log=EpochLog(tmp_path / config.run_id, printed.append))
    assert printed[0].startswith("pruner: 4 tensors, ")  # what it prunes, passed through before the table
    printed = printed[1:]
    assert printed[0].split()[:3] == ["epoch", "train", "loss"]
    assert [line.split()[0] for line in printed[1:3]] == ["1/2", "2/2"]
    assert printed[3].startswith("completed: final test acc") and len(printed) == 4
    assert not any(line.startswith("epoch ") for line in printed)  # the raw fraction lines are replaced
    again = []
    run(config, tmp_path, log=EpochLog(tmp_path / config.run_id, again.append))  # already done: same table
    finished = load_run(tmp_path / config.run_id).result["finished_at"]
    assert again[0] == f"loaded, not trained again: this run completed at {finished}; the table is its metrics.jsonl"
    assert again[1:4] == printed[:3] and again[4].startswith("completed") and len(again) == 5
    (tmp_path / config.run_id / "metrics.jsonl").unlink()
    lost = []
    run(config, tmp_path, log=EpochLog(tmp_path / config.run_id, lost.append))
    assert lost[0] == (f"{config.run_id}: metrics.jsonl is missing; rewritten from result.json's copy of the history "
                       f"(2 epochs)")
    assert lost[1:] == again


def test_config_view_shows_the_rate_the_recipe_resolves(run_dir):
    """The title says "fggp (rate 0.5)"; the table used to say rate=None."""
    config = load_run(run_dir).config
    assert config["rate"] is None
    text = config_view(config).loc["pruning", "settings"]
    assert "rate=0.5 (the recipe's)" in text and "grad_window=1 (the recipe's)" in text
    assert "rate=none (not read by gmp)" in config_view({**config, "recipe": "gmp"}).loc["pruning", "settings"]
    assert "rate=0.3," in config_view({**config, "rate": 0.3}).loc["pruning", "settings"]


def test_notebook_02_refuses_a_name_papermill_injected_that_it_does_not_have():
    """The check notebooks 01, 02 and 03 share (fggp.parameters): papermill's injected cell is read from ``In``,
    so a misspelt -p is refused and the variables of a second Run All in the same kernel are not."""
    import math

    from fggp.viz.runs import NOTEBOOK_PARAMETERS, check_notebook, notebook_config

    params = {name: None for name in NOTEBOOK_PARAMETERS}
    namespace = {**params, "In": ["", "arch = 'tiny'"], "Out": {}, "get_ipython": print, "math": math}
    check_notebook(dict(namespace))
    with pytest.raises(ValueError, match=r"^epoch: not a parameter of this notebook \(did you mean epochs\?\); its "
                                         r"parameters are arch, batch_size, "):
        check_notebook({**namespace, "epoch": 1, "In": ["", "arch = 'tiny'", "# Parameters\nepoch = 1\n"]})
    with pytest.raises(ValueError, match=r"^sparsity: not a parameter"):  # 02's own later names are no parameters
        check_notebook({**namespace, "In": ["", "arch = 'tiny'", "# Parameters\nsparsity = 0.9\n"]})
    rerun = {**namespace, "In": ["", "arch = 'tiny'", "# Parameters\nepochs = 2\n", "config = 1"]}
    rerun.update(config=1, result={}, sparsity=object())  # a second Run All in the same kernel
    check_notebook(rerun)
    with pytest.raises(ValueError, match=r"^extra_config: 3 must be a mapping"):
        notebook_config(3, arch="tiny")
    with pytest.raises(ValueError, match=r"^extra_config: 'epochs' is also a parameter of this notebook"):
        notebook_config({"epochs": 3}, arch="tiny", epochs=2, prune_end_epoch=1)
    assert notebook_config({"bn_recalibrate": 2}, arch="tiny", epochs=2, prune_end_epoch=1).bn_recalibrate == 2
