"""The Flower ServerApp: start from the cell's initial (or pretrained) weights, run the cell's rounds over
every client and leave a complete capture directory behind.

A cell without SecAgg+ runs ``CapturingFedAvg`` (every reply captured); one whose defense set has
``secagg`` runs Flower's SecAgg+ workflow (``fedsyn.federation.secure_server``: only the clients' mean
is captured). ``make_server_app(run_config)`` binds a run config for the in-process simulation (see
``fedsyn.federation.settings``); the ServerApp ``flwr run`` loads is ``fedsyn.sweep.flower_app.app``,
which runs ``run_federation`` and then attacks and reports.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from torch import nn

from fedsyn.defenses import SecAgg

from fedsyn.evaluation.capture import CaptureWriter
from fedsyn.experiment.grid import Cell
from fedsyn.task.batchnorm import public_running_stats
from fedsyn.task.data import client_partitions, dataset_spec, load_split
from fedsyn.task.model import plain_model
from fedsyn.task.training import LocalHyper

from .active import ActiveServer
from .protocol import ReplyLimits, expected_arrays
from .secure_server import run_secure_federation
from .server_round import RoundBook
from .settings import RunSettings, parse_run_config
from .strategy import CapturingFedAvg


def reply_limits(cell: Cell) -> ReplyLimits:
    """What the server accepts in the cell's train replies: each partition's size (the same seeded
    partitioning the clients use) and the cell's norm bound."""
    partitions = client_partitions(cell, load_split(dataset_spec(cell), "train"))
    return ReplyLimits(tuple(len(p) for p in partitions), cell.federation.max_update_norm)


def initial_model(settings: RunSettings) -> nn.Module:
    """The cell's architecture with the weights round 1 starts from.

    The server reads the training split only for its class count and image shape (the architecture),
    and for the partition sizes that bound the replies' ``num-examples`` (``reply_limits``);
    with ``federation.bn_stats: public`` the test split's public images that calibrate the BatchNorm
    running statistics it sends (``fedsyn.task.batchnorm``).
    """
    cell = settings.cell
    train = load_split(dataset_spec(cell), "train")
    model = plain_model(cell, train.num_classes, train.in_shape)
    if settings.initial_weights is not None:
        path = Path(settings.initial_weights)
        if not path.is_file():
            raise FileNotFoundError(f"initial weights not found: {path}")
        model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    if cell.federation.bn_stats == "public":
        test = load_split(dataset_spec(cell), "test")
        model.load_state_dict(public_running_stats(cell, model.state_dict(), test), strict=False)
    return model


def run_federation(grid: Grid, context: Context, settings: RunSettings) -> Path:
    """Run the cell's federation on ``grid``; returns the capture directory."""
    started = time.monotonic()
    cell = settings.cell
    writer = CaptureWriter.create(settings.capture_dir, cell)
    model = initial_model(settings)
    hyper = LocalHyper.from_cell(cell)
    book = RoundBook(writer)
    expected = expected_arrays(model, hyper.capture)
    secagg = cell.defense.find(SecAgg)
    if secagg is None:
        strategy = CapturingFedAvg(
            book,
            hyper=hyper,
            expected=expected,
            limits=reply_limits(cell),
            active=ActiveServer(cell, hyper.capture),
        )
        strategy.start(
            grid,
            ArrayRecord(model.state_dict()),
            num_rounds=cell.federation.rounds,
            timeout=settings.round_timeout,
        )
    else:
        initial = {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}
        run_secure_federation(grid, context, settings, book, initial=initial, expected=expected, secagg=secagg)
    writer.write_summary(completed=True, seconds=time.monotonic() - started)
    return settings.capture_dir


def make_server_app(run_config: Mapping[str, Any] | None = None) -> ServerApp:
    """The fedsyn ServerApp; ``run_config`` entries take precedence over Flower's run config."""
    bound = dict(run_config or {})
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        run_federation(grid, context, parse_run_config({**context.run_config, **bound}))

    return server

