"""Paths read from a capture's index or from the results database stay inside their folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fedsyn.evaluation.capture import INDEX_FILE, Capture, CaptureWriter
from fedsyn.experiment.grid import expand
from fedsyn.experiment.schema import parse_config
from fedsyn.paths import PathEscapeError, inside
from fedsyn.results.fields import RESULT_FIELDS
from fedsyn.results.store import open_store

CONFIG = {
    "name": "paths",
    "dataset": {"name": "photos"},
    "models": [{"name": "convnet", "options": {"width": 4}}],
    "biomod": {"combos": ["none"]},
    "federation": {"clients": 2, "rounds": 1},
}


def test_inside_resolves_and_refuses_escapes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert inside(tmp_path, "a/x.pt", source="test") == (tmp_path / "a" / "x.pt").resolve()
    with pytest.raises(PathEscapeError, match="leads outside"):
        inside(tmp_path / "a", "../x.pt", source="test")
    (tmp_path / "a" / "link").symlink_to(tmp_path)
    with pytest.raises(PathEscapeError):
        inside(tmp_path / "a", "link/x.pt", source="test")


def test_capture_index_file_outside_the_capture_is_refused(tmp_path: Path) -> None:
    cell = expand(parse_config(CONFIG))[0]
    capture_dir = tmp_path / "deep" / "er" / "capture"
    CaptureWriter.create(capture_dir, cell)
    torch.save({"w": torch.zeros(2)}, tmp_path / "x.pt")
    line = {
        "round": 1, "partition_id": 0, "node_id": 1, "status": "ok", "reason": None, "file": "../../../x.pt",
        "capture": "update", "steps": 1, "lr": 0.1, "batch_size": 2, "num_examples": 2, "loss": 1.0,
        "rejuvenated": 0, "config_hash": cell.key,
    }  # fmt: skip
    (capture_dir / INDEX_FILE).write_text(json.dumps(line) + "\n")
    capture = Capture(capture_dir)
    with pytest.raises(PathEscapeError, match=r"index.jsonl names '../../../x.pt'"):
        capture.tensors(capture.entry(1, 0))


def test_result_image_path_outside_the_results_folder_is_refused(tmp_path: Path) -> None:
    cell = expand(parse_config(CONFIG))[0]
    row = {name: None for name in RESULT_FIELDS}
    row.update(seed=cell.seed, round=1, partition_id=0, attacker="oblivious", method="inverting-gradients", status="ok")
    results = tmp_path / "results"
    with open_store(results) as store:
        store.commit_cell(cell, [{**row, "image_path": "cells/x/attack/grid.png"}])
        assert store.results()[0]["image_path"] == "cells/x/attack/grid.png"
        store.commit_cell(cell, [{**row, "image_path": "../../../etc/passwd"}])
        with pytest.raises(PathEscapeError, match="results.db .cell .*'../../../etc/passwd'"):
            store.results()
