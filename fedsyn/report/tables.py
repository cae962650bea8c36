"""The paper-style privacy table (seed 001, Table 3) and the privacy-utility table, from stored rows.

One ``PaperTable`` per (defense, attacker, label knowledge, attack method): rows are the eight FL/WR/WS combinations in
the paper's order, columns are (model, trained epochs), a cell is the mean +- sample standard deviation of
the chosen metric over every successful attack of that configuration (all attacked rounds and clients).
The most private cell of each column is marked: highest MSE% / LPIPS / MSE, lowest PSNR / SSIM.
A metric that could not be computed (LPIPS without its backbone weights) is shown as missing with the
reason, never as a number.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsyn.experiment.names import BIOMOD_METHODS, COMBOS, HIGHER_IS_PRIVATE, MODELS, REPORT_METRICS, combo_flags

METRIC_TITLES: dict[str, str] = {
    "mse_pct": "MSE[%] (higher = more private)",
    "psnr": "PSNR in dB (lower = more private)",
    "ssim": "SSIM (lower = more private)",
    "lpips": "LPIPS (higher = more private)",
    "mse": "MSE (higher = more private)",
}
_DIGITS = {"mse_pct": 2, "psnr": 2, "ssim": 3, "lpips": 3, "mse": 4}

Column = tuple[str, int]  # (model label, trained epochs)


def check_metric(metric: str) -> str:
    if metric not in REPORT_METRICS:
        raise ValueError(f"unknown report metric {metric!r}; allowed: {', '.join(REPORT_METRICS)}")
    return metric


@dataclass
class Summary:
    """Mean and sample standard deviation of one metric over ``n`` attacks; ``missing`` says why there is no value."""

    mean: float | None = None
    std: float | None = None
    n: int = 0
    missing: str | None = None
    most_private: bool = False
    failed: bool = False

    def text(self, metric: str, *, bold: bool = False, star: bool = False) -> str:
        if self.mean is None:
            return "failed" if self.failed else ("missing" if self.missing else "-")
        digits = _DIGITS[metric]
        value = f"{self.mean:.{digits}f}"
        if self.std is not None and math.isfinite(self.std):
            value += f" ± {self.std:.{digits}f}"
        if self.most_private and bold:
            return f"**{value}**"
        if self.most_private and star:
            return f"{value} *"
        return value


def summarize(rows: Iterable[dict[str, Any]], metric: str) -> Summary:
    """Summary of ``metric`` over the successful attacks in ``rows``."""
    ok = [row for row in rows if row["status"] == "ok"]
    values = [float(row[metric]) for row in ok if row[metric] is not None]
    if not values:
        reasons = sorted({str(row.get("lpips_missing")) for row in ok if metric == "lpips" and row.get("lpips_missing")})
        if reasons:
            return Summary(n=0, missing="; ".join(reasons))
        return Summary(n=0, missing=None if not ok else f"{metric} not computed")
    mean = math.fsum(values) / len(values)
    if len(values) > 1 and all(math.isfinite(v) for v in values):
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
    else:
        std = 0.0 if len(values) == 1 else math.nan
    return Summary(mean=mean, std=std, n=len(values))


@dataclass
class PaperTable:
    defense: str
    attacker: str
    labels: str
    method: str
    metric: str
    combos: list[str]
    columns: list[Column]
    cells: dict[tuple[str, Column], Summary] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return (
            f"{METRIC_TITLES[self.metric]} — defense: {self.defense}, attacker: {self.attacker}, "
            f"labels: {self.labels}, method: {self.method}"
        )

    @property
    def missing_reasons(self) -> list[str]:
        return sorted({s.missing for s in self.cells.values() if s.missing})

    def get(self, combo: str, column: Column) -> Summary:
        return self.cells.get((combo, column), Summary())


def flag_marks(combo: str) -> list[str]:
    """``x`` or nothing under FL, WR and WS for a combination's row."""
    flags = combo_flags(combo)
    return ["x" if flags[method] else "" for method in BIOMOD_METHODS]


