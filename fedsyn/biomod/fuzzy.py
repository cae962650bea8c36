"""Fuzzy learning rates (FL), paper eqs. 1-2.

Each weight gets one constant factor ``eta_hat ~ U(1 - tau/2, 1 + tau/2)``, drawn once at conversion,
and every training step multiplies the weight's gradient by it before the optimizer step. Biases keep
their gradient unless ``fl_bias`` is set. FL applies to every converted layer, the output layer too.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import BiomodLayer, converted_layers


def draw_factors(layer: nn.Module, tau: float, generator: torch.Generator, bias: bool) -> None:
    """Give ``layer`` its FL factors, drawn in float32 on the CPU from ``generator`` whatever the
    layer's dtype and device (so every party derives the same factors), then moved to the layer."""

    def draw(param: torch.Tensor) -> torch.Tensor:
        uniform = torch.rand(param.shape, generator=generator, dtype=torch.float32)
        factor = 1.0 - tau / 2.0 + tau * uniform
        return factor.to(device=param.device, dtype=param.dtype)

    layer.fl_weight_factor = draw(layer.weight)
    layer.fl_bias_factor = draw(layer.bias) if bias and layer.bias is not None else None


def scale_layer_gradients(layers: list[BiomodLayer]) -> None:
    """Multiply the current ``.grad`` of each layer's weight (and bias) by its FL factors, in place,
    in one multi-tensor call (one kernel launch per device and dtype on CUDA)."""
    grads, factors = [], []
    for layer in layers:
        pairs = ((layer.weight, layer.fl_weight_factor), (layer.bias, layer.fl_bias_factor))
        for param, factor in pairs:
            if factor is not None and param is not None and param.grad is not None:
                grads.append(param.grad)
                factors.append(factor)
    if grads:
        torch._foreach_mul_(grads, factors)


def fl_layers(model: nn.Module) -> list[BiomodLayer]:
    """The converted layers of ``model`` that carry FL factors."""
    return [layer for _, layer in converted_layers(model) if layer.fl_weight_factor is not None]


def scale_gradients(model: nn.Module) -> None:
    """Apply FL to the gradients now in ``model``'s ``.grad`` fields (``grad <- grad * eta_hat``).

    ``attach`` does this automatically before every optimizer step; call this directly only when a
    client shares a raw gradient instead of stepping (and never both for the same gradient).
    """
    scale_layer_gradients(fl_layers(model))


def fuzzy_factors(model: nn.Module) -> dict[str, torch.Tensor]:
    """FL factor tensor per parameter name (as in ``model.named_parameters()``); empty without FL.

    The tensors are the model's own (not copies): treat them as read-only.
    """
    factors: dict[str, torch.Tensor] = {}
    for name, layer in converted_layers(model):
        prefix = f"{name}." if name else ""
        if layer.fl_weight_factor is not None:
            factors[f"{prefix}weight"] = layer.fl_weight_factor
        if layer.fl_bias_factor is not None:
            factors[f"{prefix}bias"] = layer.fl_bias_factor
    return factors
