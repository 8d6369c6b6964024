"""Model zoo by name, plus MAC/FLOP counting for dense and pruned models."""

from typing import Callable

from torch import nn

from .flops import flops, layer_macs
from .resnet import resnet20, resnet50
from .tiny import tiny
from .vgg import vgg19

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "resnet50": resnet50,
    "tiny": tiny,
    "vgg19": vgg19,
}


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    """Instantiate a registered architecture; unknown names raise a one-line ValueError."""
    if name not in MODELS:
        raise ValueError(f"arch: {name!r} is not one of {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes)


__all__ = ["MODELS", "build_model", "flops", "layer_macs"]
