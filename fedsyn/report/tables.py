"""The report's privacy tables, from stored rows: every metric side by side, with the statistics of
``report.statistics`` and the baseline check of ``report.baseline``.

One ``TableGroup`` per (server, defense set, attacker, label knowledge), the server being ``passive`` or an
active server's modification (``report.servers.server_of``). Its headline table is the worst case
over the attack suite (``report.worst``); beside it one table per attack method. In every table the rows
are the FL/WR/WS combinations in the paper's order and the columns are (model, trained epochs); a cell
holds, per metric, the mean over its reconstructions with a 95% bootstrap interval and, for a defended
row, the paired difference to the undefended row of its column with its interval and Holm-corrected
Wilcoxon p-value (docs/statistics.md). Reconstructions are paired on (seed, round, attacked client).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fedsyn.experiment.names import BIOMOD_METHODS, COMBOS, MODELS, REPORT_METRICS, combo_flags

from .baseline import BaselineCheck, check_baseline
from .servers import PASSIVE, cell_servers
from .statistics import CellStatistics, TableStatistics, group_values, table_statistics
from .worst import WORST_CASE, not_applicable, worst_case_rows

BASELINE_COMBO = "none"
METRIC_ORDER: tuple[str, ...] = ("psnr", "ssim", "lpips", "mse_pct", "mse")
"""The report's metrics in the order it shows them (PSNR first: the baseline check reads it)."""
METRIC_NAMES: dict[str, str] = {
    "psnr": "PSNR in dB",
    "ssim": "SSIM",
    "lpips": "LPIPS distance",
    "mse_pct": "MSE[%]",
    "mse": "MSE",
}
DIGITS: dict[str, int] = {"psnr": 2, "ssim": 3, "lpips": 3, "mse_pct": 2, "mse": 4}
SMALL_N = 6
"""Below this many reconstructions a cell's interval and tests are flagged as description only (with 5 or
fewer unequal pairs no Wilcoxon test reaches p < 0.05, docs/statistics.md)."""
PAIR_FIELDS: tuple[str, ...] = ("seed", "round", "partition_id")
"""What pairs two reconstructions across the rows of a column: the same seed, round and attacked client
(the same true images, since batch selection depends on these alone)."""

Column = tuple[str, int]  # (model label, trained epochs)
RowsBy = Literal["combo", "defense"]  # what a table's rows are: FL/WR/WS combinations or defense sets
EVERY_DEFENSE = "every defense set, plain model"
"""The ``defense`` of the table whose rows are the defense sets (the plain model, combination ``none``)."""
Place = tuple[str, Column]  # (combination, column)

if set(METRIC_ORDER) != set(REPORT_METRICS):
    raise ImportError("report.tables.METRIC_ORDER must list the metrics of fedsyn.experiment.names.REPORT_METRICS")


def check_metric(metric: str) -> str:
    if metric not in REPORT_METRICS:
        raise ValueError(f"unknown report metric {metric!r}; allowed: {', '.join(REPORT_METRICS)}")
    return metric


def flag_marks(combo: str) -> list[str]:
    """``x`` or nothing under FL, WR and WS for a combination's row."""
    flags = combo_flags(combo)
    return ["x" if flags[method] else "" for method in BIOMOD_METHODS]


def column_of(row: dict[str, Any]) -> Column:
    return (row["model"], int(row["trained"]))


def column_rank(column: Column) -> tuple[int, str, int]:
    """Columns in the model zoo's order (mlp, alexnet, resnets, ...: the paper's), then by epochs."""
    label, trained = column
    base = label.split("-")[0]
    return (MODELS.index(base) if base in MODELS else len(MODELS), label, trained)


def row_header(rows_by: RowsBy) -> list[str]:
    """The headings of a table's row labels: the FL/WR/WS flags, or the defense set."""
    return ["FL", "WR", "WS"] if rows_by == "combo" else ["defense"]


def row_marks(rows_by: RowsBy, key: str) -> list[str]:
    """The row label cells of row ``key`` under ``row_header``."""
    return flag_marks(key) if rows_by == "combo" else [key]


def column_title(column: Column) -> str:
    model, trained = column
    return f"{model}, {'untrained' if trained == 0 else f'{trained} epochs pretrained'}"


def in_order(values: Iterable[str], known: Sequence[str]) -> list[str]:
    present = set(values)
    return [v for v in known if v in present] + sorted(present - set(known))


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


