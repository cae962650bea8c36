"""BatchNorm statistics as the attacker's knowledge (issue 16, item 2).

A client training with BatchNorm on batch statistics sends, with its update, the layers' running
buffers. One local step updates them as ``running_new = (1 - m) * running_old + m * batch_stat`` with
the layer's momentum ``m``, where the batch statistic of ``running_var`` is the *unbiased* variance of
the layer's input over (batch, height, width). The server holds both buffers, so it can solve for the
batch mean and unbiased variance of every BatchNorm layer: exactly after one local step; after several
the recovered value is a momentum-weighted mix of the steps' statistics.

The attack then pulls the candidate batch's feature statistics towards the recovered ones, the
feature-distribution prior of DeepInversion (Yin et al. 2020) used for gradient inversion in "See
through Gradients" (Yin et al. 2021, eq. 6): ``sum_l ||mu_l(x) - mu_l*||_2 + ||var_l(x) - var_l*||_2``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

BatchStats = Sequence[tuple[torch.Tensor, torch.Tensor]]


def batch_statistics(
    old_mean: torch.Tensor, old_var: torch.Tensor, new_mean: torch.Tensor, new_var: torch.Tensor, momentum: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One BatchNorm layer's batch (mean, unbiased variance) from its running buffers before and after
    one local step with momentum ``momentum`` (``nn.BatchNorm2d(momentum=...)``, 0.1 by default)."""
    if not 0 < momentum <= 1:
        raise ValueError(f"momentum must lie in (0, 1], got {momentum!r}")
    keep = 1 - momentum
    mean = (new_mean.double() - keep * old_mean.double()) / momentum
    var = (new_var.double() - keep * old_var.double()) / momentum
    return mean.float(), var.float()


def recover_bn_stats(
    old: BatchStats, new: BatchStats, momentum: float | Sequence[float] = 0.1
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`batch_statistics` for every layer: ``old``/``new`` are the (running_mean, running_var)
    pairs of the global and the client's model in module order; ``momentum`` one value or one per layer."""
    if len(old) != len(new):
        raise ValueError(f"{len(old)} global BatchNorm layers but {len(new)} local ones")
    momenta = [momentum] * len(old) if isinstance(momentum, (int, float)) else list(momentum)
    if len(momenta) != len(old):
        raise ValueError(f"{len(momenta)} momenta for {len(old)} BatchNorm layers")
    return [batch_statistics(om, ov, nm, nv, m) for (om, ov), (nm, nv), m in zip(old, new, momenta)]


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """The model's BatchNorm layers in module order (the order of ``bn_stats``)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def input_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased variance of a BatchNorm input (N, C, ...), over all but the channels."""
    dims = [0, *range(2, features.ndim)]
    return features.mean(dims), features.var(dims, correction=1)


def feature_distance(candidate: BatchStats, target: BatchStats) -> torch.Tensor:
    """``sum_l ||mu_l - mu_l*||_2 + ||var_l - var_l*||_2`` (Yin et al. 2021, eq. 6)."""
    return sum(
        torch.linalg.vector_norm(m - tm) + torch.linalg.vector_norm(v - tv)
        for (m, v), (tm, tv) in zip(candidate, target, strict=True)
    )


class FeatureRecorder:
    """Records :func:`input_statistics` of every BatchNorm layer's input while :meth:`recording`.

    Forward pre-hooks on the (attacker's own copy of the) model; they record nothing outside
    :meth:`recording`, so passes such as an unrolled local training run untouched.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = batchnorm_layers(model)
        self._recorded: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        for layer in self.layers:
            layer.register_forward_pre_hook(self._record)

    def _record(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if self._recorded is not None:
            self._recorded.append(input_statistics(args[0]))

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
        recorded: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._recorded = recorded
        try:
            yield recorded
        finally:
            self._recorded = None
