"""One self-contained ``report.html``: per table its experiment, the worst case and each method's table
with every metric side by side, the privacy-utility figure, and the image grids. Every image is inlined
as base64, so the file reads offline and can be mailed or archived alone."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .active import ActiveTable, table_lines
from .baseline import LEAK_MARGIN_DB
from .directions import direction_text
from .experiment import experiment_facts
from .glossary import METHOD_WORDS, METRIC_WORDS, metric_entry
from .grids import PNG_PADDING, GridRow, GridSet, png_size
from .servers import PASSIVE
from .tables import (
    METRIC_NAMES,
    METRIC_ORDER,
    ReportTable,
    TableGroup,
    cell_text,
    column_title,
    format_value,
    row_header,
    row_marks,
    table_notes,
)
from .utility import UtilityPoint

WORST_HEADING = "Worst case over the attack methods"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222; padding: 0 1em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; vertical-align: top; }
th { background: #f2f2f2; } td.flag { text-align: center; min-width: 1.6em; }
.metrics { display: flex; flex-wrap: wrap; gap: 0 1.5em; align-items: flex-start; }
.metrics h4 { margin: 0.6em 0 0; } .metrics > div { max-width: 100%; overflow-x: auto; }
td .cmp { color: #555; font-size: 0.85em; white-space: nowrap; }
td.more { background: #e3f4e1; } td.less { background: #fbe3e0; } td.noev { color: #888; background: #f7f7f7; }
td.best { outline: 2px solid #b8860b; font-weight: bold; } td.failed { color: #a00; }
.facts td, .facts th { text-align: left; } .facts th { width: 16em; }
.note { color: #444; font-size: 0.85em; margin: 0.2em 0; } .warn { color: #a00; font-weight: bold; }
details { margin: 0.4em 0; } summary { cursor: pointer; font-weight: 600; }
.gridrow { display: flex; align-items: flex-start; gap: 0.6em; margin: 0.3em 0; }
.gridlabel { width: 9em; text-align: right; font-size: 0.85em; padding-top: 0.5em; }
.recon { image-rendering: pixelated; display: block; }
.psnrs { display: flex; font-size: 0.72em; color: #333; }
.psnrs span { text-align: center; overflow: hidden; white-space: nowrap; }
dl { font-size: 0.9em; } dt { font-weight: 600; margin-top: 0.3em; } dd { margin-left: 1.5em; }
"""


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def inline_png(path: Path, alt: str) -> str:
    """An ``<img>`` tag carrying the PNG at ``path`` as a data URI."""
    return f'<img alt="{html.escape(alt)}" src="{data_uri(path)}" style="max-width: 100%">'


def _cell_html(table: ReportTable, metric: str, combo: str, column: tuple[str, int]) -> str:
    e = html.escape
    value, comparison = cell_text(table, metric, combo, column)
    cell = table.cell(metric, combo, column)
    css = []
    if (combo, column) in table.failed:
        css.append("failed")
    elif not table.evidence(column):
        css.append("noev")
    elif cell is not None and cell.verdict == "more private":
        css.append("more")
    elif cell is not None and cell.verdict == "less private":
        css.append("less")
    star = ""
    if table.most_private(metric, combo, column):
        css.append("best")
        star = " ★"
    dagger = " †" if (combo, column) in table.not_converged else ""
    title = f' title="{e("; ".join(cell.notes))}"' if cell is not None and cell.notes else ""
    lines = f"{e(value)}{dagger}{star}" + (f'<div class="cmp">{e(comparison)}</div>' if comparison else "")
    return f'<td class="{" ".join(css)}"{title}>{lines}</td>'


def _metric_table(table: ReportTable, metric: str) -> str:
    e = html.escape
    head = "".join(f"<th>{name}</th>" for name in row_header(table.rows_by))
    head += "".join(f"<th>{e(column_title(column))}</th>" for column in table.columns)
    lines = [f"<div><h4>{e(METRIC_NAMES[metric])} <span class='note'>({e(direction_text(metric))})</span></h4>"]
    lines.append(f"<table><tr>{head}</tr>")
    for combo in table.combos:
        flags = "".join(f'<td class="flag">{e(mark)}</td>' for mark in row_marks(table.rows_by, combo))
        lines.append(f"<tr>{flags}{''.join(_cell_html(table, metric, combo, c) for c in table.columns)}</tr>")
    lines.append("</table></div>")
    return "\n".join(lines)


