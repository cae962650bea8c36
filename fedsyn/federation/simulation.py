"""Run one cell's federation in-process on Flower's simulation engine (Ray), with the deployment's apps.

Ray starts with one CPU per client up to the machine's cores and each virtual client asks for one
CPU, so clients train side by side without oversubscribing (each uses ``client-threads`` torch
threads). The dashboard stays off and Ray's worker logs stay out of the driver's output.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from fedsyn.errors import FedsynError
from fedsyn.evaluation.capture import Capture
from fedsyn.experiment.grid import Cell

from .settings import run_config

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")


class FederationError(FedsynError, RuntimeError):
    """The simulation ended without a complete capture (a crashed ServerApp or lost clients)."""


def backend_config(clients: int) -> dict[str, dict[str, object]]:
    """Flower's Ray backend settings for ``clients`` virtual clients on this machine."""
    cpus = max(1, min(clients, os.cpu_count() or 1))
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "num_gpus": 0, "include_dashboard": False, "log_to_driver": False},
    }


def federate(
    cell: Cell,
    out_dir: Path,
    *,
    initial_weights: Path | None = None,
) -> Path:
    """Federate ``cell`` (``federation.clients`` virtual clients, ``federation.rounds`` rounds) and return
    its capture directory, ``out_dir / cell.key``.

    ``initial_weights`` is a ``state_dict`` file to start from (a pretrained state).
    """
    from flwr.simulation import run_simulation

    from .client_app import make_client_app
    from .server_app import make_server_app

    out_dir = Path(out_dir).resolve()
    config = run_config(
        cell,
        out_dir,
        initial_weights=Path(initial_weights).resolve() if initial_weights else None,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="ray")
        run_simulation(
            server_app=make_server_app(config),
            client_app=make_client_app(config),
            num_supernodes=cell.federation.clients,
            backend_config=backend_config(cell.federation.clients),
        )
    capture_dir = out_dir / cell.key
    try:
        capture = Capture(capture_dir)
    except (FileNotFoundError, ValueError) as err:
        raise FederationError(f"the federation of cell {cell.key} left no capture: {err}") from err
    if not capture.completed:
        raise FederationError(
            f"the federation of cell {cell.key} stopped before its last round; see the log above and {capture_dir}"
        )
    if not any(entry.ok for entry in capture.entries):
        reasons = sorted({str(entry.reason) for entry in capture.entries if entry.status == "rejected"})
        raise FederationError(f"the server rejected every client reply of cell {cell.key}: {'; '.join(reasons)[:2000]}")
    return capture_dir

