"""Image folders: ``root/train/<class>/*`` and ``root/test/<class>/*``, decoded once and cached.

Classes are the sub-folders of ``root/train`` in sorted order (torchvision's ``ImageFolder`` rule; for
the CIFAR-10 JPEG export this is torchvision's CIFAR-10 order). Files are found recursively inside each
class folder; hidden files and folders are skipped. The test split uses the training split's classes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import PositiveInt

from .cache import read_entry, resolve_cache_dir, write_entry
from .dataset import RawSplit
from .errors import DatasetNotFoundError
from .stats import channel_stats

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff"})
MODES = ("RGB", "L")
_CACHE_FORMAT = 1
_CHUNK = 2048  # files per decoding task


def load_imagefolder_split(
    root: str | os.PathLike[str] | None,
    split: str,
    *,
    mode: Literal["RGB", "L"] = "RGB",
    image_size: tuple[PositiveInt, PositiveInt] | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    workers: PositiveInt | None = None,
) -> RawSplit:
    """Load one split of the image folder at ``root``.

    ``mode`` is "RGB" or "L" (grey). All images must share one size unless ``image_size`` (height, width)
    is given, in which case each is resized to it. With ``cache`` on, the decoded split is stored once
    (see :mod:`fedsyn.data.cache`) and later loads read it back without decoding. Decoding (PIL) runs in
    ``workers`` processes (default: the CPUs this process may use, at most 8).
    """
    if root is None:
        raise DatasetNotFoundError(
            "the imagefolder dataset needs root=DIR, a folder with train/<class>/* and test/<class>/* images"
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if image_size is not None:
        image_size = (int(image_size[0]), int(image_size[1]))
    if workers is None:
        workers = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    root = Path(root).expanduser().resolve()
    classes = _classes(root)
    files, labels = _scan(root / split, classes)
    if not cache:
        return _decode_split(files, labels, classes, mode, image_size, workers)
    key = cache_key(root / split, files, classes, mode, image_size)
    entry_dir = resolve_cache_dir(root, cache_dir) / f"imagefolder-{split}-{key[:24]}"
    cached = read_entry(entry_dir)
    if cached is not None:
        images, cached_labels, meta = cached
        log.info("loaded %d images of %s from the cache %s", len(cached_labels), root / split, entry_dir)
        stats = (tuple(meta["mean"]), tuple(meta["std"]))
        return RawSplit(images=images, labels=cached_labels, classes=meta["classes"], stats=stats)
    raw = _decode_split(files, labels, classes, mode, image_size, workers)
    raw.stats = channel_stats(raw.images)
    mean, std = raw.stats
    meta = {"root": str(root / split), "classes": classes, "count": len(files), "mean": mean, "std": std}
    if write_entry(entry_dir, raw.images, raw.labels, meta):
        log.info("cached %d decoded images of %s in %s", len(files), root / split, entry_dir)
    return raw


def cache_key(
    split_dir: Path, files: list[str], classes: list[str], mode: str, image_size: tuple[int, int] | None
) -> str:
    """Hash of the split's path, its file list (relative path, size, mtime) and the decoding options."""
    digest = hashlib.sha256()
    digest.update(json.dumps([_CACHE_FORMAT, str(split_dir), classes, mode, image_size]).encode())
    prefix = len(str(split_dir)) + 1
    for path in files:
        info = os.stat(path)
        digest.update(f"\n{path[prefix:]}\t{info.st_size}\t{info.st_mtime_ns}".encode())
    return digest.hexdigest()


def _classes(root: Path) -> list[str]:
    train = root / "train"
    if not train.is_dir():
        raise DatasetNotFoundError(
            f"no image folder at {root}: expected {train} (and {root / 'test'}) holding one sub-folder of "
            "images per class, e.g. the CIFAR-10 JPEG export unpacked there"
        )
    classes = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetNotFoundError(f"{train} has no class sub-folders (expected train/<class>/<image files>)")
    return classes


def _scan(split_dir: Path, classes: list[str]) -> tuple[list[str], np.ndarray]:
    if not split_dir.is_dir():
        raise DatasetNotFoundError(f"no split folder {split_dir} (expected {split_dir}/<class>/<image files>)")
    unknown = sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in classes
    )
    if unknown:
        raise ValueError(f"{split_dir} has class folders that train/ lacks: {', '.join(unknown)}")
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = _image_files(split_dir / name)
        files += found
        labels += [label] * len(found)
    if not files:
        raise DatasetNotFoundError(
            f"no image files under {split_dir}/<class>/ (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return files, np.asarray(labels, dtype=np.int64)


def _image_files(folder: Path) -> list[str]:
    """Image files below ``folder`` as path strings (not Path objects: 60k of those cost a second)."""
    found: list[str] = []
    if not folder.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            os.path.join(dirpath, f)
            for f in sorted(filenames)
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
        ]
    return found


def _decode_split(
    files: list[str],
    labels: np.ndarray,
    classes: list[str],
    mode: str,
    image_size: tuple[int, int] | None,
    workers: int,
) -> RawSplit:
    start = time.perf_counter()
    shape = _decode(files[0], mode, image_size).shape
    chunks = [files[i : i + _CHUNK] for i in range(0, len(files), _CHUNK)]
    decode = partial(_decode_chunk, mode=mode, image_size=image_size, shape=shape, first=files[0])
    if workers > 1 and len(chunks) > 1:
        # fork, as torch's DataLoader does on Linux: workers need no imports and only run PIL and numpy
        context = multiprocessing.get_context("fork" if sys.platform == "linux" else None)
        with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context) as pool:
            images = np.concatenate(list(pool.map(decode, chunks)))
    else:
        images = np.concatenate([decode(chunk) for chunk in chunks])
    log.info("decoded %d images in %.1f s", len(files), time.perf_counter() - start)
    return RawSplit(images=images, labels=labels, classes=list(classes))


def _decode_chunk(
    paths: list[str], *, mode: str, image_size: tuple[int, int] | None, shape: tuple[int, ...], first: str
) -> np.ndarray:
    out = np.empty((len(paths), *shape), dtype=np.uint8)
    for i, path in enumerate(paths):
        image = _decode(path, mode, image_size)
        if image.shape != shape:
            raise ValueError(
                f"{path} is {image.shape[1]}x{image.shape[2]} but {first} is {shape[1]}x{shape[2]}; "
                "pass image_size=(height, width) to resize every image"
            )
        out[i] = image
    return out


def _decode(path: str, mode: str, image_size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8 (C, H, W); resized (PIL's antialiased bicubic) when ``image_size`` differs."""
    try:
        with Image.open(path) as opened:
            image = opened if opened.mode == mode else opened.convert(mode)
            if image_size is not None and image.size != (image_size[1], image_size[0]):
                image = image.resize((image_size[1], image_size[0]), Image.Resampling.BICUBIC)
            array = np.array(image)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot decode image {path}: {err}") from err
    return array.reshape(array.shape[0], array.shape[1], -1).transpose(2, 0, 1)
