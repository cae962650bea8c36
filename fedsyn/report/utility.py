"""Privacy against utility: per finished cell, attacker and method, the mean scores and the final test
accuracy of the federated model."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsyn.experiment.names import COMBOS
from fedsyn.results.fields import REFERENCE_OF

from .baseline import mean_or_inf
from .tables import METRIC_ORDER


@dataclass(frozen=True)
class UtilityPoint:
    """One (cell, attacker, method): mean score per metric over its scored reconstructions, the mean
    reference score per metric (``REFERENCE_OF``), and the federated model's final test accuracy."""

    cell_key: str
    model: str
    trained: int
    combo: str
    defense: str
    attacker: str
    method: str
    n: int
    means: dict[str, float | None]
    reference: dict[str, float | None]
    accuracy: float | None


def _mean(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return mean_or_inf(present) if present else None


def privacy_utility(rows: Sequence[dict[str, Any]], cells: Sequence[dict[str, Any]]) -> list[UtilityPoint]:
    """One point per (cell, attacker, method) of ``rows`` (worst-case rows included, if given)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "ok":
            groups[(row["cell_key"], row["attacker"], row["method"])].append(row)
    accuracy = {cell["cell_key"]: cell["final_accuracy"] for cell in cells}
    points = [
        UtilityPoint(
            cell_key=key,
            model=group[0]["model"],
            trained=int(group[0]["trained"]),
            combo=group[0]["combo"],
            defense=group[0]["defense"],
            attacker=attacker,
            method=method,
            n=len(group),
            means={metric: _mean([row.get(metric) for row in group]) for metric in METRIC_ORDER},
            reference={metric: _mean([row.get(f"ref_{metric}") for row in group]) for metric in REFERENCE_OF},
            accuracy=accuracy.get(key),
        )
        for (key, attacker, method), group in groups.items()
    ]
    rank = {combo: i for i, combo in enumerate(COMBOS)}
    points.sort(
        key=lambda p: (p.defense != "none", p.defense, p.attacker, p.method, p.model, p.trained, rank.get(p.combo, 99))
    )
    return points


UTILITY_CSV_FIELDS: tuple[str, ...] = (
    *("cell_key", "model", "trained", "combo", "defense", "attacker", "method", "n", "accuracy"),
    *METRIC_ORDER,
    *(f"ref_{metric}" for metric in REFERENCE_OF),
)


def write_utility_csv(points: Sequence[UtilityPoint], path: Path) -> None:
    def text(value: float | None) -> str:
        return "" if value is None else repr(value)

    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=UTILITY_CSV_FIELDS)
        writer.writeheader()
        for p in points:
            writer.writerow(
                {
                    **{name: getattr(p, name) for name in UTILITY_CSV_FIELDS[:8]},
                    "accuracy": text(p.accuracy),
                    **{metric: text(p.means[metric]) for metric in METRIC_ORDER},
                    **{f"ref_{metric}": text(p.reference[metric]) for metric in REFERENCE_OF},
                }
            )
