"""Data: datasets as whole tensors (built-ins and registered ones) and a device-resident, seed-reproducible
loader."""

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
    with_train_subset,
    with_validation,
)
from .loader import DeviceLoader, apply_augmentation, augment, draw_augmentation
from .registry import dataset_info, list_datasets, register_dataset, unregister_dataset

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
    "dataset_info",
    "draw_augmentation",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "unregister_dataset",
    "with_train_subset",
    "with_validation",
]
