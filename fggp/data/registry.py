"""Your own dataset, seen by the rest of the kit exactly as a built-in.

``register_dataset(name, load, input_shape=..., num_classes=...)`` adds ``name`` to ``DATASETS`` and
``SHAPES``, so ``load_dataset``, run configs (``dataset=name``), sweeps and the loader take it like
``cifar10``. ``load(data_dir)`` returns ``(train, test)``, each a pair ``(inputs, labels)`` of tensors or
numpy arrays, or any map-style dataset of ``(input, label)`` items (torchvision's included, PIL images and
all). Each load materializes both splits once into whole tensors and checks them against what was
declared, so a wrong shape or label fails in one line at load time, not as a shape error deep in a model.

Only uint8 ``[C, H, W]`` inputs are images (normalized with the training split's per-channel statistics,
cropped and flipped when ``augment=True``); everything else (float features, token ids, float images)
reaches the model exactly as stored.

Registration lives in the process: a run or sweep point in another process needs the registering module
imported there too (a plugin).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from .datasets import DATASETS, SHAPES, Dataset, Split, _channel_stats, _describe
from .loader import PAD

# What the built-ins are, known without loading them (their shapes are in SHAPES).
_BUILTIN_INFO: dict[str, tuple[int, bool]] = {  # name: (num_classes, augment by default)
    "cifar10": (10, True), "fashion_mnist": (10, False), "mnist": (10, False), "digits": (10, False),
    "synthetic": (10, True),
}
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_PIL_CHANNELS = {"L": 1, "RGB": 3}


@dataclass(frozen=True)
class _Registered:
    name: str
    load: Callable
    input_shape: tuple[int, ...]
    num_classes: int
    augment: bool

    def __call__(self, data_dir: str | os.PathLike = "data", download: bool = True) -> Dataset:
        """The built-ins' signature; ``download`` means nothing here (``load`` finds its own data)."""
        return _load(self, data_dir)


_REGISTERED: dict[str, _Registered] = {}


