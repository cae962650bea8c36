"""fedsyn.report.statistics: bootstrap CI coverage, Wilcoxon against scipy, Holm by hand, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from fedsyn.report import directions, statistics
from fedsyn.report.statistics import (
    BASELINE,
    LESS_PRIVATE,
    MORE_PRIVATE,
    NOT_SIGNIFICANT,
    UNTESTED,
    bootstrap_ci,
    group_values,
    holm,
    paired_difference,
    table_statistics,
)


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    # 400 samples of n = 10 from N(3, 2^2): the expanded percentile interval should hold 3 about 95% of the
    # time (the plain percentile interval holds it only ~91% at this n). Binomial sd at 400 draws: 1.1%.
    rng = np.random.default_rng(12)
    hits = 0
    for repetition in range(400):
        low, high = bootstrap_ci(rng.normal(3.0, 2.0, size=10), resamples=1000, seed=repetition)
        hits += low <= 3.0 <= high
    assert 0.92 <= hits / 400 <= 0.98


def test_bootstrap_ci_is_seeded_and_brackets_the_sample_mean():
    values = [0.3, 1.2, 0.8, 2.5, 1.1, 0.4, 1.9, 0.7]
    low, high = bootstrap_ci(values, seed=5)
    assert low < float(np.mean(values)) < high
    assert bootstrap_ci(values, seed=5) == (low, high)
    assert bootstrap_ci(values, seed=6) != (low, high)
    # more resamples than one chunk holds give the same kind of interval
    wide = bootstrap_ci(values, resamples=200_000, seed=5)
    assert wide == pytest.approx((low, high), abs=0.05)
    assert bootstrap_ci([2.0, 2.0, 2.0], seed=0) == (2.0, 2.0)


@pytest.mark.parametrize(
    ("values", "message"),
    [([1.0], "at least 2 values"), ([1.0, math.inf], "infinite"), ([1.0, math.nan], "NaN"), ([[1.0, 2.0]], "one-dimensional")],
)
def test_bootstrap_ci_refuses_what_has_no_interval(values, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(values)


def test_wilcoxon_matches_scipy_and_the_exact_count():
    baseline = np.array([10.0, 11.5, 9.0, 12.0, 10.5, 8.0, 13.0, 9.5])
    differences = np.array([1.0, 2.0, -3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    result = paired_difference(baseline + differences, baseline)
    # Ranks of |d| are 1..8 and only rank 3 is negative, so T = 3. Of the 2^8 sign patterns, 5 have a
    # negative rank sum <= 3 ({}, {1}, {2}, {3}, {1, 2}): two-sided p = 2 * 5 / 256.
    assert result.p == 2 * 5 / 256
    assert result.p == scipy.stats.wilcoxon(baseline + differences, baseline).pvalue
    assert result.delta == pytest.approx(30 / 8)
    assert result.rank_direction == 1 and result.n == 8
    assert result.ci_low < result.delta < result.ci_high


def test_wilcoxon_with_zeros_and_ties_matches_scipy_exhaustive_permutations():
    defended = [1.0, 2.0, 2.0, 5.0, 3.0, 0.5, 4.0, 3.0, 1.0]
    baseline = [1.0, 1.0, 3.0, 4.0, 1.0, 0.5, 2.0, 4.0, 2.0]
    result = paired_difference(defended, baseline)
    assert result.n == 9
    assert result.p == pytest.approx(scipy.stats.wilcoxon(defended, baseline).pvalue, rel=1e-12)


def test_signed_rank_p_is_exact_with_ties_beyond_scipys_exhaustive_range():
    differences = np.array([1.0, -1.0, 2.0, 2.0, 3.0, -3.0, 4.0, 4.0, 4.0, 5.0, -6.0, 7.0, 7.0, 8.0, 9.0, 0.0])
    unequal = differences[differences != 0]
    ranks = scipy.stats.rankdata(np.abs(unequal))
    signs = (np.arange(2 ** unequal.size)[:, None] >> np.arange(unequal.size)) & 1  # every sign pattern
    null = signs @ ranks
    observed = ranks[unequal > 0].sum()
    brute = min(1.0, 2 * min((null <= observed + 1e-9).mean(), (null >= observed - 1e-9).mean()))
    assert statistics.signed_rank_p(differences) == pytest.approx(brute, rel=1e-12)
    many = np.random.default_rng(0).normal(0.3, 1.0, size=statistics.EXACT_PAIRS + 10)
    assert statistics.signed_rank_p(many) == scipy.stats.wilcoxon(many).pvalue


def test_paired_difference_edge_cases_give_reasons():
    equal = paired_difference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert equal.p == 1.0 and equal.delta == 0.0 and equal.rank_direction == 0
    assert "every pair is equal" in " ".join(equal.notes)

    few = paired_difference([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert few.p == scipy.stats.wilcoxon([1.0, 1.0, 1.0]).pvalue == 0.25
    assert "smallest attainable p-value is 0.25" in " ".join(few.notes)

    empty = paired_difference([], [])
    assert empty.n == 0 and math.isnan(empty.p) and math.isnan(empty.delta)

    # Two exact reconstructions (PSNR inf on both sides) are equal; inf against a finite score has no mean.
    psnr = paired_difference([math.inf, 20.0, 25.0, 30.0], [math.inf, 18.0, 21.0, 24.0])
    assert psnr.delta == pytest.approx(3.0) and math.isfinite(psnr.ci_low)
    lopsided = paired_difference([math.inf, 20.0, 25.0, 30.0], [15.0, 18.0, 21.0, 24.0])
    assert math.isnan(lopsided.delta) and lopsided.rank_direction == 1
    assert lopsided.p == scipy.stats.wilcoxon([math.inf, 2.0, 4.0, 6.0]).pvalue
    assert "infinite" in " ".join(lopsided.notes)

    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="defended contains NaN"):
        paired_difference([math.nan], [1.0])


def test_holm_on_a_hand_computed_set():
    # Sorted: 0.005, 0.01, 0.03, 0.04 (m = 4) -> 4*0.005, 3*0.01, 2*0.03, 1*0.04 = 0.02, 0.03, 0.06, 0.04;
    # step-down monotonicity lifts the last to 0.06. NaN is no test: it stays NaN and does not count.
    adjusted = holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # 2 * 0.5 = 1.0, then capped and monotone
    assert holm([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])


def _table(shifts: dict[tuple[str, str], float], *, pairs: int = 12, seed: int = 3) -> dict:
    """PSNR-like values: per pairing key a shared image difficulty, plus a per-cell shift and small noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(20.0, 3.0, size=pairs)
    return {
        cell: {("seed0", image): float(difficulty[image] + shift + rng.normal(0.0, 0.3)) for image in range(pairs)}
        for cell, shift in shifts.items()
    }


