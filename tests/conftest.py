"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    """The unpacked CIFAR-10 JPEG export (train/<class>/*.jpg, test/<class>/*.jpg) named by FEDSYN_CIFAR10_DIR."""
    value = os.environ.get("FEDSYN_CIFAR10_DIR")
    if not value:
        pytest.skip(
            "FEDSYN_CIFAR10_DIR is not set: unpack ../shared/data/cifar10/cifar10-jpg.zip and point it at the "
            "folder holding train/ and test/"
        )
    path = Path(value)
    if not ((path / "train").is_dir() and (path / "test").is_dir()):
        pytest.skip(f"FEDSYN_CIFAR10_DIR={value} has no train/ and test/ folders")
    return path
