"""The converted layer classes.

``convert`` turns an ``nn.Linear`` / ``nn.Conv2d`` into a ``BioLinear`` / ``BioConv2d`` by assigning
its ``__class__``: the module keeps its parameters (same names, same ``state_dict`` keys) and gains a
forward with weight splitting and GRAPES plus a few plain attributes:

- ``biomod_config``, ``biomod_name`` (qualified name in the converted model), ``biomod_is_output``;
- ``fl_weight_factor`` / ``fl_bias_factor``: the FL factors, plain tensor attributes, so they are in
  neither ``parameters()``, ``buffers()`` nor ``state_dict()``; ``_apply`` moves them with the layer
  (``model.to(device)``, ``.double()``);
- ``wr_rng``: the layer's own random stream for rejuvenation (a CPU ``torch.Generator``).

Everything lives on the layer object itself (no hooks, no closures), so ``copy.deepcopy`` of a
converted model yields a fully independent model that carries its own factors and random streams.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .config import BiomodConfig
from .grapes import modulate_error, modulation
from .splitting import split_forward


class BiomodLayer(nn.Module):
    """Mixin for converted layers; subclasses provide ``_plain_forward(x, weight, bias)``."""

    biomod_config: BiomodConfig
    biomod_name: str
    biomod_is_output: bool
    fl_weight_factor: torch.Tensor | None
    fl_bias_factor: torch.Tensor | None
    wr_rng: torch.Generator | None

    _plain_forward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]

    @property
    def split_gamma(self) -> int:
        """Division factor used by this layer: 1 when WS is off or this is the output layer."""
        config = self.biomod_config
        return config.gamma if config.ws and not self.biomod_is_output else 1

    @property
    def uses_grapes(self) -> bool:
        return self.biomod_config.grapes and not self.biomod_is_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = self.split_gamma
        if gamma > 1:
            out = split_forward(self, x, gamma, self._plain_forward)
        else:
            out = self._plain_forward(x, self.weight, self.bias)
        if self.uses_grapes:
            out = modulate_error(out, self.weight)
        return out

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> nn.Module:
        super()._apply(fn, recurse)
        if self.fl_weight_factor is not None:
            self.fl_weight_factor = fn(self.fl_weight_factor)
        if self.fl_bias_factor is not None:
            self.fl_bias_factor = fn(self.fl_bias_factor)
        return self

    def extra_repr(self) -> str:
        flags = {
            "fl": self.fl_weight_factor is not None,
            "wr": self.wr_rng is not None,
            f"ws(gamma={self.split_gamma})": self.split_gamma > 1,
            "grapes": self.uses_grapes,
        }
        tags = [tag for tag, on in flags.items() if on]
        return f"{super().extra_repr()}, biomod={'+'.join(tags) or 'none'}"


class BioLinear(BiomodLayer, nn.Linear):
    def _plain_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, weight, bias)


class BioConv2d(BiomodLayer, nn.Conv2d):
    def _plain_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return self._conv_forward(x, weight, bias)


CONVERTED_CLASS: dict[type[nn.Module], type[BiomodLayer]] = {nn.Linear: BioLinear, nn.Conv2d: BioConv2d}
LAYER_TYPE_CLASS: dict[str, type[nn.Module]] = {"linear": nn.Linear, "conv2d": nn.Conv2d}


def converted_layers(model: nn.Module) -> Iterator[tuple[str, BiomodLayer]]:
    """``(qualified name, layer)`` for every converted layer of ``model``, in registration order."""
    for name, module in model.named_modules():
        if isinstance(module, BiomodLayer):
            yield name, module


def grapes_factors(model: nn.Module) -> dict[str, torch.Tensor]:
    """GRAPES modulation ``M`` per layer name, from the current weights, for layers that use GRAPES."""
    return {name: modulation(layer.weight) for name, layer in converted_layers(model) if layer.uses_grapes}
