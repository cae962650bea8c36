"""Reports of a results directory: privacy tables with statistics, privacy against utility, image grids.

``build_report(DIR)`` reads ``DIR/results.db`` (read-only: it may run while the sweep is still going) and
writes::

    DIR/report.html                 everything below, images inline, readable offline
    DIR/report/tables.md            the active server beside the passive worst case (when a cell modified the
                                    model: report.active), every table of every metric, Markdown
    DIR/report/tables.csv           one line per (table, metric, cell): rows (combo: a table of FL/WR/WS
                                    combinations; defense: of defense sets on the plain model), server,
                                    n, mean, ci_low, ci_high, delta,
                                    delta_ci_low, delta_ci_high, p, p_holm, verdict, most_private, ...
    DIR/report/privacy_utility.csv  per finished cell, attacker and method: mean scores and test accuracy
    DIR/report/privacy_utility.png  the worst case against the test accuracy, all defenses on one figure
    DIR/report/results.csv          every result row with its cell's settings (tidy; .parquet with pyarrow)

and prints the worst-case tables to the terminal. The report reads the store and nothing else (no
config, no schema): the store names the cells of the config the sweep last ran in ``DIR``
(``cell_keys``), and only those count; cells that an earlier version of the config left in the store
are left out and counted, never pooled with the current ones. Attack methods are never pooled: each has
its table, and the headline table is their worst case (``report.worst``); nor are servers: an active
server's cells get tables of their own (``report.servers``).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from fedsyn.results.store import open_store

from .active import active_table
from .active import to_markdown as active_markdown
from .active import to_text as active_text
from .export import write_export
from .grids import image_sets
from .html import write_html
from .plots import privacy_utility_plot
from .servers import rows_with_server
from .statistics import CELL_CSV_FIELDS
from .tables import (
    BASELINE_COMBO,
    METRIC_ORDER,
    REPORT_METRICS,
    TableGroup,
    check_metric,
    flag_marks,
    report_tables,
    to_markdown,
    to_text,
)
from .utility import privacy_utility, write_utility_csv
from .worst import WORST_CASE, worst_case_rows

REPORT_DIR = "report"
REPORT_HTML = "report.html"
TABLE_CSV_FIELDS: tuple[str, ...] = (
    *("rows", "server", "defense", "attacker", "labels", "method", "metric", "combo", "fl", "wr", "ws", "model"),
    "trained",
    *("baseline_leaks", "failed", "not_converged"),
    *CELL_CSV_FIELDS,
)


def with_extra(row: dict[str, Any], seeds: dict[str, int]) -> dict[str, Any]:
    """A stored row with the fields the store kept in ``extra_json`` (e.g. ``image_psnr``) as its own keys,
    and its ``seed`` (the cell's, from ``seeds``, where the row does not record one)."""
    extra = json.loads(row["extra_json"]) if row.get("extra_json") else {}
    merged = {k: v for k, v in row.items() if k != "extra_json"}
    merged.update({k: v for k, v in extra.items() if k not in merged})
    if merged.get("seed") is None:
        merged["seed"] = seeds.get(row["cell_key"])
    return merged


def write_tables_csv(groups: list[TableGroup], path: Path) -> None:
    """Every cell of every table and metric as one CSV line."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_CSV_FIELDS)
        writer.writeheader()
        for group in groups:
            for table in (group.worst, *group.methods):
                for metric in METRIC_ORDER:
                    for key in table.combos:
                        combo, defense = (key, table.defense) if table.rows_by == "combo" else (BASELINE_COMBO, key)
                        fl, wr, ws = (int(flag == "x") for flag in flag_marks(combo))
                        for column in table.columns:
                            cell = table.cell(metric, key, column)
                            check = table.baseline.get(column)
                            stalled = table.not_converged.get((key, column), (0, 0))[0]
                            line = {
                                "rows": table.rows_by, "server": table.server,
                                "defense": defense, "attacker": table.attacker, "labels": table.labels,
                                "method": table.method, "metric": metric, "combo": combo, "fl": fl, "wr": wr,
                                "ws": ws, "model": column[0], "trained": column[1],
                                "baseline_leaks": "" if check is None or check.leaks is None else int(check.leaks),
                                "failed": table.failed.get((key, column), ""), "not_converged": stalled,
                            }
                            if cell is not None:
                                line.update(cell.as_dict())
                                line["most_private"] = int(table.most_private(metric, key, column))
                            writer.writerow(line)


def _export_rows(rows: list[dict[str, Any]], cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with its cell's whole configuration under ``cell.`` (the attack settings included)."""
    settings = {cell["cell_key"]: json.loads(cell["cell_json"]) for cell in cells}
    return [
        {**{k: v for k, v in row.items() if k != "attack_json"}, "cell": settings.get(row["cell_key"], {})}
        for row in rows
    ]


def build_report(results_dir: Path, *, metric: str = "psnr", resamples: int = 10_000) -> Path:
    """Write the report of ``results_dir`` (see the module docstring); returns the path of ``report.html``.

    ``metric`` is the one the privacy-utility figure plots; the tables show every metric.
    """
    check_metric(metric)
    results_dir = Path(results_dir)
    with open_store(results_dir, readonly=True) as store:
        cells = store.cells()
        seeds = {cell["cell_key"]: json.loads(cell["cell_json"]).get("seed") for cell in cells}
        rows = rows_with_server([with_extra(row, seeds) for row in store.results()], cells)
        name = store.meta("experiment") or results_dir.name
        current = store.current_keys()
    stale = 0
    if current is not None:
        stale = sum(1 for c in cells if c["cell_key"] not in current)
        cells = [c for c in cells if c["cell_key"] in current]
        rows = [r for r in rows if r["cell_key"] in current]
    title = f"fedsyn report: {name}"
    out = results_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)

    groups = report_tables(rows, cells, resamples=resamples)
    active = active_table(rows)
    markdown = [active_markdown(active)] if active is not None else []
    (out / "tables.md").write_text(f"# {title}\n\n" + "\n".join([*markdown, *(to_markdown(g) for g in groups)]))
    write_tables_csv(groups, out / "tables.csv")
    points = privacy_utility([*worst_case_rows(rows), *rows], cells)
    write_utility_csv(points, out / "privacy_utility.csv")
    worst_points = [p for p in points if p.method == WORST_CASE]
    scatter = privacy_utility_plot(worst_points, metric, out / "privacy_utility.png")
    export = write_export(_export_rows(rows, cells), out / "results.csv")
    html_path = write_html(
        results_dir / REPORT_HTML,
        title=title,
        metric=metric,
        groups=groups,
        points=worst_points,
        scatter=scatter,
        grids=image_sets(rows, results_dir),
        cells=cells,
        active=active,
    )
    if active is not None:
        print(active_text(active), file=sys.stdout)
    for group in groups:
        print(to_text(group, "psnr"), file=sys.stdout)
    print(f"every result row with its cell's settings: {export.csv}" + (f" and {export.parquet}" if export.parquet else ""))
    if stale:
        print(f"left out {stale} cell(s) that an earlier version of the config left in {results_dir}")
    failed = sum(1 for c in cells if c["status"] == "failed")
    if failed:
        print(f"{failed} cell(s) failed; see {html_path} (run the sweep again to retry them)")
    return html_path


__all__ = ["REPORT_METRICS", "build_report"]
