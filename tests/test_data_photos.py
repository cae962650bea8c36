"""The offline default dataset: scikit-image photos as 32x32 patches."""

import numpy as np
import pytest
import torch

from fedsyn.data import ImageDataset, load_dataset
from fedsyn.data.photos import PHOTOS


@pytest.fixture(scope="module")
def photos_train() -> ImageDataset:
    return load_dataset("photos")


@pytest.fixture(scope="module")
def photos_test() -> ImageDataset:
    return load_dataset("photos", split="test")


def test_shapes_and_classes(photos_train, photos_test):
    assert photos_train.classes == list(PHOTOS) and photos_train.num_classes == len(PHOTOS) == 8
    assert photos_train.in_shape == (3, 32, 32)
    assert photos_train.images.shape == (8 * 96, 3, 32, 32) and photos_train.images.dtype == torch.uint8
    assert photos_test.images.shape == (8 * 24, 3, 32, 32)
    assert photos_train.labels.dtype == torch.int64
    assert torch.bincount(photos_train.labels).tolist() == [96] * 8
    assert torch.bincount(photos_test.labels).tolist() == [24] * 8


def test_split_is_deterministic_and_disjoint(photos_train, photos_test):
    again = load_dataset("photos")
    assert torch.equal(again.images, photos_train.images) and torch.equal(again.labels, photos_train.labels)
    train_rows = {bytes(x.numpy()) for x in photos_train.images}
    assert not any(bytes(x.numpy()) in train_rows for x in photos_test.images)
    reseeded = load_dataset("photos", seed=1)
    assert not torch.equal(reseeded.images, photos_train.images)


def test_patches_are_not_flat(photos_train):
    spread = photos_train.images.float().flatten(1).std(dim=1)
    assert spread.min().item() >= 8.0


def test_stats_come_from_the_training_split(photos_train, photos_test):
    unit = photos_train.images.double() / 255
    assert np.allclose(photos_train.mean, unit.mean(dim=(0, 2, 3)).tolist(), atol=1e-9)
    assert np.allclose(photos_train.std, unit.std(dim=(0, 2, 3), unbiased=False).tolist(), atol=1e-9)
    assert photos_test.mean == photos_train.mean and photos_test.std == photos_train.std
    own = (photos_test.images.double() / 255).mean(dim=(0, 2, 3)).tolist()
    assert not np.allclose(own, photos_test.mean, atol=1e-6)


def test_options(photos_train):
    small = load_dataset("photos", patch_size=16, per_class=40, test_fraction=0.25)
    assert small.in_shape == (3, 16, 16) and len(small) == 8 * 30
    with pytest.raises(ValueError, match="per_class=500 is too many"):
        load_dataset("photos", per_class=500)
    with pytest.raises(ValueError, match="root"):
        load_dataset("photos", root="/tmp")
