"""ImageDataset's accessors and load_dataset's argument checks."""

import numpy as np
import pytest
import torch

from fedsyn.data import DATASET_NAMES, ImageDataset, UnknownDatasetError, load_dataset


@pytest.fixture(scope="module")
def data() -> ImageDataset:
    return load_dataset("photos", split="test")


def test_getitem_batch_and_unit_agree(data):
    index = np.array([5, 0, 17])
    x, y = data.batch(index)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.tolist() == [int(data.labels[i]) for i in index]
    item, label = data[17]
    assert torch.allclose(item, x[2]) and label == int(y[2]) and isinstance(label, int)
    unit = data.unit(torch.tensor(index))
    assert unit.min() >= 0 and unit.max() <= 1
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    assert torch.allclose(unit, x * std + mean, atol=1e-6)
    assert torch.equal(data.unit([17])[0], data.images[17].float() / 255)


def test_batch_leaves_stored_pixels_alone(data):
    before = data.images.clone()
    data.batch(range(len(data)))
    assert torch.equal(before, data.images)


def test_bad_indices(data):
    with pytest.raises(ValueError, match="integers"):
        data.batch([0.5, 1.0])
    with pytest.raises(IndexError):
        data.unit([len(data)])


def test_constructor_checks():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    good = dict(name="x", split="train", classes=["a", "b"], images=images, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="one per channel"):
        ImageDataset(**good, mean=(0.5,), std=(0.2,))
    with pytest.raises(ValueError, match="positive"):
        ImageDataset(**good, mean=(0.5,) * 3, std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="labels must lie"):
        ImageDataset(**{**good, "labels": torch.tensor([0, 2])}, mean=(0.5,) * 3, std=(0.2,) * 3)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownDatasetError) as err:
        load_dataset("mnist")
    assert all(name in str(err.value) for name in DATASET_NAMES)


def test_bad_split_option_and_download():
    with pytest.raises(ValueError, match="split must be one of train, test"):
        load_dataset("photos", split="val")
    with pytest.raises(ValueError, match="no option 'patchsize'.*patch_size"):
        load_dataset("photos", patchsize=16)
    with pytest.raises(ValueError, match="cannot be downloaded"):
        load_dataset("photos", download=True)
