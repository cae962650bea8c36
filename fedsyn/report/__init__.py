"""Reports of a results directory: the paper-style tables, privacy against utility, image grids, HTML.

``build_report(DIR)`` reads ``DIR/results.db`` (read-only: it may run while the sweep is still going) and
writes::

    DIR/report.html                 everything below, images inline, readable offline
    DIR/report/table_<metric>.md    one paper-style table per (defense, attacker, labels, attack method)
    DIR/report/table_<metric>.csv   the same cells, one CSV line each (mean, std, n, most_private, missing)
    DIR/report/privacy_utility.csv  per finished cell, attacker and method: the score and the final test accuracy
    DIR/report/privacy_utility.png  the scatter of the two
    DIR/report/grids/*.png          true images and reconstructions per combination

and prints the tables to the terminal. The report reads the store and nothing else (no config, no
schema): the store names the cells of the config the sweep last ran in ``DIR`` (``cell_keys``), and only
those count; cells that an earlier version of the config left in the store (a changed budget, a renamed
defense) are left out and counted, never pooled with the current ones. Attack methods are never pooled
either: every table and point belongs to one method.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fedsyn.results.store import open_store

from .grids import image_grids
from .html import write_html
from .plots import privacy_utility_plot
from .tables import (
    REPORT_METRICS,
    check_metric,
    paper_tables,
    privacy_utility,
    to_markdown,
    to_text,
    write_tables_csv,
    write_utility_csv,
)

REPORT_DIR = "report"
REPORT_HTML = "report.html"


def build_report(results_dir: Path, *, metric: str = "mse_pct") -> Path:
    """Write the report of ``results_dir`` (see the module docstring); returns the path of ``report.html``."""
    check_metric(metric)
    results_dir = Path(results_dir)
    with open_store(results_dir, readonly=True) as store:
        rows = store.results()
        cells = store.cells()
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

    tables = paper_tables(rows, metric, cells)
    (out / f"table_{metric}.md").write_text(f"# {title}\n\n" + "\n".join(to_markdown(t) for t in tables))
    write_tables_csv(tables, out / f"table_{metric}.csv")
    points = privacy_utility(rows, cells, metric)
    write_utility_csv(points, metric, out / "privacy_utility.csv")
    scatter = privacy_utility_plot(points, metric, out / "privacy_utility.png")
    grids = image_grids(rows, results_dir, out / "grids")
    html_path = write_html(
        results_dir / REPORT_HTML,
        title=title,
        metric=metric,
        tables=tables,
        points=points,
        scatter=scatter,
        grids=grids,
        cells=cells,
    )
    for table in tables:
        print(to_text(table), file=sys.stdout)
    if stale:
        print(f"left out {stale} cell(s) that an earlier version of the config left in {results_dir}")
    failed = sum(1 for c in cells if c["status"] == "failed")
    if failed:
        print(f"{failed} cell(s) failed; see {html_path} (run the sweep again to retry them)")
    return html_path


__all__ = ["REPORT_METRICS", "build_report"]
