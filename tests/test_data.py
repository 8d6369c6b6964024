"""Tests for fggp.data: the CIFAR-10 path on a small genuine-format archive, augmentation, loader, offline sets."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import torch
import torch.nn.functional as F

from fggp.data import (
    DatasetChecksumError,
    DatasetUnavailableError,
    DeviceLoader,
    Split,
    augment,
    draw_augmentation,
    load_dataset,
)

try:
    from .cifar_fixture import ARCHIVE, FOLDER, write_fake_cifar
except ImportError:
    from cifar_fixture import ARCHIVE, FOLDER, write_fake_cifar


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every urllib request fails, as on a machine without network; torchvision downloads through urllib."""
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# ---- cifar10 -------------------------------------------------------------------------------------

def test_cifar10_round_trips_pixels_and_labels(tmp_path):
    md5, train_x, train_y, test_x, test_y = write_fake_cifar(tmp_path)
    ds = load_dataset("cifar10", data_dir=tmp_path, download=False, md5=md5)
    assert ds.name == "cifar10" and ds.num_classes == 10
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    assert ds.train.images.shape == (20, 3, 32, 32) and ds.test.images.shape == (6, 3, 32, 32)
    assert torch.equal(ds.train.images, torch.from_numpy(train_x))
    assert torch.equal(ds.test.images, torch.from_numpy(test_x))
    assert ds.train.labels.tolist() == train_y.tolist() and ds.test.labels.tolist() == test_y.tolist()
    # Pixel [i, c, y, x] is byte c*1024 + y*32 + x of row i in the batch file (planar R, G, B, row-major).
    assert ds.train.images[7, 2, 5, 30] == train_x.reshape(20, 3072)[7, 2 * 1024 + 5 * 32 + 30]


def test_cifar10_extracts_local_archive(tmp_path):
    md5, train_x, *_ = write_fake_cifar(tmp_path, extracted=False)
    assert not (tmp_path / FOLDER).exists()
    ds = load_dataset("cifar10", data_dir=tmp_path, download=True, md5=md5)
    assert (tmp_path / FOLDER / "data_batch_5").is_file()
    assert torch.equal(ds.train.images, torch.from_numpy(train_x))


def test_cifar10_corrupted_batch_gives_checksum_error(tmp_path):
    md5, *_ = write_fake_cifar(tmp_path)
    path = tmp_path / FOLDER / "data_batch_3"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    for download in (False, True):
        with pytest.raises(DatasetChecksumError, match="checksum mismatch") as err:
            load_dataset("cifar10", data_dir=tmp_path, download=download, md5=md5)
        assert str(path) in str(err.value)


def test_cifar10_corrupted_archive_gives_checksum_error(tmp_path):
    md5, *_ = write_fake_cifar(tmp_path, extracted=False)
    with open(tmp_path / ARCHIVE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(DatasetChecksumError, match="checksum mismatch") as err:
        load_dataset("cifar10", data_dir=tmp_path, download=True, md5=md5)
    assert str(tmp_path / ARCHIVE) in str(err.value)


@pytest.mark.parametrize("download", [False, True])
def test_cifar10_missing_gives_one_clear_error(tmp_path, download):
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset("cifar10", data_dir=tmp_path, download=download)
    msg = str(err.value)
    for part in (str(tmp_path), "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar.html",
                 "digits", "synthetic"):
        assert part in msg
    if download:
        assert "network disabled in tests" in msg


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"^dataset: 'foo' is not one of cifar10, digits, synthetic$"):
        load_dataset("foo")


# ---- offline datasets ----------------------------------------------------------------------------

def test_digits():
    ds = load_dataset("digits")
    assert ds.train.images.shape == (1437, 3, 32, 32) and ds.test.images.shape == (360, 3, 32, 32)
    assert ds.train.images.dtype == torch.uint8 and ds.num_classes == 10
    assert torch.equal(ds.train.images[:, 0], ds.train.images[:, 2])
    assert ds.train.images.max() == 255 and ds.train.images.min() == 0
    assert torch.bincount(ds.test.labels, minlength=10).min() >= 30  # stratified: ~36 per class
    x = ds.train.images.double() / 255
    assert ds.mean[0] == pytest.approx(x.mean().item()) and ds.std[0] == pytest.approx(x.std().item())


def test_synthetic_is_seeded_and_learnable_in_shape():
    a, b = load_dataset("synthetic", seed=1), load_dataset("synthetic", seed=1)
    c = load_dataset("synthetic", seed=2, n_train=300, n_test=50)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images[:300], c.train.images)
    assert a.train.images.shape == (2000, 3, 32, 32) and a.test.images.shape == (500, 3, 32, 32)
    assert c.train.images.shape == (300, 3, 32, 32) and c.test.labels.shape == (50,)
    assert a.train.images.dtype == torch.uint8 and set(a.train.labels.tolist()) == set(range(10))
    # Class means differ far more than two halves of one class do: the label is in the pixels.
    x, y = a.train.images.float(), a.train.labels
    means = torch.stack([x[y == k].mean(0) for k in range(10)])
    same = (x[y == 0][::2].mean(0) - x[y == 0][1::2].mean(0)).abs().mean()
    assert (means[0] - means[1]).abs().mean() > 3 * same