def table_html(table: ReportTable, heading: str) -> str:
    """One table (worst case or one method): every metric side by side, then its notes."""
    e = html.escape
    parts = [f"<h3>{e(heading)}</h3>", '<div class="metrics">']
    parts += [_metric_table(table, metric) for metric in METRIC_ORDER if table.has_values(metric) or table.failed]
    parts.append("</div>")
    if not any(table.has_values(metric) for metric in METRIC_ORDER):
        parts.append("<p class='note'>No scored reconstruction in this table.</p>")
    for note in table_notes(table):
        css = "note warn" if "FAILED ON THE BASELINE" in note or "not possible" in note else "note"
        parts.append(f"<p class='{css}'>{e(note)}</p>")
    return "\n".join(parts)


_LEGEND = (
    "Each cell: mean [95% bootstrap interval] (n reconstructions); for a defended row, the paired difference "
    "Δ to the undefended row 'none' of the same column [its 95% interval] and the Wilcoxon signed-rank "
    "p-value after Holm's correction over the table (pairs: same seed, round and client). Green = "
    "significantly more private than 'none', red = significantly less private, grey = the column's "
    "baseline does not leak (not evidence). ★ = most private: significantly ahead of the runner-up. "
    "† = some attacks in the cell did not converge. Hover a cell for its statistical notes."
)


def _facts_html(facts: Sequence[tuple[str, str]]) -> str:
    e = html.escape
    body = "".join(f"<tr><th>{e(name)}</th><td>{e(value)}</td></tr>" for name, value in facts)
    return f"<details open><summary>Experiment and threat model</summary><table class='facts'>{body}</table></details>"


def group_html(group: TableGroup, cells: Sequence[dict[str, Any]], index: int) -> str:
    e = html.escape
    mine = [c for c in cells if c["cell_key"] in group.cell_keys]
    facts = experiment_facts(mine, [row for table in group.methods for row in table.rows], group.attacker)
    parts = [
        f"<h2 id='table{index}'>{e(group_title(group))}</h2>",
        _facts_html(facts),
        f"<p class='note'>{e(_LEGEND)}</p>",
        table_html(group.worst, WORST_HEADING),
    ]
    for method, (count, total, reason) in sorted(group.not_applicable.items()):
        parts.append(
            f"<p class='note'>{e(method)} was not applicable to {count} of {total} targets and does not count "
            f"there: {e(reason)}</p>"
        )
    if len(group.methods) > 1:
        parts.append("<details><summary>Each attack method's table</summary>")
        parts += [table_html(table, f"Method: {table.method}") for table in group.methods]
        parts.append("</details>")
    else:
        only = group.methods[0].method if group.methods else "none"
        parts.append(f"<p class='note'>One attack method ({e(only)}): the worst case is its table.</p>")
    return "\n".join(parts)


def group_title(group: TableGroup) -> str:
    server = "" if group.server == PASSIVE else f"Active server: {group.server}; "
    return f"{server}Defense: {group.defense}; attacker: {group.attacker}; labels {group.labels}"


_ACTIVE_LEGEND = (
    "Per model, FL/WR/WS combination and defense: for the passive server, the worst case over its attack "
    "methods and attackers per target (a client, or the aggregate under SecAgg+); for each active "
    "modification and attacker, what the imprint read out of the same clients' batches. Each entry: images "
    "recovered above 30 dB PSNR of all images, the fewest recovered from one target, the mean PSNR of the "
    "recovered images and of all images. 'not run': the experiment has no passive cell for that place; '-': "
    "no cell of that design (without FL and WS the informed design is the oblivious one, which runs alone). The "
    "last column is the modification's utility cost: the test accuracy before the round, after it as "
    "modified, and after the same round unmodified."
)


def _active_html(table: ActiveTable) -> str:
    e = html.escape
    header, body = table_lines(table)
    lines = ["<h2 id='active'>Active server against the passive worst case</h2>", f"<p class='note'>{e(_ACTIVE_LEGEND)}</p>"]
    lines.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
    for line in body:
        cells = [f"<td>{e(line[0])}</td>", *(f'<td class="flag">{e(flag)}</td>' for flag in line[1:4])]
        cells += [f"<td>{e(text)}</td>" for text in line[4:]]
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _glossary_html() -> str:
    e = html.escape
    items = [f"<dt>{e(name)}</dt><dd>{e(text)}</dd>" for name, text in METHOD_WORDS.items()]
    items += [f"<dt>{e(METRIC_NAMES[m])}</dt><dd>{e(metric_entry(m))}</dd>" for m in METRIC_ORDER if m in METRIC_WORDS]
    margin = (
        f"A column's undefended cell leaks when its mean PSNR is more than {LEAK_MARGIN_DB:g} dB above the "
        "trivial reconstruction's; docs/methods.md and docs/statistics.md give the exact definitions."
    )
    return f"<details><summary>Glossary</summary><dl>{''.join(items)}</dl><p class='note'>{e(margin)}</p></details>"


