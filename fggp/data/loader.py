"""A device-resident loader: the whole split lives on the device, batches are tensor slices.

Augmentation (reflect-pad 4, random 32x32 crop, random horizontal flip) is one gather per batch.
All randomness of an epoch comes from a CPU generator seeded by ``(seed, epoch)``, so an epoch's
batches are a pure function of those two numbers and a run resumed at an epoch boundary sees
exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .datasets import Split

PAD = 4


def draw_augmentation(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample crop offsets ``dy, dx`` (uniform over 0..2*PAD, into the padded image) and flip flags."""
    dy = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return dy, dx, flip


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    """Index into the unpadded axis that reflect padding (edge not repeated) puts at position ``i``."""
    return torch.where(i < 0, -i, torch.where(i >= size, 2 * (size - 1) - i, i))


def apply_augmentation(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Crop (and maybe mirror) every image of ``[B, C, H, W]`` at its own offset, as one gather.

    Instead of materializing the padded batch, the crop window is mapped back to source pixels
    through the reflection, which works for any dtype (uint8 included).
    """
    b, c, h, w = images.shape
    dev = images.device
    dy, dx, flip = dy.to(dev), dx.to(dev), flip.to(dev)
    ys, xs = torch.arange(h, device=dev), torch.arange(w, device=dev)
    xs = torch.where(flip[:, None], w - 1 - xs, xs)  # [B, W]: a flipped crop reads its columns backwards
    rows = _reflect(dy[:, None] + ys - PAD, h)
    cols = _reflect(dx[:, None] + xs - PAD, w)
    n = torch.arange(b, device=dev)[:, None, None, None]
    ch = torch.arange(c, device=dev)[None, :, None, None]
    return images[n, ch, rows[:, None, :, None], cols[:, None, None, :]]


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random reflect-pad-4 crop and horizontal flip, drawn independently per sample."""
    return apply_augmentation(images, *draw_augmentation(len(images), generator))


class DeviceLoader:
    """Batches of ``(x float32 normalized [B, 3, H, W], y int64 [B])`` from a split held on ``device``.

    ``train=True`` shuffles (and, with ``augment``, crops and flips); the draws are made even when
    ``augment`` is off, so the data order does not depend on it.
    """

    def __init__(self, split: Split, batch_size: int, *, train: bool, mean: Sequence[float], std: Sequence[float],
                 device: torch.device | str = "cpu", seed: int = 0, drop_last: bool = False,
                 channels_last: bool = True, augment: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: {batch_size} is not >= 1")
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.drop_last, self.channels_last, self.augment = drop_last, channels_last, augment
        self.device = self.images.device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1) * 255
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100003 + epoch)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def iter_epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs = len(self.labels), self.batch_size
        if self.train:
            g = self.generator(epoch)
            order = torch.randperm(n, generator=g).to(self.device)
            dy, dx, flip = (t.to(self.device) for t in draw_augmentation(n, g))
        for i in range(len(self)):
            s = slice(i * bs, (i + 1) * bs)
            if self.train:
                idx = order[s]
                x = self.images[idx]
                if self.augment:
                    x = apply_augmentation(x, dy[s], dx[s], flip[s])
                yield self.normalize(x), self.labels[idx]
            else:
                yield self.normalize(self.images[s]), self.labels[s]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_epoch(self.epoch)