def test_table_verdicts_follow_the_metric_direction_and_holm():
    values = _table(
        {
            ("none", "convnet"): 0.0,
            ("fl", "convnet"): -3.0,  # lower PSNR: more private
            ("wr", "convnet"): 2.0,  # higher PSNR: less private
            ("ws", "convnet"): 0.0,  # same as the baseline
        }
    )
    stats = table_statistics(values, metric="psnr", baseline="none", resamples=2000)
    cell = stats.cells
    assert cell[("none", "convnet")].verdict == BASELINE and math.isnan(cell[("none", "convnet")].p_holm)
    assert cell[("fl", "convnet")].verdict == MORE_PRIVATE
    assert cell[("wr", "convnet")].verdict == LESS_PRIVATE
    assert cell[("ws", "convnet")].verdict == NOT_SIGNIFICANT
    fl = cell[("fl", "convnet")]
    assert fl.n == fl.n_pairs == 12
    assert fl.ci_low < fl.mean < fl.ci_high
    assert fl.delta == pytest.approx(-3.0, abs=0.5)
    assert fl.delta_ci_low < fl.delta < fl.delta_ci_high < 0
    # 12 pairs of one sign: exact p = 2 / 2^12; three cell tests and one ranking test in the Holm family.
    assert fl.p == 2 / 2**12 and fl.p_holm == pytest.approx(4 * fl.p)
    assert fl.most_private and not any(c.most_private for key, c in cell.items() if key[0] != "fl")
    ranking = stats.columns["convnet"]
    assert (ranking.best, ranking.most_private) == ("fl", "fl") and ranking.runner_up in ("none", "ws")

    # The same numbers read as MSE (higher = more private) swap the verdicts.
    assert directions.private_sign("mse") == -directions.private_sign("psnr")
    as_mse = table_statistics(values, metric="mse", baseline="none", resamples=2000).cells
    assert as_mse[("fl", "convnet")].verdict == LESS_PRIVATE and as_mse[("wr", "convnet")].verdict == MORE_PRIVATE
    assert as_mse[("wr", "convnet")].most_private


