"""Every client-side defense by its ``type`` name: its config class, when it acts, and its transform.

Adding a defense is one module (its config class, a ``StrictModel`` with ``type: Literal["name"]``, and
for an update defense its transform) plus one line in ``DEFENSES``; the schema, ``DefenseSet`` and
``apply_defenses`` take it from here (docs/architecture.md shows an example).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import torch
from pydantic import Field

from fedsyn.strict import StrictModel

from .accounting import local_dp_epsilon
from .config import DPSGD, ClipNoise, Prune, Quantize, SecAgg
from .transforms import clip_and_noise, prune, quantize

Transform = Callable[[list[torch.Tensor], Any, torch.Generator], tuple[list[torch.Tensor], dict[str, float]]]
"""``(update, step config, generator) -> (new update, what the step reports)``; inputs stay unmodified."""

Stage = Literal["training", "update", "transport"]


@dataclass(frozen=True)
class Defense:
    """One defense: its config class and where it acts.

    ``training`` defenses change the local training itself (they come first in a defense set),
    ``transport`` ones how the finished update travels (they come last); only ``update`` defenses have a
    ``transform``, which ``apply_defenses`` runs on the reply's arrays in the set's order.
    """

    config: type[StrictModel]
    stage: Stage = "update"
    transform: Transform | None = None


def _clip_noise(
    update: list[torch.Tensor], config: ClipNoise, generator: torch.Generator
) -> tuple[list[torch.Tensor], dict[str, float]]:
    """Clipping plus noise, reporting this round's local-DP epsilon and delta as well."""
    tensors, found = clip_and_noise(update, config, generator)
    found["epsilon"] = local_dp_epsilon(config.noise_multiplier, config.delta, adjacency=config.adjacency)
    found["delta"] = config.delta
    return tensors, found


DEFENSES: dict[str, Defense] = {
    "clip_noise": Defense(ClipNoise, transform=_clip_noise),
    "dpsgd": Defense(DPSGD, stage="training"),
    "prune": Defense(Prune, transform=lambda update, config, _generator: prune(update, config)),
    "quantize": Defense(Quantize, transform=quantize),
    "secagg": Defense(SecAgg, stage="transport"),
}

DEFENSE_TYPES: tuple[str, ...] = tuple(DEFENSES)

DefenseConfig = Annotated[Union[tuple(d.config for d in DEFENSES.values())], Field(discriminator="type")]
"""Any registered defense's config, told apart by its ``type``."""
