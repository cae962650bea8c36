"""The attack suite: every reconstruction method by name, each fed the same :class:`AttackInputs`.

A method is a function ``AttackInputs -> Reconstruction``. One that cannot act on a target (the analytic
attack on a model without a fully connected input layer, say) raises :class:`NotApplicable` with the
reason, and the caller records "not applicable" instead of a number. Adding a method is one module and
one line in :data:`METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .analytic import analytic
from .config import AttackConfig, LocalUpdate
from .inversion import Reconstruction, reconstruct


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


Method = Callable[[AttackInputs], Reconstruction]


def _inverting_gradients(inputs: AttackInputs) -> Reconstruction:
    """Geiping et al. (2020): optimise images whose gradient (or unrolled update) matches the target."""
    return reconstruct(
        inputs.model,
        inputs.target,
        num_images=inputs.num_images,
        labels=inputs.labels,
        mean=inputs.mean,
        std=inputs.std,
        config=inputs.config,
        update=inputs.update,
        fl_factors=inputs.fl_factors,
        image_shape=inputs.image_shape,
        mask=inputs.mask,
    )


METHODS: dict[str, Method] = {
    "inverting-gradients": _inverting_gradients,
    "analytic": analytic,
}

DEFAULT_METHOD = "inverting-gradients"


def run_method(name: str, inputs: AttackInputs) -> Reconstruction:
    """Run the method called ``name``; raises :class:`NotApplicable` when it cannot act on ``inputs``."""
    if name not in METHODS:
        raise ValueError(f"unknown attack method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name](inputs)
