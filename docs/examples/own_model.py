"""A plugin: your own model and your own data, for fggp runs, sweeps and notebooks (docs/own_model.md).

The kit imports this file (``plugins=[docs/examples/own_model.py]``) in every process that builds a run's
config, the sweep's notebook kernels included, so the names registered here work wherever a built-in does.
The digest of this file's source is part of each run's id: edit it and the runs are new runs.
"""

from torch import nn
from torch.utils.data import Subset

from fggp.data import register_dataset
from fggp.models import register_model

TRAIN_IMAGES = 10_000  # a fixed subset of the 60,000, so an epoch takes minutes on a laptop CPU


def fashion_subset(data_dir):
    """torchvision's Fashion-MNIST as it comes: a Dataset of (PIL image, label); fggp turns it into tensors."""
    from torchvision.datasets import FashionMNIST

    train = FashionMNIST(data_dir, train=True, download=True)
    test = FashionMNIST(data_dir, train=False, download=True)
    return Subset(train, range(min(TRAIN_IMAGES, len(train)))), test


def shufflenet(num_classes, input_shape):
    """torchvision's ShuffleNetV2 (x0.5), its stem made for the data's channel count."""
    from torchvision.models import shufflenet_v2_x0_5

    model = shufflenet_v2_x0_5(num_classes=num_classes)
    stem = model.conv1[0]
    model.conv1[0] = nn.Conv2d(input_shape[0], stem.out_channels, 3, stride=2, padding=1, bias=False)
    return model


register_dataset("fashion_tv", fashion_subset, input_shape=(1, 28, 28), num_classes=10)
register_model("shufflenet_tv", shufflenet)
