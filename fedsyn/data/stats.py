"""Per-channel pixel statistics used for normalisation."""

from __future__ import annotations

import numpy as np


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and (population) standard deviation of each channel of uint8 ``images`` (N, C, H, W).

    Values are in [0, 1] pixel units. They are computed exactly from a 256-bin histogram per channel,
    which needs no float copy of the whole array (60k CIFAR images would need 1.2 GB in float64).
    """
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}")
    if images.shape[0] == 0:
        raise ValueError("cannot compute channel statistics of an empty image set")
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = np.bincount(np.asarray(images[:, c]).reshape(-1), minlength=256).astype(np.float64)
        total = counts.sum()
        mean = float(counts @ levels / total)
        var = float(counts @ (levels - mean) ** 2 / total)
        means.append(mean)
        stds.append(var**0.5)
    return tuple(means), tuple(stds)
