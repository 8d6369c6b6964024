"""Write a small archive in the genuine CIFAR-10 python format, so tests use the real loading path.

The real batches are Python 2 pickles whose keys (``data``, ``labels``, ``batch_label``,
``filenames``) read back as ``str`` under ``encoding="latin1"`` (torchvision's choice), and as
``b'data'`` etc. under ``encoding="bytes"``; writing ``str`` keys with protocol 2 reproduces that.
"""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_batch(path: Path, name: str, images: np.ndarray, labels: np.ndarray) -> None:
    """``images`` uint8 [n, 3, 32, 32] stored as rows of 3072: R plane, then G, then B, each row-major."""
    entry = {
        "batch_label": f"{name} of 6",
        "labels": [int(v) for v in labels],
        "data": images.reshape(len(images), 3072),
        "filenames": [f"{name}_{i}.png" for i in range(len(images))],
    }
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def write_fake_cifar(root: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0, extracted: bool = True):
    """Write ``root/cifar-10-batches-py/`` and ``root/cifar-10-python.tar.gz``.

    Returns ``(md5, train_images, train_labels, test_images, test_labels)`` with images uint8
    [N, 3, 32, 32] in file order; ``md5`` maps every file name (archive included) to its checksum.
    With ``extracted=False`` only the archive is left.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    n_train = 5 * per_batch
    train_x = rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8)
    train_y = rng.integers(0, 10, n_train)
    test_x = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    test_y = rng.integers(0, 10, n_test)
    for i, name in enumerate(TRAIN_BATCHES):
        s = slice(i * per_batch, (i + 1) * per_batch)
        _write_batch(folder / name, name, train_x[s], train_y[s])
    _write_batch(folder / "test_batch", "testing batch 1", test_x, test_y)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": per_batch, "label_names": LABEL_NAMES, "num_vis": 3072}, f, protocol=2)

    md5 = {p.name: md5_of(p) for p in folder.iterdir()}
    archive = Path(root) / ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=FOLDER)
    md5[ARCHIVE] = md5_of(archive)
    if not extracted:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
    return md5, train_x, train_y, test_x, test_y
