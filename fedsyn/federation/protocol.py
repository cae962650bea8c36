"""The protocol between fedsyn's server and clients: what a message holds and under which names.

Both sides import this module, so a key is spelled once (docs/methods.md, "The federated protocol").

Message-API records:

- train instruction: ``ARRAYS`` (the global ``state_dict``) and ``CONFIG``: Flower's ``server-round``
  plus the local hyperparameters of ``train_config`` (``local-steps``, ``lr``, ``batch-size``,
  ``capture``), read back with ``hyper_from_config``; in an active server's modified round also
  ``model-modification`` (``modification_config``: the ``ImprintSpec`` as JSON, the arrays then being
  the wrapped model's ``state_dict``), read back with ``modification_from_config``;
- train reply: ``ARRAYS`` (the reply arrays, named and shaped as ``expected_arrays`` says) and
  ``METRICS`` (``reply_metrics``: ``num-examples``, ``partition-id``, ``loss``, ``rejuvenated``, the
  local hyperparameters again, and ``defense.<name>`` for what the client's defenses report);
- evaluate reply: ``METRICS`` with ``accuracy``, ``loss`` and ``num-examples`` (``evaluate_metrics``).

The SecAgg+ path sends the same config and metrics in Flower's legacy fit messages
(``fedsyn.federation.legacy``). Aggregation is weighted by ``WEIGHT`` (``num-examples``).

What the server accepts in a train reply is checked here too, since a client may be hostile:
``metrics_problem`` (types, finiteness, ranges against ``ReplyLimits``), ``reply_arrays_problem``
(names, shapes, dtypes, finiteness, magnitude, the optional norm bound) and ``PartitionOwners`` (a
partition id is bound to the node that first reported it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from fedsyn.models import ImprintSpec
from fedsyn.task.training import LocalHyper, LocalResult

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"

SERVER_ROUND = "server-round"
LOCAL_STEPS = "local-steps"
LR = "lr"
BATCH_SIZE = "batch-size"
CAPTURE = "capture"

MODIFICATION = "model-modification"

NUM_EXAMPLES = "num-examples"
PARTITION_ID = "partition-id"
LOSS = "loss"
REJUVENATED = "rejuvenated"
ACCURACY = "accuracy"
DEFENSE = "defense."
"""Prefix of the reply metrics that the client's defenses report."""

WEIGHT = NUM_EXAMPLES
"""The metric FedAvg weights replies by (McMahan et al. 2017: the client's number of examples)."""

INTEGER_METRICS: tuple[str, ...] = (NUM_EXAMPLES, PARTITION_ID, REJUVENATED, LOCAL_STEPS, BATCH_SIZE)
REAL_METRICS: tuple[str, ...] = (LOSS, LR)
REQUIRED_METRICS: tuple[str, ...] = INTEGER_METRICS + REAL_METRICS
"""What a plain train reply must report (``reply_metrics``) to be aggregated, attributed and summarised."""

SECURE_METRICS: tuple[str, ...] = (PARTITION_ID, NUM_EXAMPLES, LOSS, REJUVENATED)
"""What every client's fit metrics must hold for a SecAgg+ aggregate to be attributed and summarised."""


def train_config(hyper: LocalHyper) -> dict[str, int | float | str]:
    """The local hyperparameters a train instruction carries."""
    return {LOCAL_STEPS: hyper.steps, LR: hyper.lr, BATCH_SIZE: hyper.batch_size, CAPTURE: hyper.capture}


def hyper_from_config(config: Mapping[str, Any]) -> LocalHyper:
    """The local hyperparameters of a train instruction's config (the inverse of ``train_config``)."""
    return LocalHyper(
        steps=int(config[LOCAL_STEPS]),
        lr=float(config[LR]),
        batch_size=int(config[BATCH_SIZE]),
        capture=str(config[CAPTURE]),
    )