def register_dataset(name: str, load: Callable, *, input_shape: Sequence[int], num_classes: int,
                     augment: bool = False) -> None:
    """Make ``name`` loadable everywhere a built-in is (``load_dataset``, ``dataset=name`` in runs/sweeps).

    ``input_shape`` is one input's shape, known before any data is read (run configs size the model's
    layers from it); ``augment`` turns the kit's crop+flip on for uint8 ``[C, H, W]`` images.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"name: {name!r} must be a non-empty string of letters, digits, '_', '-' or '.'")
    if name in DATASETS or name in _REGISTERED:
        how = ("a built-in" if name in _BUILTIN_INFO else
               "registered before; unregister_dataset it first" if name in _REGISTERED else "in DATASETS")
        raise ValueError(f"dataset: {name!r} is already registered ({how}); choose another name")
    if not callable(load):
        raise ValueError(f"load: {load!r} must be a callable load(data_dir) -> (train, test)")
    if (not isinstance(input_shape, (tuple, list)) or not input_shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)):
        raise ValueError(f"input_shape: {input_shape!r} must be a non-empty tuple or list of positive integers, "
                         "one input's shape, e.g. (1, 28, 28) or (64,)")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes: {num_classes!r} must be an integer >= 2")
    if not isinstance(augment, bool):
        raise ValueError(f"augment: {augment!r} must be true or false")
    entry = _Registered(name, load, tuple(input_shape), num_classes, augment)
    _REGISTERED[name] = entry
    DATASETS[name] = entry
    SHAPES[name] = entry.input_shape


def unregister_dataset(name: str) -> None:
    """Forget a registered dataset (a notebook cell run twice registers again); built-ins stay."""
    if name not in _REGISTERED:
        registered = ", ".join(sorted(_REGISTERED)) or "none"
        raise ValueError(f"dataset: {name!r} is not a registered dataset (registered: {registered})")
    del _REGISTERED[name]
    DATASETS.pop(name, None)
    SHAPES.pop(name, None)


def list_datasets() -> list[str]:
    """Every name ``load_dataset`` takes, built-ins and registered ones, sorted."""
    return sorted(DATASETS)


def dataset_info(name: str) -> dict:
    """``input_shape``, ``num_classes``, ``augment`` (the default) and ``builtin``, without loading data."""
    if name in _REGISTERED:
        e = _REGISTERED[name]
        return {"input_shape": e.input_shape, "num_classes": e.num_classes, "augment": e.augment, "builtin": False}
    if name in _BUILTIN_INFO and name in DATASETS:
        num_classes, augment = _BUILTIN_INFO[name]
        return {"input_shape": SHAPES[name], "num_classes": num_classes, "augment": augment, "builtin": True}
    raise ValueError(f"dataset: {name!r} is not one of {', '.join(DATASETS)}")


# ---- loading and checking ------------------------------------------------------------------------

def _load(entry: _Registered, data_dir) -> Dataset:
    name = entry.name
    out = entry.load(data_dir)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        got = f"a {type(out).__name__} of {len(out)}" if isinstance(out, (tuple, list)) else _describe(out)
        raise ValueError(f"load: dataset {name!r} returned {got}; it must return a pair (train, test)")
    if all(_is_array(part) for part in out):
        raise ValueError(f"load: dataset {name!r} returned one split (inputs {_describe(out[0])}, labels "
                         f"{_describe(out[1])}); it must return a pair (train, test), each (inputs, labels)")
    train, test = (_materialize(entry, split, what) for split, what in zip(("train", "test"), out))
    if test.images.dtype != train.images.dtype:
        raise ValueError(f"inputs: dataset {name!r} has {train.images.dtype} train inputs but "
                         f"{test.images.dtype} test inputs; both splits need one dtype")
    if not train.is_image:
        if entry.augment:
            raise ValueError(f"augment: dataset {name!r} has {train.images.dtype} inputs of shape {entry.input_shape}, "
                             "not uint8 images [C, H, W]; crop and flip apply only to images, register it with "
                             "augment=False")
        return Dataset(name, train, test, entry.num_classes, None, None, augment=False)
    if entry.augment and min(entry.input_shape[1:]) <= PAD:
        raise ValueError(f"augment: dataset {name!r} has images of {entry.input_shape}, too small for a "
                         f"reflect-pad-{PAD} crop (height and width must be > {PAD}); register it with augment=False")
    if len(train) < 2:
        raise ValueError(f"train: dataset {name!r} has 1 image; the per-channel std needs at least 2")
    mean, std = _channel_stats(train.images)
    if min(std) == 0:
        raise ValueError(f"inputs: dataset {name!r} has a constant channel in its train images (per-channel std "
                         f"{std}); normalization would divide by zero")
    return Dataset(name, train, test, entry.num_classes, mean, std, augment=entry.augment)


def _materialize(entry: _Registered, split: str, what) -> Split:
    """One split as whole tensors, checked against the registration."""
    where = f"dataset {entry.name!r} {split}"
    if (isinstance(what, (tuple, list)) and len(what) == 2 and not isinstance(what, TorchDataset)
            and _is_array(what[0])):
        inputs = _tensor(what[0], f"{where} inputs")
        if inputs.ndim == 0:
            raise ValueError(f"inputs: {where} inputs are a single value; expected [N, *input_shape]")
        labels = _labels(what[1], where)
        if len(inputs) != len(labels):
            raise ValueError(f"labels: {where} has {len(inputs)} inputs but {len(labels)} labels")
        if len(inputs) == 0:
            raise ValueError(f"{split}: {where} is empty; each split needs at least one sample")
        if tuple(inputs.shape[1:]) != entry.input_shape:
            raise ValueError(f"input_shape: {where} inputs have shape {tuple(inputs.shape[1:])} per sample "
                             f"(all {list(inputs.shape)}), registered as {entry.input_shape}")
    elif hasattr(what, "__getitem__") and hasattr(what, "__len__"):
        inputs, labels = _from_items(entry, split, what)
    else:
        raise ValueError(f"{split}: {where} is a {type(what).__name__}; expected a pair (inputs, labels) of "
                         "tensors or numpy arrays, or a map-style dataset of (input, label) items")
    bad = (labels < 0) | (labels >= entry.num_classes)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"labels: {where} label {labels[i].item()} (sample {i}) is outside [0, {entry.num_classes}) "
                         f"for num_classes={entry.num_classes}")
    return Split(inputs, labels)


def _is_array(x) -> bool:
    return torch.is_tensor(x) or isinstance(x, np.ndarray)


def _is_pil(x) -> bool:
    pil = sys.modules.get("PIL.Image")  # not imported: x cannot be a PIL image, and PIL stays unloaded
    return pil is not None and isinstance(x, pil.Image)


def _tensor(x, what: str) -> torch.Tensor:
    if torch.is_tensor(x):
        return x.detach()
    if isinstance(x, np.ndarray):
        try:  # shares memory when it can; a read-only or reversed array is copied first
            return torch.from_numpy(np.require(x, requirements=("C", "W")))
        except TypeError:
            raise ValueError(f"inputs: {what} is a numpy array of {x.dtype}, which torch cannot hold") from None
    if _is_pil(x):
        if x.mode not in _PIL_CHANNELS:
            raise ValueError(f"inputs: {what} is a PIL image of mode {x.mode!r}; only 'L' and 'RGB' are taken "
                             "(convert it, e.g. transform=lambda im: im.convert('RGB'))")
        a = np.asarray(x)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # [H, W] or [H, W, C] -> [C, H, W]
        return torch.from_numpy(np.require(a, requirements=("C", "W")))
    raise ValueError(f"inputs: {what} is a {type(x).__name__}; expected a tensor, numpy array or PIL image")


def _labels(y, where: str) -> torch.Tensor:
    t = y if torch.is_tensor(y) else torch.as_tensor(np.asarray(y))
    if t.dtype == torch.bool or t.dtype.is_floating_point or t.dtype.is_complex or t.ndim != 1:
        raise ValueError(f"labels: {where} labels are {_describe(t)}; expected integers [N]")
    return t.detach().to(torch.int64)


def _from_items(entry: _Registered, split: str, items) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``(input, label)`` item into one preallocated tensor, checked as it goes."""
    where = f"dataset {entry.name!r} {split}"
    n = len(items)
    if n == 0:
        raise ValueError(f"{split}: {where} is empty; each split needs at least one sample")
    inputs, labels = None, []
    for i in range(n):
        item = items[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"{split}: {where} item {i} is a {type(item).__name__}; expected (input, label)")
        x = _tensor(item[0], f"{where} item {i}")
        if tuple(x.shape) != entry.input_shape:
            raise ValueError(f"input_shape: {where} item {i} has shape {tuple(x.shape)}, registered as "
                             f"{entry.input_shape}")
        if inputs is None:
            inputs = torch.empty((n, *entry.input_shape), dtype=x.dtype)
        elif x.dtype != inputs.dtype:
            raise ValueError(f"inputs: {where} item {i} is {x.dtype}, item 0 {inputs.dtype}; all inputs need one dtype")
        inputs[i] = x
        y = item[1]
        if torch.is_tensor(y) and y.ndim == 0:
            y = y.item()
        elif isinstance(y, np.ndarray) and y.ndim == 0:
            y = y.item()
        if isinstance(y, (bool, np.bool_)) or not isinstance(y, (int, np.integer)):
            raise ValueError(f"labels: {where} item {i} has label {y!r} ({type(y).__name__}); expected an integer")
        labels.append(int(y))
    return inputs, torch.tensor(labels, dtype=torch.int64)
