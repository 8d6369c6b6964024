"""A small CNN (~24 k parameters) for tests, teaching and the CPU quick-start.

Three conv layers and one linear give the pruning engine several layers of different
sizes to distribute sparsity over, while one epoch on ~1.4 k images takes about a second.
"""

from torch import Tensor, nn

from .pool import GlobalAvgPool
from .registry import image_shape


def _conv_bn(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(in_channels, 16), nn.MaxPool2d(2),
            *_conv_bn(16, 32), nn.MaxPool2d(2),
            *_conv_bn(32, 64), GlobalAvgPool(),
        )
        self.classifier = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def tiny(num_classes: int = 10, input_shape: tuple[int, int, int] = (3, 32, 32)) -> TinyCNN:
    return TinyCNN(num_classes, image_shape(input_shape, "tiny")[0])