def modification_config(spec: ImprintSpec | None) -> dict[str, str]:
    """The config entry that tells clients to rebuild the server's modified model (empty: the plain one)."""
    return {} if spec is None else {MODIFICATION: spec.model_dump_json()}


def modification_from_config(config: Mapping[str, Any]) -> ImprintSpec | None:
    """The ``ImprintSpec`` of a modified round's train instruction, or None for the plain model."""
    text = config.get(MODIFICATION)
    return None if not text else ImprintSpec.model_validate_json(str(text))


def server_round(config: Mapping[str, Any]) -> int:
    """The round a message's config belongs to."""
    return int(config[SERVER_ROUND])


def reply_metrics(
    result: LocalResult, hyper: LocalHyper, partition_id: int, num_examples: int
) -> dict[str, float | int]:
    """What a client reports with its arrays (the server's capture index records it)."""
    return {
        NUM_EXAMPLES: num_examples,
        PARTITION_ID: partition_id,
        LOSS: result.loss,
        REJUVENATED: result.rejuvenated,
        LOCAL_STEPS: hyper.steps,
        LR: hyper.lr,
        BATCH_SIZE: hyper.batch_size,
        **{f"{DEFENSE}{name}": float(value) for name, value in result.defense_metrics.items()},
    }


def evaluate_metrics(accuracy: float, loss: float, num_examples: int) -> dict[str, float | int]:
    """What a client reports after evaluating the global model on its held-out share."""
    return {ACCURACY: accuracy, LOSS: loss, NUM_EXAMPLES: num_examples}


def expected_arrays(model: nn.Module, capture: str) -> dict[str, tuple[int, ...]]:
    """Reply array names and shapes the protocol expects in capture mode ``capture``, in reply order:
    every ``state_dict`` entry for ``update``, the parameters for ``gradient``."""
    named = model.named_parameters() if capture == "gradient" else model.state_dict().items()
    return {name: tuple(tensor.shape) for name, tensor in named}


@dataclass(frozen=True)
class ReplyLimits:
    """What the server accepts in a train reply besides the protocol's names and shapes.

    ``partition_sizes[p]`` is partition ``p``'s number of training samples (so ``len`` is the client
    count): ``partition-id`` must index it and ``num-examples`` lie in 1..that size, since FedAvg weights a
    reply by it and a client cannot have trained on more samples than it owns. ``max_update_norm`` is the
    cell's ``federation.max_update_norm`` (None: no bound).
    """

    partition_sizes: tuple[int, ...]
    max_update_norm: float | None = None

    @property
    def clients(self) -> int:
        return len(self.partition_sizes)


def is_number(value: object) -> bool:
    """Whether a reply's metric value is a number: an int or a float, never a bool."""
    return not isinstance(value, bool) and isinstance(value, (int, float))


def finite_number(value: object) -> bool:
    """Whether ``value`` is a number (``is_number``) and finite."""
    return is_number(value) and math.isfinite(value)


def metrics_problem(metrics: Mapping[str, Any], limits: ReplyLimits) -> str | None:
    """Why a train reply's metrics cannot be trusted, or None: every ``REQUIRED_METRICS`` key and no
    unknown one (``defense.*`` aside), every value a finite number, the integer ones integral,
    ``partition-id`` in 0..clients-1 and ``num-examples`` in 1..that partition's size."""
    missing = [key for key in REQUIRED_METRICS if key not in metrics]
    if missing:
        return f"metrics lack {missing}"
    unknown = sorted(key for key in metrics if key not in REQUIRED_METRICS and not key.startswith(DEFENSE))
    if unknown:
        return f"unknown metric(s) {unknown[:5]}"
    for key, value in metrics.items():
        if not is_number(value):
            return f"metric {key} must be a number, got {type(value).__name__} {str(value)[:40]}"
        if not math.isfinite(value):
            return f"metric {key} is not finite: {value}"
        if key in INTEGER_METRICS and value != int(value):
            return f"metric {key} must be an integer, got {value}"
    partition = int(metrics[PARTITION_ID])
    if not 0 <= partition < limits.clients:
        return f"{PARTITION_ID} {partition} is not in 0..{limits.clients - 1}"
    examples, size = int(metrics[NUM_EXAMPLES]), limits.partition_sizes[partition]
    if not 1 <= examples <= size:
        return f"{NUM_EXAMPLES} {examples} is not in 1..{size} (the size of partition {partition})"
    return None


