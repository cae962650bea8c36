"""The active server's table from a sweep of configs/active-cpu.yaml (or any sweep with ``attack.active``).

One line per (model, FL/WR/WS combination, defense set, block design, attacker): the images recovered
above 30 dB per attacked target (per client, or the one SecAgg+ aggregate) out of the images behind it,
the smallest of those counts, the mean PSNR of the recovered images, and the utility cost of the
modified round (test accuracy before it, after it, and after the same round recomputed unmodified).

    python benchmarks/active_table.py RESULTS_DIR          # the sweep's --out folder
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections import defaultdict
from pathlib import Path


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    db = sqlite3.connect(f"file:{args.results / 'results.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    rows = db.execute(
        "SELECT model, combo, defense, attacker, partition_id, status, error, recovered_30db, recovered_psnr, "
        "attack_json, extra_json, cell_key FROM results WHERE method = 'imprint' ORDER BY model, combo, defense, partition_id"
    ).fetchall()
    groups: dict[tuple, list[sqlite3.Row]] = defaultdict(list)
    for row in rows:
        attack = json.loads(row["attack_json"])
        design = (attack.get("active") or {}).get("designs", ["-"])[0]
        groups[(row["model"], row["combo"], row["defense"], design, row["attacker"])].append(row)
    header = (
        f"{'model':<9} {'combo':<9} {'defense':<9} {'design':<9} {'attacker':<9} "
        f"{'recovered >30 dB per target':<30} {'min':>4} {'PSNR':>6}  {'acc before/mod/unmod %':<22}"
    )
    print(header)
    print("-" * len(header))
    for (model, combo, defense, design, attacker), members in groups.items():
        ok = [row for row in members if row["status"] == "ok"]
        extra = json.loads(ok[0]["extra_json"] or "{}") if ok else {}
        cell = json.loads(db.execute("SELECT cell_json FROM cells WHERE cell_key = ?", (members[0]["cell_key"],)).fetchone()[0])
        per_target = cell["federation"]["batch_size"] * cell["federation"]["local_steps"]
        counts = [row["recovered_30db"] for row in ok]
        targets = "/".join(str(c) for c in counts)
        if any(row["partition_id"] == -1 for row in ok):
            per_target *= cell["federation"]["clients"]
        recovered = sum(counts)
        psnr = sum(row["recovered_psnr"] * row["recovered_30db"] for row in ok if row["recovered_30db"]) / recovered if recovered else None
        failed = [row["error"] for row in members if row["status"] != "ok"]
        note = f"  {len(failed)} not ok: {failed[0][:60]}" if failed else ""
        utility = "/".join(_percent(extra.get(k)) for k in ("accuracy_before", "accuracy_modified", "accuracy_unmodified"))
        print(
            f"{model:<9} {combo:<9} {defense:<9} {design:<9} {attacker:<9} "
            f"{(targets + f' of {per_target}') if counts else '-':<30} {min(counts) if counts else '-':>4} "
            f"{'-' if psnr is None else f'{psnr:.1f}':>6}  {utility:<22}{note}"
        )


if __name__ == "__main__":
    main()
