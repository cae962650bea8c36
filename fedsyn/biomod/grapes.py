"""GRAPES error modulation (seed 004, eqs. 1-2), propagating version.

For a hidden layer with weight ``W`` the node importance is ``I_n = sum_i |W[n, i]|`` (for Conv2d the
sum runs over input channels and kernel positions), the modulation is ``M = max(1, 2 I / max(I))``,
and the error arriving at the layer's output (the gradient w.r.t. its pre-activation output, after
weight splitting if the layer is split) is multiplied by ``M`` per output unit. Because the modulated
error flows on through the layer, upstream layers see it too (the paper's default, Fig. 2c).

``M`` is computed from the current weights without gradient each time the layer runs forward with
autograd on, i.e. once per training step, after the previous update (as in the paper).
"""

from __future__ import annotations

from typing import Any

import torch


def modulation(weight: torch.Tensor) -> torch.Tensor:
    """``max(1, 2 I / max(I))`` per output unit of ``weight`` (shape ``(N,)``); all ones if ``W == 0``."""
    with torch.no_grad():
        importance = weight.abs().sum(dim=tuple(range(1, weight.dim())))
        peak = importance.max()
        if peak == 0:
            return torch.ones_like(importance)
        return torch.clamp(2.0 * importance / peak, min=1.0)


class _ScaleError(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by a fixed factor."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        # A copy, not a view: the layer's output is often modified in place (ReLU(inplace=True)).
        return x.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (factor,) = ctx.saved_tensors
        return grad * factor, None


def modulate_error(out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Return ``out`` unchanged, with its backward error scaled by ``modulation(weight)`` per unit.

    ``out`` is a Linear output (units on the last dim) or a Conv2d output (units on the channel dim).
    """
    if not (torch.is_grad_enabled() and out.requires_grad):
        return out
    factor = modulation(weight)
    if weight.dim() == 4:
        factor = factor.view(-1, 1, 1)
    return _ScaleError.apply(out, factor)