def arrays_problem(arrays: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]]) -> str | None:
    """Why arrays cannot be aggregated (other names or shapes than the protocol's, NaN/Inf in a
    floating-point or complex array), or None."""
    absent, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
    if absent or extra:
        return f"array names differ from the model's: missing {absent[:5]}, unexpected {extra[:5]}"
    wrong = [
        f"{name} {arrays[name].shape} != {shape}" for name, shape in expected.items() if arrays[name].shape != shape
    ]
    if wrong:
        return f"wrong shapes: {', '.join(wrong[:5])}"
    bad = [name for name, a in arrays.items() if a.dtype.kind in "fc" and not np.isfinite(a).all()]
    if bad:
        return f"NaN or Inf in {len(bad)} array(s), e.g. {bad[0]}"
    return None


def reply_arrays_problem(
    arrays: Mapping[str, np.ndarray],
    expected: Mapping[str, tuple[int, ...]],
    dtypes: Mapping[str, np.dtype],
    limits: ReplyLimits,
) -> str | None:
    """Why a client's reply arrays cannot be aggregated, or None.

    Besides ``arrays_problem``: each array has the dtype of the global array of its name (``dtypes``);
    no value is so large that the clients' mean could overflow its dtype (|x| <= max / clients, since
    FedAvg sums ``clients`` weighted replies); and the L2 norm of all floating-point arrays together,
    taken in float64, stays within ``limits.max_update_norm`` when the cell sets one.
    """
    wrong = [f"{name} {a.dtype} != {dtypes[name]}" for name, a in arrays.items() if a.dtype != dtypes.get(name)]
    if wrong:
        return f"wrong dtypes: {', '.join(wrong[:5])}"
    problem = arrays_problem(arrays, expected)
    if problem is not None:
        return problem
    floating = {name: a for name, a in arrays.items() if a.dtype.kind in "fc"}
    huge = [
        name for name, a in floating.items() if a.size and np.abs(a).max() > np.finfo(a.dtype).max / limits.clients
    ]
    if huge:
        return f"values beyond the {limits.clients} clients' mean's range in {len(huge)} array(s), e.g. {huge[0]}"
    if limits.max_update_norm is not None:
        norm = math.sqrt(sum(float(np.sum(np.abs(a).astype(np.float64) ** 2)) for a in floating.values()))
        if norm > limits.max_update_norm:
            return f"update norm {norm:.4g} exceeds federation.max_update_norm {limits.max_update_norm}"
    return None


class PartitionOwners:
    """Which node each partition belongs to: the node whose reply first claimed it and was accepted.

    A partition's id is self-reported, so the server binds it to the Flower node id (the message
    metadata's ``src_node_id``, set by the SuperLink, not by the client): afterwards only that node may
    report that partition, and that node no other one. A capture's ``update_r{R}_p{P}.pt`` then always
    comes from the same node.
    """

    def __init__(self) -> None:
        self._node_of: dict[int, int] = {}
        self._partition_of: dict[int, int] = {}

    def problem(self, partition: int, node: int) -> str | None:
        """Why ``node`` may not report ``partition``, or None."""
        owner = self._node_of.get(partition)
        if owner is not None and owner != node:
            return f"{PARTITION_ID} {partition} belongs to node {owner}"
        claimed = self._partition_of.get(node)
        if claimed is not None and claimed != partition:
            return f"node {node} reports {PARTITION_ID} {partition} but is bound to partition {claimed}"
        return None

    def claim(self, partition: int, node: int) -> None:
        self._node_of[partition] = node
        self._partition_of[node] = partition
