"""What the informed attacker knows about a cell's training rules and defenses, turned into a keep-mask.

The threat model grants the informed attacker the public configuration of the cell: the architecture,
which layers rejuvenate and with which ``d_re``, the clients' local hyperparameters and the defense
set. It does not grant the clients' private random streams (WR draws, DP noise). The shared FL
factors are derived by the evaluator (``fedsyn.evaluation.knowledge.shared_factors``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from attacks.informed import combine_masks, rejuvenation_mask, support_mask
from fedsyn.biomod import BiomodConfig, converted_layers
from fedsyn.biomod.rejuvenation import init_bound

from .config import Prune
from .defense_set import DefenseSet


def rejuvenation_bounds(converted: nn.Module) -> dict[str, float]:
    """Parameter name -> WR initialisation bound, for every weight the converted model rejuvenates.

    Pass a client's converted model (any client: which layers rejuvenate is public, the streams are
    not); names match ``named_parameters()`` of the server's model, which has the same ``state_dict`` keys.
    """
    bounds = {}
    for name, layer in converted_layers(converted):
        if layer.wr_rng is not None:
            bounds[f"{name}.weight" if name else "weight"] = init_bound(layer.weight)
    return bounds


def informed_mask(
    model: nn.Module,
    target: list[torch.Tensor],
    *,
    biomod: BiomodConfig,
    defense: DefenseSet,
    bounds: dict[str, float],
    capture: Literal["update", "gradient"],
    steps: int,
) -> list[torch.Tensor] | None:
    """Keep-mask aligned with ``model.parameters()`` for the informed attacker, or None to keep all.

    ``model`` holds the round's global weights; ``target`` is what the client sent (aligned with the
    parameters). Leaves out the weights WR re-drew (only in an ``update``: WR acts after the step, so a
    ``gradient`` is untouched) and, against pruning, the entries the defense zeroed.
    """
    masks = []
    if biomod.wr and capture == "update":
        names = [name for name, _ in model.named_parameters()]
        weights = [param.detach() for param in model.parameters()]
        masks.append(
            rejuvenation_mask(target, weights, [bounds.get(name) for name in names], d_re=biomod.d_re, steps=steps)
        )
    if defense.find(Prune) is not None:
        masks.append(support_mask(target))
    return combine_masks(*masks)
