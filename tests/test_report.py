"""The report: worst case over methods, statistics per cell, baseline check, experiment panel, export, HTML.

The store is filled through its own API with rows shaped as docs/results.md defines them and real PNG
files, so these tests do not need to run a federation. The scores are built so that the verdicts are
known: against the undefended row, `fl` and `fl+wr+ws` leak clearly less (every pair), `ws` differs by
a symmetric jitter (no verdict), and `fl+wr+ws` is far ahead of the runner-up (most private).
"""

from __future__ import annotations

import csv
import html as html_text
import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from fedsyn.experiment.grid import expand
from fedsyn.experiment.schema import parse_config
from fedsyn.report import build_report
from fedsyn.report.html import WORST_HEADING
from fedsyn.report.worst import WORST_CASE, not_applicable, worst_case_rows
from fedsyn.results.fields import RESULT_FIELDS
from fedsyn.results.store import open_store

CLIENTS = 12
COMBOS = ["none", "fl", "ws", "fl+wr+ws"]
CONFIG = {
    "name": "report-test",
    "models": ["mlp"],
    "biomod": {"combos": COMBOS},
    "federation": {"clients": CLIENTS, "rounds": 1, "batch_size": 2},
    "attack": {"methods": ["inverting-gradients", "analytic"], "inversion": {"iterations": 50}},
}
LPIPS_REASON = "LPIPS backbone weights not found at /nowhere/alexnet.pth"
RESAMPLES = 2000


def psnr_of(combo: str, method: str, p: int) -> float | None:
    """The PSNR of every (combination, method, client); None: the method does not apply."""
    jitter = 0.05 * (1 if p % 2 else -1)
    table = {
        ("none", "inverting-gradients"): 15 + 0.1 * p,
        ("none", "analytic"): 25 + 0.1 * p,
        ("fl", "inverting-gradients"): 15 + 0.1 * p,
        ("fl", "analytic"): 20 + 0.1 * p + 0.01 * p * p,
        ("ws", "inverting-gradients"): 25 + 0.1 * p + jitter,
        ("ws", "analytic"): None,
        ("fl+wr+ws", "inverting-gradients"): 10.0,
        ("fl+wr+ws", "analytic"): 12 + 0.1 * p,
    }
    return table[(combo, method)]


def make_row(results: Path, cell, p: int, method: str, ref_psnr: float, exact: bool = False) -> dict:
    row = {name: None for name in RESULT_FIELDS}
    row.update(round=1, partition_id=p, attacker="oblivious", method=method, labels="known", seed=cell.seed)
    psnr = math.inf if exact and (cell.combo, method) == ("none", "analytic") else psnr_of(cell.combo, method, p)
    if psnr is None:
        row.update(status="not applicable", error="the model has no fully connected input layer")
        return row
    image_rel = f"{cell.key}/r1_p{p}_{method}.png"
    (results / image_rel).parent.mkdir(parents=True, exist_ok=True)
    mpimg.imsave(results / image_rel, np.random.default_rng(p).random((2 * 34 + 2, 2 * 34 + 2, 3)))
    row.update(
        status="ok",
        mse=0.0 if math.isinf(psnr) else 10 ** (-psnr / 10),
        psnr=psnr,
        ssim=1.0 if math.isinf(psnr) else psnr / 100,
        lpips_missing=LPIPS_REASON,
        mse_pct=0.0 if math.isinf(psnr) else 100 - psnr,
        label_acc=1.0,
        ref_mse=10 ** (-ref_psnr / 10),
        ref_psnr=ref_psnr,
        ref_ssim=0.1,
        ref_mse_pct=60.0,
        attack_seconds=0.1,
        iterations=50,
        image_path=image_rel,
        image_psnr=[psnr - 1, psnr + 1],
        converged=method != "inverting-gradients" or p != 0,
    )
    return row


