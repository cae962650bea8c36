"""``flwr run .`` as a Flower user types it: with no run config it federates the shipped quickstart
experiment's first cell, then attacks, scores and reports, on the project's own torch.

The slow test starts Flower's managed local SuperLink for real, in a temporary ``FLWR_HOME`` and on
ports of its own (``FLWR_LOCAL_SUPERLINK_HTTP_API_PORT``, ``FLWR_LOCAL_CONTROL_API_PORT``), with the
venv's ``bin`` first on PATH and runtime dependency installation off as the README says, and stops that
SuperLink (found by its ``FLWR_HOME`` in its command line) afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fedsyn.experiment.grid import expand
from fedsyn.experiment.schema import load_config
from fedsyn.federation.settings import DEFAULT_EXPERIMENT, RunConfigError, parse_run_config, shipped_experiment
from fedsyn.sweep import flower_app

REPO = Path(__file__).resolve().parents[1]


def test_an_empty_run_config_runs_the_quickstart_cell_and_reports() -> None:
    settings = parse_run_config({})
    assert settings.cell == expand(load_config(REPO / "configs" / DEFAULT_EXPERIMENT))[0]
    assert settings.report is True
    assert shipped_experiment(DEFAULT_EXPERIMENT).samefile(REPO / "configs" / DEFAULT_EXPERIMENT)
    with pytest.raises(RunConfigError, match="report must be true or false"):
        parse_run_config({"report": "yes"})


def test_a_torch_from_flowers_runtime_environment_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    assert flower_app.foreign_torch() is None
    monkeypatch.setenv("VIRTUAL_ENV", sys.prefix)
    assert flower_app.foreign_torch() is None
    runtime = Path(torch.__file__).resolve().parents[1]
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setenv("VIRTUAL_ENV", str(runtime))
    assert "an environment Flower installed" in flower_app.foreign_torch()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def superlinks_of(home: Path) -> list[int]:
    """Process ids of the local SuperLinks whose command line names ``home`` (the ones this test started)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "flower-superlink" in command and str(home) in command:
                found.append(int(proc.name))
    return found


@pytest.mark.slow
def test_flwr_run_dot_produces_a_report_on_the_venvs_torch(tmp_path: Path) -> None:
    home, work = tmp_path / "flwr-home", tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "FLWR_HOME": str(home),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(free_port()),
        "OMP_NUM_THREADS": "1",
    }
    try:
        done = subprocess.run(
            ["flwr", "run", str(REPO), "--stream"], cwd=work, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results = work / "results" / "federation"
        record = json.loads((results / flower_app.RUN_FILE).read_text())
        assert record["report"] == str((results / "report.html").resolve()) and Path(record["report"]).is_file()
        assert f"report written to {record['report']}" in done.stdout + done.stderr
        assert record["torch_version"] == torch.__version__
        assert record["torch_file"] == str(Path(torch.__file__).resolve())
        assert not (home / "runtime-envs").exists() or not any((home / "runtime-envs").iterdir())

        broken = subprocess.run(
            ["flwr", "run", str(REPO), "--stream", "--run-config", 'config-file="/no/such/experiment.yaml"'],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert "config file not found: /no/such/experiment.yaml" in broken.stdout + broken.stderr
        assert broken.returncode == 0, "Flower 1.41's flwr run now reports a failed run: update the README"
    finally:
        for pid in superlinks_of(home):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while superlinks_of(home) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in superlinks_of(home):
            os.kill(pid, signal.SIGKILL)
