"""The ServerApp that ``flwr run`` loads (``pyproject.toml``, ``[tool.flwr.app.components]``).

It runs the federation of ``fedsyn.federation.server_app`` and then, unless the run config says
``report = false``, does what ``fedsyn quickstart`` does after its federations: attacks the capture,
scores it, commits the rows to ``<out-dir>/results.db`` and writes ``<out-dir>/report.html``, whose
path it logs. So a bare ``flwr run .`` (no run config: the shipped quickstart experiment's first cell,
``fedsyn.federation.settings``) ends with a report. It lives in the sweep layer because the federation
layer may not import the report.

``<out-dir>/run.json`` records where the run's Python and torch came from: Flower's runtime dependency
installation (on unless the SuperLink runs with ``--disable-runtime-dependency-installation`` or
``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1``) installs the app's dependencies into a separate
environment and puts it first on ``sys.path``, so the app would run on whatever torch that resolved to.
The app refuses to run on such a torch (``foreign_torch``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from logging import INFO
from pathlib import Path

import torch
from flwr.app import Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from fedsyn.atomic import write_text_atomically
from fedsyn.errors import FedsynError
from fedsyn.federation.server_app import run_federation
from fedsyn.federation.settings import parse_run_config

from .deployed import attack_and_report

RUN_FILE = "run.json"


class ForeignTorchError(FedsynError, RuntimeError):
    """The app was about to run on a torch that Flower installed, not on the one fedsyn was installed with."""


def foreign_torch() -> str | None:
    """Why the imported torch is not the environment's own, or None.

    Flower's runtime dependency installation activates its environment by setting ``VIRTUAL_ENV`` to it
    and prepending its site-packages, while ``sys.prefix`` stays the interpreter's environment: a torch
    imported from inside ``VIRTUAL_ENV`` when that differs from ``sys.prefix`` came from there."""
    runtime = os.environ.get("VIRTUAL_ENV")
    if not runtime or Path(runtime).resolve() == Path(sys.prefix).resolve():
        return None
    if not Path(torch.__file__).resolve().is_relative_to(Path(runtime).resolve()):
        return None
    return (
        f"torch {torch.__version__} was imported from {torch.__file__}, an environment Flower installed at run "
        f"time, not from {sys.prefix}; start the SuperLink with --disable-runtime-dependency-installation or "
        "with FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 (README, 'flwr run .')"
    )


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = parse_run_config(context.run_config)
    problem = foreign_torch()
    if problem is not None:
        raise ForeignTorchError(problem)
    started = time.monotonic()
    capture_dir = run_federation(grid, context, settings)
    out_dir = settings.out_dir.resolve()
    record: dict[str, str | None] = {
        "python": sys.executable,
        "torch_version": torch.__version__,
        "torch_file": str(Path(torch.__file__).resolve()),
        "capture": str(capture_dir.resolve()),
        "report": None,
    }
    if settings.report:
        cell = settings.cell
        report = attack_and_report(
            cell, capture_dir, out_dir, experiment=cell.experiment, config_json=cell.model_dump_json(), started=started
        )
        record["report"] = str(report.resolve())
    write_text_atomically(out_dir / RUN_FILE, json.dumps(record, indent=2))
    log(INFO, "fedsyn: capture in %s; report written to %s", record["capture"], record["report"] or "(report = false)")
