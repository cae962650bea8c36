"""Run one cell: pretraining (cached), the federation with its capture, the attacks and their scores.

``run_cell`` does the work in the calling process. The sweep runs every cell in a process of its own
(``python -m fedsyn.sweep.cell_process WORK_DIR CACHE_DIR PARENT_PID``) so that a crash, a leak or Flower's own Ray instance
stays inside that cell: the work directory holds the cell (``sweep-cell.json``) on the way in, and the
outcome (``outcome.json``: rows, per-round accuracy, timings, or the error) and the process's log
(``cell.log``) on the way out, next to the capture and the reconstruction images.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from fedsyn.atomic import write_text_atomically
from fedsyn.experiment.grid import Cell
from fedsyn.results.store import package_versions

from .pretrain import trained_weights

CELL_FILE = "sweep-cell.json"
OUTCOME_FILE = "outcome.json"
LOG_FILE = "cell.log"
FEDERATION_DIR = "federation"
ATTACK_DIR = "attack"
FEDERATION_SUMMARY = "federation.json"


def _rounds(capture_dir: Path) -> list[dict[str, Any]]:
    """Per-round test accuracy and loss from the capture's ``federation.json``."""
    path = capture_dir / FEDERATION_SUMMARY
    if not path.is_file():
        return []
    summary = json.loads(path.read_text())
    return [
        {"round": int(entry["round"]), "accuracy": entry.get("accuracy"), "loss": entry.get("loss")}
        for entry in summary.get("rounds", [])
    ]


def run_cell(cell: Cell, work_dir: Path, *, cache: Path | None = None) -> dict[str, Any]:
    """Run ``cell`` with all its files under ``work_dir``; returns its outcome.

    The outcome holds ``rows`` (docs/results.md, ``image_path`` relative to ``work_dir``),
    ``rounds`` (per-round accuracy and loss), ``seconds`` and ``pretrain_seconds``.
    """
    # Imported here, not at the top: the sweep's driver reads this module's constants and must not pay
    # for importing Flower, which only the cell's own process needs.
    from fedsyn.evaluation.evaluator import attack_capture
    from fedsyn.federation.simulation import federate

    start = time.monotonic()
    weights = trained_weights(cell, cache=cache, log=lambda text: print(text, flush=True))
    pretrain_seconds = time.monotonic() - start
    capture = federate(cell, work_dir / FEDERATION_DIR, initial_weights=weights)
    attack_dir = work_dir / ATTACK_DIR
    rows = attack_capture(capture, attack=cell.attack, out=attack_dir)
    for row in rows:
        if row.get("image_path"):
            row["image_path"] = (attack_dir / row["image_path"]).relative_to(work_dir).as_posix()
    return {
        "key": cell.key,
        "status": "done",
        "rows": rows,
        "rounds": _rounds(capture),
        "seconds": time.monotonic() - start,
        "pretrain_seconds": pretrain_seconds,
        "versions": package_versions(),
    }


_PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): the signal this process gets when its parent dies


def _exit_with_parent(parent: int) -> None:
    """End this process when the sweep ``parent`` that started it dies (even by SIGKILL), instead of
    finishing an orphaned cell whose result nobody will read. The sweep passes its pid because it may
    already be gone by the time this process has imported its modules."""

    if sys.platform.startswith("linux"):
        # the kernel kills this process when its parent dies, however busy it is (a watching thread must
        # first get the interpreter lock, which can take long on a loaded machine)
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(3)
        return

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True, name="fedsyn-parent-watch").start()


def write_outcome(work_dir: Path, outcome: dict[str, Any]) -> None:
    """Write ``outcome.json`` atomically: its presence means the cell process got to the end."""
    write_text_atomically(work_dir / OUTCOME_FILE, json.dumps(outcome, default=str))


def main(argv: list[str] | None = None) -> int:
    """Process entry: ``python -m fedsyn.sweep.cell_process WORK_DIR CACHE_DIR PARENT_PID``."""
    args = sys.argv[1:] if argv is None else argv
    work_dir, cache, parent = Path(args[0]), Path(args[1]), int(args[2])
    _exit_with_parent(parent)
    cell = Cell.model_validate_json((work_dir / CELL_FILE).read_text())
    start = time.monotonic()
    try:
        outcome = run_cell(cell, work_dir, cache=cache)
    except Exception:
        traceback.print_exc()
        outcome = {
            "key": cell.key,
            "status": "failed",
            "error": traceback.format_exc(),
            "seconds": time.monotonic() - start,
            "versions": package_versions(),
        }
    write_outcome(work_dir, outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
