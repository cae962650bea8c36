"""What the active server's modification costs the federation: the test accuracy after the modified
round against the accuracy after the same round unmodified.

A vigilant client could notice a modification that hurts the model, so the cost is reported with the
attack (issue 13). ``accuracy_modified`` is the accuracy the clients measured after the modified round
(``federation.json``: the aggregate with the imprint block dropped, what the federation goes on with).
``accuracy_unmodified`` recomputes that round as if the server had sent the plain model: every client's
``client_round`` (a pure function of cell, partition, round and global arrays, defenses included) from
the same base arrays, their FedAvg mean (weighted by partition size; equal weights under SecAgg+, as
``fedsyn.federation.client_app`` reports them), the server's step, then the accuracy on the same
held-out images the clients evaluate on (the union of their ``eval_shard``s). ``accuracy_before`` is the
accuracy of the base arrays the modified round started from.
"""

from __future__ import annotations

import numpy as np
import torch

from fedsyn.data import ImageDataset
from fedsyn.defenses import SecAgg
from fedsyn.task.active import active_round, plain_state
from fedsyn.task.data import client_partitions, dataset_spec, eval_shard, load_split
from fedsyn.task.model import server_model
from fedsyn.task.training import LocalHyper, accuracy_and_loss, client_round

from .capture import Capture


def _accuracy(capture: Capture, state: dict[str, torch.Tensor], test: ImageDataset) -> float:
    cell = capture.cell
    model = server_model(cell, test.num_classes, test.in_shape)
    model.load_state_dict(state, strict=True)
    indices = np.concatenate([eval_shard(cell, test, p) for p in range(cell.federation.clients)])
    return accuracy_and_loss(model, test, indices)[0]


def _unmodified_round(capture: Capture, base: dict[str, torch.Tensor], round: int, train: ImageDataset) -> dict:
    cell = capture.cell
    hyper = LocalHyper.from_cell(cell)
    owned = client_partitions(cell, train)
    replies, weights = [], []
    for partition_id, indices in enumerate(owned):
        result = client_round(
            cell, base, train=train, partition_indices=indices, partition_id=partition_id, round=round, hyper=hyper
        )
        replies.append(result.arrays)
        weights.append(hyper.images if cell.defense.find(SecAgg) is not None else result.num_examples)
    share = torch.tensor(weights, dtype=torch.float64) / sum(weights)
    stepped = {}
    for name, value in base.items():
        if name not in replies[0]:
            stepped[name] = value
            continue
        mean = sum(float(w) * reply[name].double() for w, reply in zip(share, replies))
        new = value.double() - hyper.lr * mean if hyper.capture == "gradient" else value.double() + mean
        stepped[name] = new.round().to(value.dtype) if not value.is_floating_point() else new.to(value.dtype)
    return stepped


def utility_cost(capture: Capture) -> dict[str, float | None]:
    """``accuracy_before``, ``accuracy_modified`` and ``accuracy_unmodified`` of the active round (see the
    module docstring); empty for a passive server's capture."""
    round = active_round(capture.cell)
    if round is None or capture.modification(round) is None:
        return {}
    train = load_split(dataset_spec(capture.cell), "train")
    test = load_split(dataset_spec(capture.cell), "test")
    base = plain_state(capture.global_state(round))
    line = next(line for line in capture.summary["rounds"] if line["round"] == round)
    return {
        "accuracy_before": _accuracy(capture, base, test),
        "accuracy_modified": line.get("accuracy"),
        "accuracy_unmodified": _accuracy(capture, _unmodified_round(capture, base, round, train), test),
    }
