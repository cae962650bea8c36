"""The sweep runner: real cells (Flower simulation, real attacks) survive SIGKILL, run in parallel with the
same numbers, record failures and go on; plus the store's transaction rules and the progress output."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib import image as mpimg

from fedsyn.cli import main
from fedsyn.experiment.grid import expand
from fedsyn.experiment.schema import parse_config
from fedsyn.results.fields import RESULT_FIELDS
from fedsyn.results.store import StoreError, open_store
from fedsyn.sweep.progress import Progress
from fedsyn.sweep.runner import SweepLockedError, cell_environment, run_sweep, sweep_lock, threads_per_worker

TINY = {
    "name": "tiny-sweep",
    "seed": 3,
    "dataset": {"name": "photos", "options": {"per_class": 20}},
    "models": [{"name": "convnet", "options": {"width": 4}}],
    "biomod": {"combos": ["none", "fl+wr+ws"]},
    "federation": {"clients": 2, "rounds": 1, "batch_size": 2, "eval_samples": 16},
    "attack": {"inversion": {"iterations": 4}},
}
TIMING_COLUMNS = {"attack_seconds"}


def write_config(directory: Path, data: dict) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def sweep_command(config: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fedsyn.cli", "sweep", str(config), "--out", str(out), *extra]


def run_cli(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(sweep_command(config, out, *extra), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def comparable_rows(out: Path) -> list[dict]:
    """Every stored row minus wall-clock timings, with the reconstruction PNG's pixels attached."""
    with open_store(out, readonly=True) as store:
        rows = store.results()
    for row in rows:
        for column in TIMING_COLUMNS:
            row.pop(column)
        row["pixels"] = mpimg.imread(out / row["image_path"]).tobytes() if row["image_path"] else None
    return rows


def finished_count(out: Path) -> int:
    try:
        with sqlite3.connect(f"file:{out / 'results.db'}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM cells WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def cell_processes(out: Path) -> list[int]:
    """PIDs of running processes whose command line mentions ``out`` (the sweep's cell processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(out).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("config"), TINY)


@pytest.fixture(scope="module")
def reference(tiny_config, tmp_path_factory) -> Path:
    """An uninterrupted one-worker run of the tiny sweep."""
    out = tmp_path_factory.mktemp("reference")
    run_cli(tiny_config, out)
    return out


def test_uninterrupted_sweep_stores_every_cell(reference):
    cells = expand(parse_config(TINY))
    with open_store(reference, readonly=True) as store:
        assert store.finished_keys() == {c.key for c in cells}
        rows = store.results()
        records = store.cells()
    assert len(rows) == len(cells) * TINY["federation"]["clients"]
    assert all((reference / row["image_path"]).is_file() for row in rows)
    assert all(record["rounds"] and record["torch_version"] != "unknown" for record in records)
    assert sorted(p.name for p in (reference / "cells").iterdir()) == sorted(c.key for c in cells)


def test_sigkill_and_resume_gives_the_uninterrupted_rows(tiny_config, reference, tmp_path):
    out = tmp_path / "killed"
    victim = subprocess.Popen(sweep_command(tiny_config, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while finished_count(out) < 1 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert victim.poll() is None, "the sweep ended before it could be killed; make the test config bigger"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    total = len(expand(parse_config(TINY)))
    assert 1 <= finished_count(out) < total
    assert not wait_gone(out, 20), "cell processes outlived the killed sweep"

    resumed = run_cli(tiny_config, out)
    assert "resuming" in resumed.stderr
    assert not [p for p in (out / "cells").iterdir() if p.name.startswith(".")]
    assert comparable_rows(out) == comparable_rows(reference)


@pytest.mark.slow
def test_two_workers_give_the_same_rows(tiny_config, reference, tmp_path):
    out = tmp_path / "parallel"
    run_cli(tiny_config, out, "--workers", "2")
    assert comparable_rows(out) == comparable_rows(reference)


def test_parallel_cells_split_the_cores_unless_the_user_chose(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    assert threads_per_worker(1) == cores
    assert threads_per_worker(cores + 1) == 1
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cell_environment(3)["OMP_NUM_THREADS"] == "3"
    assert "OMP_NUM_THREADS" not in cell_environment(None)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert cell_environment(3)["OMP_NUM_THREADS"] == "7"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_gone(marker: Path, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while cell_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    return cell_processes(marker)


@pytest.mark.slow
def test_ray_cluster_gives_the_same_rows(tiny_config, reference, tmp_path):
    """A local `ray start --head` cluster (own temp dir, so nothing else on the machine joins it)."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="fsray", dir="/tmp"))  # short: Ray's socket paths must stay short
    port = free_port()
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}"]
    command += ["--num-cpus=2", f"--temp-dir={ray_tmp}", "--include-dashboard=false", "--disable-usage-stats"]
    head = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (ray_tmp / "ray_current_cluster").is_file() and time.monotonic() < deadline:
            assert head.poll() is None, "ray start --head failed"
            time.sleep(0.5)
        out = tmp_path / "ray"
        run_cli(tiny_config, out, "--ray-address", f"127.0.0.1:{port}")
        assert comparable_rows(out) == comparable_rows(reference)
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        for pid in wait_gone(ray_tmp, 30):  # Ray processes of this cluster only: their command lines name ray_tmp
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_failing_cell_is_recorded_retried_and_makes_the_exit_status(reference, tmp_path, monkeypatch, capsys):
    """A sweep whose finished cell is already stored (copied from the reference) plus one cell that fails: its
    pretraining needs the checkpoint cache, and FEDSYN_CACHE names a file, not a folder."""
    data = {**TINY, "biomod": {"combos": ["none"]}, "trained": [0, 1]}
    config = parse_config(data)
    good, bad = expand(config)
    out = tmp_path / "failing"
    shutil.copytree(reference, out)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("FEDSYN_CACHE", str(blocked))
    assert main(["sweep", str(write_config(tmp_path, data)), "--out", str(out), "--quiet"]) == 1
    assert "1 of 2 cells failed, 0 of 2 result rows" in capsys.readouterr().err
    with open_store(out, readonly=True) as store:
        assert good.key in store.finished_keys() and store.failed_keys() == {bad.key}
        first = {c["cell_key"]: c for c in store.cells()}
    assert "Not a directory" in first[bad.key]["error"] and first[bad.key]["attempts"] == 1
    assert not (out / "cells" / bad.key).exists()

    summary = run_sweep(config, out, progress=False)
    assert (summary.cells, summary.failed_cells, summary.failed) == (2, 1, True)
    with open_store(out, readonly=True) as store:
        second = {c["cell_key"]: c for c in store.cells()}
    assert second[bad.key]["attempts"] == 2 and second[bad.key]["status"] == "failed"
    assert second[good.key] == first[good.key]


