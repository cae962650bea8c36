"""The report's defense tables: every defense set on the plain model in one table beside the undefended
model (paired differences), and every table's evidence check reads the undefended plain model.

The store is filled through its own API with the cells of a real config and rows shaped as
docs/results.md defines them, with known PSNRs.
"""

from __future__ import annotations

import csv
import html as html_text
from pathlib import Path

from fedsyn.report import build_report
from fedsyn.results.fields import RESULT_FIELDS
from stored_results import store_cells

CLIENTS = 8
CONFIG = {
    "name": "defenses-report-test",
    "models": ["lenet"],
    "biomod": {"combos": ["none", "fl"]},
    "federation": {"clients": CLIENTS, "rounds": 1, "batch_size": 1},
    "defenses": ["none", {"name": "prune-90", "steps": [{"type": "prune", "fraction": 0.9}]},
                 {"name": "noise", "steps": [{"type": "clip_noise", "clip": 1.0, "noise_multiplier": 0.1}]}],
    "grid": [{"combos": ["none", "fl"], "defenses": ["none"]},
             {"combos": ["none"], "defenses": ["prune-90"]},
             {"combos": ["none", "fl"], "defenses": ["noise"]}],
    "attack": {"methods": ["inverting-gradients"], "inversion": {"iterations": 10}},
}
PSNR = {("none", "none"): 30.0, ("fl", "none"): 29.0, ("none", "prune-90"): 20.0, ("none", "noise"): 12.0,
        ("fl", "noise"): 12.5}


def make_row(cell, p: int) -> dict:
    row = {name: None for name in RESULT_FIELDS}
    psnr = PSNR[(cell.combo, cell.defense.name)] + 0.1 * p
    row.update(
        round=1, partition_id=p, attacker="oblivious", method="inverting-gradients", labels="known", seed=cell.seed,
        status="ok", psnr=psnr, mse=10 ** (-psnr / 10), ssim=psnr / 100, mse_pct=100 - psnr, label_acc=1.0,
        ref_psnr=12.0, ref_mse=10 ** -1.2, ref_ssim=0.1, ref_mse_pct=60.0, attack_seconds=0.1, iterations=10,
        converged=True,
    )
    return row


def test_defense_sets_share_a_table_with_the_undefended_model(tmp_path: Path) -> None:
    store_cells(tmp_path, CONFIG, lambda cell: [make_row(cell, p) for p in range(CLIENTS)])
    page = html_text.unescape(build_report(tmp_path, resamples=500).read_text())
    headings = [line for line in page.splitlines() if line.startswith("<h2 id='table")]
    assert [h.split(">", 1)[1].split(";")[0] for h in headings] == [
        "Defense: none", "Defense: every defense set, plain model", "Defense: noise"
    ]  # prune-90 has only the plain model: it lives in the defenses table alone
    with open(tmp_path / "report" / "tables.csv", newline="") as handle:
        lines = [line for line in csv.DictReader(handle) if line["metric"] == "psnr" and line["method"] == "worst case"]
    defenses = {line["defense"]: line for line in lines if line["rows"] == "defense"}
    assert set(defenses) == {"none", "prune-90", "noise"}
    assert float(defenses["prune-90"]["delta"]) == -10.0 and float(defenses["noise"]["delta"]) == -18.0
    assert defenses["noise"]["verdict"] == "more private" and defenses["noise"]["baseline_leaks"] == "1"
    # a table of combinations under a defense: its evidence check reads the undefended model (30 dB, leaks),
    # not the defended plain model (12 dB): no "failed on the baseline" although the defense works
    noise = [line for line in lines if line["rows"] == "combo" and line["defense"] == "noise"]
    assert {line["combo"] for line in noise} == {"none", "fl"} and all(line["baseline_leaks"] == "1" for line in noise)
    noise_section = page.split("Defense: noise")[1]
    assert "THE ATTACK FAILED ON THE BASELINE" not in noise_section
    assert "the attack leaks on the baseline (undefended PSNR 30.35 dB" in noise_section
