"""Write small Fashion-MNIST / MNIST archives in the genuine idx format, so tests use the real loading path.

An idx file is a big-endian header (two zero bytes, the type byte 0x08 for unsigned bytes, the number of
dimensions, then each size as a 4-byte integer) followed by the values in row-major order.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_fake_idx(folder: Path, n_train: int = 40, n_test: int = 12, seed: int = 0, gz: bool = True):
    """Write the four files into ``folder`` (gzipped like the published ones, or plain like torchvision's
    extracted copies).

    Returns ``(sha256, train_images, train_labels, test_images, test_labels)``: images uint8 [N, 28, 28] in
    file order, every class present in both splits, and the SHA-256 of each file's uncompressed content.
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train_x = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    train_y = rng.permutation(np.arange(n_train) % 10).astype(np.uint8)
    test_x = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    test_y = rng.permutation(np.arange(n_test) % 10).astype(np.uint8)
    sha256 = {}
    for name, array in zip(FILES, (train_x, train_y, test_x, test_y)):
        raw = idx_bytes(array)
        sha256[name] = hashlib.sha256(raw).hexdigest()
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return sha256, train_x, train_y, test_x, test_y
