"""The real (non-simulated) federation's command lines, in one place.

``tests/test_deployment.py`` starts these processes on 127.0.0.1, and ``tests/test_compose.py`` checks
that every service of ``docker-compose.yml`` passes the same flags, so the loopback test stands for the
compose deployment.

Flower 1.41 serves the SuperLink's Fleet, Control and Runtime APIs over HTTP on one ``--host:--port``;
each SuperNode also serves a local Runtime API on its own ``--port`` (its ClientApp processes connect
there), so SuperNodes sharing a host need distinct ports. ``flwr run`` finds the SuperLink through a
named connection in ``$FLWR_HOME/config.toml`` (``flower_config``). The project image has every
dependency installed, so runtime installation of app dependencies stays off (it is off by default on
SuperNodes; the SuperLink needs ``--disable-runtime-dependency-installation``).
"""

from __future__ import annotations

import json
from pathlib import Path

SUPERLINK_FLAGS: tuple[str, ...] = ("--insecure", "--disable-runtime-dependency-installation")
SUPERNODE_FLAGS: tuple[str, ...] = ("--insecure",)
FLWR_RUN_FLAGS: tuple[str, ...] = ("--stream",)
"""``--stream`` keeps ``flwr run`` attached to the run's log until the run ends."""

SUPERLINK_PORT = 9091
SUPERNODE_PORT = 9094
CONFIG_FILE = "config.toml"
ENVIRONMENT: dict[str, str] = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
}
"""Environment of every Flower process: no telemetry, no update check (offline machines)."""


def superlink_command(*, host: str = "0.0.0.0", port: int = SUPERLINK_PORT) -> list[str]:
    return ["flower-superlink", *SUPERLINK_FLAGS, "--host", host, "--port", str(port)]


def node_config(partition_id: int, num_partitions: int, data_root: str | None = None) -> str:
    """The ``--node-config`` value of one SuperNode (see ``fedsyn.federation.settings``)."""
    pairs = [f"partition-id={partition_id}", f"num-partitions={num_partitions}"]
    if data_root is not None:
        pairs.append(f'data-root="{data_root}"')
    return " ".join(pairs)


def supernode_command(
    superlink: str,
    partition_id: int,
    num_partitions: int,
    *,
    host: str = "127.0.0.1",
    port: int = SUPERNODE_PORT,
    data_root: str | None = None,
) -> list[str]:
    return [
        "flower-supernode",
        *SUPERNODE_FLAGS,
        "--superlink",
        superlink,
        "--node-config",
        node_config(partition_id, num_partitions, data_root),
        "--host",
        host,
        "--port",
        str(port),
    ]


def flwr_run_command(app: str | Path, connection: str, run_config: str | Path) -> list[str]:
    """``flwr run`` of the app folder ``app`` on the named SuperLink connection, with a run config
    file (TOML, keys of ``[tool.flwr.app.config]``) overriding the defaults."""
    return ["flwr", "run", str(app), connection, "--run-config", str(run_config), *FLWR_RUN_FLAGS]


def runner_command(config: str | Path, superlink: str, results: str | Path, *, python: str = "python") -> list[str]:
    """The one-shot runner (``fedsyn.sweep.deployed``): ``flwr run``, then attack, store and report."""
    return [python, "-m", "fedsyn.sweep.deployed", str(config), "--superlink", superlink, "--results", str(results)]


def flower_config(connection: str, address: str) -> str:
    """Text of a ``$FLWR_HOME/config.toml`` whose default connection ``connection`` reaches the SuperLink
    at ``address`` (host:port) without TLS."""
    return (
        f'[superlink]\ndefault = "{connection}"\n\n'
        f'[superlink.{connection}]\naddress = "{address}"\ninsecure = true\n'
    )


def run_config_toml(values: dict[str, str | int | float]) -> str:
    """A run config file for ``flwr run --run-config FILE`` (TOML; JSON string escapes are valid TOML)."""
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