def test_a_second_sweep_on_the_same_directory_is_refused(tmp_path):
    with sweep_lock(tmp_path):
        with pytest.raises(SweepLockedError, match="another sweep"):
            run_sweep(parse_config(TINY), tmp_path, progress=False)


def valid_row(partition_id: int) -> dict:
    row = {name: None for name in RESULT_FIELDS}
    row.update(
        seed=TINY["seed"],
        round=1,
        partition_id=partition_id,
        attacker="oblivious",
        method="inverting-gradients",
        status="ok",
        labels="known",
        mse_pct=float("nan"),
    )
    return row


def test_store_commits_a_cell_whole_or_not_at_all(tmp_path):
    cell = expand(parse_config(TINY))[0]
    broken = valid_row(1)
    del broken["mse"]
    with open_store(tmp_path) as store:
        with pytest.raises(StoreError, match="mse"):
            store.commit_cell(cell, [valid_row(0), broken])
        assert store.cells() == [] and store.results() == []
        store.record_failure(cell, "first try failed")
        store.commit_cell(cell, [valid_row(0), valid_row(1)], rounds=[{"round": 1, "accuracy": 0.5, "loss": 1.0}])
        (record,) = store.cells()
        rows = store.results()
    assert record["status"] == "done" and record["attempts"] == 2 and record["final_accuracy"] == 0.5
    assert [r["partition_id"] for r in rows] == [0, 1] and rows[0]["mse_pct"] is None
    assert rows[0]["combo"] == cell.combo and rows[0]["model"] == cell.model.label
    with sqlite3.connect(tmp_path / "results.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_progress_prints_counts_eta_and_failures():
    cells = expand(parse_config(TINY))
    stream = io.StringIO()
    progress = Progress(4, 1, stream=stream)
    progress.cell_finished(cells[0], rows=[{"status": "ok", "mse_pct": 40.0, "psnr": 12.0}], seconds=3.0, accuracy=0.25)
    progress.cell_failed(cells[1], error="Traceback\nValueError: broken", seconds=1.0)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "resuming: 1/4 cells already finished"
    assert "done" in lines[1] and "mse_pct=40.0" in lines[1] and "acc=0.250" in lines[1] and "2/4 cells" in lines[1]
    assert "ETA" in lines[1] and "ETA ?" not in lines[1]
    assert "FAILED" in lines[2] and "ValueError: broken" in lines[2] and "(1 failed)" in lines[2]
    assert lines[3].startswith("sweep: 2/4 cells finished, 1 failed")
    assert np.isfinite(progress.eta_seconds())
