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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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

REQUIRED_METRICS: tuple[str, ...] = (NUM_EXAMPLES, PARTITION_ID)
"""What a plain train reply must report to be aggregated and attributed."""

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


def defense_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The defenses' reports among a reply's metrics, without the ``defense.`` prefix."""
    return {key[len(DEFENSE) :]: float(value) for key, value in metrics.items() if key.startswith(DEFENSE)}


def evaluate_metrics(accuracy: float, loss: float, num_examples: int) -> dict[str, float | int]:
    """What a client reports after evaluating the global model on its held-out share."""
    return {ACCURACY: accuracy, LOSS: loss, NUM_EXAMPLES: num_examples}


def expected_arrays(model: nn.Module, capture: str) -> dict[str, tuple[int, ...]]:
    """Reply array names and shapes the protocol expects in capture mode ``capture``, in reply order:
    every ``state_dict`` entry for ``update``, the parameters for ``gradient``."""
    named = model.named_parameters() if capture == "gradient" else model.state_dict().items()
    return {name: tuple(tensor.shape) for name, tensor in named}
