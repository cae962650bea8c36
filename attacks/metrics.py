"""Score a reconstructed batch against the true batch (docs/methods.md, "Scoring a reconstruction").

Steps: validate both batches (float (B, C, H, W), finite) and clamp them to [0, 1]; pair each true image
with one reconstruction by the Hungarian algorithm on the MSE matrix (batch order is not identifiable);
score each pair; report the mean over images and the most-leaked image per metric.

Per image, with x the true image and x_hat its paired reconstruction, both in [0, 1]:
- ``mse``: mean over pixels and channels of (x_hat - x)^2.
- ``psnr``: 10 log10(1 / mse) in dB (peak value 1); ``inf`` when mse == 0.
- ``ssim``: ``skimage.metrics.structural_similarity`` with ``data_range=1`` over the channel axis and
  scikit-image's defaults otherwise (7x7 uniform window), so images need sides of at least 7 pixels.
- ``lpips``: the ``lpips`` package, AlexNet trunk, v0.1, inputs scaled to [-1, 1] (see
  ``attacks.lpips_backbone`` for where the AlexNet weights come from).
- ``mse_pct``: the paper's MSE[%], 100 * ||x_hat - x||^2 / ||x||^2 (seed 001, Table 3); for an all-black
  x it is 0 when x_hat is black too and ``inf`` otherwise.
- label correctness, when labels are given: the reconstruction's label, moved with its image by the
  pairing, equals the true label.

Batch values: ``mse``, ``psnr``, ``ssim``, ``lpips``, ``mse_pct`` and ``label_acc`` are means over the
images (``psnr`` is the mean of per-image PSNRs, hence ``inf`` as soon as one image is exact). ``best_*``
is the most-leaked image by that metric alone: lowest ``mse``, ``mse_pct`` and ``lpips``, highest ``psnr``
and ``ssim``, so different ``best_*`` values may come from different images.

Fewer reconstructions than true images (a method that returns only what it recovered, like the imprint
attack): the pairing is rectangular (each reconstruction to a distinct true image) and a true image left
without a reconstruction is scored against a uniform mid-grey image (nothing recovered), with a wrong
label. ``recovered_30db`` counts the true images whose paired reconstruction is above
``RECOVERED_DB`` (30 dB) PSNR and ``recovered_psnr`` is the mean PSNR of those (absent when none is).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from skimage.metrics import structural_similarity

from attacks import lpips_backbone
from attacks.pairing import UNPAIRED, hungarian

# SSIM's default window in scikit-image is 7x7.
SSIM_MIN_SIDE = 7

# For each per-image metric: True when a higher value means more leakage.
_HIGHER_LEAKS = {"mse": False, "psnr": True, "ssim": True, "lpips": False, "mse_pct": False}

RECOVERED_DB = 30.0
"""PSNR (dB) above which a true image counts as recovered (``recovered_30db``)."""

# What an unpaired true image is scored against: nothing recovered, a uniform mid-grey image.
_BLANK = 0.5

LpipsOption = Literal["auto", False] | str | os.PathLike[str]


class Scores(dict[str, float]):
    """Metric name -> value for one batch, plus how it was obtained.

    Attributes:
        missing: metric name -> why it could not be computed (such metrics have no key in the dict).
        pairing: `pairing[i]` is the index of the reconstruction scored against true image i
            (``attacks.pairing.UNPAIRED`` when there were fewer reconstructions and none was left for it).
        per_image: one dict per true image, in true-batch order, with ``true_index``, ``rec_index``, the
            per-image metrics and, with labels, ``label_correct`` (1.0 or 0.0).
    """

    def __init__(
        self,
        values: dict[str, float],
        *,
        missing: dict[str, str],
        pairing: list[int],
        per_image: list[dict[str, float]],
    ) -> None:
        super().__init__(values)
        self.missing = missing
        self.pairing = pairing
        self.per_image = per_image


def _images(name: str, images: object, *, allow_empty: bool = False) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W); got {type(images).__name__}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be float images in [0, 1]; got dtype {images.dtype} (scale it first)")
    if images.ndim != 4 or (images.shape[0] == 0 and not allow_empty):
        raise ValueError(f"{name} must have shape (B, C, H, W) with B >= 1; got {tuple(images.shape)}")
    bad = int((~torch.isfinite(images)).sum())
    if bad:
        raise ValueError(f"{name} contains {bad} NaN or infinite values")
    return images.detach().clamp(0.0, 1.0)


def _validated(rec: object, true: object) -> tuple[torch.Tensor, torch.Tensor]:
    rec_images = _images("rec_images", rec, allow_empty=True)
    true_images = _images("true_images", true)
    if rec_images.shape[1:] != true_images.shape[1:] or rec_images.shape[0] > true_images.shape[0]:
        raise ValueError(
            f"rec_images must have the true images' shape and at most as many images; "
            f"got {tuple(rec_images.shape)} and {tuple(true_images.shape)}"
        )
    return rec_images, true_images


def _labels(name: str, labels: torch.Tensor | Sequence[int], batch: int) -> torch.Tensor:
    tensor = torch.as_tensor(labels).detach().cpu()
    if tensor.is_floating_point() or tensor.is_complex() or tensor.shape != (batch,):
        raise ValueError(f"{name} must be {batch} integer class indices; got {tensor.dtype} of shape {tuple(tensor.shape)}")
    return tensor.long()


def pair(rec: torch.Tensor, true: torch.Tensor) -> list[int]:
    """Hungarian pairing on the per-pair MSE: `rec[perm]` lines up with `true` (`perm[i]` pairs with image i)."""
    rec_images, true_images = _validated(rec, true)
    return hungarian(rec_images.cpu(), true_images.cpu())


def _pixel_metrics(rec: np.ndarray, true: np.ndarray) -> dict[str, float]:
    squared_error = float(((rec - true) ** 2).sum())
    energy = float((true**2).sum())
    mse = squared_error / rec.size
    if energy > 0:
        mse_pct = 100.0 * squared_error / energy
    else:
        mse_pct = 0.0 if squared_error == 0 else math.inf
    return {"mse": mse, "psnr": 10.0 * math.log10(1.0 / mse) if mse > 0 else math.inf, "mse_pct": mse_pct}


def _lpips_weights(option: object) -> str | os.PathLike[str] | None:
    """The AlexNet weights file the `lpips` option names, or None when LPIPS is off."""
    if option is False:
        return None
    if isinstance(option, str) and option == "auto":
        return lpips_backbone.default_backbone_path()
    if isinstance(option, (str, os.PathLike)):
        return option
    raise ValueError(f"lpips must be 'auto', False or a path to AlexNet weights; got {option!r}")


def score(
    rec_images: torch.Tensor,
    true_images: torch.Tensor,
    *,
    rec_labels: torch.Tensor | Sequence[int] | None = None,
    true_labels: torch.Tensor | Sequence[int] | None = None,
    lpips: LpipsOption = "auto",
    device: torch.device | str | None = None,
) -> Scores:
    """Pair and score a reconstructed batch; see the module docstring for every definition.

    Args:
        rec_images, true_images: float (B, C, H, W) batches, clamped to [0, 1].
        rec_labels, true_labels: give both for ``label_acc``; the reconstruction labels follow the pairing.
        lpips: ``"auto"`` reads the AlexNet weights from torchvision's cache, a path reads them from that
            file, ``False`` skips LPIPS. Whenever LPIPS is not computed, ``Scores.missing["lpips"]`` says why.
        device: where LPIPS runs; defaults to the device of ``rec_images``.

    Raises:
        TypeError, ValueError: inputs that are not float (B, C, H, W) tensors of one shape, contain NaN or
            infinity, or labels that are not B integers (or only one of the two label sets).
    """
    rec, true = _validated(rec_images, true_images)
    if (rec_labels is None) != (true_labels is None):
        raise ValueError("give both rec_labels and true_labels, or neither")
    labels = None
    if rec_labels is not None and true_labels is not None:
        labels = _labels("rec_labels", rec_labels, rec.shape[0]), _labels("true_labels", true_labels, true.shape[0])
    weights = _lpips_weights(lpips)
    lpips_device = torch.device(device) if device is not None else rec.device
    rec, true = rec.cpu(), true.cpu()
    perm = hungarian(rec, true)
    blank = torch.full_like(true[0], _BLANK)
    rec = torch.stack([rec[j] if j != UNPAIRED else blank for j in perm])

    rec_np, true_np = rec.double().numpy(), true.double().numpy()
    per_image: list[dict[str, float]] = [
        {"true_index": i, "rec_index": j, **_pixel_metrics(rec_np[i], true_np[i])} for i, j in enumerate(perm)
    ]
    missing: dict[str, str] = {}

    height, width = rec.shape[2:]
    if min(height, width) >= SSIM_MIN_SIDE:
        for row, r, t in zip(per_image, rec_np, true_np):
            row["ssim"] = float(structural_similarity(r, t, data_range=1.0, channel_axis=0))
    else:
        missing["ssim"] = f"SSIM's {SSIM_MIN_SIDE}x{SSIM_MIN_SIDE} window needs larger images; got {height}x{width}"

    if weights is None:
        missing["lpips"] = "not requested (lpips=False)"
    else:
        try:
            model = lpips_backbone.lpips_model(weights, lpips_device)
            distances = lpips_backbone.lpips_distances(model, rec, true)
        except lpips_backbone.LpipsUnavailable as exc:
            missing["lpips"] = str(exc)
        else:
            for row, distance in zip(per_image, distances.tolist()):
                row["lpips"] = distance

    if labels is not None:
        rec_classes, true_classes = labels
        paired_classes = torch.tensor([int(rec_classes[j]) if j != UNPAIRED else -1 for j in perm])
        for row, hit in zip(per_image, (paired_classes == true_classes).tolist()):
            row["label_correct"] = float(hit)

    values: dict[str, float] = {}
    for metric, higher_leaks in _HIGHER_LEAKS.items():
        if metric in missing:
            continue
        column = [row[metric] for row in per_image]
        values[metric] = float(np.mean(column))
        values[f"best_{metric}"] = max(column) if higher_leaks else min(column)
    if labels is not None:
        values["label_acc"] = float(np.mean([row["label_correct"] for row in per_image]))
    recovered = [row["psnr"] for row, j in zip(per_image, perm) if j != UNPAIRED and row["psnr"] > RECOVERED_DB]
    values["recovered_30db"] = float(len(recovered))
    if recovered:
        values["recovered_psnr"] = float(np.mean(recovered))
    return Scores(values, missing=missing, pairing=perm, per_image=per_image)
