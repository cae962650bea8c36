"""The LeNet variant of Zhu et al. (2019), "Deep Leakage from Gradients": three 5x5 convolutions
with sigmoid activations (strides 2, 2, 1; 12 channels) and one linear classifier."""

from __future__ import annotations

from torch import nn

from .shapes import flat_features


def lenet(num_classes: int, in_shape: tuple[int, ...]) -> nn.Module:
    features = nn.Sequential(
        nn.Conv2d(in_shape[0], 12, kernel_size=5, padding=2, stride=2),
        nn.Sigmoid(),
        nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=2),
        nn.Sigmoid(),
        nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=1),
        nn.Sigmoid(),
    )
    return nn.Sequential(features, nn.Flatten(), nn.Linear(flat_features(features, in_shape), num_classes))
