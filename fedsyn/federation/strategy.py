"""The malicious server's strategy: FedAvg that records everything it sends and receives.

Per round, before aggregating, ``CapturingFedAvg`` writes the global arrays it sent and every reply into
the capture directory (``fedsyn.federation.capture``). A reply that carries an error, lacks its
metrics, has other array names or shapes than the protocol expects, contains NaN/Inf, repeats a
partition id already heard this round or reports other metric names than the replies accepted before it
is recorded as ``rejected`` with the reason and left out of the aggregation; the round goes on with the
others (and keeps the global arrays when none is left).

Replies are updates, not weights, so aggregation is FedAvg on updates: Flower's sample-weighted mean of
the accepted replies (``num-examples`` = the client's partition size, McMahan et al. 2017), then

- capture ``update``: ``w <- w + mean(w_local - w)`` for every ``state_dict`` entry;
- capture ``gradient`` (FedSGD): ``w <- w - lr * mean(gradient)`` for the parameters, buffers kept.

Integer buffers (BatchNorm's step counter) are rounded back to their dtype.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from .capture import CaptureWriter, IndexEntry
from .client_app import ARRAYS, DEFENSE, METRICS
from .training import LocalHyper

REQUIRED_METRICS = ("num-examples", "partition-id")


def mean_train_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """Sample-weighted mean loss and total rejuvenated weights of a round's accepted replies."""
    metrics = [next(iter(record.metric_records.values())) for record in records]
    weights = np.array([float(m[weight_key]) for m in metrics])
    losses = np.array([float(m["loss"]) for m in metrics])
    return MetricRecord(
        {
            "loss": float((weights * losses).sum() / weights.sum()),
            "rejuvenated": int(sum(int(m["rejuvenated"]) for m in metrics)),
        }
    )


def decode_arrays(message: Message) -> dict[str, np.ndarray] | None:
    """The reply's arrays as numpy, or None when it has none (or they do not decode)."""
    if message.has_error() or ARRAYS not in message.content.array_records:
        return None
    try:
        return {name: array.numpy() for name, array in message.content.array_records[ARRAYS].items()}
    except (TypeError, ValueError):
        return None