def _utility_html(points: Sequence[UtilityPoint]) -> str:
    e = html.escape
    head = ["model", "trained epochs", "combination", "defense", "attacker", "n", "test accuracy"]
    head += [METRIC_NAMES[m] for m in METRIC_ORDER]
    lines = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"]

    def number(value: float | None, metric: str | None = None) -> str:
        if value is None or math.isnan(value):
            return "-"
        return f"{value:.3f}" if metric is None else format_value(value, metric)

    for p in points:
        values = [p.model, str(p.trained), p.combo, p.defense, p.attacker, str(p.n), number(p.accuracy)]
        values += [number(p.means[m], m) for m in METRIC_ORDER]
        lines.append("<tr>" + "".join(f"<td>{e(v)}</td>" for v in values) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _grid_row_html(row: GridRow) -> str:
    e = html.escape
    width, _ = png_size(row.image)
    scale = max(1, min(3, 900 // max(width, 1)))
    label = e(row.combo) + ("" if row.psnr is None else f"<br>mean {row.psnr:.1f} dB")
    psnrs = ""
    if row.image_psnr:
        count = len(row.image_psnr)
        step = (width - PNG_PADDING) / count
        spans = "".join(
            f'<span style="width:{step * scale:.1f}px">{"inf" if math.isinf(v) else f"{v:.1f}"} dB</span>'
            for v in row.image_psnr
        )
        psnrs = f'<div class="psnrs" style="padding-left:{PNG_PADDING * scale / 2:.1f}px">{spans}</div>'
    return (
        f'<div class="gridrow"><div class="gridlabel">{label}</div><div>'
        f'<img class="recon" alt="{e(row.combo)}" src="{data_uri(row.image)}" style="width:{width * scale}px">'
        f"{psnrs}</div></div>"
    )


def _grids_html(sets: Sequence[GridSet]) -> str:
    e = html.escape
    parts = [
        "<p class='note'>Per attacked client: the true images (top of each strip) over their paired "
        "reconstructions, one strip per FL/WR/WS combination, each reconstruction's PSNR under it. "
        "Open a client to see it.</p>"
    ]
    for number, grid in enumerate(sets):
        parts.append(f"<details{' open' if number == 0 else ''}><summary>{e(grid.title)}</summary>")
        for index, target in enumerate(grid.targets):
            parts.append(f"<details{' open' if index == 0 else ''} style='margin-left:1.5em'>")
            parts.append(f"<summary>{e(target.title)}</summary>")
            parts += [_grid_row_html(row) for row in target.rows]
            parts.append("</details>")
        parts.append("</details>")
    return "\n".join(parts)


def write_html(
    path: Path,
    *,
    title: str,
    metric: str,
    groups: Sequence[TableGroup],
    points: Sequence[UtilityPoint],
    scatter: Path | None,
    grids: Sequence[GridSet],
    cells: Sequence[dict[str, Any]],
    active: ActiveTable | None = None,
) -> Path:
    e = html.escape
    done = [c for c in cells if c["status"] == "done"]
    failed = [c for c in cells if c["status"] == "failed"]
    versions = sorted({(c["torch_version"], c["flwr_version"], c["fedsyn_version"]) for c in done})
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{len(done)} cells finished, {len(failed)} failed.</p>",
    ]
    if versions:
        parts.append(
            "<p class='note'>Produced with "
            + "; ".join(f"torch {e(t)}, flwr {e(f)}, fedsyn {e(v)}" for t, f, v in versions)
            + ".</p>"
        )
    parts.append(_glossary_html())
    if groups:
        links = " · ".join(
            f"<a href='#table{i}'>{e(group_title(g))}</a>" for i, g in enumerate(groups)
        )
        more = "<a href='#utility'>privacy against utility</a> · <a href='#grids'>reconstructions</a>"
        if active is not None:
            more = "<a href='#active'>active server against the passive worst case</a> · " + more
        parts.append(f"<p>Tables: {links} · {more}</p>")
        if active is not None:
            parts.append(_active_html(active))
        parts += [group_html(group, cells, i) for i, group in enumerate(groups)]
    else:
        parts.append("<p>No finished cells yet.</p>")
    parts.append(f"<h2 id='utility'>Privacy against utility (worst case, {e(METRIC_NAMES[metric])})</h2>")
    if scatter is not None:
        parts.append(inline_png(scatter, "privacy against utility"))
    parts.append(_utility_html(points))
    if grids:
        parts.append("<h2 id='grids'>Reconstructions</h2>")
        parts.append(_grids_html(grids))
    if failed:
        parts.append("<h2>Failed cells</h2><p>Run the sweep again to retry them.</p>")
        for c in failed:
            label = f"{c['model']} {c['trained']}ep {c['combo']} [{c['defense']}] ({c['cell_key']})"
            parts.append(f"<h4>{e(label)}</h4><pre>{e(c['error'] or '')}</pre>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
