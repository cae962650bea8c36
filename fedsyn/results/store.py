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
while the sweep runs) never block the writer. The last commits live in ``results.db-wal`` until SQLite
copies them into ``results.db``: a damaged or deleted WAL file silently loses them, and the store then
reads as if those cells never ran. The sweep notices (their folders exist, ``fedsyn.sweep.runner``) and
stops instead of recomputing them; a damaged database file is refused when opened.
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
from fedsyn.paths import inside

from .fields import RESULT_COLUMNS, RESULT_FIELDS, ROW_KEY

SCHEMA_VERSION = 3
"""Version 2 added the ``method`` column (the attack suite) and the ``experiment`` and ``cell_keys`` meta;
version 3 the ``seed`` column (repeats), the reference scores ``ref_mse``, ``ref_psnr``, ``ref_ssim``,
``ref_mse_pct``, ``recovered_30db``, ``recovered_psnr`` and the other columns docs/results.md lists for it. A version-2 store is upgraded in
place when opened (``_upgrade_from_2``); older ones are refused."""
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


_TABLES = ("meta", "cells", "rounds", "results")


class StoreError(FedsynError, RuntimeError):
    """A results database that cannot be used (wrong schema version, malformed rows, a damaged file or one
    that is not a fedsyn results database)."""


@contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn SQLite's own errors about the file (not a database, damaged, locked for good) into a
    ``StoreError`` that names the file."""
    try:
        yield
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path} cannot be read as a fedsyn results database: {err}") from None


def _upgrade_from_2(path: Path) -> None:
    """Add version 3's columns to a version-2 store: ``seed`` filled from each row's cell (its ``cell_json``),
    the others NULL (the report then says what it could not compute from them)."""
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        columns = {row[1] for row in db.execute("PRAGMA table_info(results)")}
        for name, sql in RESULT_COLUMNS.items():
            if name not in columns:
                db.execute(f"ALTER TABLE results ADD COLUMN {name} {sql.replace('NOT NULL', '').strip()}")
        db.execute(
            "UPDATE results SET seed = (SELECT json_extract(cell_json, '$.seed') FROM cells "
            "WHERE cells.cell_key = results.cell_key)"
        )
        db.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))
        db.execute("COMMIT")
    except sqlite3.DatabaseError as err:
        raise StoreError(
            f"{path} has results schema version 2 and could not be upgraded to {SCHEMA_VERSION} in place: {err}"
        ) from None
    finally:
        db.close()


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


COMMITTING = "committing"
"""Meta entry naming the cell whose folder the sweep is renaming into place right before committing it
(cleared by that commit): the one cell folder that may exist without a finished cell in the store."""


class ResultStore:
    """Read and write one results database. Use as a context manager, or call ``close()``.

    Opening checks the file (``PRAGMA quick_check``): a damaged database, or a file that is not one,
    raises ``StoreError`` instead of reading as an empty store.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise FileNotFoundError(f"no results database at {self.path} (run `fedsyn sweep CONFIG --out DIR` first)")
        try:
            self._open(readonly)
        except sqlite3.DatabaseError as err:
            if hasattr(self, "_db"):
                self._db.close()
            raise StoreError(
                f"{self.path} cannot be read as a results database ({err}): it is damaged or not a fedsyn "
                "store. Nothing was changed; restore it from a copy, or move it away to start a new store"
            ) from None

    def _open(self, readonly: bool) -> None:
        if readonly:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        checked = [row[0] for row in self._db.execute("PRAGMA quick_check")]
        if checked != ["ok"]:
            raise sqlite3.DatabaseError("; ".join(checked[:3]))
        self._db.execute("PRAGMA foreign_keys = ON")
        tables = {row["name"] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if (tables or readonly) and not set(_TABLES) <= tables:
            self._db.close()
            raise StoreError(
                f"{self.path} is an SQLite database but not a fedsyn results store (it lacks the table(s) "
                f"{', '.join(sorted(set(_TABLES) - tables))}); point the command at a sweep's results directory"
            )
        if tables and self.meta("schema_version") == "2":
            self._db.close()
            _upgrade_from_2(self.path)
            self._open(readonly)
            return
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
        if found != str(SCHEMA_VERSION):
            self._db.close()
            raise StoreError(
                f"{self.path} has results schema version {found}; this fedsyn "
                f"{'reads' if readonly else 'writes'} version {SCHEMA_VERSION} "
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
        with _readable(self.path):
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

    def mark_committing(self, key: str) -> None:
        """Record that cell ``key``'s folder is being moved into place; ``commit_cell`` clears it."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (COMMITTING, key))

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
            db.execute("DELETE FROM meta WHERE name = ? AND value = ?", (COMMITTING, cell.key))
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
        if row["seed"] != cell.seed:
            raise StoreError(f"result row has seed {row['seed']}, but cell {cell.key} has seed {cell.seed}")
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
        """Result rows (cells that finished), in grid-independent stable order. Every ``image_path`` must
        lead to a file inside the results folder (``fedsyn.paths.inside``), since the report reads it."""
        query = "SELECT * FROM results"
        args: tuple[Any, ...] = ()
        if cell_key is not None:
            query += " WHERE cell_key = ?"
            args = (cell_key,)
        query += f" ORDER BY {', '.join(ROW_KEY)}"
        with _readable(self.path):
            rows = [dict(row) for row in self._db.execute(query, args)]
        for row in rows:
            if row.get("image_path"):
                inside(self.path.parent, row["image_path"], source=f"{self.path} (cell {row['cell_key']})")
        return rows

    def cells(self) -> list[dict[str, Any]]:
        """One dict per recorded cell (done or failed), with ``rounds``: its per-round accuracy and loss."""
        with _readable(self.path):
            return self._cells()

    def _cells(self) -> list[dict[str, Any]]:
        by_key = {row["cell_key"]: {**dict(row), "rounds": []} for row in self._db.execute("SELECT * FROM cells ORDER BY cell_key")}
        for row in self._db.execute("SELECT * FROM rounds ORDER BY cell_key, round"):
            by_key[row["cell_key"]]["rounds"].append({"round": row["round"], "accuracy": row["accuracy"], "loss": row["loss"]})
        return list(by_key.values())


def open_store(results_dir: Path, *, readonly: bool = False) -> ResultStore:
    """The store of a results directory (``results_dir/results.db``)."""
    return ResultStore(Path(results_dir) / DB_NAME, readonly=readonly)
