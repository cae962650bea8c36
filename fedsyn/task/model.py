"""The cell's model as each party builds it: the client's converted model and the server's view of it.

Seeds (docs/methods.md, "Seeds"): initial weights ``derive_seed(seed, "init", model label)``; a client's FL factors
``derive_seed(seed, "fl", partition_id)`` (``fl_scope: private``) or ``derive_seed(seed, "fl-shared")``
(``shared``: every client and the server can derive them); its WR stream in a round
``derive_seed(seed, "wr", partition_id, round)``.
"""

from __future__ import annotations

from torch import nn

from fedsyn.biomod import convert
from fedsyn.defenses.dpsgd import prepare_model
from fedsyn.models import ImprintModel, ImprintSpec, build_model
from fedsyn.seeding import derive_seed
from fedsyn.experiment.grid import Cell


def plain_model(
    cell: Cell, num_classes: int, in_shape: tuple[int, int, int], *, imprint: ImprintSpec | None = None
) -> nn.Module:
    """The unconverted architecture with the cell's initial weights.

    Every party (server, clients, pretraining, attacker) builds from here, so all agree on the
    architecture: with DP-SGD in the cell's defense set BatchNorm becomes GroupNorm
    (``fedsyn.defenses.dpsgd.prepare_model``), otherwise the model is unchanged. ``imprint``: the
    active server's round, the model wrapped in its imprint block (``fedsyn.task.active``; the
    block's weights and thresholds come with the round's arrays).
    """
    model = build_model(
        cell.model.name,
        num_classes,
        in_shape,
        zero_bias=cell.model.zero_bias,
        seed=derive_seed(cell.seed, "init", cell.model.label),
        **cell.model.options,
    )
    model = prepare_model(model, cell.defense)
    return model if imprint is None else ImprintModel(model, imprint, in_shape)


def fl_seed(cell: Cell, partition_id: int) -> int:
    """The seed of a client's FL factors: its own, or the federation's when ``fl_scope`` is shared."""
    if cell.biomod.fl_scope == "shared":
        return derive_seed(cell.seed, "fl-shared")
    return derive_seed(cell.seed, "fl", partition_id)


def client_model(
    cell: Cell,
    partition_id: int,
    round: int,
    num_classes: int,
    in_shape: tuple[int, int, int],
    *,
    imprint: ImprintSpec | None = None,
) -> nn.Module:
    """The model a client trains in ``round``: converted with its FL factors and this round's WR stream
    (wrapped in the server's imprint block when ``imprint`` is given)."""
    return convert(
        plain_model(cell, num_classes, in_shape, imprint=imprint),
        cell.biomod,
        seed=derive_seed(cell.seed, "wr", partition_id, round),
        fl_seed=fl_seed(cell, partition_id),
    )


def server_model(
    cell: Cell, num_classes: int, in_shape: tuple[int, int, int], *, imprint: ImprintSpec | None = None
) -> nn.Module:
    """The model as the server knows it: the architecture with its WS structure (public), no FL factors
    and no WR (client-side training rules whose randomness the server does not have); wrapped in the
    imprint block it sent when ``imprint`` is given."""
    public = cell.biomod.model_copy(update={"fl": False, "wr": False})
    return convert(plain_model(cell, num_classes, in_shape, imprint=imprint), public, seed=0)
