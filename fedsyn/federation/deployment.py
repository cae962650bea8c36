"""The real (non-simulated) federation's command lines, in one place.

``tests/test_deployment.py`` starts these processes on 127.0.0.1, and ``tests/test_compose.py`` checks
that every service of ``docker-compose.yml`` (and of ``docker-compose.insecure.yml``) passes the same
flags, so the loopback test stands for the compose deployment.

Flower 1.41 serves the SuperLink's Fleet, Control and Runtime APIs over HTTP on one ``--host:--port``;
each SuperNode also serves a local Runtime API on its own ``--port`` (its ClientApp processes connect
there), so SuperNodes sharing a host need distinct ports. ``flwr run`` and ``flwr supernode register``
find the SuperLink through a named connection in ``$FLWR_HOME/config.toml`` (``flower_config``). The
project image has every dependency installed, so runtime installation of app dependencies stays off (it
is off by default on SuperNodes; the SuperLink needs ``--disable-runtime-dependency-installation``).

Secure by default: every command takes either ``certs`` (a folder laid out by
``fedsyn.federation.certs``) or an explicit ``insecure=True``. Secure means TLS on the SuperLink's APIs
(its certificate signed by the folder's CA, which SuperNodes and ``flwr`` trust) and SuperNode
authentication: the SuperLink runs with ``--enable-supernode-auth``, refuses every SuperNode whose public
key was not registered beforehand with ``flwr supernode register`` (``register_command``), and each
SuperNode signs its requests with its private key. Insecure means plain HTTP and any SuperNode may join.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from fedsyn.errors import FedsynError

from . import certs as credentials

SUPERLINK_FLAGS: tuple[str, ...] = ("--disable-runtime-dependency-installation",)
"""Flags of the SuperLink in both modes."""
INSECURE_FLAG = "--insecure"
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


class DeploymentError(FedsynError, RuntimeError):
    """The SuperLink could not be reached, or a step of the deployment failed."""


def _security(certs: str | Path | None, insecure: bool, name: str = "certs") -> Path | None:
    """``certs`` as a path, or None for an explicit ``insecure``; exactly one of them must be given."""
    if insecure == (certs is not None):
        raise ValueError(f"pass either {name} or insecure=True (exactly one of them)")
    return None if insecure else Path(certs)


def superlink_command(
    *, certs: str | Path | None = None, insecure: bool = False, host: str = "0.0.0.0", port: int = SUPERLINK_PORT
) -> list[str]:
    """``flower-superlink`` with TLS from ``certs`` and SuperNode authentication, or ``--insecure``."""
    folder = _security(certs, insecure)
    if folder is None:
        security = [INSECURE_FLAG]
    else:
        security = [
            "--ssl-ca-certfile",
            str(folder / credentials.CA_CERT),
            "--ssl-certfile",
            str(folder / credentials.SERVER_CERT),
            "--ssl-keyfile",
            str(folder / credentials.SERVER_KEY),
            "--enable-supernode-auth",
        ]
    return ["flower-superlink", *security, *SUPERLINK_FLAGS, "--host", host, "--port", str(port)]


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
    certs: str | Path | None = None,
    insecure: bool = False,
    key: int | None = None,
    host: str = "127.0.0.1",
    port: int = SUPERNODE_PORT,
    data_root: str | None = None,
) -> list[str]:
    """``flower-supernode`` for one partition. Secure: it trusts the CA of ``certs`` and signs with the
    key pair number ``key`` there, by default ``partition_id + 1`` (compose's ``supernode-N`` serves
    partition N-1 with key N)."""
    folder = _security(certs, insecure)
    if folder is None:
        if key is not None:
            raise ValueError("an insecure SuperNode has no authentication key; leave key unset")
        security = [INSECURE_FLAG]
    else:
        security = [
            "--root-certificates",
            str(folder / credentials.CA_CERT),
            "--auth-supernode-private-key",
            str(folder / credentials.supernode_key(partition_id + 1 if key is None else key)),
        ]
    return [
        "flower-supernode",
        *security,
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


def register_command(public_key: str | Path, connection: str) -> list[str]:
    """``flwr supernode register``: admit the SuperNode holding the private half of ``public_key`` to the
    SuperLink of the named connection (which must run with ``--enable-supernode-auth``)."""
    return ["flwr", "supernode", "register", str(public_key), connection]


def runner_command(
    config: str | Path,
    superlink: str,
    results: str | Path,
    *,
    certs: str | Path | None = None,
    insecure: bool = False,
    python: str = "python",
) -> list[str]:
    """The one-shot runner (``fedsyn.sweep.deployed``): ``flwr run``, then attack, store and report."""
    folder = _security(certs, insecure)
    security = [INSECURE_FLAG] if folder is None else ["--root-certificates", str(folder / credentials.CA_CERT)]
    command = [python, "-m", "fedsyn.sweep.deployed", str(config), "--superlink", superlink]
    return [*command, "--results", str(results), *security]


def registration_command(
    superlink: str, public_keys: list[str | Path], *, certs: str | Path, python: str = "python"
) -> list[str]:
    """The one-shot registration of SuperNode public keys (``fedsyn.federation.registration``)."""
    ca = Path(certs) / credentials.CA_CERT
    command = [python, "-m", "fedsyn.federation.registration", "--superlink", superlink]
    return [*command, "--root-certificates", str(ca), *map(str, public_keys)]


def flower_config(
    connection: str, address: str, *, root_certificates: str | Path | None = None, insecure: bool = False
) -> str:
    """Text of a ``$FLWR_HOME/config.toml`` whose default connection ``connection`` reaches the SuperLink
    at ``address`` (host:port): over TLS trusting the CA certificate ``root_certificates`` (absolute
    path), or without TLS when ``insecure``."""
    ca = _security(root_certificates, insecure, "root_certificates")
    security = "insecure = true" if ca is None else f"root-certificates = {json.dumps(str(ca))}"
    return f'[superlink]\ndefault = "{connection}"\n\n[superlink.{connection}]\naddress = "{address}"\n{security}\n'


def run_config_toml(values: dict[str, str | int | float]) -> str:
    """A run config file for ``flwr run --run-config FILE`` (TOML; JSON string escapes are valid TOML)."""
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def wait_for_port(address: str, timeout: float) -> None:
    """Block until ``host:port`` accepts TCP connections (the SuperLink is up)."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise DeploymentError(f"no SuperLink answers at {address} after {timeout:.0f} s: {err}") from None
            time.sleep(1)
