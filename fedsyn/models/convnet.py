"""The ConvNet of Geiping et al. (2020), "Inverting Gradients", section 5 (width 64 by default).

Eight 3x3 convolutions with BatchNorm and ReLU in widths w, 2w, 2w, 4w | 4w, 4w, 4w, 4w, with a 3x3
max-pool after the fourth and the eighth, then one linear classifier (for 32x32 input the pooled map
is 4w x 3 x 3).
"""

from __future__ import annotations

from pydantic import PositiveInt
from torch import nn

from .shapes import flat_features


def convnet(num_classes: int, in_shape: tuple[int, ...], *, width: PositiveInt = 64) -> nn.Module:
    widths = [in_shape[0], width, 2 * width, 2 * width, 4 * width, 4 * width, 4 * width, 4 * width, 4 * width]
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        if i in (3, 7):
            layers.append(nn.MaxPool2d(3))
    features = nn.Sequential(*layers)
    return nn.Sequential(features, nn.Flatten(), nn.Linear(flat_features(features, in_shape), num_classes))
