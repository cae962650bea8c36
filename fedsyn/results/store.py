"""The sweep's results store: one SQLite file per results directory (``DIR/results.db``).

Tables:

- ``meta``: the experiment of the latest run (its ``experiment`` name, the ``cell_keys`` of its grid and
  its ``config`` as JSON, for people: nothing reads it back) and the store's ``schema_version``.
- ``cells``: one row per cell that ran to the end or failed: its key (the config hash), model label,
  trained state, combination, defense, FL/WR/WS flags, status (``done`` | ``failed``), error text,
  attempts, wall time, final test accuracy, the cell's full config, the attack settings and threat
  model, and the package versions that produced it.
- ``rounds``: per cell and federation round, the test accuracy and loss (from ``federation.json``).
- ``results``: one row per (cell, round, partition_id, attacker, method) with the fields of
  ``fedsyn.results.fields.ResultRow`` (docs/results.md) plus the cell's columns, so that a row read
  alone says what produced it.

The report reads this store and nothing else: whatever it shows (labels of cells, the threat model, the
current grid) is stored here, so results stay readable after the experiment schema changes.

A cell is committed in one transaction (cell row, its rounds, its result rows), so a process killed at any
moment leaves either all of a cell or none of it. The database runs in WAL mode: readers (a report built
while the sweep runs) never block the writer.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from fedsyn.errors import FedsynError
from fedsyn.experiment.grid import Cell

from .fields import RESULT_COLUMNS, RESULT_FIELDS, ROW_KEY

SCHEMA_VERSION = 3
"""Version 2 added the ``method`` column (the attack suite) and the ``experiment`` and ``cell_keys`` meta."""
DB_NAME = "results.db"

_CELL_COLUMNS = """
    model TEXT NOT NULL,
    trained INTEGER NOT NULL,
    combo TEXT NOT NULL,
    defense TEXT NOT NULL,
    fl INTEGER NOT NULL,
    wr INTEGER NOT NULL,
    ws INTEGER NOT NULL,"""
_VERSION_COLUMNS = """
    torch_version TEXT NOT NULL,
    flwr_version TEXT NOT NULL,
    fedsyn_version TEXT NOT NULL"""
_RESULT_COLUMNS = "".join(f"\n    {name} {sql}," for name, sql in RESULT_COLUMNS.items())

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    cell_key TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,{_CELL_COLUMNS}
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    error TEXT,
    attempts INTEGER NOT NULL,
    seconds REAL,
    final_accuracy REAL,
    finished_at TEXT NOT NULL,
    cell_json TEXT NOT NULL,
    attack_json TEXT NOT NULL,{_VERSION_COLUMNS}
);
CREATE TABLE IF NOT EXISTS rounds (
    cell_key TEXT NOT NULL REFERENCES cells (cell_key) ON DELETE CASCADE,
    round INTEGER NOT NULL,
    accuracy REAL,
    loss REAL,
    PRIMARY KEY (cell_key, round)
);
CREATE TABLE IF NOT EXISTS results (
    cell_key TEXT NOT NULL REFERENCES cells (cell_key) ON DELETE CASCADE,{_RESULT_COLUMNS}
    extra_json TEXT,{_CELL_COLUMNS}
    attack_json TEXT NOT NULL,{_VERSION_COLUMNS},
    PRIMARY KEY ({", ".join(ROW_KEY)})
);
"""


class StoreError(FedsynError, RuntimeError):
    """A results database that cannot be used (wrong schema version, malformed rows)."""


def package_versions() -> dict[str, str]:
    """The versions of the packages that determine a row's numbers, as stored with every row."""

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {"torch_version": version("torch"), "flwr_version": version("flwr"), "fedsyn_version": version("fedsyn")}


def cell_columns(cell: Cell) -> dict[str, Any]:
    """The columns that describe a cell, shared by ``cells`` and ``results``."""
    return {
        "model": cell.model.label,
        "trained": cell.trained,
        "combo": cell.combo,
        "defense": cell.defense.name,
        "fl": int(cell.biomod.fl),
        "wr": int(cell.biomod.wr),
        "ws": int(cell.biomod.ws),
    }


