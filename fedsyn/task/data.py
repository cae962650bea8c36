"""Which samples a client owns, and which held-out images it evaluates: pure functions of the cell.

The evaluator calls the same functions to rebuild an attacked client's true batch, so the ground truth
never crosses the protocol. Datasets are cached per process: a simulation actor serves many messages.
"""

from __future__ import annotations

import functools
import json

import numpy as np

from fedsyn.data import ImageDataset, load_dataset, partition
from fedsyn.experiment.grid import Cell
from fedsyn.experiment.schema import DatasetSpec
from fedsyn.seeding import derive_seed


def dataset_spec(cell: Cell, data_root: str | None = None) -> DatasetSpec:
    """The cell's dataset, with ``data_root`` (a node's ``data-root``) replacing its root when given."""
    if data_root is None:
        return cell.dataset
    return cell.dataset.model_copy(update={"root": data_root})


def load_split(spec: DatasetSpec, split: str) -> ImageDataset:
    return _load(spec.model_dump_json(), split)


@functools.lru_cache(maxsize=4)
def _load(spec_json: str, split: str) -> ImageDataset:
    spec = DatasetSpec.model_validate_json(spec_json)
    return load_dataset(spec.name, root=spec.root, split=split, download=spec.download, **spec.options)


def client_partitions(cell: Cell, train: ImageDataset) -> list[np.ndarray]:
    """Training-set indices of every client, from ``derive_seed(seed, "partition")``."""
    return _partitions(
        cell.federation.partition.model_dump_json(), cell.federation.clients, cell.seed, train.labels.numpy().tobytes()
    )


@functools.lru_cache(maxsize=4)
def _partitions(spec_json: str, clients: int, seed: int, labels: bytes) -> list[np.ndarray]:
    spec = json.loads(spec_json)
    return partition(
        np.frombuffer(labels, dtype=np.int64),
        clients,
        spec["scheme"],
        seed=derive_seed(seed, "partition"),
        alpha=spec["alpha"],
        shards_per_client=spec["shards_per_client"],
    )


def eval_shard(cell: Cell, test: ImageDataset, partition_id: int) -> np.ndarray:
    """Test-set indices this client evaluates the global model on.

    ``eval_samples`` test images (a seeded choice, ``derive_seed(seed, "eval")``) are split evenly among
    the clients, so the sample-weighted mean of the clients' accuracies is the global model's accuracy
    on those images.
    """
    count = min(cell.federation.eval_samples, len(test))
    chosen = np.random.default_rng(derive_seed(cell.seed, "eval")).permutation(len(test))[:count]
    return np.array_split(np.sort(chosen), cell.federation.clients)[partition_id]
