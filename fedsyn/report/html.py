"""One self-contained ``report.html``: tables, privacy-utility plot and image grids, every image inlined
as base64 so the file reads offline and can be mailed or archived alone."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .grids import ImageGrid
from .tables import METRIC_TITLES, PaperTable, UtilityPoint, flag_marks

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.flag { text-align: center; }
td.best { font-weight: bold; background: #fff3c4; } td.missing { color: #a00; }
.note { color: #555; font-size: 0.85em; } img { max-width: 100%; } pre { white-space: pre-wrap; }
"""


def inline_png(path: Path) -> str:
    """An ``<img>`` tag carrying the PNG at ``path`` as a data URI."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _table_html(table: PaperTable) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in ["FL", "WR", "WS"]) + "".join(
        f"<th>{e(model)}<br>{trained} ep</th>" for model, trained in table.columns
    )
    lines = [f"<h3>{e(table.title)}</h3>", f"<table><tr>{head}</tr>"]
    for combo in table.combos:
        cells = "".join(f'<td class="flag">{mark}</td>' for mark in flag_marks(combo))
        for column in table.columns:
            summary = table.get(combo, column)
            css = "best" if summary.most_private else ("missing" if summary.missing else "")
            title = f' title="{e(summary.missing)}"' if summary.missing else f' title="n = {summary.n}"'
            cells += f'<td class="{css}"{title}>{e(summary.text(table.metric))}</td>'
        lines.append(f"<tr>{cells}</tr>")
    lines.append("</table>")
    lines.append('<p class="note">Mean ± sample standard deviation over every attacked update; highlighted = most private in its column.</p>')
    lines.extend(f'<p class="note">Missing values: {e(reason)}</p>' for reason in table.missing_reasons)
    return "\n".join(lines)


def _utility_html(points: Sequence[UtilityPoint], metric: str) -> str:
    e = html.escape
    head = "".join(f"<th>{h}</th>" for h in ["model", "trained", "combination", "defense", "attacker", "method", e(metric), "n", "test accuracy"])
    lines = [f"<table><tr>{head}</tr>"]
    for p in points:
        acc = "-" if p.accuracy is None or not math.isfinite(p.accuracy) else f"{p.accuracy:.3f}"
        score = e(p.score.text(metric)) + (f" ({e(p.score.missing)})" if p.score.missing else "")
        lines.append(
            f"<tr><td>{e(p.model)}</td><td>{p.trained}</td><td>{e(p.combo)}</td><td>{e(p.defense)}</td>"
            f"<td>{e(p.attacker)}</td><td>{e(p.method)}</td><td>{score}</td><td>{p.score.n}</td><td>{acc}</td></tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


def write_html(
    path: Path,
    *,
    title: str,
    metric: str,
    tables: Sequence[PaperTable],
    points: Sequence[UtilityPoint],
    scatter: Path | None,
    grids: Sequence[ImageGrid],
    cells: Sequence[dict[str, Any]],
) -> Path:
    e = html.escape
    done = [c for c in cells if c["status"] == "done"]
    failed = [c for c in cells if c["status"] == "failed"]
    versions = sorted({(c["torch_version"], c["flwr_version"], c["fedsyn_version"]) for c in done})
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{len(done)} cells finished, {len(failed)} failed. Metric: {e(METRIC_TITLES[metric])}.</p>",
    ]
    if versions:
        parts.append(
            "<p class='note'>Produced with "
            + "; ".join(f"torch {e(t)}, flwr {e(f)}, fedsyn {e(v)}" for t, f, v in versions)
            + ".</p>"
        )
    parts.append("<h2>Privacy per FL/WR/WS combination</h2>")
    if tables:
        parts.extend(_table_html(t) for t in tables)
    else:
        parts.append("<p>No finished cells yet.</p>")
    parts.append("<h2>Privacy against utility</h2>")
    if scatter is not None:
        parts.append(inline_png(scatter))
    parts.append(_utility_html(points, metric))
    if grids:
        parts.append("<h2>Reconstructions</h2>")
        for grid in grids:
            parts.append(f"<h3>{e(grid.title)}</h3>{inline_png(grid.path)}")
    if failed:
        parts.append("<h2>Failed cells</h2><p>Run the sweep again to retry them.</p>")
        for c in failed:
            label = f"{c['model']} {c['trained']}ep {c['combo']} [{c['defense']}] ({c['cell_key']})"
            parts.append(f"<h4>{e(label)}</h4><pre>{e(c['error'] or '')}</pre>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
