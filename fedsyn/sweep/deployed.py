"""The one-shot runner of a real deployment: ``flwr run`` one cell on a running SuperLink, then attack
its capture and write the results store and report.

    python -m fedsyn.sweep.deployed CONFIG --superlink HOST:PORT --results DIR
        (--root-certificates CA | --insecure) [--cell N] [--app DIR]

The compose file's ``runner`` service and ``tests/test_deployment.py`` both use it. The ServerApp runs
inside the SuperLink's process tree and writes the capture to ``DIR/federation/<cell key>``, so DIR must
be the same path for the SuperLink and this runner (one shared volume in compose, one folder on a
single machine). Afterwards: ``DIR/attack/<cell key>/`` (PNG grids, rows.jsonl), ``DIR/results.db``
(the sweep's results store) and ``DIR/report.html``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedsyn.evaluation.capture import SUMMARY_FILE
from fedsyn.evaluation.evaluator import attack_capture
from fedsyn.experiment.grid import Cell, expand
from fedsyn.experiment.schema import load_config
from fedsyn.federation import deployment
from fedsyn.federation.deployment import DeploymentError, wait_for_port
from fedsyn.federation.settings import run_config
from fedsyn.report import build_report
from fedsyn.results.store import open_store

CONNECTION = "fedsyn"
FEDERATION_DIR = "federation"
ATTACK_DIR = "attack"


def flwr_run(
    cell: Cell,
    *,
    app: Path,
    superlink: str,
    results: Path,
    timeout: float,
    root_certificates: Path | None = None,
    insecure: bool = False,
) -> Path:
    """Submit ``cell`` to the SuperLink with ``flwr run`` (over TLS trusting ``root_certificates``, or
    explicitly ``insecure``) and wait for its capture; returns the capture dir."""
    capture_dir = results / FEDERATION_DIR / cell.key
    ca = None if root_certificates is None else root_certificates.resolve()
    connection = deployment.flower_config(CONNECTION, superlink, root_certificates=ca, insecure=insecure)
    with tempfile.TemporaryDirectory(prefix="fedsyn-flwr-") as home:
        Path(home, deployment.CONFIG_FILE).write_text(connection)
        overrides = Path(home, "run_config.toml")
        overrides.write_text(deployment.run_config_toml(run_config(cell, results / FEDERATION_DIR)))
        env = {**os.environ, **deployment.ENVIRONMENT, "FLWR_HOME": home}
        command = deployment.flwr_run_command(app, CONNECTION, overrides)
        done = subprocess.run(command, env=env, timeout=timeout, check=False)
    if done.returncode != 0:
        raise DeploymentError(f"{' '.join(command)} exited with {done.returncode}")
    summary = capture_dir / SUMMARY_FILE
    deadline = time.monotonic() + timeout
    while not (summary.is_file() and json.loads(summary.read_text()).get("completed")):
        if time.monotonic() > deadline:
            raise DeploymentError(f"the run ended but {capture_dir} holds no complete capture")
        time.sleep(1)
    return capture_dir


def run_deployment(
    config: Path,
    *,
    superlink: str,
    results: Path,
    root_certificates: Path | None = None,
    insecure: bool = False,
    cell_index: int = 0,
    app: Path = Path("."),
    timeout: float = 3600,
) -> Path:
    """Federate one cell of ``config`` on the SuperLink, attack it, store and report; returns report.html."""
    experiment = load_config(config)
    cells = expand(experiment)
    if not 0 <= cell_index < len(cells):
        raise DeploymentError(f"--cell {cell_index} is not in 0..{len(cells) - 1} for {config}")
    cell = cells[cell_index]
    results = results.resolve()
    started = time.monotonic()
    wait_for_port(superlink, timeout=120)
    capture_dir = flwr_run(
        cell,
        app=app.resolve(),
        superlink=superlink,
        results=results,
        timeout=timeout,
        root_certificates=root_certificates,
        insecure=insecure,
    )
    return attack_and_report(
        cell,
        capture_dir,
        results,
        experiment=experiment.name,
        config_json=experiment.model_dump_json(),
        started=started,
    )


def attack_and_report(
    cell: Cell, capture_dir: Path, results: Path, *, experiment: str, config_json: str, started: float
) -> Path:
    """Attack the cell's capture into ``results/attack``, commit its rows (with ``image_path`` relative to
    ``results``) to ``results/results.db`` as the experiment's one cell, write the report; returns
    report.html. ``started`` is the ``time.monotonic()`` the cell's run began at."""
    attack_dir = results / ATTACK_DIR
    rows = attack_capture(capture_dir, attack=cell.attack, out=attack_dir)
    for row in rows:
        if row.get("image_path"):
            row["image_path"] = (attack_dir / row["image_path"]).relative_to(results).as_posix()
    rounds = json.loads((capture_dir / SUMMARY_FILE).read_text())["rounds"]
    with open_store(results) as store:
        store.set_experiment(experiment, [cell.key], config_json)
        store.commit_cell(cell, rows, rounds=rounds, seconds=time.monotonic() - started)
    return build_report(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedsyn.sweep.deployed", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="experiment YAML")
    parser.add_argument("--superlink", required=True, help="the SuperLink's address, host:port")
    parser.add_argument("--results", type=Path, required=True, help="results folder shared with the SuperLink")
    security = parser.add_mutually_exclusive_group(required=True)
    security.add_argument(
        "--root-certificates", type=Path, help="CA certificate of the SuperLink's TLS certificate (fedsyn certs)"
    )
    security.add_argument("--insecure", action="store_true", help="talk to a SuperLink started with --insecure")
    parser.add_argument("--cell", type=int, default=0, help="index of the cell to run (fedsyn sweep --dry-run)")
    parser.add_argument("--app", type=Path, default=Path("."), help="the Flower App folder (holds pyproject.toml)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run")
    args = parser.parse_args(argv)
    report = run_deployment(
        args.config,
        superlink=args.superlink,
        results=args.results,
        root_certificates=args.root_certificates,
        insecure=args.insecure,
        cell_index=args.cell,
        app=args.app,
        timeout=args.timeout,
    )
    print(f"report written to {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
