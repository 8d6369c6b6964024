"""Datasets as whole uint8 tensors, so a loader can keep them on the device.

Every dataset is converted once to ``Split(images uint8 [N, 3, 32, 32], labels int64 [N])``; the
per-batch work (augmentation, normalization) happens later on the device. ``cifar10`` is the real
benchmark; ``digits`` (scikit-learn's bundled images) and ``synthetic`` need no files or network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import calculate_md5, download_and_extract_archive


class DatasetUnavailableError(RuntimeError):
    """The data is not on disk and cannot be downloaded; never answered with other data."""


class DatasetChecksumError(RuntimeError):
    """A file on disk does not have the published md5: corrupted or incomplete."""


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, 3, 32, 32], NCHW
    labels: torch.Tensor  # int64 [N]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images: expected uint8 [N, 3, H, W], got {self.images.dtype} {list(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels: expected int64 [{len(self.images)}], got {self.labels.dtype} {list(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    num_classes: int
    mean: tuple[float, float, float]  # per channel, in 0..1 units
    std: tuple[float, float, float]
    augment: bool = True  # whether crop+flip suit the data (a mirrored digit is another glyph)


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.double().div(255).transpose(0, 1).reshape(3, -1)
    return tuple(x.mean(1).tolist()), tuple(x.std(1).tolist())


# ---- cifar10 -------------------------------------------------------------------------------------

CIFAR10_FOLDER = CIFAR10.base_folder
CIFAR10_ARCHIVE = CIFAR10.filename
CIFAR10_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
# Published md5 of the archive and of every extracted file; the one piece tests replace (``md5=``).
CIFAR10_MD5: dict[str, str] = {
    CIFAR10.filename: CIFAR10.tgz_md5,
    **{name: md5 for name, md5 in CIFAR10.train_list + CIFAR10.test_list},
    CIFAR10.meta["filename"]: CIFAR10.meta["md5"],
}


def _cifar10_class(md5: dict[str, str]) -> type[CIFAR10]:
    """torchvision's CIFAR10 with the given checksums, so its own integrity checks agree with ours."""
    return type("CIFAR10", (CIFAR10,), {
        "tgz_md5": md5[CIFAR10.filename],
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
        try:  # reuses a verified local archive; otherwise fetches it (torchvision checks the md5)
            download_and_extract_archive(CIFAR10.url, root, filename=CIFAR10_ARCHIVE, md5=md5[CIFAR10_ARCHIVE])
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


DATASETS: dict[str, Callable[..., Dataset]] = {"cifar10": _cifar10, "digits": _digits, "synthetic": _synthetic}


def load_dataset(name: str, data_dir: str | os.PathLike = "data", download: bool = True, **kwargs) -> Dataset:
    """Load ``name`` as device-ready uint8 tensors; ``kwargs`` go to the dataset (e.g. ``seed`` for synthetic)."""
    if name not in DATASETS:
        raise ValueError(f"dataset: {name!r} is not one of {', '.join(DATASETS)}")
    return DATASETS[name](data_dir, download, **kwargs)
