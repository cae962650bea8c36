"""The Flower ServerApp: start from the cell's initial (or pretrained) weights, run ``CapturingFedAvg``
for the cell's rounds over every client, and leave a complete capture directory behind.

``app`` is the component ``flwr run`` loads; ``make_server_app(run_config)`` binds a run config for the
in-process simulation (see ``fedsyn.federation.settings``).
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

from .capture import CaptureWriter
from .cell_model import plain_model
from .client_data import dataset_spec, load_split
from .settings import RunSettings, parse_run_config
from .strategy import CapturingFedAvg
from .training import LocalHyper


def initial_model(settings: RunSettings) -> nn.Module:
    """The cell's architecture with the weights round 1 starts from.

    The server reads the training split only for its class count and image shape (the architecture).
    """
    cell = settings.cell
    train = load_split(dataset_spec(cell), "train")
    model = plain_model(cell, train.num_classes, train.in_shape)
    if settings.initial_weights is not None:
        path = Path(settings.initial_weights)
        if not path.is_file():
            raise FileNotFoundError(f"initial weights not found: {path}")
        model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    return model


def expected_arrays(model: nn.Module, capture: str) -> dict[str, tuple[int, ...]]:
    """Reply array names and shapes the protocol expects in capture mode ``capture``."""
    named = model.named_parameters() if capture == "gradient" else model.state_dict().items()
    return {name: tuple(tensor.shape) for name, tensor in named}


def run_federation(grid: Grid, settings: RunSettings) -> Path:
    """Run the cell's federation on ``grid``; returns the capture directory."""
    started = time.monotonic()
    cell = settings.cell
    writer = CaptureWriter.create(settings.capture_dir, cell)
    model = initial_model(settings)
    hyper = LocalHyper.from_cell(cell)
    strategy = CapturingFedAvg(
        writer, hyper=hyper, expected=expected_arrays(model, hyper.capture), clients=cell.federation.clients
    )
    strategy.start(
        grid,
        ArrayRecord(model.state_dict()),
        num_rounds=cell.federation.rounds,
        timeout=settings.round_timeout,
    )
    writer.write_summary(completed=True, seconds=time.monotonic() - started)
    return settings.capture_dir


def make_server_app(run_config: Mapping[str, Any] | None = None) -> ServerApp:
    """The fedsyn ServerApp; ``run_config`` entries take precedence over Flower's run config."""
    bound = dict(run_config or {})
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        run_federation(grid, parse_run_config({**context.run_config, **bound}))

    return server


app = make_server_app()
