"""Global average pooling as a plain mean over height and width.

``nn.AdaptiveAvgPool2d`` has no deterministic CUDA backward: with ``deterministic=true`` (which
``torch.use_deterministic_algorithms`` turns on) its gradient raises on a GPU. The mean computes the same
numbers and its backward is a broadcast, deterministic everywhere.
"""

from torch import Tensor, nn


class GlobalAvgPool(nn.Module):
    """``[B, C, H, W] -> [B, C]``: the mean of each channel."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))
