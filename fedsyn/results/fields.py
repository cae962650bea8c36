"""The result row: one attack method's reconstruction of one captured update, and its scores.

``ResultRow`` is the one definition of the row's fields. The evaluator builds rows with it, the store
derives its ``results`` columns and its validation from ``RESULT_FIELDS``, and the report reads the
stored columns by these names. docs/results.md describes every field and when it is NULL.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from fedsyn.experiment.names import BEST_OF, METRICS

STATUSES: tuple[str, ...] = ("ok", "failed", "rejected", "not applicable")
"""``ok``: scored; ``failed``: the attack or its scoring raised (``error`` says what); ``rejected``: the
server did not accept the update (``error`` gives its reason); ``not applicable``: the method cannot act
on this model or target (``error`` gives the method's reason)."""

SCORE_FIELDS: tuple[str, ...] = (*METRICS, *(f"best_{name}" for name in BEST_OF))
"""The scores of a row, NULL unless its status is ``ok`` (and NULL where the metric is missing)."""

REFERENCE_OF: tuple[str, ...] = ("mse", "psnr", "ssim", "mse_pct")
"""The metrics a row also gives for a trivial reconstruction (``ref_<metric>``): every image replaced by
the training split's mean colour. A reconstruction that scores no better than this has leaked nothing
the attacker could not guess without the update (issue 16, "a baseline check in every report")."""


def _column(sql: str, default: Any = MISSING) -> Any:
    """A contract field stored in a ``results`` column of SQLite type ``sql`` (no default: required)."""
    return field(default=default, metadata={"sql": sql})


@dataclass(frozen=True, kw_only=True)
class ResultRow:
    """One row as the evaluator returns it; ``as_dict`` gives the mapping the store commits.

    ``aggregate_of`` is set only for a SecAgg+ round's aggregate (``partition_id`` -1): the partitions
    it is the mean of. ``image_psnr`` holds the PSNR of every true image's paired reconstruction, in the
    order of the true images (the columns of the row's PNG), for the report's image grids. ``compiled``
    and ``compile_seconds`` say whether an optimising method ran its objective through ``torch.compile``
    and what the one-off compilation took (``attack_seconds`` includes it), ``precision`` in which
    arithmetic it evaluated the model (``fp32`` or ``bf16``). None of
    these is a column: the store keeps them, like any field beyond the contract, in ``extra_json``.
    """

    cell_key: str
    seed: int = _column("INTEGER NOT NULL")
    round: int = _column("INTEGER NOT NULL")
    partition_id: int = _column("INTEGER NOT NULL")
    attacker: str = _column("TEXT NOT NULL")
    method: str = _column("TEXT NOT NULL")
    status: str = _column("TEXT NOT NULL", "ok")
    error: str | None = _column("TEXT", None)
    labels: str = _column("TEXT")
    mse: float | None = _column("REAL", None)
    psnr: float | None = _column("REAL", None)
    ssim: float | None = _column("REAL", None)
    lpips: float | None = _column("REAL", None)
    lpips_missing: str | None = _column("TEXT", None)
    mse_pct: float | None = _column("REAL", None)
    label_acc: float | None = _column("REAL", None)
    best_psnr: float | None = _column("REAL", None)
    best_ssim: float | None = _column("REAL", None)
    best_lpips: float | None = _column("REAL", None)
    best_mse_pct: float | None = _column("REAL", None)
    ref_mse: float | None = _column("REAL", None)
    ref_psnr: float | None = _column("REAL", None)
    ref_ssim: float | None = _column("REAL", None)
    ref_mse_pct: float | None = _column("REAL", None)
    recovered_30db: int | None = _column("INTEGER", None)
    recovered_psnr: float | None = _column("REAL", None)
    attack_seconds: float | None = _column("REAL", None)
    iterations: int | None = _column("INTEGER", None)
    converged: bool | None = _column("INTEGER", None)
    client_bn_mode: str | None = _column("TEXT", None)
    attack_bn_mode: str | None = _column("TEXT", None)
    bn_stats_source: str | None = _column("TEXT", None)
    bn_prior: float | None = _column("REAL", None)
    bn_prior_missing: str | None = _column("TEXT", None)
    image_path: str | None = _column("TEXT", None)
    aggregate_of: tuple[int, ...] | None = None
    image_psnr: tuple[float, ...] | None = None
    compiled: bool | None = None
    compile_seconds: float | None = None
    precision: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The row as a JSON-ready mapping (the ``EXTRA_FIELDS`` only when set, tuples as lists)."""
        row = asdict(self)
        for name in EXTRA_FIELDS:
            value = row.pop(name)
            if value is not None:
                row[name] = list(value) if isinstance(value, tuple) else value
        return row


EXTRA_FIELDS: tuple[str, ...] = ("aggregate_of", "image_psnr", "compiled", "compile_seconds", "precision")
"""Optional fields that are not columns (the store keeps them in ``extra_json``)."""

RESULT_COLUMNS: dict[str, str] = {f.name: f.metadata["sql"] for f in fields(ResultRow) if "sql" in f.metadata}
"""Column name -> SQLite type of every contract field (``cell_key`` and ``EXTRA_FIELDS`` aside)."""

RESULT_FIELDS: tuple[str, ...] = tuple(RESULT_COLUMNS)
"""The fields every stored result row must carry (besides ``cell_key``)."""

ROW_KEY: tuple[str, ...] = ("cell_key", "round", "partition_id", "attacker", "method")
"""What identifies a row within a results store."""