# ---- augmentation --------------------------------------------------------------------------------

def test_augment_keeps_shape_and_dtype():
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.uint8, torch.float32):
        x = torch.randint(0, 256, (5, 3, 32, 32)).to(dtype)
        out = augment(x, g)
        assert out.shape == x.shape and out.dtype == dtype


def test_draw_augmentation_distribution():
    n = 20_000
    dy, dx, flip = draw_augmentation(n, torch.Generator().manual_seed(0))
    for d in (dy, dx):
        counts = torch.bincount(d, minlength=9)
        assert len(counts) == 9 and counts.min() > 0
        expected = n / 9
        chi2 = ((counts - expected) ** 2 / expected).sum().item()
        assert chi2 < 26.1  # chi-square, 8 degrees of freedom, p = 0.001
    assert abs(flip.float().mean().item() - 0.5) < 0.02


def test_augment_matches_hand_crop_of_reflect_padded_image():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = augment(x, torch.Generator().manual_seed(3))
    dy, dx, flip = draw_augmentation(64, torch.Generator().manual_seed(3))
    padded = F.pad(x.float(), (4, 4, 4, 4), mode="reflect")
    assert flip.any() and (~flip).any() and len(set(dy.tolist())) > 3
    for i in range(64):
        crop = padded[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        if flip[i]:
            crop = crop.flip(-1)
        assert torch.equal(out[i].float(), crop), i


# ---- loader --------------------------------------------------------------------------------------

def _split(n=50):
    g = torch.Generator().manual_seed(0)
    return Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n))


MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def _batches(loader, epoch):
    return [(x.clone(), y.clone()) for x, y in loader.iter_epoch(epoch)]


def test_loader_epoch_is_a_function_of_seed_and_epoch():
    split = _split()
    a = DeviceLoader(split, 16, train=True, mean=MEAN, std=STD, seed=5)
    b = DeviceLoader(split, 16, train=True, mean=MEAN, std=STD, seed=5)
    assert len(a) == 4
    first = _batches(a, 3)
    _batches(a, 0)
    for (x1, y1), (x2, y2) in zip(first, _batches(b, 3), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    b.set_epoch(3)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(first, list(b), strict=True))
    assert not torch.equal(torch.cat([y for _, y in first]), torch.cat([y for _, y in _batches(a, 4)]))
    c = DeviceLoader(split, 16, train=True, mean=MEAN, std=STD, seed=6)
    assert not torch.equal(torch.cat([y for _, y in first]), torch.cat([y for _, y in _batches(c, 3)]))


def test_train_loader_visits_every_sample_once_augmented():
    split = _split()
    loader = DeviceLoader(split, 16, train=True, mean=MEAN, std=STD, seed=0)
    batches = _batches(loader, 0)
    assert [len(y) for _, y in batches] == [16, 16, 16, 2]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(50))
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    assert not torch.allclose(x, loader.normalize(split.images[y]))
    assert len(DeviceLoader(split, 16, train=True, mean=MEAN, std=STD, drop_last=True)) == 3


def test_test_loader_is_ordered_unaugmented_and_normalized():
    split = _split()
    loader = DeviceLoader(split, 20, train=False, mean=MEAN, std=STD, channels_last=False)
    batches = _batches(loader, 7)
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(50))
    x = torch.cat([x for x, _ in batches])
    assert x.shape == (50, 3, 32, 32) and x.dtype == torch.float32
    n, c, i, j = 23, 1, 4, 17
    by_hand = (split.images[n, c, i, j].item() / 255 - MEAN[c]) / STD[c]
    assert x[n, c, i, j].item() == pytest.approx(by_hand, abs=1e-5)
    again = torch.cat([x for x, _ in loader.iter_epoch(8)])
    assert torch.equal(x, again)


def test_augment_off_shuffles_in_the_same_order_without_cropping():
    split = _split()
    on = _batches(DeviceLoader(split, 16, train=True, mean=MEAN, std=STD, seed=2), 1)
    off_loader = DeviceLoader(split, 16, train=True, mean=MEAN, std=STD, seed=2, augment=False)
    off = _batches(off_loader, 1)
    for (_, y_on), (x_off, y_off) in zip(on, off, strict=True):
        assert torch.equal(y_on, y_off)
        assert torch.equal(x_off, off_loader.normalize(split.images[y_off]))
