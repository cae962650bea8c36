"""``load_dataset``: one entry point for every dataset source."""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable

import numpy as np
import torch

from .cifar import load_cifar_split
from .dataset import ImageDataset, RawSplit
from .errors import UnknownDatasetError
from .imagefolder import load_imagefolder_split
from .photos import load_photos_split
from .stats import channel_stats

SPLITS: tuple[str, ...] = ("train", "test")
_DOWNLOADABLE = ("cifar10", "cifar100")
_SOURCES: dict[str, Callable[..., RawSplit]] = {
    "cifar10": load_cifar_split,
    "cifar100": load_cifar_split,
    "imagefolder": load_imagefolder_split,
    "photos": load_photos_split,
}
DATASET_NAMES: tuple[str, ...] = tuple(_SOURCES)


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    download: bool = False,
    **options: Any,
) -> ImageDataset:
    """Load split ``split`` of dataset ``name`` with the training split's normalisation statistics.

    - ``cifar10`` / ``cifar100``: torchvision's files under ``root`` (default ``$FEDSYN_DATA`` or
      ``~/.cache/fedsyn/data``); downloads only with ``download=True``.
    - ``imagefolder``: ``root/train/<class>/*`` and ``root/test/<class>/*``; options ``mode``,
      ``image_size``, ``cache``, ``cache_dir``, ``workers`` (see
      :func:`fedsyn.data.imagefolder.load_imagefolder_split`).
    - ``photos``: scikit-image's bundled photos as patches, no root; options ``patch_size``,
      ``per_class``, ``test_fraction``, ``seed`` (see :mod:`fedsyn.data.photos`).

    Raises :class:`DatasetNotFoundError` when the data is not on disk, :class:`UnknownDatasetError` for
    an unknown name and ``ValueError`` for a bad split or option.
    """
    if name not in _SOURCES:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if download and name not in _DOWNLOADABLE:
        raise ValueError(f"dataset {name!r} cannot be downloaded; download=True is only for {', '.join(_DOWNLOADABLE)}")
    if name == "photos" and root is not None:
        raise ValueError("dataset 'photos' ships with scikit-image and takes no root")
    allowed = _option_names(_SOURCES[name])
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"dataset {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(allowed) or 'none'}"
        )
    raw = _read(name, root, split, download, options)
    train = raw if split == "train" else _read(name, root, "train", download, options)
    mean, std = train.stats or channel_stats(train.images)
    images = raw.images if raw.images.flags.writeable else np.array(raw.images)
    return ImageDataset(
        name=name,
        split=split,
        classes=raw.classes,
        images=torch.from_numpy(np.ascontiguousarray(images)),
        labels=torch.from_numpy(np.asarray(raw.labels, dtype=np.int64)),
        mean=mean,
        std=std,
    )


def _read(name: str, root: Any, split: str, download: bool, options: dict[str, Any]) -> RawSplit:
    if name in _DOWNLOADABLE:
        return load_cifar_split(name, root, split, download)
    if name == "imagefolder":
        return load_imagefolder_split(root, split, **options)
    return load_photos_split(split, **options)


def _option_names(source: Callable[..., RawSplit]) -> tuple[str, ...]:
    parameters = inspect.signature(source).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)
