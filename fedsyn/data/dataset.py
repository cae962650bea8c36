"""In-memory image datasets: uint8 pixels plus the training split's normalisation statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass
class RawSplit:
    """One split as a source delivers it, before it becomes an :class:`ImageDataset`.

    ``images`` is uint8 (N, C, H, W) (possibly a read-only memory map), ``labels`` int64 (N,).
    ``stats`` is the split's own (mean, std) when the source already knows it (e.g. from its cache).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None


Indices = Sequence[int] | np.ndarray | torch.Tensor


class ImageDataset(Dataset):
    """A labelled image split held as one uint8 tensor.

    ``mean``/``std`` are always the *training* split's per-channel statistics in [0, 1] units, also on a
    test split, so that train and test are normalised the same way (and an attacker who knows the
    training pipeline knows them).
    """

    def __init__(
        self,
        *,
        name: str,
        split: str,
        classes: Sequence[str],
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must be int64 of shape ({images.shape[0]},), got {labels.dtype} {tuple(labels.shape)}"
            )
        channels = images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} values (one per channel), got {len(mean)} and {len(std)}")
        if any(not s > 0 for s in std):
            raise ValueError(f"std must be positive in every channel, got {tuple(std)}")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            raise ValueError(f"labels must lie in [0, {len(classes)}), got [{int(labels.min())}, {int(labels.max())}]")
        self.name = name
        self.split = split
        self.classes = list(classes)
        self.images = images
        self.labels = labels
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(1, channels, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(1, channels, 1, 1)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        _, c, h, w = self.images.shape
        return (c, h, w)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index].unsqueeze(0).float().div_(255.0)
        return self._normalize(x)[0], int(self.labels[index])

    def unit(self, indices: Indices) -> torch.Tensor:
        """Images ``indices`` as float32 (B, C, H, W) in [0, 1]."""
        return self.images[_as_index(indices)].float().div_(255.0)

    def batch(self, indices: Indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float32 images (B, C, H, W) and int64 labels (B,) for ``indices``, in that order."""
        index = _as_index(indices)
        return self._normalize(self.unit(index)), self.labels[index]

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x.sub_(self._mean).div_(self._std)

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, size={len(self)}, "
            f"in_shape={self.in_shape}, num_classes={self.num_classes})"
        )


def _as_index(indices: Indices) -> torch.Tensor:
    if isinstance(indices, torch.Tensor):
        index = indices
    else:
        array = np.asarray(indices)
        index = torch.as_tensor(array.astype(np.int64) if array.size == 0 else array)
    if index.ndim != 1 or index.dtype.is_floating_point or index.dtype == torch.bool:
        raise ValueError(f"indices must be a 1-D sequence of integers, got {index.dtype} {tuple(index.shape)}")
    return index.long()
