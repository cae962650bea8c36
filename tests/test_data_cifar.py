"""CIFAR: torchvision's offline error for real, and the real CIFAR-10 JPEG export as an image folder."""

import pytest
import torch

from fedsyn.data import DatasetNotFoundError, load_dataset

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.parametrize(("name", "folder"), [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_cifar_says_where_and_how(tmp_path, name, folder):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / folder) in message and "download=True" in message and "imagefolder" in message
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or created


def test_missing_cifar10_points_at_the_jpeg_export(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSYN_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="use imagefolder with the CIFAR-10 JPEG export") as err:
        load_dataset("cifar10", split="test")
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)


def test_cifar10_jpeg_export(cifar10_dir):
    train = load_dataset("imagefolder", root=cifar10_dir)
    test = load_dataset("imagefolder", root=cifar10_dir, split="test")
    assert len(train) == 50000 and len(test) == 10000
    assert train.classes == test.classes == CIFAR10_CLASSES
    assert train.in_shape == (3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert test.mean == train.mean
    # CIFAR-10's well-known training-set statistics (the JPEG export moves them only slightly)
    assert train.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=0.003)
    assert train.std == pytest.approx((0.2470, 0.2435, 0.2616), abs=0.006)
