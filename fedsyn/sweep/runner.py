"""Run a sweep: every cell of a config, resumable, in parallel processes or on a Ray cluster.

Layout of a results directory::

    DIR/results.db            the store (see fedsyn.results.store)
    DIR/cells/<key>/          a finished cell: its capture (federation/), reconstructions (attack/), log
    DIR/cells/.work-<key>/    a cell being run (never read by the report; removed by the next run)

Guarantees:

- Resume is the default. A cell counts as finished only once its rows and status are committed to the
  store, in one transaction, after its directory got its final name. A run killed at any moment leaves
  at most a half-written ``.work-*`` directory or an uncommitted renamed one (the store names it as being
  committed); the next run deletes both and runs those cells again. Any other folder of a cell the store
  does not list as finished means the store lost commits: the sweep stops and deletes nothing unless
  asked to (``redo``, ``fedsyn sweep --redo``). Every random draw derives from the cell's seed, so the
  rows come out the same.
- A failing cell is recorded with status ``failed`` and its error, and the sweep goes on; the next run
  retries it. ``run_sweep`` returns how many cells of the grid failed and how many result rows of its
  finished cells have status ``failed``, so the CLI can exit non-zero on either.
- Each cell runs in its own process (``fedsyn.sweep.cell_process``), so ``--workers N`` is N such
  processes at a time and the numbers do not depend on N. With ``ray_address`` each cell is a Ray task on
  that cluster; the task sends the cell's directory back and the driver writes the one store.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsyn.errors import FedsynError
from fedsyn.experiment.grid import Cell, expand
from fedsyn.experiment.schema import ExperimentConfig
from fedsyn.results.store import COMMITTING, ResultStore, StoreError, open_store, package_versions

from .cell_process import CELL_FILE, LOG_FILE, OUTCOME_FILE
from .locks import LockHeld, file_lock
from .pretrain import checkpoint_dir
from .progress import Progress

CELLS_DIR = "cells"
WORK_PREFIX = ".work-"
LOCK_FILE = ".sweep.lock"
POLL_SECONDS = 0.5
LOG_TAIL_LINES = 30


class SweepLockedError(FedsynError, RuntimeError):
    """Another sweep process is writing to the same results directory."""


@dataclass
class Finished:
    """A cell whose process ended: its work directory and what it reported."""

    cell: Cell
    work_dir: Path
    outcome: dict[str, Any]


@dataclass(frozen=True)
class SweepSummary:
    """The state of a config's grid in the store after a run: what failed, out of how much."""

    cells: int
    failed_cells: int
    rows: int
    failed_rows: int

    @property
    def failed(self) -> bool:
        return bool(self.failed_cells or self.failed_rows)

    def describe(self) -> str:
        return (
            f"{self.failed_cells} of {self.cells} cells failed, {self.failed_rows} of {self.rows} result rows "
            "of the finished cells failed"
        )


def summarize(store: ResultStore, keys: set[str]) -> SweepSummary:
    """Failed cells and failed rows of the grid ``keys`` as the store holds them now."""
    rows = [row for row in store.results() if row["cell_key"] in keys]
    return SweepSummary(
        cells=len(keys),
        failed_cells=len(store.failed_keys() & keys),
        rows=len(rows),
        failed_rows=sum(1 for row in rows if row["status"] == "failed"),
    )


