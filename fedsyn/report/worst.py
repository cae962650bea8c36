"""The worst case over the attack suite: per reconstruction target, the most leaked result of any method.

A defense protects only if it withstands every attack the server could run, so the report's headline
table takes, for each target (cell, seed, round, attacked client, attacker), the most leaked score over
the methods that produced one (issue 16, item 4). The choice is made per metric in that metric's
direction (the highest PSNR, the lowest MSE%), so two metrics of one worst-case row may come from two
methods; ``worst_method`` names the method behind the PSNR. Methods that did not apply to a target
("not applicable") or failed give no score and cannot be the worst case; the report lists them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import Any

from fedsyn.experiment.names import BEST_OF, REPORT_METRICS

from .directions import private_sign

WORST_CASE = "worst case"
"""The ``method`` of the synthetic worst-case rows."""

WORST_METRICS: tuple[str, ...] = (*REPORT_METRICS, *(f"best_{name}" for name in BEST_OF))


def target_key(row: dict[str, Any]) -> tuple[Hashable, ...]:
    """What one reconstruction target is: the same captured update seen by the same attacker."""
    return (row["cell_key"], row.get("seed"), row["round"], row["partition_id"], row["attacker"])


def _most_leaked(values: list[tuple[float, str]], metric: str) -> tuple[float | None, str | None]:
    present = [(v, m) for v, m in values if v is not None]
    if not present:
        return None, None
    sign = private_sign(metric)
    return min(present, key=lambda item: sign * item[0])


def worst_case_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per target that at least one method scored (status ``ok``), with ``method`` = ``WORST_CASE``.

    Every metric of ``WORST_METRICS`` is the most leaked value over the target's scored rows; the other
    fields (cell columns, reference scores, seed) are the target's own. ``worst_method`` names the
    method of the PSNR, ``image_path``/``image_psnr``/``converged`` come from that method's row.
    """
    by_target: dict[tuple[Hashable, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "ok":
            by_target[target_key(row)].append(row)
    worst = []
    for members in by_target.values():
        chosen: dict[str, Any] = {}
        for metric in WORST_METRICS:
            chosen[metric], _ = _most_leaked([(r.get(metric), r["method"]) for r in members], metric)
        _, method = _most_leaked([(r.get("psnr"), r["method"]) for r in members], "psnr")
        source = next((r for r in members if r["method"] == method), members[0])
        worst.append({**source, **chosen, "method": WORST_CASE, "worst_method": source["method"]})
    return worst


def not_applicable(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[int, int, str]]:
    """Method -> (targets it did not apply to, its targets, one reason), for every method with such a row."""
    found: dict[str, list[Any]] = {}
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        totals[row["method"]] += 1
        if row["status"] == "not applicable":
            entry = found.setdefault(row["method"], [0, row.get("error") or "no reason given"])
            entry[0] += 1
    return {method: (count, totals[method], reason) for method, (count, reason) in found.items()}