def _finite_or_none(value: Any) -> Any:
    """NaN cannot be told apart from NULL in SQLite; store it as NULL (an infinite PSNR stays infinite)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class ResultStore:
    """Read and write one results database. Use as a context manager, or call ``close()``."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"no results database at {self.path} (run `fedsyn sweep CONFIG --out DIR` first)")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(
                    "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
        found = self.meta("schema_version")
        if found is not None and int(found) != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has results schema version {found}; this fedsyn reads version {SCHEMA_VERSION} "
                "(run the sweep into a new results directory)"
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def meta(self, name: str) -> str | None:
        try:
            found = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return None if found is None else found["value"]

    def set_experiment(self, name: str, cell_keys: Sequence[str], config_json: str) -> None:
        """Record the experiment a run works on: its name, the keys of its grid's cells (the report shows
        only those) and its config (for people reading the store)."""
        with self._transaction() as db:
            for key, value in (("experiment", name), ("cell_keys", json.dumps(list(cell_keys))), ("config", config_json)):
                db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (key, value))

    def current_keys(self) -> set[str] | None:
        """The cell keys of the experiment last run into this store (None: no run recorded them)."""
        found = self.meta("cell_keys")
        return None if found is None else set(json.loads(found))

    def finished_keys(self) -> set[str]:
        """Keys of the cells that ran to the end (failed cells are not finished: a rerun retries them)."""
        return {row["cell_key"] for row in self._db.execute("SELECT cell_key FROM cells WHERE status = 'done'")}

    def failed_keys(self) -> set[str]:
        return {row["cell_key"] for row in self._db.execute("SELECT cell_key FROM cells WHERE status = 'failed'")}

    def _attempts(self, key: str) -> int:
        found = self._db.execute("SELECT attempts FROM cells WHERE cell_key = ?", (key,)).fetchone()
        return 1 if found is None else found["attempts"] + 1

    def _write_cell(
        self,
        db: sqlite3.Connection,
        cell: Cell,
        *,
        status: str,
        error: str | None,
        seconds: float | None,
        final_accuracy: float | None,
        versions: dict[str, str],
    ) -> None:
        attempts = self._attempts(cell.key)
        db.execute("DELETE FROM cells WHERE cell_key = ?", (cell.key,))
        columns = {
            "cell_key": cell.key,
            "experiment": cell.experiment,
            **cell_columns(cell),
            "status": status,
            "error": error,
            "attempts": attempts,
            "seconds": seconds,
            "final_accuracy": _finite_or_none(final_accuracy),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cell_json": cell.model_dump_json(),
            "attack_json": cell.attack.model_dump_json(),
            **versions,
        }
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        db.execute(f"INSERT INTO cells ({names}) VALUES ({marks})", tuple(columns.values()))

    def commit_cell(
        self,
        cell: Cell,
        rows: Sequence[dict[str, Any]],
        *,
        rounds: Sequence[dict[str, Any]] = (),
        seconds: float | None = None,
        versions: dict[str, str] | None = None,
    ) -> None:
        """Store a finished cell, its per-round accuracy and its result rows in one transaction.

        ``rows`` are result rows as ``ResultRow.as_dict`` gives them (docs/results.md); a row missing a field, or
        belonging to another cell, is rejected before anything is written. Fields beyond the contract's
        are kept in ``extra_json``. ``rounds`` holds dicts with ``round``, ``accuracy`` and ``loss``.
        Committing a cell again (a retried failure) replaces its previous record.
        """
        versions = versions or package_versions()
        prepared = [self._result_values(cell, row, versions) for row in rows]
        final_accuracy = rounds[-1].get("accuracy") if rounds else None
        with self._transaction() as db:
            self._write_cell(
                db, cell, status="done", error=None, seconds=seconds, final_accuracy=final_accuracy, versions=versions
            )
            db.executemany(
                "INSERT INTO rounds (cell_key, round, accuracy, loss) VALUES (?, ?, ?, ?)",
                [
                    (cell.key, int(r["round"]), _finite_or_none(r.get("accuracy")), _finite_or_none(r.get("loss")))
                    for r in rounds
                ],
            )
            if prepared:
                names = ", ".join(prepared[0])
                marks = ", ".join("?" for _ in prepared[0])
                db.executemany(f"INSERT INTO results ({names}) VALUES ({marks})", [tuple(v.values()) for v in prepared])

    def record_failure(
        self, cell: Cell, error: str, *, seconds: float | None = None, versions: dict[str, str] | None = None
    ) -> None:
        """Record that ``cell`` failed with ``error`` (its earlier record, if any, is replaced)."""
        with self._transaction() as db:
            self._write_cell(
                db,
                cell,
                status="failed",
                error=error,
                seconds=seconds,
                final_accuracy=None,
                versions=versions or package_versions(),
            )

    def _result_values(self, cell: Cell, row: dict[str, Any], versions: dict[str, str]) -> dict[str, Any]:
        missing = [name for name in RESULT_FIELDS if name not in row]
        if missing:
            raise StoreError(f"result row of cell {cell.key} lacks field(s) {missing}; got {sorted(row)}")
        if row.get("cell_key", cell.key) != cell.key:
            raise StoreError(f"result row belongs to cell {row['cell_key']}, not to cell {cell.key}")
        extra = {k: v for k, v in row.items() if k not in RESULT_FIELDS and k != "cell_key"}
        return {
            "cell_key": cell.key,
            **{name: _finite_or_none(row[name]) for name in RESULT_FIELDS},
            "extra_json": json.dumps(extra, sort_keys=True, default=str) if extra else None,
            **cell_columns(cell),
            "attack_json": cell.attack.model_dump_json(),
            **versions,
        }

    def results(self, *, cell_key: str | None = None) -> list[dict[str, Any]]:
        """Result rows (cells that finished), in grid-independent stable order."""
        query = "SELECT * FROM results"
        args: tuple[Any, ...] = ()
        if cell_key is not None:
            query += " WHERE cell_key = ?"
            args = (cell_key,)
        query += f" ORDER BY {', '.join(ROW_KEY)}"
        return [dict(row) for row in self._db.execute(query, args)]

    def cells(self) -> list[dict[str, Any]]:
        """One dict per recorded cell (done or failed), with ``rounds``: its per-round accuracy and loss."""
        by_key = {row["cell_key"]: {**dict(row), "rounds": []} for row in self._db.execute("SELECT * FROM cells ORDER BY cell_key")}
        for row in self._db.execute("SELECT * FROM rounds ORDER BY cell_key, round"):
            by_key[row["cell_key"]]["rounds"].append({"round": row["round"], "accuracy": row["accuracy"], "loss": row["loss"]})
        return list(by_key.values())


def open_store(results_dir: Path, *, readonly: bool = False) -> ResultStore:
    """The store of a results directory (``results_dir/results.db``)."""
    return ResultStore(Path(results_dir) / DB_NAME, readonly=readonly)
