"""Label recovery from the gradient of the last (classification) layer.

With the mean cross-entropy over a batch of B images, the last layer's gradients are
``bias_c = (1/B) * sum_i (p_ic - [y_i = c])`` and ``weight_c = (1/B) * sum_i (p_ic - [y_i = c]) * a_i``
with ``a_i`` image i's penultimate features. After a ReLU the features are non-negative, so row c of
the weight gradient has a negative entry only when class c is in the batch (Yin et al. 2021, "See
through Gradients"): the row minimum tells presence exactly, whatever the model predicts. The bias
entry (or the row sum) is pushed down by about 1/B per image of class c but also up by the model's
probability for c, so it only estimates counts. The recovered labels are returned sorted: a batch's
order is not identifiable, and scoring pairs images before comparing labels.

Per class, the *presence* score is the row minimum of a weight gradient, or the bias gradient itself;
the *count* score is the row sum of a weight gradient, or the bias gradient itself.

Strategies:

- ``idlg`` (Zhao et al. 2020, "iDLG", for one image; Yin et al. 2021 for B images): the B classes with
  the most negative presence scores, so B distinct classes (needs B <= number of classes). For one
  image and non-negative features this is exact.
- ``wainakh`` (the two-stage count estimate of Wainakh et al. 2022, "User-Level Label Leakage from
  Gradients in Federated Learning", simplified as breaching's "bias-corrected"): stage 1 gives one
  label to every class with a negative presence score; if that is B or more classes, the B most
  negative are kept. Otherwise the impact of one image is estimated as (sum of those classes' count
  scores) / B, each picked class has that impact removed from its count score, and while labels are
  missing the class with the most negative remaining count score gets the next one (so classes
  repeat, and any B works).
- ``auto``: ``idlg`` for one image, ``wainakh`` otherwise.
"""

from __future__ import annotations

import torch

from .config import LabelStrategy


def class_scores(last_layer_grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(presence, count) scores per class from the weight (classes, features) or bias (classes,) gradient."""
    grad = torch.as_tensor(last_layer_grad).detach()
    if grad.ndim not in (1, 2):
        raise ValueError(
            "last_layer_grad must be the last layer's weight gradient (classes, features) or its bias "
            f"gradient (classes,), got shape {tuple(grad.shape)}"
        )
    if not torch.isfinite(grad).all():
        raise ValueError("last_layer_grad contains NaN or Inf")
    grad = grad.double()
    if grad.ndim == 2:
        return grad.min(dim=1).values, grad.sum(dim=1)
    return grad, grad


def recover_labels(
    last_layer_grad: torch.Tensor, num_images: int, *, strategy: LabelStrategy = "auto"
) -> torch.Tensor:
    """Recover the ``num_images`` labels (sorted int64, on the gradient's device) from the last layer."""
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    presence, counts = class_scores(last_layer_grad)
    classes = presence.numel()
    if strategy == "auto":
        strategy = "idlg" if num_images == 1 else "wainakh"
    if strategy == "idlg":
        if num_images > classes:
            raise ValueError(
                f"label strategy 'idlg' picks distinct classes, but num_images={num_images} > {classes} "
                "classes; use 'wainakh', which allows repeats"
            )
        labels = presence.argsort()[:num_images]
    elif strategy == "wainakh":
        labels = _two_stage(presence, counts, num_images)
    else:
        raise ValueError(f"unknown label strategy {strategy!r}; known: auto, idlg, wainakh")
    return labels.sort().values.to(torch.int64)


def _two_stage(presence: torch.Tensor, counts: torch.Tensor, num_images: int) -> torch.Tensor:
    order = presence.argsort()
    present = order[presence[order] < 0]
    if present.numel() >= num_images:
        return order[:num_images]
    if present.numel():
        impact = counts[present].sum() / num_images
    else:  # no class detected: take one image's impact as the spread of the count scores
        impact = -(counts.max() - counts.min()) / num_images
    remaining = counts.clone()
    remaining[present] -= impact
    labels = present.tolist()
    while len(labels) < num_images:
        pick = int(remaining.argmin())
        labels.append(pick)
        remaining[pick] -= impact
    return torch.tensor(labels, device=presence.device)
