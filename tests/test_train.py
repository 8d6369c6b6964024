"""One run end to end: validation, run files, real accuracy on digits, exact resume, divergence."""

import json

import pytest
import torch

from fggp.train import RunConfig, lr_at, run
from fggp.pruning import Pruner

QUICK = dict(arch="tiny", dataset="synthetic", epochs=3, prune_end_epoch=2, prune_every=5, lr=0.05,
             batch_size=128, progress=False, deterministic=True)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(arch="alexnet"), "arch"),
        (dict(dataset="imagenet"), "dataset"),
        (dict(recipe="obd"), "recipe"),
        (dict(target_sparsity=1.0), "target_sparsity"),
        (dict(initial_sparsity=-0.1), "initial_sparsity"),
        (dict(target_sparsity=0.4, initial_sparsity=0.5), "target_sparsity"),
        (dict(rate=0.0), "rate"),
        (dict(rate=1.5), "rate"),
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(epochs=10, prune_end_epoch=11), "prune_end_epoch"),
        (dict(prune_start_epoch=50, prune_end_epoch=40), "prune_start_epoch"),
        (dict(prune_every=0), "prune_every"),
        (dict(lr=0.0), "lr"),
        (dict(device="tpu"), "device"),
        (dict(grad_window=0), "grad_window"),
        (dict(precision="fp16"), "precision"),
        (dict(channels_last="yes"), "channels_last"),
        (dict(compile="true"), "compile"),
        (dict(prune_end_epoch=0), "prune_end_epoch"),  # the schedule's "end: ..." came only after the data loaded
        (dict(dataset="digits", val_size=5000), "val_size"),  # digits has 1437 training images
        (dict(dataset="synthetic", val_size=5), "val_size"),  # fewer than its 10 classes: no stratified split
    ],
)
def test_config_rejects_each_bad_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        RunConfig(**kwargs)


def test_dense_ignores_the_pruning_window_and_a_registered_size_is_checked_at_load(tmp_path, monkeypatch):
    """prune_end_epoch=0 means nothing to dense. A dataset whose size is known only once loaded (a registered
    one) is checked then: before the run directory exists, in one line naming val_size."""
    from fggp.train import config as train_config

    assert RunConfig(recipe="dense", prune_end_epoch=0).prune_end_epoch == 0
    monkeypatch.delitem(train_config.TRAIN_SIZES, "digits")  # as if digits were registered: size unknown up front
    config = RunConfig(**{**QUICK, "dataset": "digits"}, val_size=5000)
    with pytest.raises(ValueError, match=r"^val_size: 5000 must be an integer in \[1, 1436\]"):
        run(config, tmp_path)
    assert not (tmp_path / config.run_id).exists()


