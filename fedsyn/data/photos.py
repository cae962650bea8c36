"""The offline default dataset: scikit-image's bundled colour photographs cut into small patches.

Each photo is one class. It is cut into non-overlapping ``patch_size`` squares at its native scale
(starting at the top-left corner); near-uniform squares (pixel standard deviation below 8 grey levels,
e.g. the black border of the retina image) are dropped; ``per_class`` of the rest are drawn with a
generator seeded by (``seed``, class index), and the first ``round(per_class * test_fraction)`` drawn
become the test split. Train and test therefore never share pixels, and the split is a pure function of
the options. Every photo used ships inside the scikit-image wheel, so nothing is downloaded.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import skimage.data
from pydantic import Field, NonNegativeInt, PositiveInt

from .dataset import RawSplit

PHOTOS: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
)
_MIN_PATCH_STD = 8.0


def load_photos_split(
    split: str,
    *,
    patch_size: Annotated[int, Field(ge=4)] = 32,
    per_class: PositiveInt = 120,
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2,
    seed: NonNegativeInt = 0,
) -> RawSplit:
    """Patches of the bundled photos for ``split`` ("train" or "test"); see the module docstring."""
    if patch_size < 4:
        raise ValueError(f"patch_size must be >= 4, got {patch_size}")
    n_test = count_test_patches(per_class, test_fraction)
    chunks, labels = [], []
    for label, name in enumerate(PHOTOS):
        patches = _patches(name, patch_size)
        if len(patches) < per_class:
            raise ValueError(
                f"photo {name!r} gives only {len(patches)} patches of {patch_size}x{patch_size}; "
                f"per_class={per_class} is too many"
            )
        chosen = np.random.default_rng([seed, label]).permutation(len(patches))[:per_class]
        chosen = chosen[:n_test] if split == "test" else chosen[n_test:]
        chunks.append(patches[chosen])
        labels.append(np.full(len(chosen), label, dtype=np.int64))
    return RawSplit(images=np.concatenate(chunks), labels=np.concatenate(labels), classes=list(PHOTOS))


def count_test_patches(per_class: int, test_fraction: float) -> int:
    """How many of a class's ``per_class`` patches are test patches; ``ValueError`` unless both splits get one."""
    n_test = round(per_class * test_fraction)
    if not 0 < n_test < per_class:
        raise ValueError(
            f"per_class={per_class} with test_fraction={test_fraction} leaves {n_test} test and "
            f"{per_class - n_test} training patches per class; both must be at least 1"
        )
    return n_test


def _photo(name: str) -> np.ndarray:
    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


def _patches(name: str, size: int) -> np.ndarray:
    """Non-overlapping, not near-uniform ``size`` squares of photo ``name`` as uint8 (N, 3, size, size)."""
    photo = _photo(name)[..., :3]
    rows, cols = photo.shape[0] // size, photo.shape[1] // size
    grid = photo[: rows * size, : cols * size].reshape(rows, size, cols, size, 3)
    patches = np.ascontiguousarray(grid.transpose(0, 2, 4, 1, 3).reshape(rows * cols, 3, size, size))
    spread = patches.reshape(len(patches), -1).std(axis=1)
    return patches[spread >= _MIN_PATCH_STD]
