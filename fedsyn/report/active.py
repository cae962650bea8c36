"""The active server beside the passive worst case (issue 13): how many images each modification of the
model gets out of the clients' updates, next to the best any passive method did on the same batches.

The report keeps the servers apart in every table (``report.servers``); this section lines them up per
(model, combination, defense): for each server and attacker, the images recovered above
``attacks.metrics.RECOVERED_DB`` over all targets, the fewest recovered from one target (a client, or
the aggregate under SecAgg+) and the mean PSNR of the recovered images; for the passive
server, the worst case over its methods and attackers per target. Cells of one seed see the same
partitions and batches whatever their server, so the columns compare the same images. The utility cost
the modification carries (test accuracy before the round, after it modified, after it unmodified) is
shown where the rows record it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from attacks.metrics import RECOVERED_DB
from fedsyn.experiment.names import COMBOS

from .baseline import mean_or_inf
from .servers import PASSIVE
from .tables import Column, column_of, column_rank, column_title, flag_marks, in_order


@dataclass
class Recovery:
    """What one server and attacker got out of one table place's targets."""

    images: int = 0
    recovered: int = 0
    fewest: tuple[int, int] | None = None  # (recovered, images) of the target with the fewest recovered
    recovered_psnr: list[float] = field(default_factory=list)
    all_psnr: list[float] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        """Count one target's scored row."""
        psnrs = row.get("image_psnr")
        images = len(psnrs) if psnrs else 0
        recovered = int(row.get("recovered_30db") or 0)
        self.images += images
        self.recovered += recovered
        if self.fewest is None or recovered < self.fewest[0]:
            self.fewest = (recovered, images)
        if recovered and row.get("recovered_psnr") is not None:
            self.recovered_psnr += [row["recovered_psnr"]] * recovered
        if row.get("psnr") is not None:
            self.all_psnr.append(row["psnr"])

    def text(self) -> str:
        if not self.images:
            return "-"
        parts = [f"{self.recovered}/{self.images} above {RECOVERED_DB:g} dB"]
        if self.fewest is not None:
            parts.append(f"fewest {self.fewest[0]}/{self.fewest[1]}")
        if self.recovered_psnr:
            parts.append(f"recovered {mean_or_inf(self.recovered_psnr):.1f} dB")
        if self.all_psnr:
            parts.append(f"all {mean_or_inf(self.all_psnr):.1f} dB")
        return "; ".join(parts)


Place = tuple[Column, str, str]  # (column, combination, defense)


@dataclass
class ActiveTable:
    """Every (model column, combination, defense) of the active servers, with a recovery per source."""

    sources: list[str]  # "passive worst case" first, then "<server>, <attacker> attacker"
    places: list[Place]
    recovery: dict[tuple[Place, str], Recovery]
    utility: dict[Place, str]


PASSIVE_SOURCE = "passive worst case"


def active_table(rows: Sequence[dict[str, Any]]) -> ActiveTable | None:
    """The comparison of ``rows`` (store rows with ``server`` and cell fields), or None without an
    active server among them."""
    scored = [row for row in rows if row["status"] == "ok"]
    active = [row for row in scored if row["server"] != PASSIVE]
    if not active:
        return None
    active_rows: dict[Place, list[dict[str, Any]]] = defaultdict(list)
    for row in active:
        active_rows[_place(row)].append(row)
    places = sorted(
        active_rows,
        key=lambda p: (column_rank(p[0]), COMBOS.index(p[1]) if p[1] in COMBOS else len(COMBOS), p[1], p[2] != "none", p[2]),
    )
    recovery: dict[tuple[Place, str], Recovery] = defaultdict(Recovery)
    best: dict[tuple[Place, Any, Any, Any], dict[str, Any]] = {}
    for row in scored:
        place = _place(row)
        if place not in active_rows:
            continue
        if row["server"] == PASSIVE:
            target = (place, row.get("seed"), row["round"], row["partition_id"])
            held = best.get(target)
            if held is None or _leak_order(row) > _leak_order(held):
                best[target] = row
            continue
        recovery[(place, f"{row['server']}, {row['attacker']} attacker")].add(row)
    for (place, *_), row in best.items():
        recovery[(place, PASSIVE_SOURCE)].add(row)
    sources = in_order((source for (_, source) in recovery if source != PASSIVE_SOURCE), ())
    utility = {place: _utility_text(active_rows[place]) for place in places}
    return ActiveTable([PASSIVE_SOURCE, *sources], places, dict(recovery), utility)


def _place(row: dict[str, Any]) -> Place:
    return (column_of(row), row["combo"], row["defense"])


def _leak_order(row: dict[str, Any]) -> tuple[float, float]:
    """Which of two passive rows of one target leaked more: more images recovered, then higher PSNR."""
    psnr = row.get("psnr")
    return (float(row.get("recovered_30db") or 0), -math.inf if psnr is None else float(psnr))


def _utility_text(rows: Sequence[dict[str, Any]]) -> str:
    values = {}
    for name in ("accuracy_before", "accuracy_modified", "accuracy_unmodified"):
        found = [float(r[name]) for r in rows if r.get(name) is not None]
        values[name] = sum(found) / len(found) if found else None
    if all(v is None for v in values.values()):
        return "not recorded"
    before, modified, unmodified = (
        "-" if v is None else f"{v:.3f}" for v in (values["accuracy_before"], values["accuracy_modified"], values["accuracy_unmodified"])
    )
    return f"{before} -> {modified} modified ({unmodified} unmodified)"


def table_lines(table: ActiveTable) -> tuple[list[str], list[list[str]]]:
    """The header and body of the comparison as text cells (for Markdown, HTML and the terminal)."""
    header = ["model", "FL", "WR", "WS", "defense", *table.sources, "test accuracy before -> after the round"]
    body = []
    for place in table.places:
        column, combo, defense = place
        cells = [_entry(table, place, source) for source in table.sources]
        body.append([column_title(column), *flag_marks(combo), defense, *cells, table.utility[place]])
    return header, body


def _entry(table: ActiveTable, place: Place, source: str) -> str:
    """A source's text at a place; ``not run`` for a passive server the experiment lacks there, ``-``
    for an active design without a cell there (without FL and WS the informed design is the oblivious)."""
    if (place, source) in table.recovery:
        return table.recovery[(place, source)].text()
    return "not run" if source == PASSIVE_SOURCE else "-"


def to_markdown(table: ActiveTable) -> str:
    header, body = table_lines(table)
    lines = ["## Active server against the passive worst case", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines) + "\n"


def to_text(table: ActiveTable) -> str:
    """The comparison for the terminal: one block per table place (designs without a cell there left out)."""
    header, body = table_lines(table)
    out = ["Active server against the passive worst case"]
    for line in body:
        out.append(f"{line[0]}, {'+'.join(n for n, f in zip(('fl', 'wr', 'ws'), line[1:4]) if f) or 'none'}, defense {line[4]}")
        out += [f"  {name}: {value}" for name, value in zip(header[5:], line[5:]) if value != "-"]
    return "\n".join(out) + "\n"
