"""The report: tables with the right numbers (read back from the CSV), plots, grids and a self-contained HTML.

The store is filled through its own API with rows shaped as docs/results.md defines them and real PNG files,
so these tests do not need to run a federation.
"""

from __future__ import annotations

import csv
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from fedsyn.experiment.grid import expand
from fedsyn.experiment.names import COMBOS
from fedsyn.experiment.schema import parse_config
from fedsyn.report import build_report
from fedsyn.report.tables import paper_tables
from fedsyn.results.fields import RESULT_FIELDS
from fedsyn.results.store import open_store

CONFIG = {
    "name": "report-test",
    "models": ["lenet", "convnet"],
    "trained": [0, 3],
    "federation": {"clients": 2, "rounds": 1},
    "attack": {"attackers": ["oblivious", "informed"]},
}
LPIPS_REASON = "LPIPS backbone weights not found at /nowhere/alexnet.pth"


def score(cell_index: int, partition_id: int, attacker: str) -> float:
    """A distinct, known MSE% for every row."""
    return 10.0 * cell_index + 3.0 * partition_id + (0.5 if attacker == "informed" else 0.0) + 1.0


def make_row(results: Path, cell, cell_index: int, partition_id: int, attacker: str) -> dict:
    image_rel = f"cells/{cell.key}/attack/r1_p{partition_id}_{attacker}.png"
    image_path = results / image_rel
    image_path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cell_index * 10 + partition_id)
    mpimg.imsave(image_path, rng.random((2 * 32, 4 * 32, 3)))
    mse_pct = score(cell_index, partition_id, attacker)
    row = {name: None for name in RESULT_FIELDS}
    row.update(
        seed=cell.seed,
        round=1,
        partition_id=partition_id,
        attacker=attacker,
        method="inverting-gradients",
        status="ok",
        labels="known",
        mse=mse_pct / 1000,
        psnr=30.0 - mse_pct / 10,
        ssim=0.9 - mse_pct / 1000,
        lpips_missing=LPIPS_REASON,
        mse_pct=mse_pct,
        label_acc=1.0,
        attack_seconds=0.1,
        iterations=10,
        image_path=image_rel,
    )
    return row


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, list]:
    directory = tmp_path_factory.mktemp("results")
    cells = expand(parse_config(CONFIG))
    with open_store(directory) as store:
        for index, cell in enumerate(cells[:-1]):
            rows = [make_row(directory, cell, index, p, a) for p in (0, 1) for a in ("oblivious", "informed")]
            store.commit_cell(cell, rows, rounds=[{"round": 1, "accuracy": 0.01 * index, "loss": 2.0}], seconds=1.0)
        store.record_failure(cells[-1], "Traceback ...\nValueError: a deliberately broken cell")
    return directory, cells


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_report_files_exist(results):
    directory, _ = results
    html = build_report(directory)
    assert html == directory / "report.html"
    for name in ("table_mse_pct.md", "table_mse_pct.csv", "privacy_utility.csv", "privacy_utility.png"):
        assert (directory / "report" / name).stat().st_size > 0
    assert len(list((directory / "report" / "grids").glob("*.png"))) == 2 * 2 * 2


def test_csv_holds_mean_std_and_marks(results):
    directory, cells = results
    build_report(directory)
    lines = read_csv(directory / "report" / "table_mse_pct.csv")
    assert len(lines) == 2 * 8 * 4  # attackers x combinations x (model, trained) columns
    index_of = {(c.model.label, c.trained, c.combo): i for i, c in enumerate(cells)}
    for line in lines:
        i = index_of[(line["model"], int(line["trained"]), line["combo"])]
        if i == len(cells) - 1:  # the failed cell has no rows
            assert line["mean"] == "" and line["n"] == "0"
            assert line["missing"] == "cell failed: ValueError: a deliberately broken cell"
            continue
        expected = [score(i, p, line["attacker"]) for p in (0, 1)]
        assert float(line["mean"]) == pytest.approx(statistics.mean(expected))
        assert float(line["std"]) == pytest.approx(statistics.stdev(expected))
        assert line["n"] == "2"
    for attacker in ("oblivious", "informed"):
        for column in {(line["model"], line["trained"]) for line in lines}:
            members = [l for l in lines if (l["model"], l["trained"]) == column and l["attacker"] == attacker and l["mean"]]
            best = max(members, key=lambda l: float(l["mean"]))
            assert [l["combo"] for l in members if l["most_private"] == "1"] == [best["combo"]]


def test_lower_is_private_metric_marks_the_minimum(results):
    directory, _ = results
    build_report(directory, metric="psnr")
    lines = read_csv(directory / "report" / "table_psnr.csv")
    column = [l for l in lines if l["model"] == "lenet" and l["trained"] == "0" and l["attacker"] == "oblivious"]
    marked = [l for l in column if l["most_private"] == "1"]
    assert len(marked) == 1 and float(marked[0]["mean"]) == min(float(l["mean"]) for l in column)