def fill(directory: Path, *, ref_psnr: float, fail_last: bool = False, exact: bool = False) -> list:
    config = parse_config(CONFIG)
    cells = expand(config)
    with open_store(directory) as store:
        for index, cell in enumerate(cells):
            if fail_last and index == len(cells) - 1:
                store.record_failure(cell, "Traceback ...\nValueError: a deliberately broken cell")
                continue
            methods = CONFIG["attack"]["methods"]
            rows = [make_row(directory, cell, p, m, ref_psnr, exact) for p in range(CLIENTS) for m in methods]
            store.commit_cell(cell, rows, rounds=[{"round": 1, "accuracy": 0.1 * (index + 1), "loss": 2.0}], seconds=1.0)
        store.set_experiment(config.name, [cell.key for cell in cells], config.model_dump_json())
    return cells


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp("results")
    fill(directory, ref_psnr=11.0)
    html = build_report(directory, resamples=RESAMPLES)
    return directory, html_text.unescape(html.read_text())


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def lines_of(directory: Path, method: str, metric: str) -> dict[str, dict]:
    return {
        line["combo"]: line
        for line in read_csv(directory / "report" / "tables.csv")
        if line["method"] == method and line["metric"] == metric
    }


def test_worst_case_takes_the_most_leaked_method_per_metric():
    base = {"cell_key": "k", "round": 1, "partition_id": 0, "attacker": "oblivious", "status": "ok", "seed": 0}
    rows = [
        {**base, "method": "a", "psnr": 20.0, "mse_pct": 5.0, "ssim": 0.5},
        {**base, "method": "b", "psnr": 30.0, "mse_pct": 9.0, "ssim": None},
        {**base, "method": "c", "status": "not applicable", "psnr": None, "error": "no linear layer"},
    ]
    (worst,) = worst_case_rows(rows)
    assert (worst["method"], worst["psnr"], worst["mse_pct"], worst["ssim"]) == (WORST_CASE, 30.0, 5.0, 0.5)
    assert worst["worst_method"] == "b"
    assert not_applicable(rows) == {"c": (1, 1, "no linear layer")}


def test_worst_case_cells_carry_means_intervals_and_paired_statistics(report):
    directory, _ = report
    worst = lines_of(directory, WORST_CASE, "psnr")
    expected_none = statistics.mean(25 + 0.1 * p for p in range(CLIENTS))
    assert float(worst["none"]["mean"]) == pytest.approx(expected_none)
    assert int(worst["none"]["n"]) == CLIENTS and worst["none"]["verdict"] == "baseline"
    assert float(worst["none"]["ci_low"]) < expected_none < float(worst["none"]["ci_high"])
    # ws: the analytic method did not apply, so the worst case is inverting gradients (25 + 0.1 p +- 0.05)
    assert float(worst["ws"]["delta"]) == pytest.approx(0.0, abs=1e-9)
    assert worst["ws"]["verdict"] == "not significant"
    for combo in ("fl", "fl+wr+ws"):
        assert worst[combo]["verdict"] == "more private"
        assert float(worst[combo]["p_holm"]) < 0.05
        assert float(worst[combo]["delta_ci_high"]) < 0 < float(worst["none"]["mean"])
    assert [combo for combo, line in worst.items() if line["most_private"] == "1"] == ["fl+wr+ws"]
    assert worst["none"]["baseline_leaks"] == "1"
    for field in ("n", "mean", "ci_low", "ci_high", "delta", "delta_ci_low", "delta_ci_high", "p_holm"):
        assert field in worst["fl"]


def test_each_method_has_its_own_table(report):
    directory, _ = report
    analytic = lines_of(directory, "analytic", "psnr")
    gradients = lines_of(directory, "inverting-gradients", "psnr")
    assert float(analytic["none"]["mean"]) == pytest.approx(statistics.mean(25 + 0.1 * p for p in range(CLIENTS)))
    assert float(gradients["none"]["mean"]) == pytest.approx(statistics.mean(15 + 0.1 * p for p in range(CLIENTS)))
    assert analytic["ws"]["n"] == ""  # never applied: no number
    # mse_pct points the other way: the worst case is the lowest
    worst_pct = lines_of(directory, WORST_CASE, "mse_pct")
    assert float(worst_pct["none"]["mean"]) == pytest.approx(100 - statistics.mean(25 + 0.1 * p for p in range(CLIENTS)))


