"""Split a labelled dataset among federated clients: IID, Dirichlet non-IID, or label shards."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .errors import UnknownSchemeError

SCHEMES: tuple[str, ...] = ("iid", "dirichlet", "shards")
_DIRICHLET_DRAWS = 100


def partition(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    num_clients: int,
    scheme: str = "iid",
    seed: int = 0,
    alpha: float = 0.5,
    shards_per_client: int = 2,
) -> list[np.ndarray]:
    """Indices of each client's samples: ``num_clients`` sorted int64 arrays, each non-empty.

    Every sample lands in exactly one partition, and the result is a pure function of the arguments.

    - ``iid``: a seeded permutation cut into ``num_clients`` near-equal parts.
    - ``dirichlet``: for every class, client shares are drawn from ``Dirichlet(alpha, ..., alpha)`` and the
      class's (shuffled) samples are cut in those proportions (Hsu et al. 2019); small ``alpha`` gives
      skewed label distributions. When a draw leaves a client empty the whole draw is repeated with the
      same generator, up to 100 times; if a client is still empty after that (tiny alpha with many
      clients), each empty client takes the highest index of the then-largest partition.
    - ``shards``: samples sorted by label (shuffled within a class) are cut into
      ``num_clients * shards_per_client`` equal shards, and each client gets ``shards_per_client`` of them
      at random (McMahan et al. 2017).
    """
    if scheme not in SCHEMES:
        raise UnknownSchemeError(f"unknown partition scheme {scheme!r}; known schemes: {', '.join(SCHEMES)}")
    labels = _as_labels(labels)
    if num_clients < 1 or num_clients > len(labels):
        raise ValueError(f"num_clients must be between 1 and the number of samples ({len(labels)}), got {num_clients}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(len(labels)), num_clients)
    elif scheme == "dirichlet":
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha must be a positive number, got {alpha}")
        parts = _dirichlet(labels, num_clients, alpha, rng)
    else:
        if shards_per_client < 1 or num_clients * shards_per_client > len(labels):
            raise ValueError(
                f"shards_per_client must be >= 1 with num_clients * shards_per_client <= {len(labels)} samples, "
                f"got {shards_per_client} x {num_clients}"
            )
        parts = _shards(labels, num_clients, shards_per_client, rng)
    return [np.sort(part).astype(np.int64) for part in parts]


def _as_labels(labels: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    array = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty 1-D array of integers, got {array.dtype} {array.shape}")
    return array.astype(np.int64)


def _dirichlet(labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(_DIRICHLET_DRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for members in by_class:
            members = rng.permutation(members)
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
            for client, piece in enumerate(np.split(members, cuts)):
                parts[client].append(piece)
        merged = [np.concatenate(p) for p in parts]
        if all(len(p) for p in merged):
            return merged
    for client in range(num_clients):
        if not len(merged[client]):
            largest = max(range(num_clients), key=lambda k: len(merged[k]))
            donor = np.sort(merged[largest])
            merged[largest], merged[client] = donor[:-1], donor[-1:]
    return merged


def _shards(labels: np.ndarray, num_clients: int, per_client: int, rng: np.random.Generator) -> list[np.ndarray]:
    shuffled = rng.permutation(len(labels))
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
    shards = np.array_split(by_label, num_clients * per_client)
    owner = rng.permutation(num_clients * per_client).reshape(num_clients, per_client)
    return [np.concatenate([shards[s] for s in owner[k]]) for k in range(num_clients)]
