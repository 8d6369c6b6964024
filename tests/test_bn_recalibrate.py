"""bn_recalibrate: evaluation with BatchNorm statistics re-estimated on train batches, training untouched."""

import json

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn

from fggp.data import load_dataset
from fggp.train import RunConfig, run
from fggp.train.run import _Trainer
from fggp.viz.runs import plot_training_curves

SMALL = dict(arch="tiny", dataset="synthetic", epochs=2, prune_end_epoch=1, prune_every=5, progress=False, device="cpu")


def test_off_by_default_and_out_of_the_run_id_when_off():
    assert RunConfig().bn_recalibrate == 0
    assert "bn_recalibrate" not in RunConfig().identity()  # run ids made before the option stay the same
    on = RunConfig(bn_recalibrate=10)
    assert on.identity()["bn_recalibrate"] == 10 and on.run_id != RunConfig().run_id
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="^bn_recalibrate: "):
            RunConfig(bn_recalibrate=bad)


def test_recalibrated_statistics_are_the_mean_and_variance_of_the_batches():
    config = RunConfig(**SMALL, bn_recalibrate=3)
    trainer = _Trainer(config, load_dataset("synthetic"), torch.device("cpu"), lambda m: None)
    conv, bn = trainer.model.features[0], trainer.model.features[1]
    assert isinstance(bn, nn.BatchNorm2d)
    trainer.recalibrate_bn(0)
    with torch.no_grad():
        outs = [conv(x) for _, (x, _y) in zip(range(3), trainer.train_loader.iter_epoch(0))]
    means = torch.stack([o.mean((0, 2, 3)) for o in outs])
    variances = torch.stack([o.var((0, 2, 3), unbiased=True) for o in outs])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)  # a plain average of the 3 batches
    assert torch.allclose(bn.running_var, variances.mean(0), rtol=1e-4, atol=1e-6)
    assert bn.momentum == 0.1  # restored for training


def test_training_is_unchanged_and_both_test_numbers_are_kept(tmp_path):
    plain = run(RunConfig(**SMALL), tmp_path, log=lambda m: None)
    recal = run(RunConfig(**SMALL, bn_recalibrate=4), tmp_path, log=lambda m: None)
    assert plain["mask_hash"] == recal["mask_hash"]
    rows = {name: [json.loads(line) for line in (tmp_path / r["run_id"] / "metrics.jsonl").read_text().splitlines()]
            for name, r in (("plain", plain), ("recal", recal))}
    for a, b in zip(rows["plain"], rows["recal"]):
        assert (a["train_loss"], a["train_acc"]) == (b["train_loss"], b["train_acc"])  # same trajectory
        assert "test_acc_running_bn" not in a
    first_plain, first_recal = rows["plain"][0], rows["recal"][0]
    # before epoch 1's recalibration both runs hold the same running statistics, so the same test numbers
    assert first_recal["test_acc_running_bn"] == first_plain["test_acc"]
    assert first_recal["test_loss_running_bn"] == first_plain["test_loss"]
    assert first_recal["test_loss"] != first_plain["test_loss"]  # and the recalibrated evaluation differs
    assert recal["final_test_acc"] == rows["recal"][-1]["test_acc"]
    _, acc = plot_training_curves(tmp_path / recal["run_id"]).axes
    lines = {line.get_label(): list(line.get_ydata()) for line in acc.lines}
    assert lines["test (BN recalibrated)"] == pytest.approx([100 * r["test_acc"] for r in rows["recal"]])
    running = [100 * r["test_acc_running_bn"] for r in rows["recal"]]
    assert lines["test (running BN statistics)"] == pytest.approx(running)
