"""docker-compose.yml and the Dockerfile, checked without a Docker engine: every service runs the command
lines of ``fedsyn.federation.deployment`` (the ones tests/test_deployment.py runs on loopback), the
SuperNodes match the experiment's client count, and every file the build or the commands need exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from fedsyn.experiment.schema import load_config
from fedsyn.federation import deployment

REPO = Path(__file__).resolve().parents[1]
SUPERLINK = f"superlink:{deployment.SUPERLINK_PORT}"
RESULTS = "/results"


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return compose["services"]


def supernodes(services: dict[str, dict]) -> list[str]:
    names = [name for name in services if name.startswith("supernode-")]
    assert names == [f"supernode-{i}" for i in range(1, len(names) + 1)], "supernodes are numbered 1..N"
    return names


def runner_config(services: dict[str, dict]) -> Path:
    command = services["runner"]["command"]
    return REPO / command[command.index("fedsyn.sweep.deployed") + 1]


def test_services_are_superlink_supernodes_and_runner(services: dict[str, dict]) -> None:
    assert set(services) == {"superlink", "runner", *supernodes(services)}
    assert len(supernodes(services)) >= 2


def test_superlink_runs_the_loopback_flags(services: dict[str, dict]) -> None:
    expected = deployment.superlink_command(host="0.0.0.0", port=deployment.SUPERLINK_PORT)
    assert services["superlink"]["command"] == expected


def test_each_supernode_has_its_partition_and_the_loopback_flags(services: dict[str, dict]) -> None:
    names = supernodes(services)
    for index, name in enumerate(names):
        expected = deployment.supernode_command(SUPERLINK, index, len(names), port=deployment.SUPERNODE_PORT)
        assert services[name]["command"] == expected, name
        assert "superlink" in services[name]["depends_on"]


def test_runner_runs_the_experiment_with_one_supernode_per_client(services: dict[str, dict]) -> None:
    runner = services["runner"]
    config = runner_config(services)
    assert config.is_file()
    assert runner["command"] == deployment.runner_command(config.relative_to(REPO), SUPERLINK, RESULTS)
    assert load_config(config).federation.clients == len(supernodes(services))
    assert set(runner["depends_on"]) == {"superlink", *supernodes(services)}


def mounts(service: dict) -> dict[str, str]:
    """Bind mounts of a service, container path -> host path (the host path may be a ${VAR:-default})."""
    found = (re.match(r"^(\$\{[^}]*\}|[^:]+):([^:]+)", volume) for volume in service.get("volumes", []))
    return {match.group(2): match.group(1) for match in found if match}


def test_results_volume_is_shared_by_the_server_and_the_runner(services: dict[str, dict]) -> None:
    """The ServerApp (under the SuperLink) writes the capture that the runner attacks."""
    assert mounts(services["superlink"])[RESULTS] == mounts(services["runner"])[RESULTS] == "./results"
    for name in supernodes(services):
        assert RESULTS not in mounts(services[name]), f"{name} must not see the server's captures"
        assert "/data" in mounts(services[name]), f"{name} needs the dataset"


def test_every_service_runs_flower_offline_from_the_project_image(services: dict[str, dict]) -> None:
    for name, service in services.items():
        assert service["build"] == "." and service["image"] == "fedsyn:latest", name
        assert deployment.ENVIRONMENT.items() <= service["environment"].items(), name


def test_dockerfile_installs_the_project_from_files_that_exist() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    assert re.search(r"^RUN pip install \.", text, re.MULTILINE)
    copied = [src for line in re.findall(r"^COPY (.+)$", text, re.MULTILINE) for src in line.split()[:-1]]
    assert {"pyproject.toml", "fedsyn", "attacks", "configs"} <= set(copied)
    for source in copied:
        assert (REPO / source).exists(), source
