"""docker-compose.yml (secure: TLS and SuperNode authentication), docker-compose.insecure.yml (the
explicit opt-in without either) and the Dockerfile, checked without a container engine: both files
validate against the compose specification (check-jsonschema's vendored compose-spec schema), every
service runs the command lines of ``fedsyn.federation.deployment`` (the ones tests/test_deployment.py
runs on loopback), each service mounts the credentials its command names and no others, the SuperNodes
match the experiment's client count, and every file the build or the commands need exists.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from fedsyn.experiment.schema import load_config
from fedsyn.federation import certs, deployment

REPO = Path(__file__).resolve().parents[1]
SECURE = "docker-compose.yml"
INSECURE = "docker-compose.insecure.yml"
SUPERLINK = f"superlink:{deployment.SUPERLINK_PORT}"
RESULTS = "/results"
CERTS = "/certs"
HOST_CERTS = "./certs"


def services_of(name: str) -> dict[str, dict]:
    return yaml.safe_load((REPO / name).read_text())["services"]


@pytest.fixture(scope="module", params=[SECURE, INSECURE])
def compose(request: pytest.FixtureRequest) -> tuple[str, dict[str, dict]]:
    return request.param, services_of(request.param)


def security(name: str) -> dict:
    """How the deployment functions are called for the compose file ``name``."""
    return {"certs": CERTS} if name == SECURE else {"insecure": True}


def supernodes(services: dict[str, dict]) -> list[str]:
    names = [name for name in services if name.startswith("supernode-")]
    assert names == [f"supernode-{i}" for i in range(1, len(names) + 1)], "supernodes are numbered 1..N"
    return names


def runner_config(services: dict[str, dict]) -> Path:
    command = services["runner"]["command"]
    return REPO / command[command.index("fedsyn.sweep.deployed") + 1]


class Mount(NamedTuple):
    source: str
    read_only: bool


def mounts(service: dict) -> dict[str, Mount]:
    """Bind mounts of a service, container path -> host path (the host path may be a ${VAR:-default})."""
    found = (re.match(r"^(\$\{[^}]*\}|[^:]+):([^:]+)(?::(\w+))?$", volume) for volume in service.get("volumes", []))
    return {match.group(2): Mount(match.group(1), match.group(3) == "ro") for match in found if match}


@pytest.mark.parametrize("name", [SECURE, INSECURE])
def test_compose_file_follows_the_compose_specification(name: str) -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(REPO / name)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_specification_check_catches_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: a dependency condition the specification does not know is refused."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((REPO / SECURE).read_text().replace("service_completed_successfully", "service_done"))
    checked = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 1 and "service_done" in checked.stdout


def test_services_are_superlink_supernodes_runner_and_the_registration(compose: tuple[str, dict]) -> None:
    name, services = compose
    extra = {"register"} if name == SECURE else set()
    assert set(services) == {"superlink", "runner", *supernodes(services), *extra}
    assert len(supernodes(services)) >= 2
    for service in services.values():
        assert set(service.get("depends_on", [])) <= set(services)


def test_superlink_runs_the_loopback_flags(compose: tuple[str, dict]) -> None:
    name, services = compose
    expected = deployment.superlink_command(host="0.0.0.0", port=deployment.SUPERLINK_PORT, **security(name))
    assert services["superlink"]["command"] == expected
    assert ("--enable-supernode-auth" in expected) == (name == SECURE) != (deployment.INSECURE_FLAG in expected)


def test_each_supernode_has_its_partition_and_the_loopback_flags(compose: tuple[str, dict]) -> None:
    name, services = compose
    names = supernodes(services)
    for index, node in enumerate(names):
        expected = deployment.supernode_command(
            SUPERLINK, index, len(names), port=deployment.SUPERNODE_PORT, **security(name)
        )
        assert services[node]["command"] == expected, node
        assert "superlink" in services[node]["depends_on"]


def test_supernodes_start_after_their_keys_are_registered() -> None:
    """With --enable-supernode-auth an unregistered SuperNode is refused and exits, so every SuperNode
    waits for the registration of all keys to succeed."""
    services = services_of(SECURE)
    names = supernodes(services)
    public_keys = [f"{CERTS}/{certs.supernode_public_key(i)}" for i in range(1, len(names) + 1)]
    expected = deployment.registration_command(SUPERLINK, public_keys, certs=CERTS)
    assert services["register"]["command"] == expected
    assert services["register"]["depends_on"] == ["superlink"]
    for node in names:
        assert services[node]["depends_on"]["register"] == {"condition": "service_completed_successfully"}


def test_runner_runs_the_experiment_with_one_supernode_per_client(compose: tuple[str, dict]) -> None:
    name, services = compose
    runner = services["runner"]
    config = runner_config(services)
    assert config.is_file()
    expected = deployment.runner_command(config.relative_to(REPO), SUPERLINK, RESULTS, **security(name))
    assert runner["command"] == expected
    assert load_config(config).federation.clients == len(supernodes(services))
    assert set(runner["depends_on"]) == {"superlink", *supernodes(services)}


def test_results_volume_is_shared_by_the_server_and_the_runner(compose: tuple[str, dict]) -> None:
    """The ServerApp (under the SuperLink) writes the capture that the runner attacks."""
    _, services = compose
    assert mounts(services["superlink"])[RESULTS].source == mounts(services["runner"])[RESULTS].source == "./results"
    for name in supernodes(services):
        assert RESULTS not in mounts(services[name]), f"{name} must not see the server's captures"
        assert "/data" in mounts(services[name]), f"{name} needs the dataset"


def test_each_service_mounts_exactly_the_credentials_its_command_names(compose: tuple[str, dict]) -> None:
    """Read-only, one file each, from ./certs (written by `make certs`): the SuperLink gets the server key,
    supernode-N only its own key, nobody the CA's key; the insecure file mounts none."""
    name, services = compose
    for service_name, service in services.items():
        named = {argument for argument in service["command"] if argument.startswith(f"{CERTS}/")}
        mounted = {target: mount for target, mount in mounts(service).items() if target.startswith(f"{CERTS}/")}
        assert set(mounted) == named, service_name
        for target, mount in mounted.items():
            assert mount == Mount(HOST_CERTS + target.removeprefix(CERTS), read_only=True), service_name
        assert f"{CERTS}/{certs.CA_KEY}" not in mounted
        if name == INSECURE:
            assert not named, service_name
    if name == SECURE:
        keys = {f"{CERTS}/{certs.supernode_key(i)}" for i in range(1, len(supernodes(services)) + 1)}
        for index, node in enumerate(supernodes(services), start=1):
            assert set(mounts(services[node])) & keys == {f"{CERTS}/{certs.supernode_key(index)}"}, node
        assert f"{CERTS}/{certs.SERVER_KEY}" in mounts(services["superlink"])


def test_insecure_file_differs_from_the_secure_one_only_in_security() -> None:
    secure, insecure = services_of(SECURE), services_of(INSECURE)
    assert set(secure) - set(insecure) == {"register"}
    for name, service in insecure.items():
        plain = {target: mount for target, mount in mounts(secure[name]).items() if not target.startswith(CERTS)}
        assert mounts(service) == plain, name
        same = {key: value for key, value in secure[name].items() if key not in ("command", "volumes", "depends_on")}
        assert {key: value for key, value in service.items() if key not in ("command", "volumes", "depends_on")} == same


def test_every_service_runs_flower_offline_from_the_project_image(compose: tuple[str, dict]) -> None:
    _, services = compose
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


def test_credentials_stay_out_of_the_image_and_the_repository() -> None:
    """Keys are mounted at run time, never copied into the image or committed."""
    for ignore_file in (".dockerignore", ".gitignore"):
        ignored = {line.strip().strip("/") for line in (REPO / ignore_file).read_text().splitlines()}
        assert HOST_CERTS.removeprefix("./") in ignored, ignore_file