@dataclass
class ReportTable:
    """One method's table (or the worst case) of one (defense, attacker, labels) group."""

    defense: str
    attacker: str
    labels: str
    method: str
    combos: list[str]
    columns: list[Column]
    rows: list[dict[str, Any]]
    server: str = PASSIVE
    rows_by: RowsBy = "combo"
    stats: dict[str, TableStatistics] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    baseline: dict[Column, BaselineCheck] = field(default_factory=dict)
    failed: dict[Place, str] = field(default_factory=dict)
    not_converged: dict[Place, tuple[int, int]] = field(default_factory=dict)
    worst_sources: dict[Column, Counter[str]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        head = "Worst case over the attack methods" if self.method == WORST_CASE else f"Method: {self.method}"
        server = "" if self.server == PASSIVE else f"server: {self.server}, "
        return f"{head} ({server}defense: {self.defense}, attacker: {self.attacker}, labels {self.labels})"

    def cell(self, metric: str, combo: str, column: Column) -> CellStatistics | None:
        stats = self.stats.get(metric)
        return None if stats is None else stats.cells.get((combo, column))

    def evidence(self, column: Column) -> bool:
        """Whether the column's comparisons mean anything: its undefended cell leaks."""
        check = self.baseline.get(column)
        return check is not None and check.leaks is True

    def most_private(self, metric: str, combo: str, column: Column) -> bool:
        cell = self.cell(metric, combo, column)
        return cell is not None and cell.most_private and self.evidence(column)

    def has_values(self, metric: str) -> bool:
        stats = self.stats.get(metric)
        return stats is not None and any(cell.n for cell in stats.cells.values())


@dataclass
class TableGroup:
    """The tables of one (server, defense, attacker, labels): the worst case first, then each method's."""

    server: str
    defense: str
    attacker: str
    labels: str
    worst: ReportTable
    methods: list[ReportTable]
    not_applicable: dict[str, tuple[int, int, str]]
    cell_keys: set[str]


def _pair_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(name) for name in PAIR_FIELDS)


def _missing_reasons(rows: Sequence[dict[str, Any]], metric: str) -> list[str]:
    """Why ``metric`` is absent from scored rows (LPIPS: the evaluator's reason; otherwise generic)."""
    absent = [row for row in rows if row.get(metric) is None]
    if not absent:
        return []
    if metric == "lpips":
        reasons = Counter(str(row.get("lpips_missing") or "not computed") for row in absent)
    else:
        reasons = Counter(f"{METRIC_NAMES[metric]} not computed" for _ in absent)
    return [f"{reason} ({count} of {len(rows)} reconstructions)" for reason, count in reasons.items()]


def build_table(
    rows: Sequence[dict[str, Any]],
    *,
    defense: str,
    attacker: str,
    labels: str,
    method: str,
    server: str = PASSIVE,
    rows_by: RowsBy = "combo",
    undefended: Sequence[dict[str, Any]] = (),
    failed_cells: Sequence[dict[str, Any]] = (),
    resamples: int = 10_000,
) -> ReportTable:
    """The statistics of every metric for one table's rows (ok rows count; others are listed).

    ``rows_by`` names the field whose values are the table's rows (``combo`` or ``defense``); the row
    ``none`` is the baseline of the paired comparisons. ``undefended`` are the plain model's rows without
    defense (same server, attacker, labels and method) that decide, per column, whether the attack leaks
    at all (``report.baseline``).
    """
    scored = [row for row in rows if row["status"] == "ok"]
    columns = sorted({column_of(row) for row in rows}, key=column_rank)
    known = COMBOS if rows_by == "combo" else (BASELINE_COMBO,)
    keys = in_order((row[rows_by] for row in rows), known)
    table = ReportTable(defense, attacker, labels, method, keys, columns, list(rows), server, rows_by)
    for cell in failed_cells:
        column = (cell["model"], int(cell["trained"]))
        if column not in table.columns:
            table.columns = sorted([*table.columns, column], key=column_rank)
        if cell[rows_by] not in table.combos:
            table.combos = in_order([*table.combos, cell[rows_by]], known)
        table.failed[(cell[rows_by], column)] = f"cell failed: {_last_line(cell['error'])}"
    paired = [{**row, "_pair": _pair_key(row), "_column": column_of(row)} for row in scored]
    for metric in METRIC_ORDER:
        values = group_values(paired, metric=metric, row=rows_by, column="_column", pair="_pair")
        if values:
            table.stats[metric] = table_statistics(values, metric=metric, baseline=BASELINE_COMBO, resamples=resamples)
        table.missing[metric] = _missing_reasons(scored, metric)
    by_place: dict[Place, list[dict[str, Any]]] = defaultdict(list)
    for row in scored:
        by_place[(row[rows_by], column_of(row))].append(row)
    for place, members in by_place.items():
        converged = [row.get("converged") for row in members if row.get("converged") is not None]
        stalled = sum(1 for flag in converged if not flag)
        if stalled:
            table.not_converged[place] = (stalled, len(members))
    plain = [row for row in undefended if row["status"] == "ok"]
    for column in table.columns:
        table.baseline[column] = check_baseline(
            [row for row in plain if column_of(row) == column], has_baseline=bool(undefended)
        )
        if method == WORST_CASE:
            table.worst_sources[column] = Counter(
                row["worst_method"] for (_, col), members in by_place.items() if col == column for row in members
            )
    return table


