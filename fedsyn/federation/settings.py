"""What a run of the federation apps is told: Flower's run config (shared) and node config (per node).

The same ServerApp and ClientApp serve both engines. With ``flwr run`` (deployment) the run config comes
from ``[tool.flwr.app.config]`` in ``pyproject.toml`` plus ``--run-config`` overrides, and the SuperLink
hands it to the ServerApp and to every SuperNode; in ``fedsyn.federation.simulation.federate`` the apps
are built with the same keys bound in (``make_server_app(run_config)``), because Flower's in-process
simulation runs apps without a run config.

Run config keys (Flower keys are kebab-case):

``cell``
    The sweep cell (``fedsyn.experiment.grid.Cell``) as JSON: model, dataset, FL/WR/WS, federation, defense.
``config-file`` / ``cell-index``
    Alternative to ``cell``: an experiment YAML and the index of one of its cells (``fedsyn sweep
    --dry-run`` lists them). Used only when ``cell`` is empty. When both are empty (a bare ``flwr run
    .``), the experiment is the shipped ``quickstart.yaml`` (``DEFAULT_EXPERIMENT``).
``out-dir``
    Where the ServerApp writes the capture (``<out-dir>/<cell key>``). Relative paths are taken from the
    ServerApp's working directory.
``initial-weights``
    Optional ``state_dict`` file the federation starts from (a pretrained "trained" state).
``client-threads``
    torch threads per ClientApp (default 1: the simulation runs one client per core side by side).
``round-timeout``
    Seconds the server waits for the replies of one round.
``report``
    Whether the ServerApp of ``flwr run`` (``fedsyn.sweep.flower_app``) attacks the capture, stores the
    rows and writes ``report.html`` into ``out-dir`` after the federation (default true; the in-process
    simulation and the deployed runner attack and report themselves, so ``run_config`` sets false).

Node config keys: ``partition-id`` and ``num-partitions`` (Flower's own names, set by the simulation or
by ``flower-supernode --node-config``), and optional ``data-root`` that replaces the cell's dataset
root on that node (e.g. where a container mounts CIFAR).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from fedsyn.errors import FedsynError
from fedsyn.experiment.grid import Cell, expand
from fedsyn.experiment.schema import load_config

CELL = "cell"
CONFIG_FILE = "config-file"
CELL_INDEX = "cell-index"
OUT_DIR = "out-dir"
INITIAL_WEIGHTS = "initial-weights"
CLIENT_THREADS = "client-threads"
ROUND_TIMEOUT = "round-timeout"
REPORT = "report"

PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"
DATA_ROOT = "data-root"

DEFAULTS: dict[str, str | int | float] = {
    CELL: "",
    CONFIG_FILE: "",
    CELL_INDEX: 0,
    OUT_DIR: "results/federation",
    INITIAL_WEIGHTS: "",
    CLIENT_THREADS: 1,
    ROUND_TIMEOUT: 3600.0,
    REPORT: True,
}
"""Every run config key with its default; ``pyproject.toml``'s ``[tool.flwr.app.config]`` mirrors this."""

DEFAULT_EXPERIMENT = "quickstart.yaml"
"""The shipped experiment (``fedsyn/configs``) a run config without ``cell`` and ``config-file`` runs."""


class RunConfigError(FedsynError, ValueError):
    """A run config or node config that the federation apps cannot use; names the key."""


@dataclass(frozen=True)
class RunSettings:
    """The run config, parsed and validated."""

    cell: Cell
    out_dir: Path
    initial_weights: Path | None
    client_threads: int
    round_timeout: float
    report: bool

    @property
    def capture_dir(self) -> Path:
        return self.out_dir / self.cell.key


@dataclass(frozen=True)
class NodeSettings:
    """One SuperNode's identity in the federation."""

    partition_id: int
    num_partitions: int
    data_root: str | None


