"""The statistics behind every report table: bootstrap intervals, paired tests, Holm, verdicts.

Pure functions on plain Python and numpy data (no store, no config). See docs/statistics.md for the
reasoning; in short:

- a cell's mean gets a 95% *expanded percentile bootstrap* interval (Hesterberg 2015, "What teachers should
  know about the bootstrap", The American Statistician 69(4)): the percentile interval of the
  resampled means, at the tail levels of a t interval widened by sqrt(n / (n - 1)), which keeps the
  coverage near nominal for the small n of a CPU sweep where the plain percentile interval is too narrow;
- a defended cell is compared with the undefended (baseline) cell of its column pair by pair (same seed,
  round, client, image): the mean difference with the same bootstrap interval, and the two-sided Wilcoxon
  signed-rank test (zero differences dropped; exact up to 50 pairs, ties included);
- every p-value a table reports (each cell against the baseline, each column's best against its
  runner-up) is Holm-Bonferroni corrected over that table (Holm 1979, Scand. J. Statist. 6(2)), and a
  verdict is given only where the corrected p-value is below 1 - confidence.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.stats

from .directions import private_sign

DEFAULT_RESAMPLES = 10_000
EXACT_PAIRS = 50  # up to this many unequal pairs the signed-rank p-value is exact (2^50 fits a float64 exactly)
_CHUNK_ELEMENTS = 1 << 20  # resampled values held in memory at once

MORE_PRIVATE = "more private"
LESS_PRIVATE = "less private"
NOT_SIGNIFICANT = "not significant"
BASELINE = "baseline"
UNTESTED = "untested"

Seed = int | np.random.SeedSequence
CellKey = tuple[Hashable, Hashable]  # (row, column): (combination, model column)


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1; got {confidence!r}")
    return float(confidence)


def _sample(values: Iterable[float], name: str) -> np.ndarray:
    data = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    if data.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {data.shape}")
    if np.isnan(data).any():
        raise ValueError(f"{name} contains NaN; leave missing values out before computing statistics")
    return data


def bootstrap_ci(
    values: Iterable[float], *, confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: Seed = 0
) -> tuple[float, float]:
    """Expanded percentile bootstrap interval of the mean of ``values`` (at least 2 finite numbers).

    ``resamples`` samples of size n are drawn with replacement (numpy's generator seeded with ``seed``);
    the interval is the pair of quantiles of their means at the tail level alpha' / 2, where
    alpha' = 2 * Phi(-sqrt(n / (n - 1)) * t_{n-1, 1 - alpha/2}) and alpha = 1 - confidence (Hesterberg 2015).
    """
    confidence = _check_confidence(confidence)
    data = _sample(values, "values")
    n = data.size
    if n < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 values; got {n}")
    if not np.isfinite(data).all():
        raise ValueError("values contains an infinite value: its mean has no confidence interval")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1; got {resamples}")
    alpha = 1.0 - confidence
    t = scipy.stats.t.ppf(1.0 - alpha / 2.0, n - 1)
    tail = 2.0 * scipy.stats.norm.cdf(-math.sqrt(n / (n - 1)) * t)

    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // n)
    chunks = [min(rows, resamples - start) for start in range(0, resamples, rows)]
    means = np.concatenate([data[rng.integers(0, n, size=(size, n))].mean(axis=1) for size in chunks])
    low, high = np.quantile(means, [tail / 2.0, 1.0 - tail / 2.0])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedDifference:
    """Defended minus baseline over ``n`` pairs.

    ``delta`` is the mean difference with its bootstrap interval (NaN with a note when it has none);
    ``p`` the two-sided Wilcoxon signed-rank p-value (NaN when there is no pair); ``rank_direction`` the
    side the rank test's evidence lies on: +1 when the positive differences carry the larger rank sum,
    -1 when the negative ones do, 0 when they balance.
    """

    n: int
    delta: float
    ci_low: float
    ci_high: float
    p: float
    rank_direction: int
    notes: tuple[str, ...] = ()

    @property
    def consistent(self) -> bool:
        """False when the mean difference and the rank test point opposite ways (a skewed sample)."""
        if math.isnan(self.delta) or self.delta == 0.0 or self.rank_direction == 0:
            return True
        return math.copysign(1, self.delta) == self.rank_direction


def paired_difference(
    defended: Iterable[float],
    baseline: Iterable[float],
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: Seed = 0,
) -> PairedDifference:
    """Compare two aligned samples pair by pair: ``defended[i]`` and ``baseline[i]`` share seed and image.

    Two equal values (two infinite PSNRs of exact reconstructions included) differ by 0. No pair gives
    NaN; all-equal pairs give p = 1 (nothing to test); too few unequal pairs to reach 1 - confidence is
    computed anyway and said in ``notes``.
    """
    confidence = _check_confidence(confidence)
    a = _sample(defended, "defended")
    b = _sample(baseline, "baseline")
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} defended and {b.size} baseline values")
    with np.errstate(invalid="ignore"):
        diff = np.where(a == b, 0.0, a - b)
    n = diff.size
    nan = math.nan
    if n == 0:
        return PairedDifference(0, nan, nan, nan, nan, 0, ("no pairs to compare",))

    notes: list[str] = []
    delta, low, high = nan, nan, nan
    if not np.isfinite(diff).all():
        notes.append(
            "a pair differs by an infinite amount (one side scored inf, e.g. the PSNR of an exact "
            "reconstruction): no mean difference; the rank test still applies"
        )
    else:
        delta = float(diff.mean())
        if n >= 2:
            low, high = bootstrap_ci(diff, confidence=confidence, resamples=resamples, seed=seed)
        else:
            notes.append("one pair: no confidence interval")

    unequal = diff[diff != 0.0]
    if unequal.size == 0:
        notes.append("every pair is equal: no difference to test")
        return PairedDifference(n, delta, low, high, 1.0, 0, tuple(notes))
    p = signed_rank_p(unequal)
    ranks = scipy.stats.rankdata(np.abs(unequal))
    balance = ranks[unequal > 0].sum() - ranks[unequal < 0].sum()
    smallest = 2.0 / 2.0**unequal.size
    if smallest > 1.0 - confidence:
        notes.append(
            f"only {unequal.size} unequal pair(s): the smallest attainable p-value is {smallest:.3g}, "
            f"so this comparison cannot be significant at {1.0 - confidence:.3g}"
        )
    return PairedDifference(n, delta, low, high, p, int(np.sign(balance)), tuple(notes))


def signed_rank_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences, zeros dropped (Wilcoxon's convention).

    Up to ``EXACT_PAIRS`` unequal pairs the p-value is exact, ties included: under the null hypothesis each
    (mid)rank of |d| carries a fair-coin sign, and the distribution of the positive rank sum is counted by
    convolution over the doubled midranks (integers). That is the distribution ``scipy.stats.wilcoxon``
    enumerates (exact without ties, exhaustive sign permutations with ties up to 13 pairs), so the values
    agree, but scipy's permutation path runs 2^n statistics through ``permutation_test``. Above ``EXACT_PAIRS`` pairs scipy's normal
    approximation (with its tie correction) is used.
    """
    unequal = differences[differences != 0.0]
    if unequal.size == 0:
        return 1.0
    if unequal.size > EXACT_PAIRS:
        return float(scipy.stats.wilcoxon(unequal, zero_method="wilcox", alternative="two-sided").pvalue)
    doubled = np.rint(2.0 * scipy.stats.rankdata(np.abs(unequal))).astype(np.int64)
    counts = np.zeros(int(doubled.sum()) + 1)
    counts[0] = 1.0
    for rank in doubled:
        shifted = np.zeros_like(counts)
        shifted[rank:] = counts[:-rank]
        counts += shifted
    observed = int(doubled[unequal > 0].sum())
    total = counts.sum()
    lower, upper = counts[: observed + 1].sum() / total, counts[observed:].sum() / total
    return float(min(1.0, 2.0 * min(lower, upper)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input's order.

    With the m non-NaN p-values sorted ascending, p_(i) becomes max over j <= i of (m - j + 1) * p_(j),
    capped at 1 (step-down, so the adjusted values keep the order of the raw ones). NaN (no test was run)
    passes through and does not count in m.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be one-dimensional; got shape {p.shape}")
    tested = np.flatnonzero(~np.isnan(p))
    if ((p[tested] < 0) | (p[tested] > 1)).any():
        raise ValueError(f"p-values must lie in [0, 1]; got {p[tested][(p[tested] < 0) | (p[tested] > 1)].tolist()}")
    adjusted = np.full(p.shape, math.nan)
    order = tested[np.argsort(p[tested], kind="stable")]
    m = order.size
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted.tolist()


def verdict(metric: str, difference: PairedDifference, p_holm: float, *, alpha: float = 0.05) -> str:
    """More / less private than the baseline, not significant, or untested (no p-value).

    Significant means ``p_holm < alpha`` with the mean difference and the rank test pointing the same way;
    the direction comes from ``directions.HIGHER_IS_PRIVATE`` for ``metric``.
    """
    sign = private_sign(metric)
    if math.isnan(p_holm):
        return UNTESTED
    if p_holm >= alpha or difference.rank_direction == 0 or not difference.consistent:
        return NOT_SIGNIFICANT
    return MORE_PRIVATE if difference.rank_direction * sign > 0 else LESS_PRIVATE


@dataclass(frozen=True)
class CellStatistics:
    """One table cell: its mean with CI, and its paired difference to the baseline cell of its column."""

    row: Hashable
    column: Hashable
    n: int
    mean: float
    ci_low: float
    ci_high: float
    n_pairs: int
    delta: float
    delta_ci_low: float
    delta_ci_high: float
    p: float
    p_holm: float
    verdict: str
    most_private: bool
    notes: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """The fields of ``CELL_CSV_FIELDS`` (notes joined by "; ")."""
        return {name: "; ".join(self.notes) if name == "notes" else getattr(self, name) for name in CELL_CSV_FIELDS}


CELL_CSV_FIELDS: tuple[str, ...] = (
    *("n", "mean", "ci_low", "ci_high", "n_pairs", "delta", "delta_ci_low", "delta_ci_high"),
    *("p", "p_holm", "verdict", "most_private", "notes"),
)


@dataclass(frozen=True)
class ColumnRanking:
    """A column's most private combination (``best`` by mean) tested pair by pair against the runner-up.

    ``most_private`` is ``best`` only when that test is significant after Holm, else None.
    """

    column: Hashable
    best: Hashable | None
    runner_up: Hashable | None
    difference: PairedDifference | None
    p_holm: float
    most_private: Hashable | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class TableStatistics:
    """Everything ``table_statistics`` found for one table: per cell, and per column its most private row."""

    metric: str
    baseline: Hashable
    confidence: float
    cells: dict[CellKey, CellStatistics]
    columns: dict[Hashable, ColumnRanking]


def group_values(
    rows: Iterable[Mapping[str, Any]],
    *,
    metric: str,
    row: str | Sequence[str],
    column: str | Sequence[str],
    pair: str | Sequence[str],
) -> dict[CellKey, dict[Hashable, float | None]]:
    """Arrange result rows as ``table_statistics`` reads them: {(row, column): {pairing key: value}}.

    ``row``, ``column`` and ``pair`` name the fields whose values (a tuple when several) make each key,
    e.g. ``row="combo", column=("model", "trained"), pair=("seed", "round", "partition_id", "image")``.
    Two rows of one cell with the same pairing key make the pairing ambiguous: ValueError.
    """

    def key(fields: str | Sequence[str]) -> Callable[[Mapping[str, Any]], Hashable]:
        if isinstance(fields, str):
            return lambda record: record[fields]
        return lambda record: tuple(record[name] for name in fields)

    row_key, column_key, pair_key = key(row), key(column), key(pair)
    table: dict[CellKey, dict[Hashable, float | None]] = {}
    for record in rows:
        cell = table.setdefault((row_key(record), column_key(record)), {})
        index = pair_key(record)
        if index in cell:
            raise ValueError(f"cell {(row_key(record), column_key(record))!r} has two rows with pairing key {index!r}")
        value = record[metric]
        cell[index] = None if value is None else float(value)
    return table


def _seed(seed: int, *parts: Hashable) -> np.random.SeedSequence:
    """An independent, reproducible stream per cell and purpose, whatever order cells are visited in."""
    return np.random.SeedSequence([seed, zlib.crc32(repr(parts).encode())])


def _present(values: Mapping[Hashable, float | None]) -> dict[Hashable, float]:
    return {k: v for k, v in values.items() if v is not None and not math.isnan(v)}


def _pair(
    first: dict[Hashable, float],
    second: dict[Hashable, float],
    *,
    confidence: float,
    resamples: int,
    seed: np.random.SeedSequence,
) -> PairedDifference:
    """The paired difference over the keys both samples hold; values without a partner are counted in a note."""
    keys = [k for k in first if k in second]
    difference = paired_difference(
        [first[k] for k in keys], [second[k] for k in keys], confidence=confidence, resamples=resamples, seed=seed
    )
    unpaired = len(first) + len(second) - 2 * len(keys)
    if unpaired:
        note = f"{unpaired} value(s) without a partner left out of the paired test"
        difference = replace(difference, notes=(note, *difference.notes))
    return difference


@dataclass
class _Summary:
    n: int
    mean: float
    ci_low: float
    ci_high: float
    notes: list[str]


def _summarize(
    sample: dict[Hashable, float], missing: int, *, confidence: float, resamples: int, seed: np.random.SeedSequence
) -> _Summary:
    notes = [f"{missing} value(s) missing, left out"] if missing else []
    data = np.fromiter(sample.values(), dtype=np.float64, count=len(sample))
    summary = _Summary(int(data.size), float(data.mean()) if data.size else math.nan, math.nan, math.nan, notes)
    if data.size < 2:
        notes.append(f"n = {data.size}: no confidence interval")
    elif not np.isfinite(data).all():
        notes.append("an infinite value (an exact reconstruction's PSNR): no confidence interval")
    else:
        summary.ci_low, summary.ci_high = bootstrap_ci(data, confidence=confidence, resamples=resamples, seed=seed)
    return summary


def _leaders(means: Mapping[Hashable, float], sign: int) -> tuple[Hashable, Hashable] | None:
    """The two rows with the most private means (NaN means left out), or None when fewer than two."""
    ranked = sorted((row for row, mean in means.items() if not math.isnan(mean)), key=lambda row: -sign * means[row])
    return (ranked[0], ranked[1]) if len(ranked) >= 2 else None


def table_statistics(
    values: Mapping[CellKey, Mapping[Hashable, float | None]],
    *,
    metric: str,
    baseline: Hashable,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> TableStatistics:
    """Every statistic of one table (one metric; rows = combinations, columns = e.g. models).

    ``values[(row, column)]`` maps a pairing key (seed, round, client, image, ...) to the metric value of
    that reconstruction (None or NaN = missing, left out and counted in the notes). Each cell gets its mean
    and bootstrap CI; each non-baseline cell its paired difference to ``(baseline, column)``; each column a
    test of its best row (by mean, in the metric's private direction) against the runner-up. All these
    p-values are Holm-corrected together; verdicts and "most private" use the corrected ones at
    alpha = 1 - confidence.
    """
    sign = private_sign(metric)
    confidence = _check_confidence(confidence)
    alpha = 1.0 - confidence
    options = {"confidence": confidence, "resamples": resamples}
    present = {cell: _present(sample) for cell, sample in values.items()}
    columns = list(dict.fromkeys(column for _, column in values))

    summaries = {
        (row, column): _summarize(
            sample, len(values[(row, column)]) - len(sample), seed=_seed(seed, "mean", row, column), **options
        )
        for (row, column), sample in present.items()
    }
    differences: dict[CellKey, PairedDifference] = {}
    for (row, column), sample in present.items():
        if row == baseline:
            continue
        if (baseline, column) in present:
            base = present[(baseline, column)]
            differences[(row, column)] = _pair(sample, base, seed=_seed(seed, "delta", row, column), **options)
        else:
            note = f"no {baseline!r} cell in this column to compare with"
            differences[(row, column)] = PairedDifference(0, math.nan, math.nan, math.nan, math.nan, 0, (note,))

    leaders: dict[Hashable, tuple[Hashable, Hashable] | None] = {}
    ahead: dict[Hashable, PairedDifference] = {}
    for column in columns:
        leaders[column] = pair = _leaders({row: s.mean for (row, col), s in summaries.items() if col == column}, sign)
        if pair is not None and summaries[(pair[0], column)].mean != summaries[(pair[1], column)].mean:
            best, runner_up = pair
            first, second = present[(best, column)], present[(runner_up, column)]
            ahead[column] = _pair(first, second, seed=_seed(seed, "rank", column), **options)

    family: list[tuple[str, Hashable]] = [("cell", cell) for cell in differences]
    family += [("column", column) for column in ahead]
    raw = [differences[key].p if kind == "cell" else ahead[key].p for kind, key in family]  # type: ignore[index]
    corrected = dict(zip(family, holm(raw)))

    rankings: dict[Hashable, ColumnRanking] = {}
    for column in columns:
        pair = leaders[column]
        difference = ahead.get(column)
        p_holm = corrected.get(("column", column), math.nan)
        notes = list(difference.notes) if difference else []
        winner = None
        if pair is None:
            notes.append("fewer than two combinations with values: nothing to rank")
        elif difference is None:
            notes.append(f"{pair[0]!r} and {pair[1]!r} tie on the mean: no most private")
        elif verdict(metric, difference, p_holm, alpha=alpha) == MORE_PRIVATE:
            winner = pair[0]
        else:
            notes.append(f"{pair[0]!r} is not significantly ahead of {pair[1]!r}: no most private")
        rankings[column] = ColumnRanking(
            column=column,
            best=pair[0] if pair else None,
            runner_up=pair[1] if pair else None,
            difference=difference,
            p_holm=p_holm,
            most_private=winner,
            notes=tuple(notes),
        )

    cells: dict[CellKey, CellStatistics] = {}
    for (row, column), summary in summaries.items():
        difference = differences.get((row, column))
        p_holm = corrected.get(("cell", (row, column)), math.nan)
        notes = list(summary.notes)
        if difference is None:
            label = BASELINE
            difference = PairedDifference(0, math.nan, math.nan, math.nan, math.nan, 0)
        else:
            label = verdict(metric, difference, p_holm, alpha=alpha)
            notes.extend(difference.notes)
            if p_holm < alpha and not difference.consistent:
                notes.append("the mean difference and the rank test point opposite ways: no verdict")
        cells[(row, column)] = CellStatistics(
            row=row,
            column=column,
            n=summary.n,
            mean=summary.mean,
            ci_low=summary.ci_low,
            ci_high=summary.ci_high,
            n_pairs=difference.n,
            delta=difference.delta,
            delta_ci_low=difference.ci_low,
            delta_ci_high=difference.ci_high,
            p=difference.p,
            p_holm=p_holm,
            verdict=label,
            most_private=rankings[column].most_private is not None and rankings[column].most_private == row,
            notes=tuple(notes),
        )
    return TableStatistics(metric=metric, baseline=baseline, confidence=confidence, cells=cells, columns=rankings)
