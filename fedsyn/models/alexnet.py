"""A CIFAR-sized AlexNet.

The paper uses "a modified version of AlexNet" without listing its layers; this is the usual 32x32
adaptation of Krizhevsky et al. (2012): the five convolutions keep AlexNet's channel counts
(64, 192, 384, 256, 256) with 3x3 kernels, the first with stride 2, three 2x2 max-pools, and the
two 4096-unit fully connected layers before the classifier. For a 3x32x32 input the feature map
entering the classifier is 256x2x2. Dropout is left out because the paper trains without any
regularisation and because it would make the shared gradient random.

    conv 3->64 k3 s2 p1, ReLU, maxpool 2      32 -> 16 -> 8
    conv 64->192 k3 p1, ReLU, maxpool 2       8 -> 4
    conv 192->384 k3 p1, ReLU
    conv 384->256 k3 p1, ReLU
    conv 256->256 k3 p1, ReLU, maxpool 2      4 -> 2
    linear 1024->4096, ReLU, linear 4096->4096, ReLU, linear 4096->classes
"""

from __future__ import annotations

from pydantic import PositiveInt
from torch import nn

from .shapes import flat_features


def alexnet(num_classes: int, in_shape: tuple[int, ...], *, hidden: PositiveInt = 4096) -> nn.Module:
    channels = in_shape[0]
    features = nn.Sequential(
        nn.Conv2d(channels, 64, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 192, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )
    flat = flat_features(features, in_shape)
    return nn.Sequential(
        features,
        nn.Flatten(),
        nn.Linear(flat, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
