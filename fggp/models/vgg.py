"""CIFAR VGG-19 with BatchNorm, laid out as in GraNet's CIFAR code (~20.04 M parameters)."""

from torch import Tensor, nn

from .pool import GlobalAvgPool
from .registry import image_shape

CFG_19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512]


class VGG(nn.Module):
    """Conv-BN-ReLU stack, global average pool, one linear head.

    A single 512->classes linear (rather than ImageNet VGG's three big FC layers) keeps
    almost all weights in the convs, which is the setting the pruning papers report.
    """

    def __init__(self, cfg: list, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(in_ch, v, 3, padding=1, bias=False),
                           nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)))


def vgg19(num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)) -> VGG:
    return VGG(CFG_19, num_classes, image_shape(input_shape, "vgg19")[0])