def report_tables(
    rows: Sequence[dict[str, Any]], cells: Sequence[dict[str, Any]] = (), *, resamples: int = 10_000
) -> list[TableGroup]:
    """The table groups of ``rows`` (store result rows with their cell's ``server``): the passive server
    first, the undefended defense set first within a server.

    ``cells`` (the store's cell records) lets failed cells appear as failed, with their error.
    """
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["server"], row["defense"], row["attacker"], row["labels"] or "")].append(row)
    servers = cell_servers(cells)
    plain_by_defense: dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for (server, defense, attacker, labels), group in groups.items():
        plain_by_defense[(server, attacker, labels)][defense] += [r for r in group if r["combo"] == BASELINE_COMBO]
    result = []
    ordered = sorted(groups.items(), key=lambda item: (item[0][0] != PASSIVE, item[0][0], item[0][1] != "none", item[0][1:]))
    for (server, defense, attacker, labels), group in ordered:
        context = (server, attacker, labels)
        plain = plain_by_defense[context]
        defended_plain_only = defense != BASELINE_COMBO and all(r["combo"] == BASELINE_COMBO for r in group)
        if defended_plain_only and len(plain) > 1 and BASELINE_COMBO in plain:
            continue  # the defenses table below holds it, beside the undefended model
        failed = [
            c for c in cells if c["status"] == "failed" and c["defense"] == defense and servers[c["cell_key"]] == server
        ]
        result.append(_group(group, plain.get(BASELINE_COMBO, []), failed, rows_by="combo", server=server,
                             defense=defense, attacker=attacker, labels=labels, resamples=resamples))
        if defense == BASELINE_COMBO and len(plain) > 1:
            defended = [row for rows_of_defense in plain.values() for row in rows_of_defense]
            failed = [
                c for c in cells
                if c["status"] == "failed" and c["combo"] == BASELINE_COMBO and servers[c["cell_key"]] == server
            ]
            result.append(_group(defended, plain[BASELINE_COMBO], failed, rows_by="defense", server=server,
                                 defense=EVERY_DEFENSE, attacker=attacker, labels=labels, resamples=resamples))
    return result


def _group(
    group: Sequence[dict[str, Any]],
    undefended: Sequence[dict[str, Any]],
    failed: Sequence[dict[str, Any]],
    *,
    rows_by: RowsBy,
    server: str,
    defense: str,
    attacker: str,
    labels: str,
    resamples: int,
) -> TableGroup:
    """The worst-case table and each method's table of ``group``."""
    options: dict[str, Any] = {
        "server": server, "defense": defense, "attacker": attacker, "labels": labels, "failed_cells": failed,
        "resamples": resamples, "rows_by": rows_by,
    }
    methods = in_order((row["method"] for row in group), ())
    return TableGroup(
        server=server,
        defense=defense,
        attacker=attacker,
        labels=labels,
        worst=build_table(worst_case_rows(group), method=WORST_CASE, undefended=worst_case_rows(undefended), **options),
        methods=[
            build_table([r for r in group if r["method"] == m], method=m,
                        undefended=[r for r in undefended if r["method"] == m], **options)
            for m in methods
        ],
        not_applicable=not_applicable(group),
        cell_keys={row["cell_key"] for row in group},
    )


def format_value(value: float, metric: str, *, signed: bool = False) -> str:
    """``value`` at the metric's digits; magnitudes too small for them in scientific notation."""
    if math.isinf(value):
        return ("+" if signed else "") + "inf" if value > 0 else "-inf"
    sign = "+" if signed else ""
    digits = DIGITS[metric]
    if value != 0 and abs(value) < 10.0 ** -digits:
        return f"{value:{sign}.2e}"
    return f"{value:{sign}.{digits}f}"


