"""The paper's shallow MLP: two hidden layers of 3000 ReLU units for CIFAR (seed 001, section 4)."""

from __future__ import annotations

import math

from pydantic import PositiveInt
from torch import nn


def mlp(
    num_classes: int, in_shape: tuple[int, ...], *, width: PositiveInt = 3000, depth: PositiveInt = 2
) -> nn.Module:
    """Flatten, then ``depth`` hidden ``Linear -> ReLU`` blocks of ``width`` units, then the classifier."""
    if depth < 1 or width < 1:
        raise ValueError(f"mlp needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
    layers: list[nn.Module] = [nn.Flatten()]
    features = math.prod(in_shape)
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.ReLU()]
        features = width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)
