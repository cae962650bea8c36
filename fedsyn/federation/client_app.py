"""The Flower ClientApp: local training (train messages) and held-out accuracy (evaluate messages).

``app`` is the component ``flwr run`` loads (``pyproject.toml``: ``[tool.flwr.app.components]``); it
reads the run config Flower gives it. ``make_client_app(run_config)`` builds the same app with a run
config bound in, for Flower's in-process simulation (see ``fedsyn.federation.settings``).

Each client sets torch to ``client-threads`` threads (default 1): the simulation runs one client per
CPU core side by side, and more threads per client would oversubscribe the cores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from .cell_model import client_model
from .client_data import client_partitions, dataset_spec, eval_shard, load_split
from .settings import NodeSettings, RunSettings, parse_node_config, parse_run_config
from .training import LocalHyper, client_round, evaluate

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
DEFENSE = "defense."
"""Prefix of the reply metrics that the client's defenses report."""


def _settings(context: Context, bound: Mapping[str, Any]) -> tuple[RunSettings, NodeSettings]:
    settings = parse_run_config({**context.run_config, **bound})
    node = parse_node_config(context.node_config, settings.cell.federation.clients)
    torch.set_num_threads(settings.client_threads)
    return settings, node


def hyper_from_config(config: Mapping[str, Any]) -> LocalHyper:
    """The local hyperparameters of a train message's ConfigRecord (see ``CapturingFedAvg``)."""
    return LocalHyper(
        steps=int(config["local-steps"]),
        lr=float(config["lr"]),
        batch_size=int(config["batch-size"]),
        capture=str(config["capture"]),
    )


def _faulty(arrays: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fault-injection reply (``federation.faulty_clients``): every floating-point array filled with NaN."""
    return {name: torch.full_like(t, math.nan) if t.is_floating_point() else t for name, t in arrays.items()}


def train_reply(message: Message, settings: RunSettings, node: NodeSettings) -> Message:
    cell = settings.cell
    config = message.content[CONFIG]
    round = int(config["server-round"])
    hyper = hyper_from_config(config)
    train = load_split(dataset_spec(cell, node.data_root), "train")
    result = client_round(
        cell,
        message.content[ARRAYS].to_torch_state_dict(),
        train=train,
        partition_indices=client_partitions(cell, train)[node.partition_id],
        partition_id=node.partition_id,
        round=round,
        hyper=hyper,
    )
    arrays = _faulty(result.arrays) if node.partition_id in cell.federation.faulty_clients else result.arrays
    metrics = MetricRecord(
        {
            "num-examples": result.num_examples,
            "partition-id": node.partition_id,
            "loss": result.loss,
            "rejuvenated": result.rejuvenated,
            "local-steps": hyper.steps,
            "lr": hyper.lr,
            "batch-size": hyper.batch_size,
            **{f"{DEFENSE}{name}": float(value) for name, value in result.defense_metrics.items()},
        }
    )
    return Message(RecordDict({ARRAYS: ArrayRecord(arrays), METRICS: metrics}), reply_to=message)


def evaluate_reply(message: Message, settings: RunSettings, node: NodeSettings) -> Message:
    cell = settings.cell
    round = int(message.content[CONFIG]["server-round"])
    test = load_split(dataset_spec(cell, node.data_root), "test")
    model = client_model(cell, node.partition_id, round, test.num_classes, test.in_shape)
    model.load_state_dict(message.content[ARRAYS].to_torch_state_dict(), strict=True)
    indices = eval_shard(cell, test, node.partition_id)
    accuracy, loss = evaluate(model, test, indices)
    metrics = MetricRecord({"accuracy": accuracy, "loss": loss, "num-examples": len(indices)})
    return Message(RecordDict({METRICS: metrics}), reply_to=message)


def make_client_app(run_config: Mapping[str, Any] | None = None) -> ClientApp:
    """The fedsyn ClientApp; ``run_config`` entries take precedence over Flower's run config."""
    bound = dict(run_config or {})
    client = ClientApp()

    @client.train()
    def train(message: Message, context: Context) -> Message:
        return train_reply(message, *_settings(context, bound))

    @client.evaluate()
    def evaluate_global(message: Message, context: Context) -> Message:
        return evaluate_reply(message, *_settings(context, bound))

    return client


app = make_client_app()
