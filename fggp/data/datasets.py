"""Datasets as whole tensors, so a loader can keep them on the device.

Every built-in dataset is converted once to ``Split(images uint8 [N, C, H, W], labels int64 [N])`` in its
native shape (CIFAR-10 3x32x32, Fashion-MNIST and MNIST 1x28x28); the per-batch work (augmentation,
normalization) happens later on the device. ``cifar10``, ``fashion_mnist`` and ``mnist`` are real
benchmarks; ``digits`` (scikit-learn's bundled images) and ``synthetic`` need no files or network and are
CIFAR-shaped (3x32x32) stand-ins, so every architecture runs on them offline. Datasets registered with
``fggp.data.register_dataset`` may hold any inputs (features, token ids, float images); only uint8
``[N, C, H, W]`` inputs are treated as images.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

# torchvision is imported where a download or CIFAR-10's reader needs it, not here: it costs about 1.5 s
# per process, and every sweep point's kernel imports this module.


class DatasetUnavailableError(RuntimeError):
    """The data is not on disk and cannot be downloaded; never answered with other data."""


class DatasetChecksumError(RuntimeError):
    """A file on disk does not have the published md5: corrupted or incomplete."""


@dataclass
class Split:
    """One split's inputs and labels. ``images`` is the inputs, whatever they are: uint8 ``[N, C, H, W]``
    images for the built-ins, any dtype and rank for a registered dataset (the name stays, as the whole
    kit reads ``split.images``)."""

    images: torch.Tensor  # the inputs [N, ...]; uint8 [N, C, H, W] (NCHW) for images
    labels: torch.Tensor  # int64 [N]

    def __post_init__(self) -> None:
        if not torch.is_tensor(self.images) or self.images.ndim < 1:
            raise ValueError(f"images: expected a tensor of inputs [N, ...], got {_describe(self.images)}")
        if (not torch.is_tensor(self.labels) or self.labels.dtype != torch.int64
                or self.labels.shape != self.images.shape[:1]):
            raise ValueError(f"labels: expected int64 [{len(self.images)}], got {_describe(self.labels)}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def is_image(self) -> bool:
        """uint8 ``[N, C, H, W]``: the inputs the loader normalizes per channel and may crop and flip."""
        return self.images.dtype == torch.uint8 and self.images.ndim == 4


def _describe(x) -> str:
    """``uint8 [N, C, H, W]`` for a tensor or array, else the type's name: what an error says was given."""
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} {list(x.shape)}"
    return f"a numpy array {x.dtype} {list(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    num_classes: int
    mean: tuple[float, ...] | None  # per channel, in 0..1 units; None unless the inputs are images
    std: tuple[float, ...] | None
    augment: bool = True  # whether crop+flip suit the data (a mirrored digit is another glyph)
    val: Split | None = None  # held out of the training samples by ``with_validation``; never augmented

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one input, ``(channels, height, width)`` for images: what a model is built for."""
        return tuple(self.train.images.shape[1:])

    @property
    def is_image(self) -> bool:
        """uint8 ``[N, C, H, W]`` inputs: normalized (``mean``, ``std``) and optionally augmented per batch."""
        return self.train.is_image


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (sample) std in 0..1 units, from a histogram of the 256 byte values: exact, and
    without a float copy of the whole split."""
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).double()
        n = counts.sum()
        mean = (counts * values).sum() / n
        means.append(mean.item())
        stds.append(((counts * (values - mean) ** 2).sum() / (n - 1)).sqrt().item())
    return tuple(means), tuple(stds)


# ---- validation split ----------------------------------------------------------------------------

VAL_SPLIT_SEED = 0  # one split for every run seed, so runs that differ only in seed share it


