"""The real deployment on loopback: ``flower-superlink``, two ``flower-supernode`` processes and the
one-shot runner (``flwr run``, then attack, results store and report), with the command lines of
``fedsyn.federation.deployment`` that docker-compose.yml uses too. Every process gets its own
FLWR_HOME and free ports; every process started here is ended by its PID (with its process group).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedsyn.evaluation.capture import Capture
from fedsyn.evaluation.evaluator import ROWS_FILE
from fedsyn.experiment.grid import expand
from fedsyn.experiment.schema import parse_config
from fedsyn.federation import deployment
from fedsyn.federation.settings import DEFAULTS
from fedsyn.sweep.deployed import ATTACK_DIR, FEDERATION_DIR

REPO = Path(__file__).resolve().parents[1]
CLIENTS = 2

EXPERIMENT = {
    "name": "test-deployment",
    "seed": 5,
    "dataset": {"name": "photos", "options": {"per_class": 20}},
    "models": ["lenet"],
    "biomod": {"combos": ["fl+wr+ws"]},
    "federation": {"clients": CLIENTS, "rounds": 1, "local_steps": 1, "batch_size": 2, "eval_samples": 32},
    "attack": {"clients": [1], "rounds": [1], "inversion": {"iterations": 2}},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Processes:
    """Processes started by this test, each in its own session so its children end with it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[subprocess.Popen] = []
        self.env = {
            **os.environ,
            **deployment.ENVIRONMENT,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def home(self, name: str) -> dict[str, str]:
        home = self.root / name
        home.mkdir()
        return {**self.env, "FLWR_HOME": str(home)}

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w")
        process = subprocess.Popen(
            command, cwd=self.root, env=self.home(name), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.root.glob("*.log")))


@pytest.mark.slow  # 70-85 s on the 2-core dev machine: every message starts a ClientApp process
def test_loopback_deployment_captures_and_attacks(tmp_path: Path) -> None:
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump(EXPERIMENT))
    cell = expand(parse_config(EXPERIMENT))[0]
    results = tmp_path / "results"
    processes = Processes(tmp_path)
    link_port = free_port()
    superlink = f"127.0.0.1:{link_port}"
    try:
        processes.start("superlink", deployment.superlink_command(host="127.0.0.1", port=link_port))
        for partition_id in range(CLIENTS):
            command = deployment.supernode_command(superlink, partition_id, CLIENTS, port=free_port())
            processes.start(f"supernode-{partition_id}", command)
        runner = subprocess.run(
            deployment.runner_command(config, superlink, results, python=sys.executable) + ["--timeout", "400"],
            cwd=REPO,
            env=processes.home("runner"),
            capture_output=True,
            text=True,
            timeout=480,
        )
        assert runner.returncode == 0, f"{runner.stdout[-3000:]}\n{runner.stderr[-3000:]}\n{processes.logs()}"
    finally:
        processes.stop()
    assert all(p.poll() is not None for p in processes.started)

    capture = Capture(results / FEDERATION_DIR / cell.key)
    assert capture.completed and capture.cell == cell
    assert sorted(e.partition_id for e in capture.entries) == list(range(CLIENTS))
    assert all(e.ok and (capture.directory / e.file).is_file() for e in capture.entries)
    assert 0.0 <= capture.summary["rounds"][0]["accuracy"] <= 1.0

    (row,) = [json.loads(line) for line in (results / ATTACK_DIR / ROWS_FILE).read_text().splitlines()]
    assert (row["partition_id"], row["status"]) == (1, "ok"), row["error"]
    assert (results / ATTACK_DIR / row["image_path"]).is_file()
    assert (results / "results.db").is_file() and (results / "report.html").is_file()


@pytest.mark.parametrize("partition_id", [0, 3])
def test_supernode_command_carries_its_partition(partition_id: int) -> None:
    command = deployment.supernode_command("superlink:9091", partition_id, 4, data_root="/data/cifar10")
    config = command[command.index("--node-config") + 1]
    assert config == f'partition-id={partition_id} num-partitions=4 data-root="/data/cifar10"'
    assert set(deployment.SUPERNODE_FLAGS) <= set(command)


def test_pyproject_declares_the_flower_app() -> None:
    """``flwr run .`` loads these components and accepts overrides only for keys of this table."""
    app = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    for reference in app["components"].values():
        module, attribute = reference.split(":")
        assert isinstance(getattr(importlib.import_module(module), attribute), (ClientApp, ServerApp))
    assert app["config"] == DEFAULTS
    assert "federations" not in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]
