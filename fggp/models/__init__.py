"""Model zoo by name, a registry for your own models, plus MAC/FLOP counting for dense and pruned models.

Every model is built for one sample's shape, the dataset's: ``(channels, height, width)`` for the zoo's
image models (the convolutional ones, with global average pooling, only need the channels; the LeNets and
the ViT also the size), any rank for a registered model (``(20,)`` token ids, ``(64,)`` features).
The zoo registers itself through ``register_model`` like any user model, so both are built the same way.
"""

from .flops import flops, layer_macs
from .lenet import lenet5, lenet300_100
from .registry import (MODELS, build_model, get_model, image_shape, list_models, recommended_config,
                       register_model)
from .resnet import resnet20, resnet50
from .tiny import tiny
from .vgg import vgg19
from .vit import RECOMMENDED as _VIT_RECOMMENDED
from .vit import vit_tiny

register_model("lenet300_100", lenet300_100)
register_model("lenet5", lenet5)
register_model("resnet20", resnet20)
register_model("resnet50", resnet50)
register_model("tiny", tiny)
register_model("vgg19", vgg19)
register_model("vit_tiny", vit_tiny, recommended=_VIT_RECOMMENDED)

__all__ = ["MODELS", "build_model", "flops", "get_model", "image_shape", "layer_macs", "list_models",
           "recommended_config", "register_model"]
