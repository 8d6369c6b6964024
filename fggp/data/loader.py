"""A device-resident loader: the whole split lives on the device, batches are tensor slices.

Image inputs (uint8 ``[N, C, H, W]``) are normalized per batch, and augmented (reflect-pad 4, random crop
of the image's size, random horizontal flip) as one gather per batch; any other inputs (features, token
ids, float images) are yielded as they are stored. All randomness of an epoch comes from a CPU generator
seeded by ``(seed, epoch)``, so an epoch's batches are a pure function of those two numbers, whatever the
data, and a run resumed at an epoch boundary sees exactly the batches it would have seen.
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
    """Batches of ``(x, y int64 [B])`` from a split held on ``device``.

    For images (uint8 ``[N, C, H, W]``) ``x`` is float32, normalized with ``mean``/``std`` (per channel, 0..1
    units) and channels_last when asked; any other inputs come out unchanged (same dtype, no normalization,
    augmentation or layout change), so ``mean``, ``std`` stay None and ``channels_last`` is ignored.
    ``train=True`` shuffles (and, for images with ``augment``, default on, crops and flips); the permutation is drawn
    first and the same for every kind of data, and the crop draws are made even when ``augment`` is off, so
    the data order depends on neither.
    """

    def __init__(self, split: Split, batch_size: int, *, train: bool, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, device: torch.device | str = "cpu", seed: int = 0,
                 drop_last: bool = False, channels_last: bool = True, augment: bool | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: {batch_size} is not >= 1")
        self.is_image = split.is_image
        kind = f"{split.images.dtype} {list(split.images.shape)}"
        if self.is_image:
            channels = split.images.shape[1]
            for field, values in (("mean", mean), ("std", std)):
                if values is None or len(values) != channels:
                    raise ValueError(f"{field}: uint8 images {kind} need {channels} per-channel values, got {values!r}")
        else:
            if mean is not None or std is not None:
                raise ValueError(f"mean: the inputs {kind} are not uint8 images [N, C, H, W] and are not "
                                 "normalized; pass mean=None, std=None")
            if train and augment:
                raise ValueError(f"augment: the inputs {kind} are not uint8 images [N, C, H, W]; crop and flip "
                                 "apply only to images, pass augment=False")
        if augment is None:  # images are cropped and flipped unless told otherwise; nothing else ever is
            augment = self.is_image
        if train and augment and min(split.images.shape[2:]) <= PAD:
            raise ValueError(f"augment: images {kind} are too small for a reflect-pad-{PAD} crop (height and "
                             f"width must be > {PAD}); pass augment=False")
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.drop_last, self.augment = drop_last, augment and self.is_image
        self.channels_last = channels_last and self.is_image
        self.device = self.images.device
        if self.is_image:
            self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1) * 255
            self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1) * 255
        else:
            self.mean = self.std = None
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100003 + epoch)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Images to float32 normalized (channels_last if asked); other inputs are returned as they are."""
        if not self.is_image:
            return images
        x = (images.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def iter_epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs = len(self.labels), self.batch_size
        if self.train:
            g = self.generator(epoch)
            order = torch.randperm(n, generator=g).to(self.device)
            if self.is_image:  # drawn after the permutation: the order is the same for every kind of data
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
