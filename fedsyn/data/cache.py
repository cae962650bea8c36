"""On-disk cache of decoded image folders: one uint8 .npy of pixels, one of labels, one JSON of metadata.

Where the cache lives, in order of precedence:

1. the ``cache_dir`` option of ``load_dataset``;
2. the environment variable ``FEDSYN_CACHE``;
3. ``<root>/.fedsyn-cache`` next to the image folder, if that can be created and written;
4. ``~/.cache/fedsyn`` otherwise (e.g. a read-only dataset folder); this fallback is logged.

An entry is a folder named by a hash of everything that determines its content (see
``imagefolder.cache_key``), so a changed, added or removed file gives a new entry instead of stale data.
Entries are written to a temporary folder and renamed into place, so a killed process never leaves a
half-written entry behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CACHE_ENV = "FEDSYN_CACHE"
_IMAGES, _LABELS, _META = "images.npy", "labels.npy", "meta.json"


def resolve_cache_dir(root: Path, cache_dir: str | os.PathLike[str] | None) -> Path:
    """The folder that holds cache entries for the dataset at ``root`` (see the module docstring)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    beside = root / ".fedsyn-cache"
    if _writable_dir(beside):
        return beside
    fallback = Path.home() / ".cache" / "fedsyn"
    log.info("%s is not writable; caching decoded images under %s instead", beside, fallback)
    return fallback


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def read_entry(folder: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
    """The cached (images, labels, meta) in ``folder``, or None when there is no complete entry.

    Images come back as a read-only memory map: reading a split only for its statistics costs nothing.
    """
    try:
        meta = json.loads((folder / _META).read_text())
        images = np.load(folder / _IMAGES, mmap_mode="r")
        labels = np.load(folder / _LABELS)
    except (OSError, ValueError) as err:
        if (folder / _META).exists():
            log.warning("ignoring unreadable cache entry %s: %s", folder, err)
        return None
    return images, labels, meta


def write_entry(folder: Path, images: np.ndarray, labels: np.ndarray, meta: dict[str, Any]) -> bool:
    """Store an entry atomically; returns False (after logging why) when the cache cannot be written."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as err:
        log.warning("cannot write the image cache under %s (%s); continuing without it", folder.parent, err)
        return False
    try:
        np.save(staging / _IMAGES, images)
        np.save(staging / _LABELS, labels)
        (staging / _META).write_text(json.dumps(meta))
        os.replace(staging, folder)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        if (folder / _META).exists():
            return True  # another process stored the same entry first
        log.warning("cannot write the image cache entry %s (%s); continuing without it", folder, err)
        return False
    return True
