"""What every attack method receives, and how a method says it cannot act on a target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .config import AttackConfig, LocalUpdate


class NotApplicable(Exception):
    """The method cannot act on this model or target; ``str(exc)`` says why."""


@dataclass(frozen=True)
class AttackInputs:
    """Everything the attacker holds for one target.

    ``target`` is aligned with ``model.parameters()``: a gradient (``update=None``) or an update
    ``w_local - w_global`` after the local training ``update`` describes. ``labels=None`` means the
    labels are unknown. ``fl_factors`` and ``mask`` are an informed attacker's knowledge (see
    :func:`attacks.reconstruct`); ``bn_stats`` are the per-BatchNorm-layer (mean, variance) of the
    client's batch in module order, where the attacker could recover them, else ``None``.
    """

    model: nn.Module
    target: Sequence[torch.Tensor]
    num_images: int
    mean: Sequence[float] | torch.Tensor
    std: Sequence[float] | torch.Tensor
    labels: torch.Tensor | Sequence[int] | None = None
    config: AttackConfig | None = None
    update: LocalUpdate | None = None
    fl_factors: Sequence[torch.Tensor | None] | None = None
    image_shape: tuple[int, int, int] | None = None
    mask: Sequence[torch.Tensor | None] | None = None
    bn_stats: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None
