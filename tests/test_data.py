"""Tests for fggp.data: CIFAR-10 and the idx sets on small genuine-format archives, augmentation, loader,
offline sets."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import urllib.error
import urllib.request

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets
from torchvision.datasets import CIFAR10, MNIST, FashionMNIST

from fggp.data import (
    CIFAR10_MD5,
    IDX_SOURCES,
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
    from .idx_fixture import FILES, idx_bytes, write_fake_idx
except ImportError:
    from cifar_fixture import ARCHIVE, FOLDER, write_fake_cifar
    from idx_fixture import FILES, idx_bytes, write_fake_idx


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


def test_cifar10_constants_are_torchvisions():
    """fggp writes CIFAR-10's names, url and md5s out (so that importing it skips torchvision); they must
    stay the ones torchvision downloads and checks."""
    from fggp.data.datasets import CIFAR10_ARCHIVE, CIFAR10_FOLDER, CIFAR10_URL

    assert (CIFAR10_FOLDER, CIFAR10_ARCHIVE, CIFAR10_URL) == (CIFAR10.base_folder, CIFAR10.filename, CIFAR10.url)
    assert CIFAR10_MD5 == {CIFAR10.filename: CIFAR10.tgz_md5, **dict(CIFAR10.train_list + CIFAR10.test_list),
                           CIFAR10.meta["filename"]: CIFAR10.meta["md5"]}
    for name, source in IDX_SOURCES.items():
        assert issubclass(source.torchvision_class(), MNIST) and source.torchvision_class().__name__ == source.torchvision_name


def test_importing_fggp_does_not_import_torchvision():
    """Every sweep point's kernel and every CLI call imports fggp; torchvision costs ~1.5 s of each, and
    only downloads and CIFAR-10's reader need it."""
    code = ("import sys, fggp.cli, fggp.sweep, fggp.train, fggp.data, fggp.models, fggp.pruning; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"^dataset: 'foo' is not one of cifar10, fashion_mnist, mnist, digits, synthetic$"):
        load_dataset("foo")


# ---- fashion_mnist, mnist ------------------------------------------------------------------------

IDX_SETS = [("fashion_mnist", FashionMNIST), ("mnist", MNIST)]


@pytest.fixture
def package_dir(tmp_path, monkeypatch):
    """Point both idx sets' system-package folder at an (empty) temporary folder: CI has no Debian package."""
    folder = tmp_path / "package"
    for name, source in list(IDX_SOURCES.items()):
        monkeypatch.setitem(IDX_SOURCES, name, dataclasses.replace(source, package_dir=folder))
    return folder


def _raw_dir(root, cls):
    return root / cls.__name__ / "raw"  # torchvision's layout: where its download puts the files


@pytest.mark.parametrize("name, cls", IDX_SETS)
@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trips_native_shape_pixels_and_labels(tmp_path, package_dir, name, cls, gz):
    sha, train_x, train_y, test_x, test_y = write_fake_idx(_raw_dir(tmp_path / "data", cls), gz=gz)
    ds = load_dataset(name, data_dir=tmp_path / "data", download=False, sha256=sha)
    assert ds.name == name and ds.num_classes == 10 and ds.augment is False and ds.val is None
    assert ds.shape == (1, 28, 28)
    assert ds.train.images.shape == (40, 1, 28, 28) and ds.test.images.shape == (12, 1, 28, 28)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    assert torch.equal(ds.train.images[:, 0], torch.from_numpy(train_x))
    assert torch.equal(ds.test.images[:, 0], torch.from_numpy(test_x))
    assert ds.train.labels.tolist() == train_y.tolist() and ds.test.labels.tolist() == test_y.tolist()
    x = torch.from_numpy(train_x).double() / 255
    assert ds.mean == pytest.approx((x.mean().item(),), abs=1e-12)
    assert ds.std == pytest.approx((x.std().item(),), abs=1e-12)


def test_idx_reader_follows_the_format_byte_for_byte(tmp_path, package_dir):
    """Pixel [i, 0, y, x] is byte 16 + i*784 + y*28 + x of the images file; label i is byte 8 + i."""
    sha, *_ = write_fake_idx(_raw_dir(tmp_path, FashionMNIST), gz=False)
    raw = (_raw_dir(tmp_path, FashionMNIST) / "train-images-idx3-ubyte").read_bytes()
    labels = (_raw_dir(tmp_path, FashionMNIST) / "train-labels-idx1-ubyte").read_bytes()
    assert raw[:4] == bytes([0, 0, 8, 3]) and int.from_bytes(raw[4:8], "big") == 40
    ds = load_dataset("fashion_mnist", data_dir=tmp_path, download=False, sha256=sha)
    assert ds.train.images[7, 0, 5, 20].item() == raw[16 + 7 * 784 + 5 * 28 + 20]
    assert ds.train.labels[33].item() == labels[8 + 33]


@pytest.mark.parametrize("name, cls", IDX_SETS)
def test_idx_lookup_order_data_dir_then_package(tmp_path, package_dir, name, cls):
    in_package = write_fake_idx(package_dir, seed=1)
    ds = load_dataset(name, data_dir=tmp_path / "data", download=False, sha256=in_package[0])
    assert torch.equal(ds.train.images[:, 0], torch.from_numpy(in_package[1]))
    in_data_dir = write_fake_idx(_raw_dir(tmp_path / "data", cls), seed=2)
    ds = load_dataset(name, data_dir=tmp_path / "data", download=False, sha256=in_data_dir[0])
    assert torch.equal(ds.train.images[:, 0], torch.from_numpy(in_data_dir[1]))


class _FakeResponse:
    def __init__(self, url: str, body: bytes):
        self.url, self.body, self.length, self.offset = url, body, len(body), 0

    def read(self, n=-1):
        chunk = self.body[self.offset:] if n < 0 else self.body[self.offset:self.offset + n]
        self.offset += len(chunk)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("name, cls", IDX_SETS)
def test_idx_downloads_with_torchvision_when_nowhere_on_disk(tmp_path, package_dir, monkeypatch, name, cls):
    """The third place: torchvision's own download (md5 check, extraction) from a fake mirror."""
    served = tmp_path / "mirror"
    sha, train_x, *_ = write_fake_idx(served, seed=3)
    mirror = "http://mirror.invalid/"
    fake_class = type(cls.__name__, (cls,), {
        "mirrors": [mirror],
        "resources": [(f"{f}.gz", hashlib.md5((served / f"{f}.gz").read_bytes()).hexdigest()) for f in FILES],
    })
    monkeypatch.setattr(torchvision.datasets, cls.__name__, fake_class)
    requested = []

    def serve(request, *args, **kwargs):
        url = request.full_url
        requested.append(url)
        return _FakeResponse(url, (served / url.removeprefix(mirror)).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    root = tmp_path / "data"
    with pytest.raises(DatasetUnavailableError, match="download=False"):
        load_dataset(name, data_dir=root, download=False, sha256=sha)
    assert requested == []
    ds = load_dataset(name, data_dir=root, download=True, sha256=sha)
    assert {u.removeprefix(mirror) for u in requested} == {f"{f}.gz" for f in FILES}
    assert torch.equal(ds.train.images[:, 0], torch.from_numpy(train_x))
    assert all((_raw_dir(root, cls) / f).is_file() for f in FILES)  # extracted: the next run reads data_dir
    requested.clear()
    load_dataset(name, data_dir=root, download=True, sha256=sha)
    assert requested == []


@pytest.mark.parametrize("download", [False, True])
def test_fashion_mnist_missing_names_all_three_ways(tmp_path, package_dir, download):
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset("fashion_mnist", data_dir=tmp_path / "data", download=download)
    msg = str(err.value)
    assert "\n" not in msg
    raw = _raw_dir((tmp_path / "data").resolve(), FashionMNIST)
    for part in (str(raw), str(package_dir), "apt-get install dataset-fashion-mnist", "download=True",
                 FashionMNIST.mirrors[0], "train-images-idx3-ubyte", "one of 3 ways"):
        assert part in msg, part
    if download:
        assert "network disabled in tests" in msg


def test_mnist_missing_names_its_two_ways(tmp_path, package_dir):
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    msg = str(err.value)
    assert "one of 2 ways" in msg and "apt-get" not in msg and MNIST.mirrors[0] in msg
    assert str(_raw_dir(tmp_path.resolve(), MNIST)) in msg


def test_idx_incomplete_folder_is_not_used(tmp_path, package_dir):
    sha, *_ = write_fake_idx(_raw_dir(tmp_path, FashionMNIST))
    (_raw_dir(tmp_path, FashionMNIST) / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetUnavailableError):
        load_dataset("fashion_mnist", data_dir=tmp_path, download=False, sha256=sha)


def test_idx_corrupted_file_gives_checksum_error_not_another_copy(tmp_path, package_dir):
    """A damaged copy in data_dir is an error naming it, even with a good copy in the package folder."""
    sha, *_ = write_fake_idx(package_dir)
    write_fake_idx(_raw_dir(tmp_path, FashionMNIST), gz=False)
    path = _raw_dir(tmp_path, FashionMNIST) / "train-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetChecksumError, match="checksum mismatch") as err:
        load_dataset("fashion_mnist", data_dir=tmp_path, download=False, sha256=sha)
    assert str(path) in str(err.value)


def test_idx_truncated_gzip_gives_checksum_error(tmp_path, package_dir):
    sha, *_ = write_fake_idx(package_dir)
    path = package_dir / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-9])
    with pytest.raises(DatasetChecksumError, match="cannot read") as err:
        load_dataset("fashion_mnist", data_dir=tmp_path, download=False, sha256=sha)
    assert str(path) in str(err.value)