def test_defaults_are_the_granet_recipe():
    c = RunConfig()
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.weight_decay, c.prune_every) == (160, 128, 0.1, 0.9, 5e-4, 1000)
    assert [lr_at(c, e) for e in (0, 79, 80, 119, 120, 159)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_from_strings_parses_field_types():
    c = RunConfig.from_strings(["arch=resnet20", "target_sparsity=0.95", "rate=none", "deterministic=true",
                                "lr_milestones=0.3,0.6", "epochs=20", "prune_end_epoch=10"])
    assert (c.arch, c.target_sparsity, c.rate, c.deterministic, c.lr_milestones) == ("resnet20", 0.95, None, True, (0.3, 0.6))
    with pytest.raises(ValueError, match="^epochs:"):
        RunConfig.from_strings(["epochs=ten"])
    with pytest.raises(ValueError, match="^colour:"):
        RunConfig.from_strings(["colour=red"])


def test_run_id_depends_on_what_decides_the_result():
    a = RunConfig(**QUICK)
    assert a.run_id == RunConfig(**{**QUICK, "data_dir": "elsewhere", "progress": True}).run_id
    assert a.run_id == RunConfig(**{**QUICK, "channels_last": True, "device": "cpu"}).run_id  # layout, not method
    assert a.run_id != RunConfig(**{**QUICK, "seed": 19}).run_id
    assert a.run_id != RunConfig(**{**QUICK, "precision": "bf16"}).run_id
    assert RunConfig(recipe="dense").target_sparsity == 0.0


def test_complete_run_writes_its_directory(tmp_path):
    config = RunConfig(**QUICK, recipe="fggp", target_sparsity=0.8)
    result = run(config, tmp_path)
    run_dir = tmp_path / config.run_id
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "metrics.jsonl", "result.json", "checkpoint.pt"}
    assert json.loads((run_dir / "result.json").read_text()) == result
    assert result["status"] == "completed" and result["epochs_done"] == 3
    assert result["kept_weights"] == round(0.2 * result["prunable_weights"])
    assert result["final_sparsity"] == 1 - result["kept_weights"] / result["prunable_weights"]
    assert 0 < result["sparse_flops"] < result["dense_flops"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "sparsity", "seconds"} <= set(rows[0])
    assert result["prune_log"][-1][1] == 0.8  # the schedule's target at its end step
    assert set(result["layer_density"]) == set(result["layer_shapes"])  # names every prunable layer
    assert len(result["layer_density"]) == 4
    assert result["versions"]["torch"] == torch.__version__
    assert result["history"] == rows  # a copy of the history: metrics.jsonl can always be rebuilt
    from fggp.train.checkpoint import metrics_problem, result_digest, result_problem

    assert result["digest"] == result_digest(result) and result_problem(result) is None
    assert metrics_problem(run_dir, result) is None
    assert run(config, tmp_path)["finished_at"] == result["finished_at"]  # completed: not run again


@pytest.mark.parametrize("recipe, sparsity, floor", [("dense", 0.0, 0.90), ("fggp", 0.9, 0.80)])
def test_digits_reaches_real_accuracy(tmp_path, recipe, sparsity, floor):
    config = RunConfig(arch="tiny", dataset="digits", recipe=recipe, target_sparsity=sparsity, epochs=15,
                       prune_end_epoch=10, prune_every=6, lr=0.05, progress=False)
    result = run(config, tmp_path)
    assert result["final_test_acc"] >= floor
    assert result["final_sparsity"] == pytest.approx(sparsity, abs=1e-4)


def _comparable(result):
    """What two runs of one config share: not the time taken, nor the history's per-epoch seconds and the
    digest over them (the history itself, less seconds, must match)."""
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in result.get("history", [])]
    drop = ("wall_seconds", "finished_at", "history", "metrics_sha256", "digest")
    return {**{k: v for k, v in result.items() if k not in drop}, "rows": rows}


def _interrupt_at(monkeypatch, step):
    original = Pruner.after_step

    def after_step(self):
        original(self)
        if self.step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(Pruner, "after_step", after_step)


@pytest.mark.parametrize("stop_step", [16, 23])  # an epoch end (16 steps per epoch), and mid-epoch
def test_resumed_run_equals_uninterrupted(tmp_path, monkeypatch, stop_step):
    config = RunConfig(**{**QUICK, "epochs": 4, "prune_end_epoch": 3}, recipe="granet", target_sparsity=0.9,
                       initial_sparsity=0.5)
    whole = run(config, tmp_path / "whole")
    with monkeypatch.context() as m:
        _interrupt_at(m, stop_step)
        with pytest.raises(KeyboardInterrupt):
            run(config, tmp_path / "cut")
    assert not (tmp_path / "cut" / config.run_id / "result.json").exists()
    resumed = run(config, tmp_path / "cut")
    assert _comparable(resumed) == _comparable(whole)
    a = torch.load(tmp_path / "whole" / config.run_id / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / config.run_id / "checkpoint.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for key, mask in a["pruner"]["masks"].items():
        assert torch.equal(mask, b["pruner"]["masks"][key]), key


def test_divergence_is_reported_with_its_step(tmp_path):
    config = RunConfig(**{**QUICK, "lr": 1e3, "epochs": 3})
    result = run(config, tmp_path)
    assert result["status"] == "diverged"
    assert isinstance(result["diverged_step"], int) and 1 <= result["diverged_step"] <= 48
    rows = (tmp_path / config.run_id / "metrics.jsonl")
    if rows.exists():
        for line in rows.read_text().splitlines():
            assert all(v == v for v in json.loads(line).values())  # no NaN in written metrics


def test_out_path_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="^out:"):
        run(RunConfig(**QUICK), f)