def test_most_private_needs_a_significant_lead_over_the_runner_up():
    values = _table({("none", "m"): 0.0, ("fl", "m"): -3.0, ("fl+wr", "m"): -3.0})
    stats = table_statistics(values, metric="psnr", baseline="none", resamples=2000)
    assert stats.cells[("fl", "m")].verdict == MORE_PRIVATE == stats.cells[("fl+wr", "m")].verdict
    ranking = stats.columns["m"]
    assert ranking.most_private is None and {ranking.best, ranking.runner_up} == {"fl", "fl+wr"}
    assert "not significantly ahead" in " ".join(ranking.notes)
    assert not any(c.most_private for c in stats.cells.values())


def test_too_few_pairs_are_never_significant_however_large_the_effect():
    values = _table({("none", "m"): 0.0, ("fl", "m"): -10.0}, pairs=4)
    fl = table_statistics(values, metric="psnr", baseline="none", resamples=500).cells[("fl", "m")]
    assert fl.p == 2 / 2**4 and fl.verdict == NOT_SIGNIFICANT
    assert "smallest attainable" in "; ".join(fl.notes)


def test_missing_values_unpaired_keys_and_a_column_without_baseline():
    values = _table({("none", "a"): 0.0, ("fl", "a"): -3.0, ("fl", "b"): -3.0})
    values[("fl", "a")][("seed0", 0)] = None
    values[("fl", "a")][("seed9", 0)] = 15.0  # an image the baseline never saw
    stats = table_statistics(values, metric="psnr", baseline="none", resamples=500)
    fl = stats.cells[("fl", "a")]
    assert fl.n == 12 and fl.n_pairs == 11
    assert "1 value(s) missing" in fl.as_dict()["notes"] and "2 value(s) without a partner" in fl.as_dict()["notes"]
    orphan = stats.cells[("fl", "b")]
    assert orphan.verdict == UNTESTED and math.isnan(orphan.delta) and "no 'none' cell" in orphan.as_dict()["notes"]
    assert "nothing to rank" in " ".join(stats.columns["b"].notes)
    assert set(fl.as_dict()) == set(statistics.CELL_CSV_FIELDS)


def test_table_statistics_do_not_depend_on_cell_order():
    values = _table({("none", "m"): 0.0, ("fl", "m"): -1.0, ("wr", "m"): 0.5})
    forward = table_statistics(values, metric="ssim", baseline="none", resamples=500, seed=7)
    backward = table_statistics(dict(reversed(list(values.items()))), metric="ssim", baseline="none", resamples=500, seed=7)
    assert forward.cells == backward.cells
    other = table_statistics(values, metric="ssim", baseline="none", resamples=500, seed=8)
    assert other.cells[("fl", "m")].ci_low != forward.cells[("fl", "m")].ci_low


def test_group_values_keys_cells_and_pairs_from_result_rows():
    rows = [
        {"combo": combo, "model": "convnet", "trained": 0, "seed": seed, "round": 1, "psnr": value}
        for combo, seed, value in [("none", 0, 20.0), ("none", 1, 21.0), ("fl", 0, 17.0), ("fl", 1, None)]
    ]
    grouped = group_values(rows, metric="psnr", row="combo", column=("model", "trained"), pair=("seed", "round"))
    assert grouped == {
        ("none", ("convnet", 0)): {(0, 1): 20.0, (1, 1): 21.0},
        ("fl", ("convnet", 0)): {(0, 1): 17.0, (1, 1): None},
    }
    with pytest.raises(ValueError, match="two rows with pairing key"):
        group_values([*rows, rows[0]], metric="psnr", row="combo", column="model", pair="seed")


def test_unknown_metric_and_bad_confidence_are_named():
    with pytest.raises(ValueError, match="no privacy direction known for metric 'acc'"):
        table_statistics({}, metric="acc", baseline="none")
    with pytest.raises(ValueError, match="confidence must lie strictly between 0 and 1"):
        bootstrap_ci([1.0, 2.0], confidence=95)