def _mark_most_private(table: PaperTable) -> None:
    higher = HIGHER_IS_PRIVATE[table.metric]
    for column in table.columns:
        summaries = [table.get(combo, column) for combo in table.combos]
        values = [s.mean for s in summaries if s.mean is not None and not math.isnan(s.mean)]
        if not values:
            continue
        best = max(values) if higher else min(values)
        for summary in summaries:
            summary.most_private = summary.mean == best


def _order(values: Iterable[str], known: Sequence[str]) -> list[str]:
    present = set(values)
    return [v for v in known if v in present] + sorted(present - set(known))


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def _add_failures(table: PaperTable, cells: Sequence[dict[str, Any]]) -> None:
    """Show the table's failed cells as failed (with the error) instead of as empty."""
    for cell in cells:
        if cell["status"] != "failed" or cell["defense"] != table.defense:
            continue
        column = (cell["model"], int(cell["trained"]))
        if column not in table.columns:
            table.columns = sorted([*table.columns, column], key=_column_rank)
        if cell["combo"] not in table.combos:
            table.combos = _order([*table.combos, cell["combo"]], COMBOS)
        table.cells[(cell["combo"], column)] = Summary(missing=f"cell failed: {_last_line(cell['error'])}", failed=True)


def paper_tables(
    rows: Sequence[dict[str, Any]], metric: str = "mse_pct", cells: Sequence[dict[str, Any]] = ()
) -> list[PaperTable]:
    """One table per (defense, attacker, labels, method) present in ``rows`` (store result rows).

    ``cells`` (the store's cell records) lets failed cells appear as failed, with their error.
    """
    check_metric(metric)
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["defense"], row["attacker"], row["labels"] or "", row["method"])].append(row)
    tables = []
    for (defense, attacker, labels, method), group in sorted(
        groups.items(), key=lambda item: (item[0][0] != "none", item[0])
    ):
        columns = sorted({(row["model"], int(row["trained"])) for row in group}, key=_column_rank)
        combos = _order((row["combo"] for row in group), COMBOS)
        by_cell: dict[tuple[str, Column], list[dict[str, Any]]] = defaultdict(list)
        for row in group:
            by_cell[(row["combo"], (row["model"], int(row["trained"])))].append(row)
        table = PaperTable(defense, attacker, labels, method, metric, combos, columns)
        table.cells = {place: summarize(members, metric) for place, members in by_cell.items()}
        _add_failures(table, cells)
        _mark_most_private(table)
        tables.append(table)
    return tables


def _column_rank(column: Column) -> tuple[int, str, int]:
    """Columns in the model zoo's order (mlp, alexnet, resnets, ...: the paper's), then by epochs."""
    label, trained = column
    base = label.split("-")[0]
    return (MODELS.index(base) if base in MODELS else len(MODELS), label, trained)


def _header(table: PaperTable) -> list[str]:
    return ["FL", "WR", "WS", *(f"{model} {trained}ep" for model, trained in table.columns)]


def to_markdown(table: PaperTable) -> str:
    lines = [f"### {table.title}", "", "| " + " | ".join(_header(table)) + " |", "|" + "---|" * len(_header(table))]
    for combo in table.combos:
        values = [table.get(combo, column).text(table.metric, bold=True) for column in table.columns]
        lines.append("| " + " | ".join([*flag_marks(combo), *values]) + " |")
    lines.append("")
    lines.append("Mean ± sample standard deviation over every attacked update; **bold** = most private in its column.")
    for reason in table.missing_reasons:
        lines.append(f"Missing values: {reason}")
    return "\n".join(lines) + "\n"