def _stratified(data: Dataset, field: str, what: str, seed: int, **size) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's stratified split of the training indices (``train_size=`` or ``test_size=``), both
    halves sorted; one line naming ``field`` when the classes cannot be stratified at that size."""
    from sklearn.model_selection import train_test_split

    n = len(data.train)
    try:
        keep, held = train_test_split(np.arange(n), stratify=data.train.labels.numpy(), random_state=seed, **size)
    except ValueError as e:
        raise ValueError(f"{field}: {next(iter(size.values()))} cannot give {what} stratified by class of the {n} "
                         f"training samples of {data.name} ({e})") from None
    return torch.from_numpy(np.sort(keep)), torch.from_numpy(np.sort(held))


def with_validation(data: Dataset, val_size: int, seed: int = VAL_SPLIT_SEED) -> Dataset:
    """Hold ``val_size`` training samples out as ``val``: stratified by class, the same for every run.

    Works on any inputs (it only indexes). The test split is untouched; normalization keeps the dataset's
    statistics.
    """
    n = len(data.train)
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 < val_size < n:
        raise ValueError(f"val_size: {val_size!r} must be an integer in [1, {n - 1}] for the {n} training "
                         f"samples of {data.name}")
    keep, held = _stratified(data, "val_size", "a split", seed, test_size=val_size)
    train = Split(data.train.images[keep], data.train.labels[keep])
    val = Split(data.train.images[held], data.train.labels[held])
    return dataclasses.replace(data, train=train, val=val)


TRAIN_SUBSET_SEED = 1  # one subset for every run seed, so paired runs train on the same images


def with_train_subset(data: Dataset, size: int, seed: int = TRAIN_SUBSET_SEED) -> Dataset:
    """Train on ``size`` of the training samples (after any validation split): stratified by class, the
    same for every run seed. Why: a grid sized to a small machine says so in its config, instead of
    training on other data; the test and validation splits are untouched."""
    n = len(data.train)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= n:
        raise ValueError(f"train_subset: {size!r} must be an integer in [1, {n}] for the {n} training "
                         f"samples of {data.name} (0: all of them)")
    if size == n:
        return data
    keep, _ = _stratified(data, "train_subset", "a subset", seed, train_size=size)
    return dataclasses.replace(data, train=Split(data.train.images[keep], data.train.labels[keep]))


# ---- cifar10 -------------------------------------------------------------------------------------

# torchvision's ``CIFAR10`` attributes, written out so importing fggp does not import torchvision;
# tests/test_data.py checks they still equal torchvision's.
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
# Published md5 of the archive and of every extracted file; the one piece tests replace (``md5=``).
CIFAR10_MD5: dict[str, str] = {
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}


def _cifar10_class(md5: dict[str, str]) -> type:
    """torchvision's CIFAR10 with the given checksums, so its own integrity checks agree with ours."""
    from torchvision.datasets import CIFAR10

    return type("CIFAR10", (CIFAR10,), {
        "tgz_md5": md5[CIFAR10_ARCHIVE],
        "train_list": [[name, md5[name]] for name, _ in CIFAR10.train_list],
        "test_list": [[name, md5[name]] for name, _ in CIFAR10.test_list],
        "meta": {**CIFAR10.meta, "md5": md5[CIFAR10.meta["filename"]]},
    })


def _unavailable(root: Path, reason: str) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"cifar10: no CIFAR-10 data in '{root}' ({reason}). Download {CIFAR10_ARCHIVE} from {CIFAR10_PAGE} "
        f"and put it in '{root}' (it is checked and extracted on the next run with download=True), "
        "or use an offline dataset: 'digits' or 'synthetic'."
    )


def _verify(path: Path, md5: str, fix: str) -> None:
    from torchvision.datasets.utils import calculate_md5

    actual = calculate_md5(path)
    if actual != md5:
        raise DatasetChecksumError(
            f"cifar10: checksum mismatch for '{path}' (md5 {actual}, expected {md5}); the file is corrupted "
            f"or incomplete. {fix}"
        )


