"""The active server's modified model as every party builds it (``attack.active``, Fowl et al. 2022).

In the cell's active round the server sends ``ImprintModel(base)`` (``fedsyn.models.imprint``): the
block's design travels as an ``ImprintSpec`` in the train instruction's config
(``fedsyn.federation.protocol``), its weights and thresholds in the arrays (``imprint.*`` entries of the
``state_dict``, the base model's under ``base.*``). Clients rebuild the wrapped architecture from the
spec (``fedsyn.task.model.plain_model(..., imprint=spec)``) and convert it with their FL/WR/WS settings
as usual; the evaluator rebuilds the same one from the spec the capture recorded for the round.

Design (``ActiveSpec.designs``, one per cell): ``oblivious`` builds the block for a plain model;
``informed`` uses the clients' public settings, the WS factor (``ws_gamma``) and, against FL, several
rows per threshold (``copies``) whose average shrinks unknown FL factors towards 1.

Thresholds: quantiles of the statistic over ``public_images`` test images chosen with
``derive_seed(seed, "active-public")`` among those no client evaluates on (``eval_shard``), so the
server's public data and the clients' data never overlap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import numpy as np
import torch

from fedsyn.data import ImageDataset
from fedsyn.experiment.grid import Cell
from fedsyn.models import ImprintModel, ImprintSpec, empirical_thresholds
from fedsyn.seeding import derive_seed

from .data import eval_shard
from .model import plain_model

Array = TypeVar("Array", np.ndarray, torch.Tensor)

BLOCK = "imprint."
BASE = "base."
"""``state_dict`` prefixes of the wrapped model: the imprint block's entries and the base model's."""


def active_round(cell: Cell) -> int | None:
    """The round whose model the server modifies, or None for a passive server."""
    active = cell.attack.active
    return None if active is None else active.round


def imprint_design(cell: Cell) -> ImprintSpec:
    """The ``ImprintSpec`` the cell's server sends (its one design); the cell must have ``attack.active``."""
    active = cell.attack.active
    if active is None:
        raise ValueError("the cell has no active server (attack.active is not set)")
    informed = active.designs[0] == "informed"
    biomod = cell.biomod
    return ImprintSpec(
        bins=active.bins,
        statistic=active.statistic,
        copies=active.copies if informed and biomod.fl else 1,
        ws_gamma=biomod.gamma if informed and biomod.ws else 1,
        alpha=active.alpha,
        output_scale=active.output_scale,
        seed=derive_seed(cell.seed, "active") % 2**31,
    )


def public_indices(cell: Cell, test: ImageDataset) -> np.ndarray:
    """The test images the server designs the block from: none is evaluated on by a client."""
    active = cell.attack.active
    if active is None:
        raise ValueError("the cell has no active server (attack.active is not set)")
    held = np.concatenate([eval_shard(cell, test, p) for p in range(cell.federation.clients)])
    free = np.setdiff1d(np.arange(len(test)), held)
    if len(free) < active.public_images:
        raise ValueError(
            f"attack.active.public_images {active.public_images} exceeds the {len(free)} test images no client evaluates on"
        )
    chosen = np.random.default_rng(derive_seed(cell.seed, "active-public")).choice(free, active.public_images, replace=False)
    return np.sort(chosen)


def modified_state(
    cell: Cell, spec: ImprintSpec, base_state: Mapping[str, torch.Tensor], test: ImageDataset
) -> dict[str, torch.Tensor]:
    """The arrays of the modified model: the block designed from the public images around ``base_state``."""
    images, _ = test.batch(public_indices(cell, test))
    base = plain_model(cell, test.num_classes, test.in_shape)
    base.load_state_dict(dict(base_state), strict=True)
    model = ImprintModel(base, spec, test.in_shape, thresholds=empirical_thresholds(spec, images))
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def plain_state(state: Mapping[str, Array]) -> dict[str, Array]:
    """The base model's arrays of a modified model's (the block dropped): what the next round continues from."""
    return {name[len(BASE) :]: array for name, array in state.items() if name.startswith(BASE)}
