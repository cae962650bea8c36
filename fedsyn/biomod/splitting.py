"""Weight splitting (WS), paper eq. 5 with the identity as transfer function and the sum as aggregation.

A split layer with N outputs and division factor Gamma computes its N linear outputs as usual, then
group ``n`` (``0 <= n < K = N / Gamma``) sums the outputs ``n + g * K`` for ``g = 0 .. Gamma-1``. The sum
is written back to every member of its group, so output ``j`` carries the sum of group ``j mod K`` and
the layer still has N outputs: the layout is the K group sums tiled Gamma times
(``[S_0 .. S_{K-1}, S_0 .. S_{K-1}, ...]``), not interleaved. The authors' package groups adjacent
outputs instead (``n * Gamma + g``) and interleaves the copies; the two differ only by a fixed
permutation of the output units.

Because the grouping is linear, summing the outputs equals running the layer with the rows of its
weight and bias grouped and summed the same way. ``split_forward`` picks whichever of the two is
cheaper for the input at hand (outputs for small batches of wide Linear layers, weights for
convolutions with many positions); both give the same function and the same gradients.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

LayerForward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def group_sum(values: torch.Tensor, gamma: int, dim: int) -> torch.Tensor:
    """Sum ``values`` along ``dim`` in the strided groups of eq. 5 and tile the sums back to full size."""
    dim = dim % values.dim()
    size = values.shape[dim]
    groups = size // gamma
    sums = values.unflatten(dim, (gamma, groups)).sum(dim, keepdim=True)
    return sums.expand(*values.shape[:dim], gamma, groups, *values.shape[dim + 1 :]).flatten(dim, dim + 1)


def check_divisible(name: str, layer: nn.Module, gamma: int) -> None:
    """Raise a ``ValueError`` naming ``name`` when the layer's output count is not a multiple of gamma."""
    outputs = layer.weight.shape[0]
    if outputs % gamma:
        raise ValueError(
            f"weight splitting: layer {name!r} ({type(layer).__name__}) has {outputs} outputs, "
            f"which is not divisible by gamma={gamma}"
        )


def _split_outputs(layer: nn.Module, x: torch.Tensor) -> bool:
    """Whether summing outputs is cheaper than summing weight rows for this input."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            return True  # each weight row sees its own input group: rows cannot be merged
        in_features = layer.in_channels
    else:
        in_features = layer.in_features
    rows = x.numel() // in_features
    return rows < layer.weight[0].numel()


def split_forward(layer: nn.Module, x: torch.Tensor, gamma: int, plain: LayerForward) -> torch.Tensor:
    """Forward of ``layer`` with weight splitting; ``plain(x, weight, bias)`` is the layer's own forward."""
    weight, bias = layer.weight, layer.bias
    if _split_outputs(layer, x):
        out = plain(x, weight, bias)
        channel_dim = -1 if isinstance(layer, nn.Linear) else out.dim() - 3
        return group_sum(out, gamma, channel_dim)
    merged_bias = None if bias is None else group_sum(bias, gamma, 0)
    return plain(x, group_sum(weight, gamma, 0), merged_bias)
