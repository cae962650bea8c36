"""Datasets (cifar10, cifar100, imagefolder, photos), client partitions and deterministic batch choice.

Environment variables: ``FEDSYN_DATA`` (where torchvision datasets live, default ``~/.cache/fedsyn/data``)
and ``FEDSYN_CACHE`` (where decoded image folders are cached, default ``<root>/.fedsyn-cache``).
"""

from .dataset import ImageDataset
from .errors import DatasetNotFoundError, UnknownDatasetError, UnknownSchemeError
from .load import DATASET_NAMES, DATASET_OPTIONS, load_dataset
from .partition import SCHEMES, partition
from .selection import batch_indices

__all__ = [
    "DATASET_NAMES",
    "DATASET_OPTIONS",
    "SCHEMES",
    "DatasetNotFoundError",
    "ImageDataset",
    "UnknownDatasetError",
    "UnknownSchemeError",
    "batch_indices",
    "load_dataset",
    "partition",
]
