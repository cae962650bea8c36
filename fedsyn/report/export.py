"""Every result row with its cell's settings as one tidy table, for people who analyse in pandas or R.

Tidy: one line per result row (one attack of one captured update), one column per variable. Nested
settings become dotted columns (``options: {width: 3}`` -> ``options.width``), lists become JSON text,
None becomes an empty field. The CSV is always written; a Parquet file with the same columns is written
next to it when pyarrow is installed (it is not a fedsyn dependency).
"""

from __future__ import annotations

import csv
import importlib.util
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Export:
    """What was written: the CSV, the Parquet file or None, and why there is no Parquet file."""

    csv: Path
    parquet: Path | None
    parquet_skipped: str | None
    rows: int
    columns: tuple[str, ...]


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": "[1, 2]"}``; two fields flattening to one name fail."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        parts = flatten(value, f"{name}.") if isinstance(value, Mapping) else {name: _scalar(value)}
        for part, item in parts.items():
            if part in flat:
                raise ValueError(f"two fields of a row both become column {part!r}")
            flat[part] = item
    return flat


def _scalar(value: Any) -> Any:
    if isinstance(value, (list, tuple, set, frozenset)):
        return json.dumps(sorted(value) if isinstance(value, (set, frozenset)) else list(value))
    if isinstance(value, Path):
        return str(value)
    return value


def _columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every column of every row, in the order they first appear."""
    return list(dict.fromkeys(name for row in rows for name in row))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly; inf and nan as pandas reads them
    return str(value)


def parquet_unavailable() -> str | None:
    """Why no Parquet file can be written here, or None when pyarrow is installed."""
    if importlib.util.find_spec("pyarrow") is None:
        return "pyarrow is not installed (pip install pyarrow), so only the CSV was written"
    return None


def _write_parquet(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = []
    for name in columns:
        try:
            arrays.append(pa.array([row.get(name) for row in rows]))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"column {name!r} mixes value types Parquet cannot hold in one column: {exc}") from exc
    pq.write_table(pa.table(arrays, names=list(columns)), path)


def write_export(rows: Iterable[Mapping[str, Any]], csv_path: Path, *, parquet: bool = True) -> Export:
    """Write ``rows`` (result rows, each with its cell's settings) to ``csv_path``, and to the same path
    with suffix ``.parquet`` when ``parquet`` is set and pyarrow is installed."""
    flat = [flatten(row) for row in rows]
    columns = _columns(flat)
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([_text(row.get(name)) for name in columns] for row in flat)

    skipped = "Parquet was not asked for" if not parquet else parquet_unavailable()
    parquet_path = None
    if skipped is None:
        parquet_path = csv_path.with_suffix(".parquet")
        _write_parquet(flat, columns, parquet_path)
    return Export(csv=csv_path, parquet=parquet_path, parquet_skipped=skipped, rows=len(flat), columns=tuple(columns))
