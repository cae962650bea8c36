"""Hook a converted model's training: FL before each optimizer step, WR after every ``wr_interval`` steps."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .fuzzy import fl_layers, scale_layer_gradients
from .layers import converted_layers
from .rejuvenation import rejuvenate_layers, wr_layers


class BiomodHandle:
    """What ``attach`` installed on an optimizer, plus the WR counters (paper Fig. 2).

    Attributes:
        steps: optimizer steps seen since ``attach``.
        rejuvenated_last: weights re-drawn by the most recent WR pass (0 before the first one).
        rejuvenated_total: weights re-drawn by all WR passes since ``attach``.
        rejuvenated_by_layer: per layer name, the count of the most recent WR pass.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
        self._fl = fl_layers(model)
        self._wr = wr_layers(model)
        self._interval = self._wr[0].biomod_config.wr_interval if self._wr else 1
        self.steps = 0
        self.rejuvenated_last = 0
        self.rejuvenated_total = 0
        self.rejuvenated_by_layer: dict[str, int] = {}
        self._hooks: list[RemovableHandle] = []
        if self._fl:
            self._hooks.append(optimizer.register_step_pre_hook(self._before_step))
        self._hooks.append(optimizer.register_step_post_hook(self._after_step))

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        scale_layer_gradients(self._fl)

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.steps += 1
        if self._wr and self.steps % self._interval == 0:
            self.rejuvenated_by_layer = rejuvenate_layers(self._wr)
            self.rejuvenated_last = sum(self.rejuvenated_by_layer.values())
            self.rejuvenated_total += self.rejuvenated_last

    def remove(self) -> None:
        """Uninstall the hooks; the model keeps its conversion."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def __enter__(self) -> BiomodHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def attach(optimizer: torch.optim.Optimizer, model: nn.Module) -> BiomodHandle:
    """Install FL and WR around ``optimizer.step()`` for the converted ``model``.

    Before each step, every weight gradient (and bias gradient with ``fl_bias``) is multiplied by its
    FL factor; after every ``wr_interval``-th step, WR runs on every converted layer. WS and GRAPES
    need nothing here: they act in the converted layers' forward/backward. On a model without
    converted layers (all flags off) the handle only counts steps.

    Raises ``ValueError`` when ``optimizer`` does not hold the converted layers' weights (for example
    an optimizer built from the original model, or from a model before ``copy.deepcopy``).
    """
    layers = [layer for _, layer in converted_layers(model)]
    held = {id(param) for group in optimizer.param_groups for param in group["params"]}
    if layers and not any(id(layer.weight) in held for layer in layers):
        raise ValueError(
            "the optimizer holds none of the converted model's weights; build the optimizer from "
            "the model returned by convert (or its copy) and attach it to that same model"
        )
    return BiomodHandle(optimizer, model)
