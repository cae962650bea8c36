"""Image folders of real PNG/JPEG/BMP files: decoding, class order, errors and the decode cache."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedsyn.data import DatasetNotFoundError, load_dataset
from fedsyn.data.stats import channel_stats

SIZE = 8


def _pixels(seed: int) -> np.ndarray:
    """A smooth colour ramp (so that JPEG keeps it close) with a per-seed base colour."""
    base = np.random.default_rng(seed).integers(0, 128, size=3)
    ramp = 8 * np.arange(SIZE)[:, None, None] + 4 * np.arange(SIZE)[None, :, None]
    return (base + ramp).astype(np.uint8)


def _write_tree(root: Path) -> dict[tuple[str, str], np.ndarray]:
    """train/ with classes 'zebra' and 'ant' (PNG + BMP + one JPEG), test/ with 'zebra' only."""
    written = {}
    layout = {
        ("train", "zebra"): ["0.png", "1.png", "2.bmp"],
        ("train", "ant"): ["0.png", "sub/1.png", "2.jpg"],
        ("test", "zebra"): ["0.png", "1.png"],
    }
    seed = 0
    for (split, cls), names in layout.items():
        for name in names:
            path = root / split / cls / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = _pixels(seed)
            seed += 1
            Image.fromarray(pixels).save(path, **({"quality": 95} if name.endswith(".jpg") else {}))
            written[(split, f"{cls}/{name}")] = pixels
    (root / "train" / "ant" / "notes.txt").write_text("not an image")
    (root / "train" / ".hidden").mkdir()
    return written


@pytest.fixture(autouse=True)
def _no_cache_env(monkeypatch):
    monkeypatch.delenv("FEDSYN_CACHE", raising=False)


def test_loads_real_files_in_sorted_class_order(tmp_path):
    written = _write_tree(tmp_path)
    train = load_dataset("imagefolder", root=tmp_path, cache=False)
    assert train.classes == ["ant", "zebra"] and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert train.images.shape == (6, 3, SIZE, SIZE)
    order = ["ant/0.png", "ant/2.jpg", "ant/sub/1.png", "zebra/0.png", "zebra/1.png", "zebra/2.bmp"]
    expected = [written[("train", f)] for f in order]
    for i, pixels in enumerate(expected):
        got = train.images[i].permute(1, 2, 0).numpy()
        if i == 1:  # JPEG is lossy
            assert np.abs(got.astype(int) - pixels).mean() < 4
        else:
            assert np.array_equal(got, pixels)
    test = load_dataset("imagefolder", root=tmp_path, split="test", cache=False)
    assert test.classes == ["ant", "zebra"] and test.labels.tolist() == [1, 1]
    assert test.mean == train.mean == channel_stats(train.images.numpy())[0]


def test_grey_mode_and_resize(tmp_path):
    _write_tree(tmp_path)
    grey = load_dataset("imagefolder", root=tmp_path, mode="L", image_size=(4, 6), cache=False)
    assert grey.in_shape == (1, 4, 6) and len(grey.mean) == 1


def test_mixed_sizes_need_image_size(tmp_path):
    _write_tree(tmp_path)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "train" / "zebra" / "odd.png")
    with pytest.raises(ValueError, match="odd.png is 5x5.*image_size"):
        load_dataset("imagefolder", root=tmp_path, cache=False)


def test_missing_folders_and_broken_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "train")):
        load_dataset("imagefolder", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="needs root"):
        load_dataset("imagefolder")
    _write_tree(tmp_path)
    (tmp_path / "test" / "mole").mkdir()
    with pytest.raises(ValueError, match="train/ lacks: mole"):
        load_dataset("imagefolder", root=tmp_path, split="test", cache=False)
    (tmp_path / "train" / "ant" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot decode image .*bad.png"):
        load_dataset("imagefolder", root=tmp_path, cache=False)


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("imagefolder-train-*"))


def test_cache_hit_returns_identical_arrays_without_decoding(tmp_path, caplog):
    _write_tree(tmp_path)
    caplog.set_level(logging.INFO, logger="fedsyn.data")
    first = load_dataset("imagefolder", root=tmp_path)
    assert "decoded 6 images" in caplog.text
    (entry,) = _entries(tmp_path / ".fedsyn-cache")
    stamp = (entry / "images.npy").stat().st_mtime_ns
    caplog.clear()
    second = load_dataset("imagefolder", root=tmp_path)
    assert "decoded" not in caplog.text and "from the cache" in caplog.text
    assert (entry / "images.npy").stat().st_mtime_ns == stamp
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert first.classes == second.classes and first.mean == second.mean and first.std == second.std
    second.images[0] += 1  # the loaded tensor is an ordinary writable copy, not the cache file
    assert torch.equal(load_dataset("imagefolder", root=tmp_path).images, first.images)


def test_changed_folder_gets_a_new_cache_entry(tmp_path):
    _write_tree(tmp_path)
    load_dataset("imagefolder", root=tmp_path)
    Image.fromarray(_pixels(99)).save(tmp_path / "train" / "ant" / "3.png")
    grown = load_dataset("imagefolder", root=tmp_path)
    assert len(grown) == 7 and len(_entries(tmp_path / ".fedsyn-cache")) == 2


def test_cache_location_option_env_and_fallback(tmp_path, monkeypatch):
    data = tmp_path / "data"
    _write_tree(data)
    load_dataset("imagefolder", root=data, cache_dir=tmp_path / "explicit")
    assert len(_entries(tmp_path / "explicit")) == 1
    monkeypatch.setenv("FEDSYN_CACHE", str(tmp_path / "from-env"))
    load_dataset("imagefolder", root=data)
    assert len(_entries(tmp_path / "from-env")) == 1
    monkeypatch.delenv("FEDSYN_CACHE")
    (data / ".fedsyn-cache").write_text("a file where the cache folder would go: not writable")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    load_dataset("imagefolder", root=data)
    assert len(_entries(tmp_path / "home" / ".cache" / "fedsyn")) == 1


def test_parallel_decoding_matches_serial(tmp_path, monkeypatch):
    for i in range(40):
        path = tmp_path / "train" / f"c{i % 3}" / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_pixels(i)).save(path)
    monkeypatch.setattr("fedsyn.data.imagefolder._CHUNK", 8)  # five decoding tasks instead of one
    serial = load_dataset("imagefolder", root=tmp_path, cache=False, workers=1)
    parallel = load_dataset("imagefolder", root=tmp_path, cache=False, workers=2)
    assert torch.equal(serial.images, parallel.images) and torch.equal(serial.labels, parallel.labels)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "train" / "c2" / "99.png")
    with pytest.raises(ValueError, match="99.png is 5x5"):
        load_dataset("imagefolder", root=tmp_path, cache=False, workers=2)
