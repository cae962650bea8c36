"""The report of an active server: its cells get tables of their own (never pooled with a passive
cell of the same combination), and a section lines the imprint's recoveries up beside the passive
methods' worst case on the same batches.

The store is filled through its own API with the cells of a real config (two designs and a passive
block) and rows shaped as docs/results.md defines them, with known per-image PSNRs.
"""

from __future__ import annotations

import html as html_text
from pathlib import Path

import numpy as np
from matplotlib import image as mpimg

from fedsyn.report import build_report
from fedsyn.report.servers import PASSIVE, server_of
from fedsyn.results.fields import RESULT_FIELDS
from stored_results import store_cells

CLIENTS = 2
IMAGES = 4
CONFIG = {
    "name": "active-report-test",
    "models": ["convnet"],
    "biomod": {"combos": ["none", "ws"]},
    "federation": {"clients": CLIENTS, "rounds": 1, "batch_size": IMAGES},
    "attack": {
        "methods": ["imprint"],
        "attackers": ["oblivious"],
        "active": {"type": "imprint", "designs": ["oblivious", "informed"], "bins": 16},
    },
    "grid": [
        {},
        {"combos": ["none"], "attack": {"active": None, "methods": ["inverting-gradients", "analytic"]}},
    ],
}


def image_psnrs(cell, method: str, p: int) -> list[float] | None:
    """Per-image PSNRs: the oblivious design gets 3 (client 0) and 2 (client 1) of 4 images above 30 dB,
    the informed one all 4; inverting gradients gets client 1's first image; analytic does not apply."""
    if cell.attack.active is None:
        if method == "analytic":
            return None
        return [12.0, 11.0, 10.0, 9.0] if p == 0 else [35.0, 13.0, 12.0, 11.0]
    if cell.attack.active.designs == ("informed",):
        return [60.0, 50.0, 40.0, 70.0]
    return [40.0, 50.0, 60.0, 10.0] if p == 0 else [45.0, 55.0, 20.0, 10.0]


def make_row(results: Path, cell, p: int, method: str) -> dict:
    row = {name: None for name in RESULT_FIELDS}
    row.update(round=1, partition_id=p, attacker="oblivious", method=method, labels="known", seed=cell.seed)
    psnrs = image_psnrs(cell, method, p)
    if psnrs is None:
        row.update(status="not applicable", error="the model has no fully connected input layer")
        return row
    image_rel = f"{cell.key}/r1_p{p}_{method}.png"
    (results / image_rel).parent.mkdir(parents=True, exist_ok=True)
    mpimg.imsave(results / image_rel, np.random.default_rng(p).random((2 * 34 + 2, IMAGES * 34 + 2, 3)))
    recovered = [v for v in psnrs if v > 30]
    mean = sum(psnrs) / len(psnrs)
    row.update(
        status="ok", psnr=mean, mse=10 ** (-mean / 10), ssim=0.5, mse_pct=100 - mean, label_acc=1.0,
        ref_psnr=11.0, ref_mse=10 ** -1.1, ref_ssim=0.1, ref_mse_pct=60.0, attack_seconds=0.1, iterations=0,
        image_path=image_rel, image_psnr=psnrs, recovered_30db=len(recovered),
        recovered_psnr=sum(recovered) / len(recovered) if recovered else None,
    )
    if cell.attack.active is not None:
        row.update(accuracy_before=0.1, accuracy_modified=0.09, accuracy_unmodified=0.11)
    return row


def fill(directory: Path) -> list:
    return store_cells(
        directory, CONFIG, lambda cell: [make_row(directory, cell, p, m) for p in range(CLIENTS) for m in cell.attack.methods]
    )


def test_active_cells_have_their_own_tables_and_sit_beside_the_passive_worst_case(tmp_path: Path, capsys) -> None:
    cells = fill(tmp_path)
    assert [(c.combo, c.attack.active.designs[0] if c.attack.active else "passive") for c in cells] == [
        ("none", "oblivious"), ("ws", "oblivious"), ("ws", "informed"), ("none", "passive")
    ]
    page = html_text.unescape(build_report(tmp_path, resamples=500).read_text())
    headings = [line for line in page.splitlines() if line.startswith("<h2 id='table")]
    assert len(headings) == 3  # passive, oblivious design, informed design: never pooled
    assert "Defense: none; attacker: oblivious" in headings[0] and "Active server" not in headings[0]
    assert "Active server: imprint block (informed design, round 1, bins 16)" in headings[1]
    assert "Active server: imprint block (oblivious design, round 1, bins 16)" in headings[2]
    section = page.split("<h2 id='active'>")[1].split("<h2")[0]
    rows = [row for row in section.split("<tr>")[2:]]
    assert len(rows) == 2  # (convnet, none) and (convnet, ws)
    none_row, ws_row = rows
    # passive worst case per client: client 0 gets nothing, client 1 one image at 35 dB
    assert "1/8 above 30 dB; fewest 0/4; recovered 35.0 dB" in none_row
    # oblivious design: 3 + 2 of 8, fewest 2/4, recovered images' mean (40+50+60+45+55)/5 = 50
    assert "5/8 above 30 dB; fewest 2/4; recovered 50.0 dB" in none_row
    assert "not run" in ws_row and "8/8 above 30 dB; fewest 4/4; recovered 55.0 dB" in ws_row
    assert "0.100 -> 0.090 modified (0.110 unmodified)" in none_row
    out = capsys.readouterr().out
    assert "Active server against the passive worst case" in out and "passive worst case: not run" in out
    markdown = (tmp_path / "report" / "tables.md").read_text()
    assert markdown.index("## Active server against the passive worst case") < markdown.index("## Worst case")


def test_servers_are_named_by_type_design_round_and_changed_settings() -> None:
    assert server_of({"attack": {"active": None}}) == PASSIVE
    active = {"type": "imprint", "designs": ["informed"], "round": 2, "bins": 128, "output_scale": 0.5}
    assert server_of({"attack": {"active": active}}) == "imprint block (informed design, round 2, output_scale 0.5)"
