"""The Flower ClientApp: local training (train messages) and held-out accuracy (evaluate messages).

``app`` is the component ``flwr run`` loads (``pyproject.toml``: ``[tool.flwr.app.components]``); it
reads the run config Flower gives it. ``make_client_app(run_config)`` builds the same app with a run
config bound in, for Flower's in-process simulation (see ``fedsyn.federation.settings``).

One app serves both server paths. A Message-API train message (``CapturingFedAvg``) gets a Message-API
reply with the named arrays; in a SecAgg+ cell the train handler sits behind
``fedsyn.defenses.secagg.secagg_route``, which passes the protocol's key-exchange stages to Flower's
``secaggplus_mod``, and the stage that needs the update reaches the handler as a legacy fit instruction
(``fedsyn.federation.legacy``), answered with a legacy fit result that the mod masks. Both run the same
``client_round``.

Each client sets torch to ``client-threads`` threads (default 1): the simulation runs one client per
CPU core side by side, and more threads per client would oversubscribe the cores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedsyn.defenses.secagg import secagg_route
from fedsyn.models import ImprintSpec
from fedsyn.seeding import derive_seed

from fedsyn.task.data import client_partitions, dataset_spec, eval_shard, load_split
from fedsyn.task.model import client_model, plain_model
from fedsyn.task.training import LocalHyper, LocalResult, accuracy_and_loss, client_round

from . import legacy
from .protocol import (
    ARRAYS,
    CONFIG,
    METRICS,
    evaluate_metrics,
    expected_arrays,
    hyper_from_config,
    modification_from_config,
    reply_metrics,
    server_round,
)
from .settings import NodeSettings, RunSettings, parse_node_config, parse_run_config


def _settings(context: Context, bound: Mapping[str, Any]) -> tuple[RunSettings, NodeSettings]:
    settings = parse_run_config({**context.run_config, **bound})
    node = parse_node_config(context.node_config, settings.cell.federation.clients)
    torch.set_num_threads(settings.client_threads)
    return settings, node


def _faulty(arrays: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fault-injection reply (``federation.faulty_clients``): every floating-point array filled with NaN."""
    return {name: torch.full_like(t, math.nan) if t.is_floating_point() else t for name, t in arrays.items()}


def _local_round(
    settings: RunSettings,
    node: NodeSettings,
    global_state: dict[str, torch.Tensor],
    round: int,
    hyper: LocalHyper,
    imprint: ImprintSpec | None,
) -> LocalResult:
    """This node's ``client_round`` (NaN-filled for a faulty client); ``imprint``: the server sent its
    modified model (the instruction's ``model-modification``)."""
    cell = settings.cell
    train = load_split(dataset_spec(cell, node.data_root), "train")
    result = client_round(
        cell,
        global_state,
        train=train,
        partition_indices=client_partitions(cell, train)[node.partition_id],
        partition_id=node.partition_id,
        round=round,
        hyper=hyper,
        imprint=imprint,
    )
    if node.partition_id in cell.federation.faulty_clients:
        result.arrays = _faulty(result.arrays)
    return result


def train_reply(message: Message, settings: RunSettings, node: NodeSettings) -> Message:
    """The reply to a Message-API train message: named arrays, weighted by the partition size."""
    config = message.content[CONFIG]
    hyper = hyper_from_config(config)
    global_state = message.content[ARRAYS].to_torch_state_dict()
    result = _local_round(settings, node, global_state, server_round(config), hyper, modification_from_config(config))
    metrics = MetricRecord(reply_metrics(result, hyper, node.partition_id, result.num_examples))
    return Message(RecordDict({ARRAYS: ArrayRecord(result.arrays), METRICS: metrics}), reply_to=message)


def secure_train_reply(message: Message, settings: RunSettings, node: NodeSettings) -> Message:
    """The reply to a legacy fit instruction, the SecAgg+ stage that collects the masked update.

    The global arrays arrive as an unnamed list in ``state_dict`` order and the reply goes back as one in
    the protocol's order (``expected_arrays`` of the cell's model). ``num_examples`` is the number of
    images the client visited this round (``local_steps * batch_size``), the same for every client, so
    the aggregate is the plain mean of the updates (what ``attacks.LocalUpdate(clients=K)`` models) and
    equals the ``max_weight`` the server gives SecAgg+: Flower scales each update by ``num_examples /
    max_weight`` before quantising, which must not exceed 1 and loses precision the smaller it gets.
    NumPy's global RNG, which Flower's stochastic quantisation draws from right after this handler
    returns, is seeded from ``derive_seed(seed, "secagg", partition_id, round)``, so the same config
    gives the same aggregate.
    """
    cell = settings.cell
    parameters, config = legacy.fit_instruction(message)
    round = server_round(config)
    hyper = hyper_from_config(config)
    train = load_split(dataset_spec(cell, node.data_root), "train")
    imprint = modification_from_config(config)
    model = plain_model(cell, train.num_classes, train.in_shape, imprint=imprint)
    global_arrays = legacy.named_arrays(parameters, expected_arrays(model, "update"))
    global_state = {name: torch.from_numpy(array) for name, array in global_arrays.items()}
    result = _local_round(settings, node, global_state, round, hyper, imprint)
    reply = legacy.unnamed(
        {name: tensor.numpy() for name, tensor in result.arrays.items()}, list(expected_arrays(model, hyper.capture))
    )
    metrics = reply_metrics(result, hyper, node.partition_id, hyper.images)
    np.random.seed(derive_seed(cell.seed, "secagg", node.partition_id, round) % 2**32)
    return legacy.fit_reply(message, reply, hyper.images, metrics)


def evaluate_reply(message: Message, settings: RunSettings, node: NodeSettings) -> Message:
    cell = settings.cell
    round = server_round(message.content[CONFIG])
    test = load_split(dataset_spec(cell, node.data_root), "test")
    model = client_model(cell, node.partition_id, round, test.num_classes, test.in_shape)
    model.load_state_dict(message.content[ARRAYS].to_torch_state_dict(), strict=True)
    indices = eval_shard(cell, test, node.partition_id)
    accuracy, loss = accuracy_and_loss(model, test, indices)
    metrics = MetricRecord(evaluate_metrics(accuracy, loss, len(indices)))
    return Message(RecordDict({METRICS: metrics}), reply_to=message)


def make_client_app(run_config: Mapping[str, Any] | None = None) -> ClientApp:
    """The fedsyn ClientApp; ``run_config`` entries take precedence over Flower's run config."""
    bound = dict(run_config or {})
    client = ClientApp()

    @client.train(mods=[secagg_route])
    def train(message: Message, context: Context) -> Message:
        reply = secure_train_reply if legacy.is_fit_instruction(message) else train_reply
        return reply(message, *_settings(context, bound))

    @client.evaluate()
    def evaluate_global(message: Message, context: Context) -> Message:
        return evaluate_reply(message, *_settings(context, bound))

    return client


app = make_client_app()
