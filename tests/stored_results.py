"""Filling a results store through its own API with the cells of a real config (report tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedsyn.experiment.grid import Cell, expand
from fedsyn.experiment.schema import parse_config
from fedsyn.results.store import open_store


def store_cells(directory: Path, config: dict[str, Any], rows_of: Callable[[Cell], list[dict]]) -> list[Cell]:
    """Commit every cell of ``config`` with the rows ``rows_of(cell)`` and record the experiment."""
    experiment = parse_config(config)
    cells = expand(experiment)
    with open_store(directory) as store:
        for cell in cells:
            store.commit_cell(cell, rows_of(cell), rounds=[{"round": 1, "accuracy": 0.1, "loss": 2.0}], seconds=1.0)
        store.set_experiment(experiment.name, [cell.key for cell in cells], experiment.model_dump_json())
    return cells