def run_config(
    cell: Cell,
    out_dir: Path,
    *,
    initial_weights: Path | None = None,
    client_threads: int = 1,
) -> dict[str, str | int | float]:
    """The run config that runs ``cell`` and writes its capture under ``out_dir``."""
    return {
        **DEFAULTS,
        CELL: cell.model_dump_json(),
        OUT_DIR: str(out_dir),
        INITIAL_WEIGHTS: str(initial_weights) if initial_weights else "",
        CLIENT_THREADS: client_threads,
        REPORT: False,
    }


def parse_run_config(values: Mapping[str, Any]) -> RunSettings:
    """Validate Flower's run config (missing keys take ``DEFAULTS``) into ``RunSettings``."""
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise RunConfigError(f"unknown run config key(s) {unknown}; known keys: {', '.join(DEFAULTS)}")
    merged = {**DEFAULTS, **values}
    threads = _int(merged, CLIENT_THREADS)
    if threads < 1:
        raise RunConfigError(f"run config {CLIENT_THREADS} must be >= 1, got {threads}")
    timeout = merged[ROUND_TIMEOUT]
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise RunConfigError(f"run config {ROUND_TIMEOUT} must be > 0, got {timeout}")
    weights = str(merged[INITIAL_WEIGHTS])
    if not isinstance(merged[REPORT], bool):
        raise RunConfigError(f"run config {REPORT} must be true or false, got {merged[REPORT]!r}")
    return RunSettings(
        cell=_cell(merged),
        out_dir=Path(str(merged[OUT_DIR])),
        initial_weights=Path(weights) if weights else None,
        client_threads=threads,
        round_timeout=float(timeout),
        report=merged[REPORT],
    )


def parse_node_config(values: Mapping[str, Any], num_clients: int) -> NodeSettings:
    """The node's partition (checked against the cell's client count) and optional data root."""
    missing = [key for key in (PARTITION_ID, NUM_PARTITIONS) if key not in values]
    if missing:
        raise RunConfigError(
            f"node config lacks {missing}; start the SuperNode with "
            f"--node-config \"{PARTITION_ID}=<id> {NUM_PARTITIONS}={num_clients}\""
        )
    partition_id = _int(values, PARTITION_ID)
    num_partitions = _int(values, NUM_PARTITIONS)
    if num_partitions != num_clients:
        raise RunConfigError(
            f"node config {NUM_PARTITIONS}={num_partitions} but the cell federates {num_clients} clients"
        )
    if not 0 <= partition_id < num_partitions:
        raise RunConfigError(f"node config {PARTITION_ID}={partition_id} is not in 0..{num_partitions - 1}")
    root = values.get(DATA_ROOT)
    return NodeSettings(partition_id, num_partitions, str(root) if root else None)


def shipped_experiment(name: str) -> Path:
    """The shipped experiment file ``name``: in the package's ``configs`` folder (a link to the
    repository's ``configs/`` in a checkout, package data in a wheel) or, in the copy of the app that
    Flower installs for ``flwr run`` (which leaves links out), in the app folder's ``configs/``."""
    package = Path(str(resources.files("fedsyn")))
    for folder in (package / "configs", package.parent / "configs"):
        if (folder / name).is_file():
            return folder / name
    raise RunConfigError(
        f"shipped experiment {name} is in neither {package / 'configs'} nor {package.parent / 'configs'}"
    )


def _int(values: Mapping[str, Any], key: str) -> int:
    value = values[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise RunConfigError(f"config key {key} must be an integer, got {value!r}")
    return int(value)


def _cell(values: Mapping[str, Any]) -> Cell:
    text = str(values[CELL])
    if text:
        try:
            return Cell.model_validate_json(text)
        except ValidationError as err:
            raise RunConfigError(f"run config {CELL} is not a valid cell: {err}") from None
    path = str(values[CONFIG_FILE]) or str(shipped_experiment(DEFAULT_EXPERIMENT))
    cells = expand(load_config(path))
    index = _int(values, CELL_INDEX)
    if not 0 <= index < len(cells):
        raise RunConfigError(f"run config {CELL_INDEX}={index} is not in 0..{len(cells) - 1} for {path}")
    return cells[index]
