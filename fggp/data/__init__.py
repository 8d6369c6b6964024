"""Data: datasets as uint8 tensors and a device-resident, seed-reproducible loader."""

from .datasets import (
    CIFAR10_MD5,
    DATASETS,
    IDX_SOURCES,
    SHAPES,
    VAL_SPLIT_SEED,
    Dataset,
    DatasetChecksumError,
    DatasetUnavailableError,
    Split,
    load_dataset,
    with_validation,
)
from .loader import DeviceLoader, apply_augmentation, augment, draw_augmentation

__all__ = [
    "CIFAR10_MD5",
    "DATASETS",
    "IDX_SOURCES",
    "SHAPES",
    "VAL_SPLIT_SEED",
    "Dataset",
    "DatasetChecksumError",
    "DatasetUnavailableError",
    "DeviceLoader",
    "Split",
    "apply_augmentation",
    "augment",
    "draw_augmentation",
    "load_dataset",
    "with_validation",
]
