"""The malicious server's strategy: FedAvg that records everything it sends and receives.

Per round, before aggregating, ``CapturingFedAvg`` writes the global arrays it sent and every reply into
the capture directory (``fedsyn.evaluation.capture``). A reply that carries an error, fails the
protocol's checks (``fedsyn.federation.protocol``: metrics, array names, shapes, dtypes, finiteness,
magnitude, the optional norm bound), repeats a partition id already heard this round, reports a
partition bound to another node (or from a node bound to another partition) or other metric names than
the replies accepted before it is recorded as ``rejected`` with the reason and left out of the
aggregation; the round goes on with the others (and keeps the global arrays when none is left, or when
the accepted replies would step them to a non-finite value).

Replies are updates, not weights, so aggregation is FedAvg on updates: Flower's sample-weighted mean of
the accepted replies (``num-examples`` = the client's partition size, McMahan et al. 2017), then the
step of ``fedsyn.federation.server_round.next_global``.

``EvaluatingFedAvg`` is the evaluation half alone (every client evaluates the global arrays; the
weighted accuracy and loss close the round's line in ``federation.json``); the SecAgg+ path
(``fedsyn.federation.secure_server``) evaluates with it too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedsyn.evaluation.capture import IndexEntry
from fedsyn.task.training import LocalHyper

from .active import ActiveServer
from .protocol import (
    ARRAYS,
    LOSS,
    METRICS,
    PARTITION_ID,
    WEIGHT,
    PartitionOwners,
    ReplyLimits,
    arrays_problem,
    metrics_problem,
    reply_arrays_problem,
    train_config,
)
from .server_round import RoundBook, index_entry, next_global, training_summary


def mean_train_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """Sample-weighted mean loss and total rejuvenated weights of a round's accepted replies."""
    return MetricRecord(training_summary([next(iter(r.metric_records.values())) for r in records], weight_key))


def decode_arrays(message: Message) -> dict[str, np.ndarray] | None:
    """The reply's arrays as numpy, or None when it has none (or they do not decode)."""
    if message.has_error() or ARRAYS not in message.content.array_records:
        return None
    try:
        return {name: array.numpy() for name, array in message.content.array_records[ARRAYS].items()}
    except (TypeError, ValueError):
        return None


def reply_problem(
    message: Message, expected: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, np.dtype], limits: ReplyLimits
) -> str | None:
    """Why a training reply cannot be aggregated on its own merits (``protocol``'s checks), or None."""
    if message.has_error():
        return f"client error (code {message.error.code}): {message.error.reason}"
    content = message.content
    if set(content.array_records) != {ARRAYS} or set(content.metric_records) != {METRICS}:
        return (
            f"expected one array record {ARRAYS!r} and one metric record {METRICS!r}, got arrays "
            f"{sorted(content.array_records)} and metrics {sorted(content.metric_records)}"
        )
    problem = metrics_problem(content.metric_records[METRICS], limits)
    if problem is not None:
        return problem
    arrays = decode_arrays(message)
    if arrays is None:
        return "the arrays do not decode as numpy arrays"
    return reply_arrays_problem(arrays, expected, dtypes, limits)


def triage(
    replies: Iterable[Message],
    expected: Mapping[str, tuple[int, ...]],
    dtypes: Mapping[str, np.dtype],
    limits: ReplyLimits,
    owners: PartitionOwners,
) -> list[tuple[Message, str | None]]:
    """Each training reply, in arrival order, with the reason it is rejected (None: it is aggregated).

    Besides ``reply_problem``, a sound reply is rejected when its partition already has an accepted reply
    this round, when its partition belongs to another node or its node to another partition (``owners``,
    which an accepted reply binds), or when its metric names differ from those of the first accepted
    reply (Flower's aggregation needs the same names in every reply). Partitions are compared on the
    checked integer value.
    """
    triaged: list[tuple[Message, str | None]] = []
    accepted: list[dict[str, Any]] = []
    for message in replies:
        reason = reply_problem(message, expected, dtypes, limits)
        if reason is None:
            metrics = dict(message.content.metric_records[METRICS])
            partition, node = int(metrics[PARTITION_ID]), int(message.metadata.src_node_id)
            if any(int(other[PARTITION_ID]) == partition for other in accepted):
                reason = f"partition {partition} already replied this round"
            elif (claim := owners.problem(partition, node)) is not None:
                reason = claim
            elif accepted and set(metrics) != set(accepted[0]):
                reason = f"metric names {sorted(metrics)} differ from the other clients' {sorted(accepted[0])}"
            else:
                owners.claim(partition, node)
                accepted.append(metrics)
        triaged.append((message, reason))
    return triaged