def test_html_states_worst_case_experiment_glossary_and_missing_metrics(report):
    _, html = report
    assert WORST_HEADING in html
    for words in ("batch size", "clients' BatchNorm mode", "attack's BatchNorm mode", "inversion iterations",
                  "total variation weight", "weight splitting", "fuzzy learning rates", "higher = more private"):
        assert words in html, words
    assert "analytic was not applicable to 12 of 48 targets" in html
    assert LPIPS_REASON in html
    assert "mse_pct" not in re.sub(r"<[^>]+>", "", html).replace("data:image", "")
    assert "44 of 48 inverting-gradients attacks converged" in html
    assert "none, mlp, untrained: 1 of 12 attacks did not converge (marked †)" in html
    assert "the attack leaks on the baseline" in html
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(?:src|href)="(?!data:|#)', html)


def test_grids_offer_every_client_with_per_image_psnr(report):
    _, html = report
    grids = html.split("id='grids'")[1]
    for p in range(CLIENTS):
        assert f"<summary>client {p}, round 1, seed 0</summary>" in grids
    assert "24.0 dB" in grids and "26.0 dB" in grids  # client 0 of `none`, analytic: 25 -+ 1


def test_a_baseline_that_does_not_leak_marks_nothing(tmp_path):
    fill(tmp_path, ref_psnr=24.0)
    html = html_text.unescape(build_report(tmp_path, resamples=RESAMPLES).read_text())
    assert "THE ATTACK FAILED ON THE BASELINE" in html
    worst = lines_of(tmp_path, WORST_CASE, "psnr")
    assert worst["none"]["baseline_leaks"] == "0"
    assert all(line["most_private"] == "0" for line in worst.values())
    assert "not evidence" in (tmp_path / "report" / "tables.md").read_text()


def test_exact_reconstructions_of_the_baseline(tmp_path):
    """An infinite baseline PSNR (the analytic attack's exact images) leaks; the ranks still compare."""
    fill(tmp_path, ref_psnr=11.0, exact=True)
    html = html_text.unescape(build_report(tmp_path, resamples=RESAMPLES).read_text())
    worst = lines_of(tmp_path, WORST_CASE, "psnr")
    assert worst["none"]["mean"] == "inf" and worst["none"]["baseline_leaks"] == "1"
    assert worst["fl"]["delta"] == "nan" and worst["fl"]["verdict"] == "more private"
    assert "the attack leaks on the baseline (undefended PSNR inf dB" in html
    assert (tmp_path / "report" / "privacy_utility.png").stat().st_size > 10_000


def test_export_and_utility_files(report):
    directory, _ = report
    exported = read_csv(directory / "report" / "results.csv")
    assert len(exported) == len(COMBOS) * CLIENTS * 2
    assert {line["cell.federation.clients"] for line in exported} == {str(CLIENTS)}
    points = read_csv(directory / "report" / "privacy_utility.csv")
    worst = [p for p in points if p["method"] == WORST_CASE]
    assert len(worst) == len(COMBOS) and all(float(p["ref_psnr"]) == 11.0 for p in worst)
    assert (directory / "report" / "privacy_utility.png").stat().st_size > 10_000


def test_failed_cells_and_cells_of_an_earlier_config(tmp_path, capsys):
    fill(tmp_path, ref_psnr=11.0, fail_last=True)
    old = expand(parse_config({**CONFIG, "name": "older", "biomod": {"combos": ["none"]}}))[0]
    with open_store(tmp_path) as store:
        store.commit_cell(old, [make_row(tmp_path, old, 0, "analytic", 11.0)], rounds=[])
    html = html_text.unescape(build_report(tmp_path, resamples=RESAMPLES).read_text())
    assert "a deliberately broken cell" in html
    out = capsys.readouterr().out
    assert "left out 1 cell(s)" in out and "1 cell(s) failed" in out
    worst = lines_of(tmp_path, WORST_CASE, "psnr")
    assert worst["fl+wr+ws"]["failed"] == "cell failed: ValueError: a deliberately broken cell"


def test_unknown_metric_and_missing_directory_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="allowed: mse_pct, psnr, ssim, lpips, mse"):
        build_report(tmp_path, metric="accuracy")
    with pytest.raises(FileNotFoundError, match="fedsyn sweep"):
        build_report(tmp_path / "nothing")