def reply_problem(message: Message, expected: dict[str, tuple[int, ...]]) -> str | None:
    """Why a training reply cannot be aggregated, or None when it is sound."""
    if message.has_error():
        return f"client error (code {message.error.code}): {message.error.reason}"
    content = message.content
    if set(content.array_records) != {ARRAYS} or set(content.metric_records) != {METRICS}:
        return (
            f"expected one array record {ARRAYS!r} and one metric record {METRICS!r}, got arrays "
            f"{sorted(content.array_records)} and metrics {sorted(content.metric_records)}"
        )
    metrics = content.metric_records[METRICS]
    missing = [key for key in REQUIRED_METRICS if key not in metrics]
    if missing:
        return f"metrics lack {missing}"
    if not float(metrics["num-examples"]) > 0:
        return f"num-examples must be positive, got {metrics['num-examples']}"
    arrays = decode_arrays(message)
    if arrays is None:
        return "the arrays do not decode as numpy arrays"
    absent, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
    if absent or extra:
        return f"array names differ from the model's: missing {absent[:5]}, unexpected {extra[:5]}"
    wrong = [
        f"{name} {arrays[name].shape} != {shape}" for name, shape in expected.items() if arrays[name].shape != shape
    ]
    if wrong:
        return f"wrong shapes: {', '.join(wrong[:5])}"
    bad = [name for name, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        return f"NaN or Inf in {len(bad)} array(s), e.g. {bad[0]}"
    return None


def triage(replies: Iterable[Message], expected: dict[str, tuple[int, ...]]) -> list[tuple[Message, str | None]]:
    """Each training reply, in arrival order, with the reason it is rejected (None: it is aggregated).

    Besides ``reply_problem``, a sound reply is rejected when its partition already has an accepted reply
    this round, or when its metric names differ from those of the first accepted reply (Flower's
    aggregation needs the same names in every reply).
    """
    triaged: list[tuple[Message, str | None]] = []
    accepted: list[dict[str, Any]] = []
    for message in replies:
        reason = reply_problem(message, expected)
        if reason is None:
            metrics = dict(message.content.metric_records[METRICS])
            if any(other["partition-id"] == metrics["partition-id"] for other in accepted):
                reason = f"partition {metrics['partition-id']} already replied this round"
            elif accepted and set(metrics) != set(accepted[0]):
                reason = f"metric names {sorted(metrics)} differ from the other clients' {sorted(accepted[0])}"
            else:
                accepted.append(metrics)
        triaged.append((message, reason))
    return triaged


class CapturingFedAvg(FedAvg):
    """FedAvg over every client, with capture and rejection (see the module docstring).

    ``expected`` maps each reply array name to its shape: the ``state_dict`` for capture ``update``,
    the parameters for ``gradient``.
    """

    def __init__(
        self, capture: CaptureWriter, *, hyper: LocalHyper, expected: dict[str, tuple[int, ...]], clients: int
    ) -> None:
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=clients,
            min_evaluate_nodes=clients,
            min_available_nodes=clients,
            weighted_by_key="num-examples",
            arrayrecord_key=ARRAYS,
            train_metrics_aggr_fn=mean_train_metrics,
        )
        self.capture = capture
        self.hyper = hyper
        self.expected = expected
        self._global: dict[str, np.ndarray] = {}
        self._round: dict[str, Any] = {}
        self._started = time.monotonic()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config["local-steps"] = self.hyper.steps
        config["lr"] = self.hyper.lr
        config["batch-size"] = self.hyper.batch_size
        config["capture"] = self.hyper.capture
        self._round = {"round": server_round, "started": time.monotonic()}
        self._global = {name: array.numpy() for name, array in arrays.items()}
        self.capture.save_global(server_round, arrays.to_torch_state_dict())
        return super().configure_train(server_round, arrays, config, grid)

    def _record(self, server_round: int, message: Message, reason: str | None) -> IndexEntry:
        """Index (and, in captured rounds, store) one reply; ``reason`` says why it is rejected, if it is."""
        metrics = {} if message.has_error() else dict(message.content.metric_records.get(METRICS, {}))
        partition = metrics.get("partition-id")
        arrays = decode_arrays(message)

        def number(key: str, kind: type) -> Any:
            return kind(metrics[key]) if key in metrics else None

        entry = IndexEntry(
            round=server_round,
            partition_id=int(partition) if isinstance(partition, (int, float)) else None,
            node_id=int(message.metadata.src_node_id),
            status="ok" if reason is None else "rejected",
            reason=reason,
            file=None,
            capture=self.hyper.capture,
            steps=number("local-steps", int),
            lr=number("lr", float),
            batch_size=number("batch-size", int),
            num_examples=number("num-examples", int),
            loss=number("loss", float),
            rejuvenated=number("rejuvenated", int),
            config_hash=self.capture.cell.key,
            shapes={name: list(a.shape) for name, a in (arrays or {}).items()},
            defense={key[len(DEFENSE) :]: float(v) for key, v in metrics.items() if key.startswith(DEFENSE)},
        )
        tensors = None if arrays is None else {name: torch.from_numpy(a.copy()) for name, a in arrays.items()}
        return self.capture.save_reply(entry, tensors)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        accepted: list[Message] = []
        rejected: list[str] = []
        for message, reason in triage(replies, self.expected):
            entry = self._record(server_round, message, reason)
            if entry.ok:
                accepted.append(message)
            else:
                rejected.append(f"node {entry.node_id}: {entry.reason}")
        self._round.update(accepted=len(accepted), rejected=len(rejected), rejections=rejected)
        if not accepted:
            return None, None
        mean, metrics = super().aggregate_train(server_round, accepted)
        if metrics is not None:
            self._round["train_loss"] = float(metrics["loss"])
        return (None if mean is None else self._step(mean)), metrics

    def _step(self, mean: ArrayRecord) -> ArrayRecord:
        """The next global arrays from the current ones and the mean reply."""
        updated: dict[str, Array] = {}
        for name, current in self._global.items():
            if self.hyper.capture == "gradient":
                new = current - self.hyper.lr * mean[name].numpy() if name in mean else current
            else:
                new = current + mean[name].numpy()
            if current.dtype.kind in "iu":
                new = np.rint(new)
            updated[name] = Array(np.asarray(new, dtype=current.dtype))
        return ArrayRecord(updated)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        metrics = super().aggregate_evaluate(server_round, replies)
        started = self._round.pop("started", time.monotonic())
        self._round.update(
            accuracy=None if metrics is None else float(metrics["accuracy"]),
            loss=None if metrics is None else float(metrics["loss"]),
            seconds=time.monotonic() - started,
        )
        self.capture.add_round(dict(self._round))
        self.capture.write_summary(completed=False, seconds=time.monotonic() - self._started)
        return metrics


