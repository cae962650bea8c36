"""Exact recovery through an imprint block (Fowl et al. 2022, "Robbing the Fed", eq. 4).

A server that sent a model with an imprint block reads images straight out of the gradient (or the
update) of the block's measuring layer: row ``i`` fires iff the image's statistic exceeds threshold
``t_i`` and every firing row receives the same per-image scalar, so for an image alone in bin
``(t_i, t_{i+1}]``

    x = (dW[i] - dW[i+1]) / (db[i] - db[i+1]).

The ratio does not care about the sign or the size of the step, so a gradient, an update
``-lr * grad`` after one step, the sum of several local steps, a FedAvg mean or a secure aggregate all
work, for every image that stayed alone in its bin (for several steps, the rows drift a little and an
image near a threshold may change bin).

Contract (this package does not import fedsyn): the block is the first module of ``model`` that has
the buffers ``imprint_thresholds`` (bins,) and ``imprint_rows`` (bins, copies), the measuring rows of
each threshold in increasing order, and a ``measure`` child whose ``weight`` and ``bias`` are parameters
of the model; an ``in_shape`` attribute (C, H, W) gives the image shape (else ``image_shape`` of the
inputs, else (channels, 32, 32)). ``fedsyn.models.imprint`` builds such blocks.

Attacker knowledge: the informed attacker passes the clients' FL factors (divided out of each entry)
and a mask of trustworthy entries (WR re-drawn ones dropped); without them the update is read as it
is. Rows measuring the same threshold (``copies``) are averaged, which shrinks unknown FL factors
towards their mean 1. Which bins held exactly one image is unknown: every bin whose bias difference is
non-negligible gives a candidate, near-duplicates count once (weight splitting repeats rows), and
candidates inside the valid pixel box come first (a mixture of images with gradient weights of mixed
sign leaves it), then larger bias differences. Labels are not recovered: the reconstruction's labels
are the model's predictions on the recovered images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .inversion import Reconstruction

# A bin's bias difference below this fraction of the largest one is not an image (a numerically tiny
# gradient weight: its ratio is unreliable).
_NEGLIGIBLE = 1e-4
# ... nor one below this many float32 epsilons of the magnitudes it was computed from (an empty bin's
# difference is rounding noise: for an update, that of the float32 weights w_local - w_global).
_ROUNDING = 2.0
# Candidates closer than this (relative L2 distance) are the same image.
_DUPLICATE = 1e-3


def find_block(model: nn.Module) -> nn.Module | None:
    """The model's imprint block (see the module contract), or ``None``."""
    for module in model.modules():
        if all(hasattr(module, name) for name in ("imprint_thresholds", "imprint_rows", "measure")):
            return module
    return None


def _parameter_index(model: nn.Module, tensor: torch.Tensor) -> int:
    for index, param in enumerate(model.parameters()):
        if param is tensor:
            return index
    raise ValueError("the imprint block's measuring layer is not among the model's parameters")


def _aligned(values: Sequence[torch.Tensor | None] | None, index: int) -> torch.Tensor | None:
    return None if values is None else values[index]


