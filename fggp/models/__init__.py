"""Model zoo by name, plus MAC/FLOP counting for dense and pruned models.

Every model is built for one image shape ``(channels, height, width)``, the dataset's: the convolutional
ones (global average pooling) only need the channels, the LeNets also the size.
"""

from typing import Callable

from torch import nn

from .flops import flops, layer_macs
from .lenet import lenet5, lenet300_100
from .resnet import resnet20, resnet50
from .tiny import tiny
from .vgg import vgg19

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet300_100": lenet300_100,
    "lenet5": lenet5,
    "resnet20": resnet20,
    "resnet50": resnet50,
    "tiny": tiny,
    "vgg19": vgg19,
}


def build_model(name: str, num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)) -> nn.Module:
    """Instantiate a registered architecture for images of ``input_shape``; bad input is a one-line ValueError."""
    if name not in MODELS:
        raise ValueError(f"arch: {name!r} is not one of {', '.join(sorted(MODELS))}")
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ValueError(f"input_shape: {input_shape!r} must be three positive integers (channels, height, width)")
    return MODELS[name](num_classes=num_classes, input_shape=shape)


__all__ = ["MODELS", "build_model", "flops", "layer_macs"]
