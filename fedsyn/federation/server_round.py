"""What the capturing server does in every round, whichever way the clients' arrays reach it.

Both server paths share this: the plain one (``fedsyn.federation.strategy.CapturingFedAvg``, every
client's reply in the clear) and the SecAgg+ one (``fedsyn.federation.secure_server``, only the
clients' mean). Per round the server sends the same local hyperparameters (``protocol.train_config``), records
the global arrays and the round's outcome (``RoundBook``), indexes what it heard (``index_entry``; the
checks are ``protocol``'s) and steps the global model from the mean reply (``next_global``):

- capture ``update``: ``w <- w + mean(w_local - w)`` for every ``state_dict`` entry;
- capture ``gradient`` (FedSGD): ``w <- w - lr * mean(gradient)`` for the parameters, buffers kept.

Integer buffers (BatchNorm's step counter) are rounded back to their dtype.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fedsyn.evaluation.capture import CaptureWriter, IndexEntry
from fedsyn.task.training import LocalHyper

from .protocol import (
    ACCURACY,
    BATCH_SIZE,
    DEFENSE,
    LOCAL_STEPS,
    LOSS,
    LR,
    NUM_EXAMPLES,
    PARTITION_ID,
    REJUVENATED,
)


def training_summary(metrics: Sequence[Mapping[str, Any]], weight_key: str) -> dict[str, float | int]:
    """Sample-weighted mean loss and total rejuvenated weights of a round's aggregated replies."""
    weights = np.array([float(m[weight_key]) for m in metrics])
    losses = np.array([float(m[LOSS]) for m in metrics])
    return {
        LOSS: float((weights * losses).sum() / weights.sum()),
        REJUVENATED: int(sum(int(m[REJUVENATED]) for m in metrics)),
    }


def next_global(
    current: Mapping[str, np.ndarray], mean: Mapping[str, np.ndarray], hyper: LocalHyper
) -> dict[str, np.ndarray]:
    """The next global arrays from the current ones and the mean reply (see the module docstring)."""
    updated: dict[str, np.ndarray] = {}
    for name, value in current.items():
        if hyper.capture == "gradient":
            new = value - hyper.lr * mean[name] if name in mean else value
        else:
            new = value + mean[name]
        if value.dtype.kind in "iu":
            new = np.rint(new)
        updated[name] = np.asarray(new, dtype=value.dtype)
    return updated


def index_entry(
    capture: CaptureWriter,
    hyper: LocalHyper,
    *,
    round: int,
    node_id: int,
    metrics: Mapping[str, Any],
    status: str,
    reason: str | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    dtypes: Mapping[str, str] | None = None,
    covers: Sequence[int] = (),
) -> IndexEntry:
    """The index line of what the server heard from one node (or of a secure aggregate), built from the
    reply's metrics: a missing metric, or one that is not a finite number (of integral value for the
    integer fields), becomes null; ``defense.*`` metrics with finite values form the ``defense`` field.
    A rejected reply's metrics are whatever the client sent, so nothing here may raise on them."""

    def number(key: str, kind: type) -> Any:
        value = metrics.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        if kind is int and value != int(value):
            return None
        return kind(value)

    defense = {
        key[len(DEFENSE) :]: float(value)
        for key, value in metrics.items()
        if key.startswith(DEFENSE) and number(key, float) is not None
    }
    return IndexEntry(
        round=round,
        partition_id=number(PARTITION_ID, int),
        node_id=node_id,
        status=status,
        reason=reason,
        file=None,
        capture=hyper.capture,
        steps=number(LOCAL_STEPS, int),
        lr=number(LR, float),
        batch_size=number(BATCH_SIZE, int),
        num_examples=number(NUM_EXAMPLES, int),
        loss=number(LOSS, float),
        rejuvenated=number(REJUVENATED, int),
        config_hash=capture.cell.key,
        shapes={name: list(shape) for name, shape in (shapes or {}).items()},
        dtypes=dict(dtypes or {}),
        defense=defense,
        covers=list(covers),
    )


class RoundBook:
    """The server's running record of the federation: the global arrays of the current round (what the
    next global steps from), and per round its outcome and test accuracy in ``federation.json``."""

    def __init__(self, capture: CaptureWriter) -> None:
        self.capture = capture
        self.global_arrays: dict[str, np.ndarray] = {}
        self._round: dict[str, Any] = {}
        self._started = time.monotonic()
        self._round_started = self._started

    def begin(self, round: int, global_arrays: dict[str, np.ndarray]) -> None:
        """A round starts: keep (and, in captured rounds, store) the global arrays being sent."""
        self.global_arrays = global_arrays
        self._round = {"round": round, "accepted": 0, "rejected": 0, "rejections": []}
        self._round_started = time.monotonic()
        self.capture.save_global(round, {name: torch.from_numpy(a.copy()) for name, a in global_arrays.items()})

    def modified(self, spec: dict[str, Any]) -> None:
        """The server sent its modified model this round (an active attack); ``spec`` is what it sent."""
        self._round["modification"] = spec

    def trained(self, *, accepted: int, rejections: list[str], train_loss: float | None) -> None:
        """The round's training outcome: how many replies went into the mean, why others did not."""
        self._round.update(accepted=accepted, rejected=len(rejections), rejections=rejections)
        if train_loss is not None:
            self._round["train_loss"] = train_loss

    def evaluated(self, metrics: Mapping[str, Any] | None) -> None:
        """The round's test accuracy and loss (None: no client evaluated); closes the round's line."""
        self._round.update(
            accuracy=None if metrics is None else float(metrics[ACCURACY]),
            loss=None if metrics is None else float(metrics[LOSS]),
            seconds=time.monotonic() - self._round_started,
        )
        self.capture.add_round(dict(self._round))
        self.capture.write_summary(completed=False, seconds=time.monotonic() - self._started)