def _row_means(values: torch.Tensor, rows: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per threshold, the mean over its rows of the kept entries, and where at least one was kept."""
    kept = keep[rows].to(values.dtype)  # (bins, copies, ...)
    count = kept.sum(dim=1)
    total = (values[rows] * kept).sum(dim=1)
    return total / count.clamp_min(1), count > 0


def bin_candidates(
    weight: torch.Tensor,
    bias: torch.Tensor,
    rows: torch.Tensor,
    *,
    weight_keep: torch.Tensor | None = None,
    bias_keep: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per bin, ``(dW[i] - dW[i+1]) / (db[i] - db[i+1])`` and the bias difference ``db`` (float64).

    ``weight``/``bias`` are the measuring layer's gradient or update (FL factors already divided out),
    ``rows`` (bins, copies) its rows per threshold; entries with ``keep`` False are left out of the row
    means, and an entry without a kept value in both rows of a bin is set to 0.
    """
    weight, bias = weight.double(), bias.double()
    weight_keep = torch.ones_like(weight, dtype=torch.bool) if weight_keep is None else weight_keep.bool()
    bias_keep = torch.ones_like(bias, dtype=torch.bool) if bias_keep is None else bias_keep.bool()
    w_mean, w_valid = _row_means(weight, rows, weight_keep)
    b_mean, b_valid = _row_means(bias, rows, bias_keep)
    zero_w, zero_b = torch.zeros_like(w_mean[:1]), torch.zeros_like(b_mean[:1])
    dw = w_mean - torch.cat([w_mean[1:], zero_w])
    db = torch.where(b_valid, b_mean - torch.cat([b_mean[1:], zero_b]), 0.0)
    last_valid = torch.ones_like(w_valid[:1])
    valid = w_valid & torch.cat([w_valid[1:], last_valid])
    nonzero = db != 0
    ratio = torch.where(valid & nonzero.unsqueeze(1), dw / db.where(nonzero, 1.0).unsqueeze(1), 0.0)
    return ratio, db


def significant_bins(db: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Indices of the bins whose bias difference ``db`` is neither negligible nor rounding noise.

    ``magnitude`` (bins,) is, per threshold, the largest magnitude that entered its bias value: the
    target's, plus the global bias's for an update (a difference of two float32 weights).
    """
    pair = magnitude + torch.cat([magnitude[1:], magnitude.new_zeros(1)])
    noise = _ROUNDING * torch.finfo(torch.float32).eps * pair
    floor = torch.maximum(noise, _NEGLIGIBLE * db.abs().max())
    return torch.nonzero((db.abs() > floor) & (db != 0)).flatten()


def _box_violation(images: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of each image's pixels outside the box [low, high]."""
    outside = (low - images).clamp_min(0) + (images - high).clamp_min(0)
    return outside.pow(2).flatten(1).mean(dim=1)


def _distinct(candidates: torch.Tensor) -> list[int]:
    kept: list[int] = []
    for index, image in enumerate(candidates):
        norm = image.norm().clamp_min(1e-12)
        if all((image - candidates[other]).norm() / norm > _DUPLICATE for other in kept):
            kept.append(index)
    return kept


def recover(
    model: nn.Module,
    target: Sequence[torch.Tensor],
    *,
    num_images: int,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    fl_factors: Sequence[torch.Tensor | None] | None = None,
    mask: Sequence[torch.Tensor | None] | None = None,
    image_shape: tuple[int, int, int] | None = None,
    is_update: bool = False,
) -> Reconstruction:
    """Up to ``num_images`` images read out of the imprint block's gradient or update ``target``.

    Raises ``LookupError`` when ``model`` has no imprint block. ``fl_factors``/``mask`` are aligned
    with ``model.parameters()`` like ``target`` (informed attacker; ``None``: oblivious).
    ``is_update``: ``target`` is ``w_local - w_global`` (``model`` holds ``w_global``), which sets the
    rounding noise an empty bin shows.
    """
    block = find_block(model)
    if block is None:
        raise LookupError("the model has no imprint block (no module with imprint_thresholds)")
    w_index = _parameter_index(model, block.measure.weight)
    b_index = _parameter_index(model, block.measure.bias)
    weight, bias = target[w_index].detach().cpu().double(), target[b_index].detach().cpu().double()
    weight_factor, bias_factor = _aligned(fl_factors, w_index), _aligned(fl_factors, b_index)
    if weight_factor is not None:
        weight = weight / weight_factor.detach().cpu().double()
    if bias_factor is not None:
        bias = bias / bias_factor.detach().cpu().double()
    weight_keep, bias_keep = _aligned(mask, w_index), _aligned(mask, b_index)
    rows = block.imprint_rows.cpu()
    ratio, db = bin_candidates(
        weight,
        bias,
        rows,
        weight_keep=None if weight_keep is None else weight_keep.cpu(),
        bias_keep=None if bias_keep is None else bias_keep.cpu(),
    )
    mean_t = torch.as_tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    shape = getattr(block, "in_shape", None) or image_shape or (mean_t.shape[1], 32, 32)
    magnitude = bias.abs() + (block.measure.bias.detach().cpu().double().abs() if is_update else 0.0)
    significant = significant_bins(db, magnitude[rows].amax(dim=1))
    images = ratio[significant].view(-1, *shape)
    violation = _box_violation(images, (0 - mean_t) / std_t, (1 - mean_t) / std_t)
    order = sorted(range(len(significant)), key=lambda k: (float(violation[k]), -float(db[significant[k]].abs())))
    images = images[order]
    chosen = _distinct(images)[:num_images]
    normalised = images[chosen].float()
    with torch.no_grad():
        was_training = model.training
        model.eval()
        device = block.measure.weight.device
        labels = model(normalised.to(device)).argmax(dim=1) if len(chosen) else torch.zeros(0, dtype=torch.int64)
        model.train(was_training)
    pixels = (normalised.double() * std_t + mean_t).clamp(0, 1).float()
    stats = {
        "method": "imprint",
        "iterations": 0,  # closed form: no optimisation
        "bins": int(block.imprint_thresholds.numel()),
        "candidates": int(len(significant)),
        "distinct": len(chosen),
        "informed": fl_factors is not None or mask is not None,
        "labels": "predicted by the model on the recovered images, not recovered",
    }
    return Reconstruction(images=pixels, labels=labels.cpu().long(), stats=stats)
