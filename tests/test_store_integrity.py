"""A results store that lost its commits, or is not a store at all, stops the sweep with one message;
finished cells' folders are deleted only with ``--redo``. The damage is real: a WAL file with broken
frames, a file of garbage, an SQLite database of something else."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from fedsyn.cli import main
from fedsyn.experiment.grid import expand
from fedsyn.experiment.schema import parse_config
from fedsyn.results.fields import RESULT_FIELDS
from fedsyn.results.store import DB_NAME, StoreError, open_store
from fedsyn.sweep.runner import CELLS_DIR, run_sweep

CONFIG = {
    "name": "integrity",
    "dataset": {"name": "photos"},
    "models": [{"name": "convnet", "options": {"width": 4}}],
    "biomod": {"combos": ["none", "fl"]},
    "federation": {"clients": 2, "rounds": 1},
}


def row(partition_id: int, seed: int = 0) -> dict:
    values = {name: None for name in RESULT_FIELDS}
    values.update(seed=seed, round=1, partition_id=partition_id, attacker="oblivious", method="inverting-gradients", status="ok")
    return values


def finished_sweep(out: Path, extra_folder: str | None = None) -> None:
    """A results folder whose config cells are all committed, each with its folder (as the runner leaves
    it); ``extra_folder`` adds the folder of a cell of another experiment, committed too."""
    cells = expand(parse_config(CONFIG))
    with open_store(out) as store:
        for cell in cells:
            store.commit_cell(cell, [row(0)])
            (out / CELLS_DIR / cell.key).mkdir(parents=True)
            (out / CELLS_DIR / cell.key / "log.txt").write_text("finished\n")
        if extra_folder is not None:
            other = expand(parse_config({**CONFIG, "name": "other", "seed": 9}))[0]
            store.commit_cell(other, [row(0, seed=9)])
            (out / CELLS_DIR / extra_folder).mkdir(parents=True)


def test_a_damaged_wal_stops_the_sweep_and_deletes_nothing(tmp_path: Path) -> None:
    source, damaged = tmp_path / "source", tmp_path / "damaged"
    with open_store(source) as holder:
        finished_sweep(source)
        assert (source / f"{DB_NAME}-wal").stat().st_size > 0
        shutil.copytree(source, damaged, ignore=shutil.ignore_patterns("*-shm"))
        assert holder.finished_keys()
    wal = damaged / f"{DB_NAME}-wal"
    data = bytearray(wal.read_bytes())
    data[40:4000] = bytes(len(data[40:4000]))
    wal.write_bytes(bytes(data))
    folders = sorted(p.name for p in (damaged / CELLS_DIR).iterdir())
    with pytest.raises(StoreError, match="does not list 2 cell.*Nothing was deleted.*--redo"):
        run_sweep(parse_config(CONFIG), damaged, progress=False)
    assert sorted(p.name for p in (damaged / CELLS_DIR).iterdir()) == folders


def test_garbage_or_a_foreign_database_is_refused_when_opened(tmp_path: Path) -> None:
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / DB_NAME).write_bytes(b"these are not the results you are looking for\n" * 200)
    with pytest.raises(StoreError, match="cannot be read as a results database"):
        run_sweep(parse_config(CONFIG), tmp_path / "garbage", progress=False)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    db.close()
    with pytest.raises(StoreError, match="not a fedsyn results store"):
        open_store(tmp_path)


def test_a_damaged_page_is_refused(tmp_path: Path) -> None:
    finished_sweep(tmp_path)
    path = tmp_path / DB_NAME
    data = bytearray(path.read_bytes())
    assert len(data) >= 4 * 4096
    data[2 * 4096 : 3 * 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="cannot be read"):
        open_store(tmp_path, readonly=True)


def test_redo_deletes_the_unlisted_folders_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    finished_sweep(tmp_path, extra_folder="0123456789abcdef")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["sweep", str(config), "--out", str(tmp_path), "--quiet"]) == 2
    assert "0123456789abcdef" in capsys.readouterr().err
    assert (tmp_path / CELLS_DIR / "0123456789abcdef").is_dir()
    assert main(["sweep", str(config), "--out", str(tmp_path), "--quiet", "--redo"]) == 0
    assert not (tmp_path / CELLS_DIR / "0123456789abcdef").exists()
    assert len(list((tmp_path / CELLS_DIR).iterdir())) == 2


def test_the_folder_of_the_cell_being_committed_is_not_a_loss(tmp_path: Path) -> None:
    finished_sweep(tmp_path)
    with open_store(tmp_path) as store:
        store.mark_committing("fedcba9876543210")
    (tmp_path / CELLS_DIR / "fedcba9876543210").mkdir()
    run_sweep(parse_config(CONFIG), tmp_path, progress=False)
    assert not (tmp_path / CELLS_DIR / "fedcba9876543210").exists()