def _cifar10(data_dir: str | os.PathLike, download: bool, md5: dict[str, str] | None = None) -> Dataset:
    md5 = CIFAR10_MD5 if md5 is None else md5
    root = Path(data_dir).expanduser().resolve()
    folder = root / CIFAR10_FOLDER
    files = [name for name in md5 if name != CIFAR10_ARCHIVE]
    archive = root / CIFAR10_ARCHIVE
    if not all((folder / name).is_file() for name in files):
        if not download:
            raise _unavailable(root, "download=False")
        if archive.is_file():
            _verify(archive, md5[CIFAR10_ARCHIVE], "Delete it and run again to download a fresh copy.")
        from torchvision.datasets.utils import download_and_extract_archive

        try:  # reuses a verified local archive; otherwise fetches it (torchvision checks the md5)
            download_and_extract_archive(CIFAR10_URL, root, filename=CIFAR10_ARCHIVE, md5=md5[CIFAR10_ARCHIVE])
        except OSError as e:
            raise _unavailable(root, f"the download failed: {type(e).__name__}: {e}") from e
        except RuntimeError as e:
            raise DatasetChecksumError(f"cifar10: the downloaded '{archive}' failed its md5 check: {e}") from e
    for name in files:
        _verify(folder / name, md5[name], f"Delete '{folder}' and run again to re-extract it from {CIFAR10_ARCHIVE}.")

    cls = _cifar10_class(md5)
    splits = []
    for train in (True, False):
        ds = cls(root=str(root), train=train, download=False)
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        splits.append(Split(images, torch.tensor(ds.targets, dtype=torch.int64)))
    return Dataset("cifar10", splits[0], splits[1], 10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


# ---- fashion_mnist, mnist -------------------------------------------------------------------------

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# SHA-256 of the uncompressed idx files. Checked on the content rather than on the .gz, because the Debian
# package re-compresses the originals (its .gz lack the stored file name, so their md5 is not the publisher's).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


@dataclass(frozen=True)
class IdxSource:
    """Where an idx dataset is looked for: ``<data_dir>/<torchvision folder>/raw``, a system package, a download."""

    name: str
    title: str
    torchvision_name: str  # the torchvision.datasets class that downloads it, and the folder it uses
    sha256: dict[str, str]
    package: str | None  # Debian package that installs the four .gz files
    package_dir: Path | None

    def raw_dir(self, root: Path) -> Path:
        """The folder torchvision downloads into (and reads from): ``<root>/<ClassName>/raw``."""
        return root / self.torchvision_name / "raw"

    def torchvision_class(self) -> type:
        import torchvision.datasets

        return getattr(torchvision.datasets, self.torchvision_name)


IDX_SOURCES: dict[str, IdxSource] = {
    "fashion_mnist": IdxSource("fashion_mnist", "Fashion-MNIST", "FashionMNIST", FASHION_MNIST_SHA256,
                               "dataset-fashion-mnist", Path("/usr/share/datasets/fashion-mnist")),
    "mnist": IdxSource("mnist", "MNIST", "MNIST", MNIST_SHA256, None, None),
}


def _idx_files(folder: Path | None) -> dict[str, Path] | None:
    """The four files in ``folder``, each plain or gzipped (plain preferred); None unless all four are there."""
    if folder is None:
        return None
    found = {}
    for name in IDX_FILES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def _read_idx(source: IdxSource, path: Path, sha256: str, ndim: int) -> np.ndarray:
    """An unsigned-byte idx array (magic ``0x0000 08 <ndim>``, big-endian sizes) after its content checksum."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:
        raise DatasetChecksumError(f"{source.name}: cannot read '{path}' ({e}); delete it and get it again") from e
    actual = hashlib.sha256(raw).hexdigest()
    if actual != sha256:
        raise DatasetChecksumError(
            f"{source.name}: checksum mismatch for '{path}' (sha256 of its content {actual}, expected {sha256}); "
            "the file is corrupted, incomplete or another data set. Delete it and get it again."
        )
    header = np.frombuffer(raw[:4 + 4 * ndim], dtype=">u4")
    if header[0] != 0x0800 + ndim:
        raise DatasetChecksumError(f"{source.name}: '{path}' is not an unsigned-byte idx file with {ndim} dimensions")
    dims = [int(d) for d in header[1:]]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _idx_unavailable(source: IdxSource, root: Path, reason: str) -> DatasetUnavailableError:
    places = [f"'{source.raw_dir(root)}'"] + ([f"'{source.package_dir}'"] if source.package_dir else [])
    ways = [f"put {', '.join(IDX_FILES)} (each may be .gz) in '{source.raw_dir(root)}'"]
    if source.package:
        ways.append(f"install the Debian package {source.package} (apt-get install {source.package}), "
                    f"which puts them in '{source.package_dir}'")
    ways.append(f"run with download=True where there is network (torchvision fetches them from "
                f"{source.torchvision_class().mirrors[0]})")
    return DatasetUnavailableError(
        f"{source.name}: no {source.title} idx files in {' or '.join(places)} ({reason}). "
        f"Get them one of {len(ways)} ways: " + "; or ".join(ways) + "."
    )


def _idx_dataset(source: IdxSource, data_dir: str | os.PathLike, download: bool,
                 sha256: dict[str, str] | None = None) -> Dataset:
    """Looked for in ``data_dir`` (torchvision's layout), then the package's folder, else downloaded."""
    sha256 = source.sha256 if sha256 is None else sha256
    root = Path(data_dir).expanduser().resolve()
    files = _idx_files(source.raw_dir(root)) or _idx_files(source.package_dir)
    if files is None:
        if not download:
            raise _idx_unavailable(source, root, "download=False")
        try:  # torchvision checks every downloaded .gz against the publisher's md5 before extracting it
            source.torchvision_class()(str(root), train=True, download=True)
        except (OSError, RuntimeError) as e:
            raise _idx_unavailable(source, root, f"the download failed: {type(e).__name__}: "
                                                 f"{' '.join(str(e).split())}") from e
        files = _idx_files(source.raw_dir(root))
    arrays = {name: _read_idx(source, path, sha256[name], 3 if "images" in name else 1) for name, path in files.items()}
    splits = []
    for prefix in ("train", "t10k"):
        images, labels = arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"]
        if len(images) != len(labels):
            raise DatasetChecksumError(f"{source.name}: {len(images)} {prefix} images but {len(labels)} labels")
        splits.append(Split(torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype(np.int64))))
    mean, std = _channel_stats(splits[0].images)
    # No crop or flip: the LeNet pruning results (Han et al. 2015; Frankle & Carbin 2019) train without them.
    return Dataset(source.name, splits[0], splits[1], 10, mean, std, augment=False)


def _fashion_mnist(data_dir="data", download: bool = True, **kwargs) -> Dataset:
    return _idx_dataset(IDX_SOURCES["fashion_mnist"], data_dir, download, **kwargs)


def _mnist(data_dir="data", download: bool = True, **kwargs) -> Dataset:
    return _idx_dataset(IDX_SOURCES["mnist"], data_dir, download, **kwargs)


# ---- digits --------------------------------------------------------------------------------------

def _digits(data_dir=None, download: bool = True) -> Dataset:
    """1797 real 8x8 handwritten digits shipped with scikit-learn: a real, offline stand-in."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    x = torch.tensor(raw.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    images = (x * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)
    labels = torch.tensor(raw.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=raw.target, random_state=0)
    train = Split(images[idx_train], labels[idx_train])
    test = Split(images[idx_test], labels[idx_test])
    mean, std = _channel_stats(train.images)
    return Dataset("digits", train, test, 10, mean, std, augment=False)


# ---- synthetic -----------------------------------------------------------------------------------

def _synthetic(data_dir=None, download: bool = True, *, seed: int = 0, n_train: int = 2000, n_test: int = 500) -> Dataset:
    """Seeded CIFAR-shaped data: shifted low-frequency class templates under low- and high-frequency noise.

    Learnable by a small CNN in a few epochs, but the per-image shift, contrast and noise keep it from
    being solved after one batch.
    """
    g = torch.Generator().manual_seed(seed)
    num_classes, pad = 10, 4
    size = 32 + 2 * pad

    def smooth_field(n: int, cells: int) -> torch.Tensor:
        field = torch.randn(n, 3, cells, cells, generator=g)
        return F.interpolate(field, size=(size, size), mode="bicubic", align_corners=False)

    templates = smooth_field(num_classes, 4)

    def make(n: int) -> Split:
        labels = torch.randint(0, num_classes, (n,), generator=g)
        dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=g)
        r = torch.arange(32)
        shifted = templates[labels[:, None, None, None], torch.arange(3)[None, :, None, None],
                            (dy[:, None] + r)[:, None, :, None], (dx[:, None] + r)[:, None, None, :]]
        contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=g)
        x = contrast * shifted + 0.9 * smooth_field(n, 3)[..., pad:-pad, pad:-pad] + 0.5 * torch.randn(n, 3, 32, 32, generator=g)
        images = (128 + 40 * x).round().clamp(0, 255).to(torch.uint8)
        return Split(images, labels)

    train, test = make(n_train), make(n_test)
    mean, std = _channel_stats(train.images)
    return Dataset("synthetic", train, test, num_classes, mean, std)


# The shape of one input of each dataset ((channels, height, width) for images), known without loading it:
# run configs check a model's layer sizes (feasibility of per-layer floors) before any data is read.
# ``register_dataset`` adds to this and to DATASETS.
SHAPES: dict[str, tuple[int, ...]] = {"cifar10": (3, 32, 32), "fashion_mnist": (1, 28, 28), "mnist": (1, 28, 28),
                                           "digits": (3, 32, 32), "synthetic": (3, 32, 32)}

DATASETS: dict[str, Callable[..., Dataset]] = {"cifar10": _cifar10, "fashion_mnist": _fashion_mnist, "mnist": _mnist,
                                               "digits": _digits, "synthetic": _synthetic}


def load_dataset(name: str, data_dir: str | os.PathLike = "data", download: bool = True, **kwargs) -> Dataset:
    """Load ``name`` as device-ready whole tensors; ``kwargs`` go to the dataset (e.g. ``seed`` for synthetic,
    ``sha256`` for the idx sets in tests)."""
    if name not in DATASETS:  # built-ins first, then registered datasets in the order they were registered
        raise ValueError(f"dataset: {name!r} is not one of {', '.join(DATASETS)}")
    return DATASETS[name](data_dir, download, **kwargs)
