"""The real deployment on loopback, encrypted and authenticated: ``flower-superlink`` with TLS and
SuperNode authentication, the registration of two SuperNode keys, two ``flower-supernode`` processes
and the one-shot runner (``flwr run``, then attack, results store and report), with the command lines
of ``fedsyn.federation.deployment`` that docker-compose.yml uses too; SuperNodes without a registered
key are refused. Every process gets its own FLWR_HOME and free ports; every process started here is
ended by its PID (with its process group).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import ssl
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
from fedsyn.federation import certs, deployment
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


def assert_refused(process: subprocess.Popen, log: Path, reason: str) -> None:
    """The SuperNode gave up on the SuperLink's refusal (Flower exits on a 4xx answer to its activation)."""
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"an unauthorised SuperNode is still running:\n{log.read_text()[-3000:]}")
    assert process.returncode != 0
    assert "Failed to initialize the connection to the SuperLink" in log.read_text() and reason in log.read_text()


def without_key(command: list[str]) -> list[str]:
    """A secure SuperNode command minus its authentication key: Flower then asks to self-register."""
    at = command.index("--auth-supernode-private-key")
    return command[:at] + command[at + 2 :]


def assert_serves_tls(address: str, ca: Path) -> None:
    """The SuperLink's port completes a TLS handshake, verified against the test CA for its address."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.slow  # 80-140 s on the shared 2-core dev machine: every message starts a ClientApp process
def test_loopback_deployment_captures_and_attacks_over_tls_with_authenticated_supernodes(tmp_path: Path) -> None:
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump(EXPERIMENT))
    cell = expand(parse_config(EXPERIMENT))[0]
    results = tmp_path / "results"
    folder = certs.create_certificates(tmp_path / "certs", certs.CertificatePlan(supernodes=CLIENTS + 1)).folder
    intruder_key = CLIENTS + 1  # created with the others, never registered
    processes = Processes(tmp_path)
    link_port = free_port()
    superlink = f"127.0.0.1:{link_port}"
    try:
        processes.start("superlink", deployment.superlink_command(certs=folder, host="127.0.0.1", port=link_port))
        public_keys = [folder / certs.supernode_public_key(i) for i in range(1, CLIENTS + 1)]
        register = subprocess.run(
            deployment.registration_command(superlink, public_keys, certs=folder, python=sys.executable),
            cwd=REPO,
            env=processes.home("register"),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert register.returncode == 0, f"{register.stdout}\n{register.stderr}\n{processes.logs()}"
        assert_serves_tls(superlink, folder / certs.CA_CERT)
        # Both claim partition 0; neither may join.
        impostor = deployment.supernode_command(superlink, 0, CLIENTS, certs=folder, key=intruder_key, port=free_port())
        keyless = without_key(deployment.supernode_command(superlink, 0, CLIENTS, certs=folder, port=free_port()))
        intruders = [
            ("unregistered-key", "Failed to activate SuperNode", processes.start("unregistered-key", impostor)),
            ("no-key", "All SuperNodes must be registered", processes.start("no-key", keyless)),
        ]
        for name, reason, process in intruders:
            assert_refused(process, tmp_path / f"{name}.log", reason)
        for partition_id in range(CLIENTS):
            command = deployment.supernode_command(superlink, partition_id, CLIENTS, certs=folder, port=free_port())
            processes.start(f"supernode-{partition_id}", command)
        runner_command = deployment.runner_command(config, superlink, results, certs=folder, python=sys.executable)
        runner = subprocess.run(
            runner_command + ["--timeout", "400"],
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
def test_supernode_command_carries_its_partition_and_key(partition_id: int) -> None:
    command = deployment.supernode_command("superlink:9091", partition_id, 4, certs="/certs", data_root="/data/cifar10")
    config = command[command.index("--node-config") + 1]
    assert config == f'partition-id={partition_id} num-partitions=4 data-root="/data/cifar10"'
    assert command[command.index("--auth-supernode-private-key") + 1] == f"/certs/supernode-{partition_id + 1}.key"
    assert command[command.index("--root-certificates") + 1] == "/certs/ca.crt"
    assert deployment.INSECURE_FLAG not in command


def test_secure_superlink_encrypts_and_admits_only_registered_supernodes() -> None:
    command = deployment.superlink_command(certs="/certs", port=9091)
    flags = {command[i]: command[i + 1] for i in range(1, len(command) - 1) if command[i].startswith("--ssl-")}
    assert flags == {
        "--ssl-ca-certfile": "/certs/ca.crt",
        "--ssl-certfile": "/certs/server.pem",
        "--ssl-keyfile": "/certs/server.key",
    }
    assert "--enable-supernode-auth" in command and deployment.INSECURE_FLAG not in command


def test_insecure_is_an_explicit_choice() -> None:
    insecure = deployment.INSECURE_FLAG
    assert deployment.superlink_command(insecure=True)[1] == insecure
    assert deployment.supernode_command("superlink:9091", 0, 2, insecure=True)[1] == insecure
    assert deployment.runner_command("c.yaml", "superlink:9091", "/results", insecure=True)[-1] == insecure
    builders = [
        lambda **security: deployment.superlink_command(**security),
        lambda **security: deployment.supernode_command("superlink:9091", 0, 2, **security),
        lambda **security: deployment.runner_command("c.yaml", "superlink:9091", "/results", **security),
    ]
    for build in builders:
        with pytest.raises(ValueError, match="exactly one"):
            build()
        with pytest.raises(ValueError, match="exactly one"):
            build(certs="/certs", insecure=True)
    with pytest.raises(ValueError, match="no authentication key"):
        deployment.supernode_command("superlink:9091", 0, 2, insecure=True, key=1)


def test_flower_connection_trusts_the_ca_or_is_explicitly_insecure() -> None:
    secure = tomllib.loads(deployment.flower_config("fedsyn", "127.0.0.1:9091", root_certificates="/c/ca.crt"))
    assert secure["superlink"] == {
        "default": "fedsyn",
        "fedsyn": {"address": "127.0.0.1:9091", "root-certificates": "/c/ca.crt"},
    }
    insecure = tomllib.loads(deployment.flower_config("fedsyn", "127.0.0.1:9091", insecure=True))
    assert insecure["superlink"]["fedsyn"] == {"address": "127.0.0.1:9091", "insecure": True}
    with pytest.raises(ValueError, match="root_certificates"):
        deployment.flower_config("fedsyn", "127.0.0.1:9091")


def test_registration_reports_missing_keys_before_contacting_the_superlink(tmp_path: Path) -> None:
    folder = certs.create_certificates(tmp_path, certs.CertificatePlan(supernodes=1)).folder
    done = subprocess.run(
        deployment.registration_command(
            f"127.0.0.1:{free_port()}",
            [folder / "supernode-1.pub", folder / "supernode-9.pub"],
            certs=folder,
            python=sys.executable,
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "supernode-9.pub" in done.stderr and "supernode-1.pub" not in done.stderr


def test_pyproject_declares_the_flower_app() -> None:
    """``flwr run .`` loads these components and accepts overrides only for keys of this table."""
    app = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    for reference in app["components"].values():
        module, attribute = reference.split(":")
        assert isinstance(getattr(importlib.import_module(module), attribute), (ClientApp, ServerApp))
    assert app["config"] == DEFAULTS
    assert "federations" not in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]
