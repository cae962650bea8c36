"""Which samples a client trains on in a given local step: a pure function the evaluator can replay."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np


def batch_indices(
    partition_indices: Sequence[int] | np.ndarray, *, round: int, step: int, batch_size: int, seed: int
) -> np.ndarray:
    """Dataset indices (int64, in draw order) of the batch for local step ``step`` of round ``round``.

    ``batch_size`` distinct entries of ``partition_indices`` drawn with a numpy generator whose seed
    sequence is (``seed``, ``round``, ``step``, a digest of the partition's contents). The same
    arguments give the same batch on any machine with the same numpy (Generator streams are stable
    within a numpy version), so the ground truth of an attacked update can be rebuilt without it
    crossing the protocol.
    """
    part = np.asarray(partition_indices)
    if part.ndim != 1 or part.size == 0 or not np.issubdtype(part.dtype, np.integer):
        raise ValueError(f"partition_indices must be a non-empty 1-D array of integers, got {part.dtype} {part.shape}")
    for field, value in (("round", round), ("step", step), ("seed", seed)):
        if int(value) < 0:
            raise ValueError(f"{field} must be a non-negative integer, got {value}")
    if not 1 <= batch_size <= part.size:
        raise ValueError(f"batch_size must be between 1 and the partition size ({part.size}), got {batch_size}")
    part = part.astype(np.int64)
    digest = int.from_bytes(hashlib.sha256(part.astype("<i8").tobytes()).digest()[:8], "little")
    rng = np.random.default_rng([int(seed), int(round), int(step), digest])
    return rng.choice(part, size=batch_size, replace=False).astype(np.int64)