class EvaluatingFedAvg(FedAvg):
    """Message-API FedAvg over every one of ``clients`` clients whose evaluation closes each round's
    line in the ``RoundBook`` (weighted test accuracy and loss)."""

    def __init__(self, book: RoundBook, *, clients: int) -> None:
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=clients,
            min_evaluate_nodes=clients,
            min_available_nodes=clients,
            weighted_by_key=WEIGHT,
            arrayrecord_key=ARRAYS,
            train_metrics_aggr_fn=mean_train_metrics,
        )
        self.book = book

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        metrics = super().aggregate_evaluate(server_round, replies)
        self.book.evaluated(metrics)
        return metrics


class CapturingFedAvg(EvaluatingFedAvg):
    """FedAvg over every client, with capture and rejection (see the module docstring); ``active``
    modifies the model of the active server's round (``fedsyn.federation.active``).

    ``expected`` maps each reply array name to its shape: the ``state_dict`` for capture ``update``,
    the parameters for ``gradient``; ``limits`` bounds the reply's metrics and norm (``protocol.ReplyLimits``).
    """

    def __init__(
        self,
        book: RoundBook,
        *,
        hyper: LocalHyper,
        expected: dict[str, tuple[int, ...]],
        limits: ReplyLimits,
        active: ActiveServer,
    ) -> None:
        super().__init__(book, clients=limits.clients)
        self.hyper = hyper
        self.expected = expected
        self.limits = limits
        self.owners = PartitionOwners()
        self.active = active

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        for key, value in {**train_config(self.hyper), **self.active.config(server_round)}.items():
            config[key] = value
        sent = self.active.outgoing(server_round, {name: array.numpy() for name, array in arrays.items()})
        self.book.begin(server_round, sent)
        self.active.record(server_round, self.book)
        arrays = ArrayRecord({name: Array(a) for name, a in sent.items()})
        return super().configure_train(server_round, arrays, config, grid)

    def _dtypes(self, expected: Mapping[str, tuple[int, ...]]) -> dict[str, np.dtype]:
        """The dtype each reply array must have: that of the global array of its name."""
        return {name: self.book.global_arrays[name].dtype for name in expected}

    def _record(self, server_round: int, message: Message, reason: str | None) -> IndexEntry:
        """Index (and, in captured rounds, store) one reply; ``reason`` says why it is rejected, if it is.

        A rejected reply's arrays are stored only when they are no bigger than a valid reply's."""
        metrics = {} if message.has_error() else dict(message.content.metric_records.get(METRICS, {}))
        arrays = decode_arrays(message)
        entry = index_entry(
            self.book.capture,
            self.hyper,
            round=server_round,
            node_id=int(message.metadata.src_node_id),
            metrics=metrics,
            status="ok" if reason is None else "rejected",
            reason=reason,
            shapes={name: a.shape for name, a in (arrays or {}).items()},
            dtypes={name: str(a.dtype) for name, a in (arrays or {}).items()},
        )
        expected = self.active.expected(server_round, self.expected)
        dtypes = self._dtypes(expected)
        valid_bytes = sum(math.prod(shape) * dtypes[name].itemsize for name, shape in expected.items())
        if arrays is not None and reason is not None and sum(a.nbytes for a in arrays.values()) > valid_bytes:
            arrays = None
        tensors = None if arrays is None else {name: torch.from_numpy(a.copy()) for name, a in arrays.items()}
        return self.book.capture.save_reply(entry, tensors)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        accepted: list[Message] = []
        rejected: list[str] = []
        expected = self.active.expected(server_round, self.expected)
        for message, reason in triage(replies, expected, self._dtypes(expected), self.limits, self.owners):
            entry = self._record(server_round, message, reason)
            if entry.ok:
                accepted.append(message)
            else:
                rejected.append(f"node {entry.node_id}: {entry.reason}")
        if not accepted:
            self.book.trained(accepted=0, rejections=rejected, train_loss=None)
            return None, None
        mean, metrics = super().aggregate_train(server_round, accepted)
        stepped = None
        if mean is not None:
            mean_arrays = {name: a.numpy() for name, a in mean.items()}
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is caught right below
                stepped = next_global(self.book.global_arrays, mean_arrays, self.hyper)
            if arrays_problem(stepped, {name: a.shape for name, a in stepped.items()}) is not None:
                rejected.append("aggregate: the next global arrays would not be finite; the global arrays stay")
                self.book.trained(accepted=0, rejections=rejected, train_loss=None)
                return None, None
        self.book.trained(
            accepted=len(accepted), rejections=rejected, train_loss=None if metrics is None else float(metrics[LOSS])
        )
        if stepped is None:
            return None, metrics
        stepped = self.active.continued(server_round, stepped)
        return ArrayRecord({name: Array(a) for name, a in stepped.items()}), metrics
