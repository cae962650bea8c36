"""``load_dataset``: one entry point for every dataset source, and ``SOURCES``, the registry of them.

Adding a dataset is one module with its reader (returning a ``RawSplit``) plus one line in ``SOURCES``;
the experiment schema and the CLI take the names from here (docs/architecture.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from fedsyn.strict import StrictModel, keyword_options_model, validate_options

from .cifar import load_cifar_split
from .dataset import ImageDataset, RawSplit
from .errors import UnknownDatasetError
from .imagefolder import load_imagefolder_split
from .photos import count_test_patches, load_photos_split
from .stats import channel_stats

SPLITS: tuple[str, ...] = ("train", "test")


class NoOptions(StrictModel):
    """The options of a dataset that takes none."""


@dataclass(frozen=True)
class DatasetSource:
    """How to read one dataset: ``read(root, split, download, options)`` and what the source allows;
    ``options`` checks the options (``keyword_options_model`` of the reader)."""

    read: Callable[[Any, str, bool, dict[str, Any]], RawSplit]
    options: type[StrictModel] = NoOptions
    downloadable: bool = False
    takes_root: bool = True


SOURCES: dict[str, DatasetSource] = {
    "cifar10": DatasetSource(
        lambda root, split, download, _: load_cifar_split("cifar10", root, split, download), downloadable=True
    ),
    "cifar100": DatasetSource(
        lambda root, split, download, _: load_cifar_split("cifar100", root, split, download), downloadable=True
    ),
    "imagefolder": DatasetSource(
        lambda root, split, _, options: load_imagefolder_split(root, split, **options),
        keyword_options_model(load_imagefolder_split, "imagefolder_options"),
    ),
    "photos": DatasetSource(
        lambda _, split, __, options: load_photos_split(split, **options),
        keyword_options_model(
            load_photos_split,
            "photos_options",
            lambda per_class, test_fraction, **_: count_test_patches(per_class, test_fraction),
        ),
        takes_root=False,
    ),
}
DATASET_NAMES: tuple[str, ...] = tuple(SOURCES)
DATASET_OPTIONS: dict[str, type[StrictModel]] = {name: source.options for name, source in SOURCES.items()}


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
    if name not in SOURCES:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    source = SOURCES[name]
    if download and not source.downloadable:
        downloadable = [known for known, other in SOURCES.items() if other.downloadable]
        raise ValueError(f"dataset {name!r} cannot be downloaded; download=True is only for {', '.join(downloadable)}")
    if not source.takes_root and root is not None:
        raise ValueError(f"dataset {name!r} ships with its package and takes no root")
    validate_options(source.options, options, f"dataset {name!r}")
    raw = source.read(root, split, download, options)
    train = raw if split == "train" else source.read(root, "train", download, options)
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
