"""Find the fully connected layer that reads the image itself, by the model's structure.

The analytic attack needs a layer ``y = W x + b`` whose input ``x`` is the (flattened, normalised)
image. The layer is found without names or classes: a probe image is sent through the model, the first
module that owns parameters stops the forward pass from a pre-hook, and its input must be the probe
itself, flattened, while its ``weight`` is a matrix with one column per pixel. So an ``nn.Linear`` after
``nn.Flatten`` qualifies, and so do the converted layers of ``fedsyn.biomod`` (their class is a subclass
of ``nn.Linear``; weight splitting sums rows after the product, which leaves each row's gradient of the
form ``delta * x``). A model whose first parametrised operation is a convolution, or that transforms
the image before its first linear layer, does not qualify.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class _Reached(Exception):
    """Raised from the pre-hook to stop the probe's forward pass at the first parametrised module."""

    def __init__(self, module: nn.Module, value: object) -> None:
        super().__init__()
        self.module = module
        self.value = value


@dataclass(frozen=True)
class InputLayer:
    """Indices in ``model.parameters()`` of the input layer's weight (out, C*H*W) and bias (out,)."""

    weight: int
    bias: int
    outputs: int
    kind: str


def find_input_layer(model: nn.Module, image_shape: tuple[int, int, int]) -> InputLayer | str:
    """The fully connected layer that takes the image as input, or a sentence saying why there is none.

    The probe runs under ``no_grad`` and stops before the first parametrised module runs, so no
    parameter or buffer of ``model`` changes.
    """
    owners = [m for m in model.modules() if next(m.parameters(recurse=False), None) is not None]
    if not owners:
        return "the model has no parameters"

    def stop(module: nn.Module, args: tuple[object, ...]) -> None:
        raise _Reached(module, args[0] if args else None)

    handles = [module.register_forward_pre_hook(stop) for module in owners]
    first = next(iter(model.parameters()))
    probe = torch.randn(1, *image_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    probe = probe.to(device=first.device, dtype=first.dtype)
    try:
        with torch.no_grad():
            model(probe)
    except _Reached as reached:
        return _check(model, reached.module, reached.value, probe)
    finally:
        for handle in handles:
            handle.remove()
    return "the model's forward pass used none of its parametrised modules"


def _check(model: nn.Module, module: nn.Module, value: object, probe: torch.Tensor) -> InputLayer | str:
    kind = type(module).__name__
    none = "no fully connected layer takes the image as input"
    weight = getattr(module, "weight", None)
    pixels = probe.numel()
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[1] != pixels:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else None
        return f"{none}: the first layer with parameters is {kind} with weight shape {shape}"
    if not isinstance(value, torch.Tensor) or value.numel() != pixels or not torch.equal(value.reshape(-1), probe.reshape(-1)):
        return f"{none}: the first layer with parameters ({kind}) receives a transformed image, not the image"
    bias = getattr(module, "bias", None)
    if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (weight.shape[0],):
        return f"the input layer ({kind}) has no bias, which the row ratio dL/dW / dL/db needs"
    index = {id(param): i for i, param in enumerate(model.parameters())}
    if id(weight) not in index or id(bias) not in index:
        return f"the input layer's ({kind}) weight and bias are not among model.parameters()"
    return InputLayer(weight=index[id(weight)], bias=index[id(bias)], outputs=weight.shape[0], kind=kind)
