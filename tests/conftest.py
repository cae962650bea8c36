"""Shared pytest fixtures."""

from __future__ import annotations

import os
import socket
import urllib.request
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


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture
def unreachable_network(monkeypatch):
    """Every urllib request goes through a proxy on a closed local port, so a download fails at once as it
    does offline, on any machine (an online one would otherwise fetch the real 233 MB file)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    monkeypatch.setattr(urllib.request, "_opener", opener)
