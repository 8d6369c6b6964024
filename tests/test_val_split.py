"""The optional validation split: held out of the training images, fixed for every run seed, part of the
run's identity, evaluated unaugmented every epoch, and the only thing a run selects on. The optional
training subset likewise: drawn from what the split leaves, fixed for every run seed, part of the identity."""

import json

import pytest
import torch

from fggp.data import Dataset, Split, load_dataset, with_train_subset, with_validation
from fggp.train import RunConfig, run
from fggp.train.run import _Trainer

QUICK = dict(arch="tiny", dataset="digits", epochs=2, prune_end_epoch=1, prune_every=5, lr=0.05,
             batch_size=128, progress=False)


def _numbered(n: int = 300, classes: int = 10) -> Dataset:
    """Training image i carries i in its first two pixels, so a split can be traced back to the originals."""
    images = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[:, 0, 0, 0], images[:, 0, 0, 1] = torch.arange(n) % 256, torch.arange(n) // 256
    labels = torch.arange(n) % classes
    test = Split(torch.zeros(20, 1, 4, 4, dtype=torch.uint8), torch.arange(20) % classes)
    return Dataset("numbered", Split(images, labels), test, classes, (0.5,), (0.25,), augment=True)


def _ids(split: Split) -> list[int]:
    return (split.images[:, 0, 0, 0].long() + 256 * split.images[:, 0, 0, 1].long()).tolist()


def test_validation_never_overlaps_training_and_together_they_are_the_training_set():
    data = _numbered()
    held = with_validation(data, 50)
    train, val = _ids(held.train), _ids(held.val)
    assert len(val) == 50 and len(train) == 250
    assert set(train).isdisjoint(val)
    assert sorted(train + val) == list(range(300))
    for split in (held.train, held.val):  # every image keeps its own label
        assert split.labels.tolist() == [i % 10 for i in _ids(split)]
    assert torch.bincount(held.val.labels).tolist() == [5] * 10  # stratified
    assert held.test is data.test and data.val is None and len(data.train) == 300


def test_validation_split_is_fixed_whatever_the_global_seed():
    data = _numbered()
    torch.manual_seed(1)
    a = _ids(with_validation(data, 50).val)
    torch.manual_seed(2)
    b = _ids(with_validation(data, 50).val)
    assert a == b
    assert a != _ids(with_validation(data, 50, seed=1).val)


@pytest.mark.parametrize("split, field, size", [(with_validation, "val_size", s) for s in (0, 300, -5, 2.5, True, 5)]
                         + [(with_train_subset, "train_subset", s) for s in (0, 301, -5, 2.5, True, 5)])
def test_bad_split_sizes_are_one_line(split, field, size):
    with pytest.raises(ValueError, match=rf"^{field}: ") as err:
        split(_numbered(), size)
    assert "\n" not in str(err.value)


def test_val_size_field():
    with pytest.raises(ValueError, match=r"^val_size: -1 must be an integer >= 0$"):
        RunConfig(**QUICK, val_size=-1)
    with pytest.raises(ValueError, match=r"^val_size: "):
        RunConfig(**QUICK, val_size=0.1)
    assert RunConfig.from_strings(["val_size=200"], **QUICK).val_size == 200


def test_val_size_is_part_of_the_run_identity():
    plain, held = RunConfig(**QUICK), RunConfig(**QUICK, val_size=200)
    assert "val_size" not in plain.identity()  # ids of runs without a split are what they were before
    assert held.identity()["val_size"] == 200
    assert plain.run_id != held.run_id != RunConfig(**QUICK, val_size=300).run_id
    assert RunConfig(**{**QUICK, "seed": 5}, val_size=200).identity()["val_size"] == 200


def test_trainer_validates_on_unaugmented_held_out_images():
    config = RunConfig(**{**QUICK, "dataset": "synthetic"}, val_size=400)  # synthetic is augmented
    data = load_dataset("synthetic")
    trainer = _Trainer(config, data, torch.device("cpu"), log=lambda msg: None)
    assert trainer.train_loader.augment and not trainer.val_loader.train
    assert len(trainer.train_loader.labels) == 1600 and len(trainer.val_loader.labels) == 400
    expected = with_validation(data, 400)
    assert torch.equal(trainer.val_loader.images, expected.val.images)
    assert torch.equal(trainer.train_loader.images, expected.train.images)
    x, _ = next(trainer.val_loader.iter_epoch(3))
    assert torch.equal(x, trainer.val_loader.normalize(expected.val.images[:500]))


