"""Apply a cell's defense set to one client update, in the set's order."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fedsyn.seeding import derive_seed

from .defense_set import DefenseSet
from .registry import DEFENSES


@dataclass(frozen=True)
class DefendedUpdate:
    """The update after the defenses, and what they report.

    ``metrics`` keys are ``"<type>.<name>"``: ``clip_noise.norm`` (pre-clip L2 norm),
    ``clip_noise.clipped`` (1.0 if clipped), ``clip_noise.epsilon`` (this round's epsilon, analytic
    Gaussian mechanism), ``clip_noise.delta``, ``prune.kept`` (fraction of entries kept),
    ``quantize.bits``.
    """

    tensors: list[torch.Tensor]
    metrics: dict[str, float] = field(default_factory=dict)


def _check_update(update: list[torch.Tensor]) -> None:
    for i, tensor in enumerate(update):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"update[{i}] is a {type(tensor).__name__}, expected a torch.Tensor")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"update[{i}] (shape {tuple(tensor.shape)}) contains NaN or infinite values")


def apply_defenses(defense_set: DefenseSet, update: list[torch.Tensor], *, seed: int) -> DefendedUpdate:
    """Transform ``update`` by every update defense of ``defense_set``, in order; inputs are not modified.
    Training and transport defenses (DP-SGD in ``fedsyn.defenses.dpsgd``, SecAgg+ in
    ``fedsyn.defenses.secagg``) are passed over: they act elsewhere.

    ``seed`` (the cell's ``derive_seed(cell.seed, "defense", partition_id, round)``) seeds each
    step's own generator, ``derive_seed(seed, step.type)``, so adding a step never shifts another
    step's draws. The same set, update and seed give the same tensors.
    """
    _check_update(update)
    tensors = [t.detach() for t in update]
    metrics: dict[str, float] = {}
    for step in defense_set.steps:
        transform = DEFENSES[step.type].transform
        if transform is None:
            continue
        generator = torch.Generator().manual_seed(derive_seed(seed, step.type))
        tensors, found = transform(tensors, step, generator)
        metrics.update({f"{step.type}.{key}": value for key, value in found.items()})
    return DefendedUpdate(tensors=tensors, metrics=metrics)
