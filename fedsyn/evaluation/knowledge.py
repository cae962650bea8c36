"""What each attacker holds for one captured reply: the target it matches and the knowledge the threat
model grants it (docs/methods.md, "Oblivious vs informed").

- ``oblivious`` treats what it captured as the gradient of one batch: a captured update ``w_local -
  w_global`` becomes the gradient direction ``-update``; no FL factors, no local hyperparameters.
- ``informed`` knows the public configuration: the local hyperparameters of an update
  (``attacks.LocalUpdate``), the FL factors when they are shared (``biomod.fl_scope: shared``), and the
  cell's WR settings and defense set, which leave the weights WR re-drew and the entries pruning zeroed
  out of the matching (``fedsyn.defenses.knowledge.informed_mask``).
"""

from __future__ import annotations

from typing import Any

import torch

from attacks.bnstats import batchnorm_layers, recover_bn_stats
from attacks.config import LocalUpdate
from fedsyn.biomod import fuzzy_factors
from fedsyn.data import ImageDataset
from fedsyn.defenses.knowledge import informed_mask, rejuvenation_bounds
from fedsyn.experiment.grid import Cell
from fedsyn.models import ImprintSpec
from fedsyn.task.model import client_model

from .capture import IndexEntry


def _fl_shared(cell: Cell) -> bool:
    return cell.biomod.fl and cell.biomod.fl_scope == "shared"


def shared_factors(
    cell: Cell, model: torch.nn.Module, client: torch.nn.Module | None
) -> list[torch.Tensor | None] | None:
    """The FL factors an informed attacker can derive (``fl_scope: shared``), aligned with ``model.parameters()``.

    ``client`` is any client's converted model (needed only when the factors are shared, else ``None``):
    shared factors come from the federation seed alone, so any partition and round give the same ones."""
    if not _fl_shared(cell):
        return None
    factors = fuzzy_factors(client)
    return [factors.get(name) for name, _ in model.named_parameters()]


def attack_inputs(
    cell: Cell,
    attacker: str,
    model: torch.nn.Module,
    tensors: dict[str, torch.Tensor],
    entry: IndexEntry,
    train: ImageDataset,
    imprint: ImprintSpec | None = None,
) -> dict[str, Any]:
    """``target``, ``update``, ``fl_factors`` and ``mask`` of ``attacks.AttackInputs`` as ``attacker``
    sees them. The informed attacker's mask leaves out the weights WR re-drew and the entries pruning zeroed
    (``fedsyn.defenses.knowledge.informed_mask``). ``imprint``: the round's model was the active
    server's modified one (``model`` is wrapped too)."""
    target = [tensors[name] for name, _ in model.named_parameters()]
    if attacker == "oblivious":
        if entry.capture == "update":
            target = [-tensor for tensor in target]
        return {"target": target, "update": None, "fl_factors": None, "mask": None}
    update = None
    if entry.capture == "update":
        clients = len(entry.covers) if entry.aggregate else 1
        update = LocalUpdate(steps=entry.steps, lr=entry.lr, batch_size=entry.batch_size, clients=clients)
    # Any client's converted model shows what is public: which layers rejuvenate (its WR stream is not
    # used) and the shared FL factors. Built once, and only when one of the two needs it.
    client = None
    if cell.biomod.wr or _fl_shared(cell):
        client = client_model(cell, 0, 1, train.num_classes, train.in_shape, imprint=imprint)
    bounds = rejuvenation_bounds(client) if cell.biomod.wr else {}
    mask = informed_mask(
        model, target, biomod=cell.biomod, defense=cell.defense, bounds=bounds, capture=entry.capture, steps=entry.steps
    )
    return {"target": target, "update": update, "fl_factors": shared_factors(cell, model, client), "mask": mask}


def bn_stats_source(cell: Cell, model: torch.nn.Module) -> str:
    """Where the running statistics the server sent come from (docs/results.md, ``bn_stats_source``)."""
    if not batchnorm_layers(model):
        return "no batchnorm"
    if cell.federation.bn_stats == "public":
        return "public"
    return "pretrained" if cell.trained > 0 else "defaults"


def batch_statistics(
    cell: Cell, model: torch.nn.Module, tensors: dict[str, torch.Tensor], entry: IndexEntry, bn_mode: str, weight: float
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]] | None, str | None]:
    """The client's batch (mean, variance) per BatchNorm layer, recovered from the captured running-buffer
    deltas (``attacks.bnstats``), for the attack's feature-statistics prior; or ``None`` and the reason.

    ``model`` holds the round's global arrays. The recovery is exact for one local step of one client;
    after several steps, or for a secure aggregate, the buffers mix several batches' statistics, so the
    prior is not used rather than fed an approximation.
    """
    layers = batchnorm_layers(model)
    if weight == 0:
        return None, "attack.inversion.bn_prior is 0"
    if not layers:
        return None, "the model has no BatchNorm"
    if cell.federation.bn_mode != "train":
        return None, "the clients run BatchNorm in eval mode: its running buffers do not move"
    if bn_mode != "train":
        return None, "the attack runs BatchNorm in eval mode, where batch statistics play no part"
    if entry.aggregate:
        return None, "a secure aggregate's buffers mix the statistics of several clients"
    if entry.capture != "update":
        return None, f"capture {entry.capture!r} holds no BatchNorm buffers"
    if entry.steps != 1:
        return None, f"{entry.steps} local steps: the buffers mix the steps' statistics (exact for one step only)"
    names = [name for name, layer in model.named_modules() if layer in layers]
    missing = [f"{name}.running_mean" for name in names if f"{name}.running_mean" not in tensors]
    if missing:
        return None, f"the capture holds no BatchNorm buffers ({missing[0]} missing)"
    old = [(layer.running_mean.detach(), layer.running_var.detach()) for layer in layers]
    new = [
        (mean + tensors[f"{name}.running_mean"], var + tensors[f"{name}.running_var"])
        for name, (mean, var) in zip(names, old)
    ]
    return recover_bn_stats(old, new, [layer.momentum for layer in layers]), None