def test_missing_lpips_is_shown_missing_with_its_reason(results, capsys):
    directory, _ = results
    build_report(directory, metric="lpips")
    lines = read_csv(directory / "report" / "table_lpips.csv")
    attacked = [l for l in lines if not l["missing"].startswith("cell failed")]
    assert len(attacked) == len(lines) - 2
    assert all(l["mean"] == "" and l["missing"] == LPIPS_REASON for l in attacked)
    markdown = (directory / "report" / "table_lpips.md").read_text()
    assert "missing" in markdown and LPIPS_REASON in markdown
    assert not re.search(r"\d\.\d{3} ±", markdown)
    assert LPIPS_REASON in capsys.readouterr().out


def test_tables_follow_the_paper_layout(results):
    directory, _ = results
    with open_store(directory, readonly=True) as store:
        tables = paper_tables(store.results(), "mse_pct")
    assert [(t.defense, t.attacker) for t in tables] == [("none", "informed"), ("none", "oblivious")]
    assert tables[0].combos == list(COMBOS)
    assert tables[0].columns == [("convnet", 0), ("convnet", 3), ("lenet", 0), ("lenet", 3)]


def test_privacy_utility_pairs_score_with_accuracy(results):
    directory, cells = results
    build_report(directory)
    lines = read_csv(directory / "report" / "privacy_utility.csv")
    assert len(lines) == 2 * (len(cells) - 1)
    for line in lines:
        i = next(k for k, c in enumerate(cells) if c.key == line["cell_key"])
        assert float(line["accuracy"]) == pytest.approx(0.01 * i)
        assert float(line["mean"]) == pytest.approx(statistics.mean(score(i, p, line["attacker"]) for p in (0, 1)))


def test_html_is_self_contained(results):
    directory, _ = results
    text = build_report(directory).read_text()
    images = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(images) == 1 + 8  # the scatter plot and the grids
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(?:src|href)="(?!data:)', text)
    assert "a deliberately broken cell" in text
    assert "<table>" in text


def test_unknown_metric_is_rejected(results):
    directory, _ = results
    with pytest.raises(ValueError, match="allowed: mse_pct, psnr, ssim, lpips, mse"):
        build_report(directory, metric="accuracy")


def test_missing_results_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="fedsyn sweep"):
        build_report(tmp_path / "nothing")


def test_cells_of_an_earlier_config_are_left_out(tmp_path, capsys):
    """Editing the config and sweeping into the same folder must not pool old and new numbers."""
    old = expand(parse_config({**CONFIG, "models": ["lenet"], "trained": [0]}))
    attack = {"attackers": ["oblivious"], "inversion": {"iterations": 7}}
    changed = {**CONFIG, "models": ["lenet"], "trained": [0], "attack": attack}
    new = expand(parse_config(changed))
    assert not {c.key for c in old} & {c.key for c in new}
    with open_store(tmp_path) as store:
        for cells, offset in ((old, 0), (new, 100)):
            for index, cell in enumerate(cells):
                rows = [make_row(tmp_path, cell, offset + index, 0, "oblivious")]
                store.commit_cell(cell, rows, rounds=[{"round": 1, "accuracy": 0.5, "loss": 2.0}], seconds=1.0)
        experiment = parse_config(changed)
        store.set_experiment(experiment.name, [cell.key for cell in new], experiment.model_dump_json())
    build_report(tmp_path)
    assert f"left out {len(old)} cell(s)" in capsys.readouterr().out
    points = read_csv(tmp_path / "report" / "privacy_utility.csv")
    assert {p["cell_key"] for p in points} == {c.key for c in new}
    assert sorted(float(p["mean"]) for p in points) == [score(100 + i, 0, "oblivious") for i in range(len(new))]


def test_attack_methods_are_reported_apart(tmp_path):
    """Two methods on the same updates give two tables and two utility points, never one pooled mean;
    a method that did not apply adds no number."""
    cell = expand(parse_config({**CONFIG, "models": ["lenet"], "trained": [0]}))[0]
    rows = []
    for method, offset in (("inverting-gradients", 0.0), ("other-method", 50.0)):
        for partition_id in (0, 1):
            row = make_row(tmp_path, cell, 0, partition_id, "oblivious")
            rows.append({**row, "method": method, "mse_pct": row["mse_pct"] + offset})
    skipped = {name: None for name in RESULT_FIELDS}
    skipped.update(seed=cell.seed, round=1, partition_id=0, attacker="oblivious", method="third-method", labels="known",
                   status="not applicable", error="the model has no fully connected input layer")
    with open_store(tmp_path) as store:
        store.commit_cell(cell, [*rows, skipped], rounds=[{"round": 1, "accuracy": 0.5, "loss": 2.0}])
        stored = store.results()
    tables = paper_tables(stored, "mse_pct")
    by_method = {t.method: t.get(cell.combo, (cell.model.label, 0)) for t in tables}
    assert by_method["inverting-gradients"].mean == pytest.approx(statistics.mean(score(0, p, "oblivious") for p in (0, 1)))
    assert by_method["other-method"].mean == pytest.approx(by_method["inverting-gradients"].mean + 50.0)
    assert by_method["third-method"].mean is None and by_method["third-method"].n == 0
    build_report(tmp_path)
    points = read_csv(tmp_path / "report" / "privacy_utility.csv")
    assert sorted(p["method"] for p in points) == ["inverting-gradients", "other-method", "third-method"]
    assert "method: other-method" in (tmp_path / "report" / "table_mse_pct.md").read_text()