def test_idx_wrong_magic_gives_checksum_error(tmp_path, package_dir):
    sha, *_ = write_fake_idx(package_dir)
    labels_as_images = idx_bytes(torch.zeros(12, 28, dtype=torch.uint8).numpy())  # 2-D where 1-D belongs
    (package_dir / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels_as_images))
    sha["t10k-labels-idx1-ubyte"] = hashlib.sha256(labels_as_images).hexdigest()
    with pytest.raises(DatasetChecksumError, match="not an unsigned-byte idx file with 1 dimensions"):
        load_dataset("fashion_mnist", data_dir=tmp_path, download=False, sha256=sha)


@pytest.mark.skipif(not (IDX_SOURCES["fashion_mnist"].package_dir / "train-images-idx3-ubyte.gz").is_file(),
                    reason="the Debian package dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_debian_package(tmp_path):
    """Where the package is installed: the published content (checked by SHA-256), in its native shape."""
    ds = load_dataset("fashion_mnist", data_dir=tmp_path, download=False)
    assert ds.train.images.shape == (60000, 1, 28, 28) and ds.test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.train.labels).tolist() == [6000] * 10
    assert torch.bincount(ds.test.labels).tolist() == [1000] * 10
    assert ds.mean[0] == pytest.approx(0.2860, abs=1e-4) and ds.std[0] == pytest.approx(0.3530, abs=1e-4)


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


@pytest.mark.parametrize("name", ["digits", "synthetic"])
def test_static_shapes_match_the_loaded_datasets(name):
    from fggp.data import SHAPES

    assert load_dataset(name).shape == SHAPES[name]