def cell_text(table: ReportTable, metric: str, combo: str, column: Column) -> tuple[str, str]:
    """(value with interval, comparison with the baseline) of one cell, as plain text."""
    if (combo, column) in table.failed:
        return table.failed[(combo, column)], ""
    cell = table.cell(metric, combo, column)
    if cell is None or cell.n == 0:
        return ("missing" if table.missing.get(metric) else "-"), ""
    value = format_value(cell.mean, metric)
    if not math.isnan(cell.ci_low):
        value += f" [{format_value(cell.ci_low, metric)}, {format_value(cell.ci_high, metric)}]"
    value += f" (n={cell.n})"
    if cell.verdict == "baseline":
        return value, "baseline"
    if math.isnan(cell.p_holm):
        return value, "no paired test"
    delta = "Δ undefined" if math.isnan(cell.delta) else f"Δ {format_value(cell.delta, metric, signed=True)}"
    if not math.isnan(cell.delta_ci_low):
        low, high = (format_value(v, metric, signed=True) for v in (cell.delta_ci_low, cell.delta_ci_high))
        delta += f" [{low}, {high}]"
    verdict = cell.verdict if table.evidence(column) else f"{cell.verdict}, not evidence"
    return value, f"{delta}, p_holm={cell.p_holm:.3g}: {verdict}"


def table_notes(table: ReportTable) -> list[str]:
    """Everything a reader must know about a table's numbers, one sentence each."""
    notes = [table.baseline[column].text(column_title(column)) for column in table.columns]
    small = sorted({cell.n for stats in table.stats.values() for cell in stats.cells.values() if 2 <= cell.n < SMALL_N})
    if small:
        notes.append(
            f"Cells with n = {', '.join(map(str, small))}: with so few values the bootstrap interval is too narrow "
            "(it never reaches beyond their range) and no paired test can be significant; read them as description."
        )
    for (combo, column), (stalled, total) in sorted(table.not_converged.items()):
        notes.append(f"{combo}, {column_title(column)}: {stalled} of {total} attacks did not converge (marked †).")
    for metric in METRIC_ORDER:
        for reason in table.missing.get(metric, []):
            notes.append(f"{METRIC_NAMES[metric]} missing: {reason}.")
    for column, sources in table.worst_sources.items():
        if sources:
            parts = ", ".join(f"{method} {count}" for method, count in sources.most_common())
            notes.append(f"{column_title(column)}: the worst-case PSNR came from {parts} reconstruction(s).")
    return notes


def to_markdown(group: TableGroup) -> str:
    """The group's tables as Markdown, one table per (table, metric)."""
    lines = []
    for table in (group.worst, *group.methods):
        lines += [f"## {table.title}", ""]
        for metric in METRIC_ORDER:
            if metric not in table.stats and not table.failed:
                continue
            header = [*row_header(table.rows_by), *(column_title(c) for c in table.columns)]
            lines += [f"### {METRIC_NAMES[metric]}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for combo in table.combos:
                texts = []
                for column in table.columns:
                    value, comparison = cell_text(table, metric, combo, column)
                    mark = " **most private**" if table.most_private(metric, combo, column) else ""
                    texts.append(value + (f"<br>{comparison}" if comparison else "") + mark)
                lines.append("| " + " | ".join([*row_marks(table.rows_by, combo), *texts]) + " |")
            lines.append("")
        lines += [f"- {note}" for note in table_notes(table)]
        lines.append("")
    for method, (count, total, reason) in sorted(group.not_applicable.items()):
        lines.append(f"- {method}: not applicable to {count} of {total} targets ({reason}); not counted.")
    return "\n".join(lines) + "\n"


def to_text(group: TableGroup, metric: str = "psnr") -> str:
    """The worst-case table of one metric, fixed width, for the terminal."""
    table = group.worst
    header = ["combination" if table.rows_by == "combo" else "defense", *(column_title(c) for c in table.columns)]
    body = []
    for combo in table.combos:
        texts = []
        for column in table.columns:
            value, comparison = cell_text(table, metric, combo, column)
            verdict = comparison.rsplit(": ", 1)[-1] if ": " in comparison else comparison
            texts.append(f"{value} {verdict}".strip() + (" *" if table.most_private(metric, combo, column) else ""))
        body.append([combo, *texts])
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        return "  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths)))

    out = [f"{table.title}: {METRIC_NAMES[metric]}", fmt(header), "  ".join("-" * w for w in widths)]
    out += [fmt(line) for line in body]
    out.append("* = most private in its column (significantly ahead of the runner-up, baseline leaks)")
    out += table_notes(table)
    return "\n".join(out) + "\n"
