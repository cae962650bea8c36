"""One image from the rows of a fully connected layer's gradient: ``x = dL/dW[j,:] / dL/db[j]``.

For ``y = W x + b`` and one input, ``dL/dW[j,:] = dL/db[j] * x`` for every output ``j`` (Phong et al.
2017, "Privacy-preserving deep learning via additively homomorphic encryption"; the identity R-GAP
builds on), so every row with ``dL/db[j] != 0`` is an exact copy of the input. An update after one SGD
step is ``-lr`` times the gradient, so the ratio is unchanged; after several steps on the same image it
is still exact, because every step's row is a multiple of the same ``x``.

The synaptic-diversity methods perturb the rows, not the identity:

- FL multiplies each weight's gradient by its own factor near 1, so a row's ratio is ``x`` times
  per-pixel factors; over hundreds of active rows they average out.
- WR replaces a few percent of the update's entries by re-initialisation jumps, the size of the weights
  themselves; divided by a small ``dL/db[j]`` they are huge outliers in their pixel's column of ratios.

Hence :func:`aggregate_rows`: per pixel, the median of the ratios over the rows, then a mean of the
ratios within a few median absolute deviations of it (the outliers rejected, the factors averaged),
weighted by ``|dL/db[j]|`` so that rows with a weak signal count less.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Rows whose |dL/db| is below this share of the largest are ignored: their ratio is mostly rounding.
MIN_BIAS_SHARE = 1e-4
# Ratios further than this many (scaled) median absolute deviations from the pixel's median are outliers.
OUTLIER_MADS = 4.0
# A column whose median absolute deviation is below this share of the image's scale is treated as exact.
EXACT_SHARE = 1e-6


@dataclass(frozen=True)
class RowEstimate:
    """The aggregated input (pixels,), NaN where every row's entry was dropped, with what the aggregation saw.

    ``rows``: rows used; ``outliers``: share of (row, pixel) ratios rejected; ``spread``: the median
    over pixels of the ratios' relative median absolute deviation (0 for an exact gradient, about the FL
    factors' spread under FL), a measure of how much the rows disagree.
    """

    image: torch.Tensor
    rows: int
    outliers: float
    spread: float


def active_rows(bias_grad: torch.Tensor) -> torch.Tensor:
    """Indices of the rows whose ``|dL/db|`` is large enough for the ratio to carry the input."""
    magnitude = bias_grad.abs()
    peak = float(magnitude.max()) if magnitude.numel() else 0.0
    if peak == 0.0:
        return torch.zeros(0, dtype=torch.int64)
    return torch.nonzero(magnitude > MIN_BIAS_SHARE * peak).flatten()


def aggregate_rows(weight_grad: torch.Tensor, bias_grad: torch.Tensor, keep: torch.Tensor | None = None) -> RowEstimate:
    """Robust per-pixel aggregate of ``weight_grad[j] / bias_grad[j]`` over the given rows.

    ``weight_grad`` is (rows, pixels), ``bias_grad`` (rows,), float64; ``keep`` (same shape as
    ``weight_grad``, bool) drops entries the attacker knows to be corrupted (an informed attacker's
    rejuvenation mask). Raises ``ValueError`` when no row carries the input.
    """
    rows = active_rows(bias_grad)
    if rows.numel() == 0:
        raise ValueError("every row of the input layer's bias gradient is zero: no row carries the image")
    bias = bias_grad[rows]
    ratios = weight_grad[rows] / bias.unsqueeze(1)
    valid = torch.ones_like(ratios, dtype=torch.bool) if keep is None else keep[rows].clone()
    ratios = torch.where(valid, ratios, torch.nan)
    median = ratios.nanmedian(dim=0).values
    deviation = (ratios - median).abs()
    mad = 1.4826 * deviation.nanmedian(dim=0).values
    scale = float(median.nan_to_num().abs().max())
    floor = EXACT_SHARE * max(scale, torch.finfo(torch.float64).tiny)
    inlier = valid & (deviation <= OUTLIER_MADS * mad.clamp_min(floor))
    weights = bias.abs().unsqueeze(1) * inlier
    total = weights.sum(dim=0)
    mean = (weights * ratios.nan_to_num()).sum(dim=0) / total.clamp_min(torch.finfo(torch.float64).tiny)
    image = torch.where(total > 0, mean, median)
    relative = (mad / median.abs().clamp_min(floor)).nanmedian()
    rejected = 1.0 - float(inlier.sum()) / max(int(valid.sum()), 1)
    return RowEstimate(image=image, rows=int(rows.numel()), outliers=rejected, spread=float(relative))
