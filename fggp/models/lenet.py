"""The classic small models of the pruning papers, trainable on a CPU: LeNet-300-100 and LeNet-5.

LeNet-300-100 (LeCun et al. 1998; pruned by Han et al. 2015 and Frankle & Carbin 2019): the flattened
image, then fully connected 300 -> ReLU -> 100 -> ReLU -> classes. For 784 inputs (1x28x28) it has
266,610 weights and biases.

LeNet-5 as pruned by Han et al. 2015 (Caffe's ``examples/mnist/lenet.prototxt``, 431K parameters on
1x28x28): conv 5x5 x20 (stride 1, no padding) -> max-pool 2x2 -> conv 5x5 x50 -> max-pool 2x2 ->
fully connected 500 -> ReLU -> classes. As in that file there is no nonlinearity after the convolutions
other than the pooling. All layers have biases; initialization is PyTorch's default.
"""

from torch import Tensor, nn

from .registry import image_shape


class LeNet300100(nn.Module):
    def __init__(self, num_classes: int = 10, input_shape: tuple[int, int, int] = (1, 28, 28)) -> None:
        super().__init__()
        c, h, w = input_shape
        self.fc1 = nn.Linear(c * h * w, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.fc1(x.flatten(1)))
        return self.fc3(self.relu(self.fc2(x)))


def _lenet5_side(n: int) -> int:
    """Side of the feature map after conv5, pool2, conv5, pool2 (floor, as Caffe's and PyTorch's pooling)."""
    return ((n - 4) // 2 - 4) // 2


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, input_shape: tuple[int, int, int] = (1, 28, 28)) -> None:
        super().__init__()
        c, h, w = input_shape
        side_h, side_w = _lenet5_side(h), _lenet5_side(w)
        if side_h < 1 or side_w < 1:
            raise ValueError(f"input_shape: {tuple(input_shape)} is too small for lenet5 (height and width >= 16)")
        self.conv1 = nn.Conv2d(c, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(50 * side_h * side_w, 500)
        self.fc2 = nn.Linear(500, num_classes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.conv2(self.pool(self.conv1(x))))
        return self.fc2(self.relu(self.fc1(x.flatten(1))))


def lenet300_100(num_classes: int = 10, input_shape: tuple[int, int, int] = (1, 28, 28)) -> LeNet300100:
    return LeNet300100(num_classes, image_shape(input_shape, "lenet300_100"))


def lenet5(num_classes: int = 10, input_shape: tuple[int, int, int] = (1, 28, 28)) -> LeNet5:
    return LeNet5(num_classes, image_shape(input_shape, "lenet5"))