def test_run_records_best_validation_epoch_and_its_test_accuracy(tmp_path):
    config = RunConfig(**QUICK, recipe="gmp", target_sparsity=0.5, val_size=200)
    result = run(config, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / config.run_id / "metrics.jsonl").read_text().splitlines()]
    assert all({"val_acc", "val_loss", "test_acc"} <= row.keys() for row in rows)
    best = max(rows, key=lambda r: r["val_acc"])
    assert result["best_val_acc"] == best["val_acc"] and result["best_val_epoch"] == best["epoch"]
    assert result["test_acc_at_best_val"] == best["test_acc"]
    assert result["final_test_acc"] == rows[-1]["test_acc"]
    assert all(0 <= r["val_acc"] <= 1 and r["val_acc"] * 200 == round(r["val_acc"] * 200) for r in rows)
    assert result["config"]["val_size"] == 200


def test_run_without_split_has_no_validation(tmp_path):
    config = RunConfig(**{**QUICK, "epochs": 1, "prune_end_epoch": 1}, recipe="dense")
    result = run(config, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / config.run_id / "metrics.jsonl").read_text().splitlines()]
    assert "val_acc" not in rows[0]
    assert result["best_val_acc"] is result["best_val_epoch"] is result["test_acc_at_best_val"] is None
    assert result["final_test_acc"] is not None


def test_training_subset_is_stratified_fixed_and_drawn_from_what_validation_leaves():
    data = with_validation(_numbered(), 50)
    sub = with_train_subset(data, 100)
    kept, train = _ids(sub.train), _ids(data.train)
    assert len(kept) == 100 and set(kept) <= set(train) and set(kept).isdisjoint(_ids(data.val))
    assert kept == sorted(kept) and len(set(kept)) == 100
    assert sub.train.labels.tolist() == [i % 10 for i in kept]
    assert torch.bincount(sub.train.labels).tolist() == [10] * 10  # stratified
    assert sub.val is data.val and sub.test is data.test
    torch.manual_seed(7)  # the same images whatever the global seed
    assert _ids(with_train_subset(data, 100).train) == kept
    assert _ids(with_train_subset(data, 100, seed=2).train) != kept
    assert with_train_subset(data, 250) is data  # all of them: unchanged


def test_train_subset_field_and_identity():
    plain, sub = RunConfig(**QUICK), RunConfig(**QUICK, train_subset=500)
    assert "train_subset" not in plain.identity() and sub.identity()["train_subset"] == 500
    assert plain.run_id != sub.run_id
    with pytest.raises(ValueError, match=r"^train_subset: -1 must be an integer >= 0$"):
        RunConfig(**QUICK, train_subset=-1)
    with pytest.raises(ValueError, match=r"^train_subset: 1300 must be 0 \(all\) or in \[10, 1237\] for the 1237 "
                                         r"training images of digits left after val_size=200$"):
        RunConfig(**QUICK, val_size=200, train_subset=1300)  # refused with the config, before any data
    assert RunConfig.from_strings(["train_subset=300"], **QUICK).train_subset == 300


def test_trainer_trains_on_the_subset_only(tmp_path):
    config = RunConfig(**{**QUICK, "dataset": "synthetic"}, val_size=400, train_subset=600)
    data = load_dataset("synthetic")
    trainer = _Trainer(config, data, torch.device("cpu"), log=lambda msg: None)
    expected = with_train_subset(with_validation(data, 400), 600)
    assert len(trainer.train_loader.labels) == 600 and len(trainer.val_loader.labels) == 400
    assert torch.equal(trainer.train_loader.images, expected.train.images)
    assert len(trainer.train_loader) == 5  # 600 images in batches of 128: the epoch is shorter