def test_torchvision_version_is_read_without_importing_it(monkeypatch):
    """result.json records torchvision's own ``__version__`` (with its CUDA tag, unlike the package metadata),
    whether or not the process imported torchvision."""
    import sys

    import torchvision

    from fggp.train.run import torchvision_version

    assert torchvision_version() == torchvision.__version__
    for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        monkeypatch.delitem(sys.modules, name)
    assert torchvision_version() == torchvision.__version__
    assert "torchvision" not in sys.modules


def test_progress_bar_is_off_on_request(monkeypatch):
    from fggp.train.run import _bar_disabled

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert _bar_disabled(False) is True
    assert _bar_disabled(True) is None  # tqdm decides: on in a terminal, off in batch logs
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert _bar_disabled(True) is True


def test_runtime_resolves_auto_per_device():
    from fggp.train.run import resolve_runtime

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_runtime(RunConfig(), cpu) == {"precision": "fp32", "channels_last": False, "compile": False,
                                                 "deterministic": False}
    assert resolve_runtime(RunConfig(), cuda) == {"precision": "bf16", "channels_last": True, "compile": False,
                                                  "deterministic": False}
    explicit = RunConfig(precision="fp32", channels_last=False, compile=True)
    assert resolve_runtime(explicit, cuda) == {"precision": "fp32", "channels_last": False, "compile": True,
                                               "deterministic": False}


def test_bf16_channels_last_run_learns_and_resumes_exactly(tmp_path, monkeypatch):
    """The CUDA settings (bf16 autocast, channels_last model and batches) run the same loop on CPU."""
    base = dict(arch="tiny", dataset="digits", recipe="fggp", target_sparsity=0.8, epochs=8, prune_end_epoch=6,
                prune_every=6, lr=0.05, progress=False, deterministic=True)
    config = RunConfig(**base, precision="bf16", channels_last=True)
    whole = run(config, tmp_path / "whole")
    assert whole["runtime"] == {"precision": "bf16", "channels_last": True, "compile": False, "deterministic": True}
    assert whole["final_test_acc"] >= 0.5  # 10 classes: chance is 0.1
    fp32 = run(RunConfig(**base, precision="fp32"), tmp_path / "fp32")
    assert abs(whole["final_test_acc"] - fp32["final_test_acc"]) <= 0.1
    assert whole["final_sparsity"] == pytest.approx(0.8, abs=1e-4)
    with monkeypatch.context() as m:
        _interrupt_at(m, 20)  # mid-epoch 2 (12 steps per epoch)
        with pytest.raises(KeyboardInterrupt):
            run(config, tmp_path / "cut")
    assert _comparable(run(config, tmp_path / "cut")) == _comparable(whole)


def test_compiled_run_follows_the_eager_run(tmp_path):
    """torch.compile wraps the forward only: the Pruner sees the same parameters and keeps the schedule."""
    base = dict(arch="tiny", dataset="digits", recipe="gmp", target_sparsity=0.8, epochs=4, prune_end_epoch=1,
                prune_every=4, lr=0.05, progress=False)
    compiled = run(RunConfig(**base, compile=True), tmp_path)
    eager = run(RunConfig(**base), tmp_path)
    assert compiled["status"] == "completed" and compiled["runtime"]["compile"] is True
    assert compiled["kept_weights"] == eager["kept_weights"] == round(0.2 * eager["prunable_weights"])
    assert [row[:2] for row in compiled["prune_log"]] == [row[:2] for row in eager["prune_log"]]
    assert eager["final_test_acc"] >= 0.3  # chance is 0.1
    assert abs(compiled["final_test_acc"] - eager["final_test_acc"]) <= 0.1
