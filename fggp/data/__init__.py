"""Data: datasets as uint8 tensors and a device-resident, seed-reproducible loader."""

from .datasets import (
    CIFAR10_MD5,
    DATASETS,
    Dataset,
    DatasetChecksumError,
    DatasetUnavailableError,
    Split,
    load_dataset,
)
from .loader import DeviceLoader, apply_augmentation, augment, draw_augmentation

__all__ = [
    "CIFAR10_MD5",
    "DATASETS",
    "Dataset",
    "DatasetChecksumError",
    "DatasetUnavailableError",
    "DeviceLoader",
    "Split",
    "apply_augmentation",
    "augment",
    "draw_augmentation",
    "load_dataset",
]
