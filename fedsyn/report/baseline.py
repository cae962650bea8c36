"""The baseline check: does the attack leak anything on the undefended model? (issue 16, item 6)

A defended row can only look private against a baseline the attack breaks. Every scored result row
carries ``ref_psnr``, the PSNR of a trivial reconstruction that needs no update (every image the
training split's mean colour, docs/results.md). If the undefended cell's mean PSNR is not more than
``LEAK_MARGIN_DB`` above the mean reference PSNR of the same images, the attack failed on the baseline:
nothing in that column is evidence of privacy, and no cell of it is marked most private.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LEAK_MARGIN_DB = 3.0
"""How far above the trivial reconstruction the undefended mean PSNR must lie to count as a leak."""


@dataclass(frozen=True)
class BaselineCheck:
    """The undefended cell's mean PSNR, the reference's, and whether it leaks (None: cannot tell, why)."""

    psnr: float | None
    reference: float | None
    leaks: bool | None
    reason: str

    def text(self, where: str) -> str:
        if self.leaks is None:
            return f"{where}: baseline check not possible ({self.reason}); no cell is marked most private."
        numbers = f"undefended PSNR {self.psnr:.2f} dB, trivial reconstruction {self.reference:.2f} dB"
        if self.leaks:
            return f"{where}: the attack leaks on the baseline ({numbers})."
        return (
            f"{where}: THE ATTACK FAILED ON THE BASELINE ({numbers}, less than {LEAK_MARGIN_DB:g} dB apart): "
            "the comparisons in this column are not evidence, and no cell is marked most private."
        )


def mean_or_inf(values: Sequence[float]) -> float:
    """The mean of ``values``; infinite when any is (an exact reconstruction has infinite PSNR)."""
    return math.inf if any(math.isinf(v) for v in values) else math.fsum(values) / len(values)


def check_baseline(baseline_rows: Sequence[dict[str, Any]], *, has_baseline: bool = True) -> BaselineCheck:
    """Judge the undefended cell of a column from its scored rows (status ``ok``)."""
    if not has_baseline:
        return BaselineCheck(
            None, None, None, "the experiment has no undefended plain-model cell (combination 'none', defense 'none')"
        )
    pairs = [(row.get("psnr"), row.get("ref_psnr")) for row in baseline_rows if row.get("psnr") is not None]
    if not pairs:
        return BaselineCheck(None, None, None, "the undefended cell has no PSNR")
    references = [ref for _, ref in pairs if ref is not None]
    if len(references) != len(pairs):
        return BaselineCheck(
            None, None, None, "rows without a reference score ref_psnr (results stored before schema version 3)"
        )
    psnr, reference = mean_or_inf([p for p, _ in pairs]), mean_or_inf(references)
    return BaselineCheck(psnr, reference, psnr > reference + LEAK_MARGIN_DB, "")