def to_text(table: PaperTable) -> str:
    """Fixed-width table for the terminal; ``*`` marks the most private cell of each column."""
    header = ["combination", *(f"{model} {trained}ep" for model, trained in table.columns)]
    body = [[combo, *(table.get(combo, c).text(table.metric, star=True) for c in table.columns)] for combo in table.combos]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        return "  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths)))

    out = [table.title, fmt(header), "  ".join("-" * w for w in widths), *(fmt(line) for line in body)]
    out.append("* = most private in its column")
    out.extend(f"missing: {reason}" for reason in table.missing_reasons)
    return "\n".join(out) + "\n"


TABLE_CSV_FIELDS: tuple[str, ...] = (
    *("defense", "attacker", "labels", "method", "metric", "combo", "fl", "wr", "ws", "model", "trained"),
    *("mean", "std", "n", "most_private", "missing"),
)


def write_tables_csv(tables: Sequence[PaperTable], path: Path) -> None:
    """Every cell of every table as one CSV line (tidy: easy to read back or plot elsewhere)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_CSV_FIELDS)
        writer.writeheader()
        for table in tables:
            for combo in table.combos:
                fl, wr, ws = (int(flag == "x") for flag in flag_marks(combo))
                for model, trained in table.columns:
                    summary = table.get(combo, (model, trained))
                    writer.writerow(
                        {
                            "defense": table.defense,
                            "attacker": table.attacker,
                            "labels": table.labels,
                            "method": table.method,
                            "metric": table.metric,
                            "combo": combo,
                            "fl": fl,
                            "wr": wr,
                            "ws": ws,
                            "model": model,
                            "trained": trained,
                            "mean": "" if summary.mean is None else repr(summary.mean),
                            "std": "" if summary.std is None else repr(summary.std),
                            "n": summary.n,
                            "most_private": int(summary.most_private),
                            "missing": summary.missing or "",
                        }
                    )


@dataclass
class UtilityPoint:
    """One configuration's attack score next to its federated model's final test accuracy."""

    cell_key: str
    model: str
    trained: int
    combo: str
    defense: str
    attacker: str
    method: str
    score: Summary
    accuracy: float | None


def privacy_utility(rows: Sequence[dict[str, Any]], cells: Sequence[dict[str, Any]], metric: str) -> list[UtilityPoint]:
    """Per (finished cell, attacker, method): the mean attack score and the final test accuracy."""
    check_metric(metric)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["cell_key"], row["attacker"], row["method"])].append(row)
    accuracy = {cell["cell_key"]: cell["final_accuracy"] for cell in cells}
    points = []
    for (key, attacker, method), group in groups.items():
        first = group[0]
        points.append(
            UtilityPoint(
                cell_key=key,
                model=first["model"],
                trained=int(first["trained"]),
                combo=first["combo"],
                defense=first["defense"],
                attacker=attacker,
                method=method,
                score=summarize(group, metric),
                accuracy=accuracy.get(key),
            )
        )
    combo_rank = {combo: i for i, combo in enumerate(COMBOS)}
    points.sort(
        key=lambda p: (
            p.defense != "none", p.defense, p.attacker, p.method, p.model, p.trained, combo_rank.get(p.combo, 99)
        )
    )
    return points


UTILITY_CSV_FIELDS: tuple[str, ...] = (
    *("cell_key", "model", "trained", "combo", "defense", "attacker", "method"),
    *("metric", "mean", "std", "n", "missing", "accuracy"),
)


def write_utility_csv(points: Sequence[UtilityPoint], metric: str, path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=UTILITY_CSV_FIELDS)
        writer.writeheader()
        for p in points:
            writer.writerow(
                {
                    "cell_key": p.cell_key,
                    "model": p.model,
                    "trained": p.trained,
                    "combo": p.combo,
                    "defense": p.defense,
                    "attacker": p.attacker,
                    "method": p.method,
                    "metric": metric,
                    "mean": "" if p.score.mean is None else repr(p.score.mean),
                    "std": "" if p.score.std is None else repr(p.score.std),
                    "n": p.score.n,
                    "missing": p.score.missing or "",
                    "accuracy": "" if p.accuracy is None else repr(p.accuracy),
                }
            )
