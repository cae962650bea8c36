"""Which server produced a cell's rows: a passive one, or an active one and the modification it sent.

The report never pools the two: a cell whose attack names an active modification (``attack.active``)
reads images out of a model the server changed, a passive cell out of the honest model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fedsyn.experiment.schema import ActiveSpec

PASSIVE = "passive"
"""The ``server`` of a cell whose server sends the model unmodified."""


def server_of(config: dict[str, Any]) -> str:
    """``passive`` or the active modification of a cell's configuration (``cell_json``) in words: its
    type, design and round, then every setting that differs from the defaults (two cells of different
    block settings never share a table)."""
    active = config.get("attack", {}).get("active")
    if not active:
        return PASSIVE
    defaults = ActiveSpec().model_dump(mode="json")
    changed = [
        f"{name} {value}" for name, value in active.items()
        if name not in ("type", "designs", "round") and value != defaults.get(name)
    ]
    details = [f"{active['designs'][0]} design", f"round {active['round']}", *changed]
    return f"{active['type']} block ({', '.join(details)})"


def cell_servers(cells: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The ``server`` of each of the store's cell records, by cell key."""
    return {cell["cell_key"]: server_of(json.loads(cell["cell_json"])) for cell in cells}


def rows_with_server(rows: Sequence[dict[str, Any]], cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with the ``server`` of their cell (``passive`` for a cell the store does not list)."""
    servers = cell_servers(cells)
    return [{**row, "server": servers.get(row["cell_key"], PASSIVE)} for row in rows]
