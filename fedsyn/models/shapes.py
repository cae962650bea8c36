"""Shape arithmetic shared by the convolutional models."""

from __future__ import annotations

import math

import torch
from torch import nn


def flat_features(features: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Number of values ``features`` produces for one input of ``in_shape`` (found by a dry run)."""
    with torch.no_grad():
        out = features(torch.zeros(1, *in_shape))
    return math.prod(out.shape[1:])