@contextmanager
def sweep_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` for the duration of a sweep (released by the OS on a kill)."""
    with ExitStack() as stack:
        try:
            stack.enter_context(file_lock(out_dir / LOCK_FILE, wait=False))
        except LockHeld as held:
            raise SweepLockedError(
                f"another sweep (pid {held.holder}) is running in {out_dir}; wait for it or stop it"
            ) from None
        yield


def clear_unfinished(cells_dir: Path, finished: set[str]) -> list[str]:
    """Delete every cell directory whose cell is not committed as finished; returns the names removed."""
    removed = []
    if cells_dir.is_dir():
        for entry in sorted(cells_dir.iterdir()):
            if entry.name not in finished:
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry.name)
    return removed


def check_cell_folders(cells_dir: Path, finished: set[str], committing: str | None, store_path: Path) -> None:
    """Stop when ``cells_dir`` holds folders of finished cells that the store does not list.

    Such a folder got its final name right before its cell was committed, so the store once knew the
    cell; unless it is the one cell a killed sweep was committing (``committing``), the store lost
    commits (a damaged or deleted WAL file, a replaced ``results.db``). Computing those cells again
    would delete finished work, so that takes ``--redo``.
    """
    if not cells_dir.is_dir():
        return
    lost = sorted(
        entry.name
        for entry in cells_dir.iterdir()
        if not entry.name.startswith(WORK_PREFIX) and entry.name not in finished and entry.name != committing
    )
    if lost:
        raise StoreError(
            f"{store_path} does not list {len(lost)} cell(s) whose finished folders are in {cells_dir} "
            f"(e.g. {', '.join(lost[:3])}): the store lost their commits (a damaged or deleted results.db-wal, "
            "or a replaced results.db). Nothing was deleted. Restore the store's files, or run the sweep again "
            "with --redo to delete those folders and compute their cells again"
        )


def _log_tail(work_dir: Path) -> str:
    log = work_dir / LOG_FILE
    if not log.is_file():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])


def _read_outcome(cell: Cell, work_dir: Path, returncode: int) -> dict[str, Any]:
    path = work_dir / OUTCOME_FILE
    if path.is_file():
        return json.loads(path.read_text())
    return {
        "key": cell.key,
        "status": "failed",
        "error": f"the cell's process ended with exit code {returncode} before reporting; last lines of its log:\n"
        + _log_tail(work_dir),
    }


def cell_environment(threads: int | None) -> dict[str, str]:
    """Environment of a cell process: this same fedsyn (installed or not), Flower quiet, and a private
    Ray instance for Flower's simulation engine (``RAY_ADDRESS=local``) so that it never joins a cluster
    that happens to run on the machine (including the one ``--ray-address`` sends this cell to).

    ``threads`` caps torch's CPU threads (``OMP_NUM_THREADS``) unless the user set that variable: N cell
    processes of all-core thread pools on one machine oversubscribe it, and OpenMP threads spinning at
    barriers while their partners wait for a core made attacks about five times slower here."""
    env = dict(os.environ)
    if threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    source_root = Path(__file__).resolve().parents[2]
    if (source_root / "pyproject.toml").is_file():  # a source checkout, maybe not installed
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(source_root), env.get("PYTHONPATH", "")) if p)
    env.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    env.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    env["RAY_ADDRESS"] = "local"
    return env


def start_cell_process(
    cell: Cell, work_dir: Path, cache: Path, threads: int | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m fedsyn.sweep.cell_process`` for ``cell`` in a fresh ``work_dir`` (``threads``: see
    ``cell_environment``)."""
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    (work_dir / CELL_FILE).write_text(cell.model_dump_json())
    with open(work_dir / LOG_FILE, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "fedsyn.sweep.cell_process", str(work_dir), str(cache), str(os.getpid())],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=cell_environment(threads),
        )


def threads_per_worker(workers: int) -> int:
    """CPU threads for each of ``workers`` cell processes sharing this machine's usable cores."""
    return max(1, len(os.sched_getaffinity(0)) // workers)


def run_local(cells: list[Cell], cells_dir: Path, cache: Path, workers: int, tick: Any) -> Iterator[Finished]:
    """Run ``cells`` as processes on this machine, ``workers`` at a time; yield each as it ends."""
    queue = list(cells)
    threads = threads_per_worker(workers)
    running: dict[str, tuple[Cell, Path, subprocess.Popen[bytes]]] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                cell = queue.pop(0)
                work_dir = cells_dir / f"{WORK_PREFIX}{cell.key}"
                running[cell.key] = (cell, work_dir, start_cell_process(cell, work_dir, cache, threads))
            ended = [key for key, (_, _, process) in running.items() if process.poll() is not None]
            for key in ended:
                cell, work_dir, process = running.pop(key)
                yield Finished(cell, work_dir, _read_outcome(cell, work_dir, process.returncode))
            if not ended:
                tick()
                time.sleep(POLL_SECONDS)
    finally:
        for _, _, process in running.values():
            process.kill()
            process.wait()


def _ray_cell(cell_json: str, cache: str | None) -> dict[str, Any]:
    """Ray task body: run the cell in a process on the worker and return its outcome and directory."""
    cell = Cell.model_validate_json(cell_json)
    with tempfile.TemporaryDirectory(prefix="fedsyn-cell-") as scratch:
        work_dir = Path(scratch) / "cell"
        process = start_cell_process(cell, work_dir, Path(cache) if cache else checkpoint_dir())
        process.wait()
        outcome = _read_outcome(cell, work_dir, process.returncode)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            archive.add(work_dir, arcname=".")
        return {"outcome": outcome, "archive": buffer.getvalue()}


def run_ray(cells: list[Cell], cells_dir: Path, cache: Path | None, address: str, tick: Any) -> Iterator[Finished]:
    """Run each cell as a Ray task on the cluster at ``address``; yield each as it ends.

    ``cache`` is the checkpoint folder as seen by the workers (None: each worker's own default).
    """
    import ray

    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    task = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)
    pending = {task.remote(cell.model_dump_json(), None if cache is None else str(cache)): cell for cell in cells}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            if not done:
                tick()
                continue
            ref = done[0]
            cell = pending.pop(ref)
            work_dir = cells_dir / f"{WORK_PREFIX}{cell.key}"
            if work_dir.exists():
                shutil.rmtree(work_dir)
            work_dir.mkdir(parents=True)
            try:
                reply = ray.get(ref)
            except Exception as err:  # a task that died (worker lost, ...) is this cell's failure, not the sweep's
                yield Finished(cell, work_dir, {"key": cell.key, "status": "failed", "error": f"Ray task failed: {err}"})
                continue
            with tarfile.open(fileobj=io.BytesIO(reply["archive"]), mode="r:gz") as archive:
                archive.extractall(work_dir, filter="data")
            yield Finished(cell, work_dir, reply["outcome"])
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        ray.shutdown()


def _commit(store: ResultStore, finished: Finished, cells_dir: Path, progress: Progress) -> None:
    """Give a successful cell's directory its final name and commit its rows; record a failure otherwise."""
    cell, outcome = finished.cell, finished.outcome
    seconds = float(outcome.get("seconds") or 0.0)
    versions = outcome.get("versions") or package_versions()
    if outcome.get("status") != "done":
        error = str(outcome.get("error") or "unknown error")
        store.record_failure(cell, error, seconds=seconds, versions=versions)
        shutil.rmtree(finished.work_dir, ignore_errors=True)
        progress.cell_failed(cell, error=error, seconds=seconds)
        return
    final_dir = cells_dir / cell.key
    if final_dir.exists():
        shutil.rmtree(final_dir)
    store.mark_committing(cell.key)
    os.replace(finished.work_dir, final_dir)
    rows = [dict(row) for row in outcome["rows"]]
    for row in rows:
        if row.get("image_path"):
            row["image_path"] = f"{CELLS_DIR}/{cell.key}/{row['image_path']}"
    rounds = outcome.get("rounds") or []
    store.commit_cell(cell, rows, rounds=rounds, seconds=seconds, versions=versions)
    accuracy = rounds[-1].get("accuracy") if rounds else None
    progress.cell_finished(cell, rows=rows, seconds=seconds, accuracy=accuracy)


def run_sweep(
    config: ExperimentConfig,
    out_dir: Path,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
    redo: bool = False,
) -> SweepSummary:
    """Run every cell of ``config`` not yet finished in ``out_dir``; see the module docstring.

    ``redo``: delete the folders of cells the store does not list as finished (``check_cell_folders``
    refuses to otherwise) and compute those cells again."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cells = expand(config)
    out_dir = Path(out_dir)
    cells_dir = out_dir / CELLS_DIR
    cells_dir.mkdir(parents=True, exist_ok=True)
    cache = checkpoint_dir()
    with sweep_lock(out_dir), open_store(out_dir) as store:
        finished = store.finished_keys()
        if not redo:
            check_cell_folders(cells_dir, finished, store.meta(COMMITTING), store.path)
        store.set_experiment(config.name, [cell.key for cell in cells], config.model_dump_json())
        clear_unfinished(cells_dir, finished)
        todo = [cell for cell in cells if cell.key not in finished]
        bar = Progress(len(cells), len(cells) - len(todo), enabled=progress)
        if ray_address is None:
            stream = run_local(todo, cells_dir, cache, workers, bar.refresh)
        else:
            cache_env = os.environ.get("FEDSYN_CACHE")
            stream = run_ray(todo, cells_dir, cache if cache_env else None, ray_address, bar.refresh)
        for result in stream:
            _commit(store, result, cells_dir, bar)
        bar.close()
        return summarize(store, {cell.key for cell in cells})
