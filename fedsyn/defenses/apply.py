"""Apply a cell's defense set to one client update, in the set's order."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fedsyn.seeding import derive_seed

from .accounting import local_dp_epsilon
from .config import ClipNoise, DefenseSet, Prune, Quantize
from .transforms import clip_and_noise, prune, quantize

TRAINING_OR_TRANSPORT: tuple[str, ...] = ("dpsgd", "secagg")
"""Defense types that are not update transforms: DP-SGD acts in local training (``fedsyn.defenses.dpsgd``),
SecAgg+ in the transport (``fedsyn.defenses.secagg``); ``apply_defenses`` passes over them."""


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

    ``seed`` (the cell's ``derive_seed(cell.seed, "defense", partition_id, round)``) seeds each
    step's own generator, ``derive_seed(seed, step.type)``, so adding a step never shifts another
    step's draws. The same set, update and seed give the same tensors.
    """
    _check_update(update)
    tensors = [t.detach() for t in update]
    metrics: dict[str, float] = {}
    for step in defense_set.steps:
        if step.type in TRAINING_OR_TRANSPORT:
            continue
        generator = torch.Generator().manual_seed(derive_seed(seed, step.type))
        if isinstance(step, ClipNoise):
            tensors, found = clip_and_noise(tensors, step, generator)
            found["epsilon"] = local_dp_epsilon(step.noise_multiplier, step.delta, adjacency=step.adjacency)
            found["delta"] = step.delta
        elif isinstance(step, Prune):
            tensors, found = prune(tensors, step)
        elif isinstance(step, Quantize):
            tensors, found = quantize(tensors, step, generator)
        else:
            raise TypeError(f"no update transform for defense type {step.type!r}")
        metrics.update({f"{step.type}.{key}": value for key, value in found.items()})
    return DefendedUpdate(tensors=tensors, metrics=metrics)
