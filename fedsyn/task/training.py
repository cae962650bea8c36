"""A client's work in one round: local training from the global arrays, defenses, the reply's arrays.

docs/methods.md, "The federated protocol": the client trains ``local_steps`` SGD steps of ``batch_size``
images chosen by ``fedsyn.data.batch_indices`` from its partition for this round, BatchNorm in the mode
``federation.bn_mode`` (``fedsyn.task.batchnorm``), with FL scaling the
gradients before each step and WR after steps (``fedsyn.biomod.attach``), then sends

- capture ``update``: ``w_local - w_global`` for every ``state_dict`` entry (parameters and buffers);
- capture ``gradient`` (one local step): the FL-scaled gradient of that step's batch per parameter,
  without taking the step (the paper's own experiment).

With ``dpsgd`` in the cell's defense set the local steps are DP-SGD steps (``fedsyn.defenses.dpsgd.
dp_train``: per-sample clipping and Gaussian noise, FL and WR still attached to the optimizer), noise
seeded with ``derive_seed(seed, "dpsgd", partition_id, round)``; the reply reports that round's
``dpsgd.epsilon``. The configuration refuses ``dpsgd`` with capture ``gradient``.

Client-side defenses act on the floating-point arrays of that reply before it is sent.

Everything here is a pure function of (cell, partition, round, global arrays): the test suite and the
evaluator recompute a client's reply or batch outside Flower and get the same tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedsyn.biomod import attach, scale_gradients
from fedsyn.data import ImageDataset, batch_indices
from fedsyn.defenses import DPSGD, apply_defenses
from fedsyn.defenses.dpsgd import dp_train
from fedsyn.models import ImprintSpec
from fedsyn.seeding import derive_seed
from fedsyn.experiment.grid import Cell

from .batchnorm import set_training_mode
from .model import client_model

EVAL_BATCH = 256


@dataclass(frozen=True)
class LocalHyper:
    """The local training the server asked for in a round (sent in the train message's config)."""

    steps: int
    lr: float
    batch_size: int
    capture: str

    @classmethod
    def from_cell(cls, cell: Cell) -> LocalHyper:
        spec = cell.federation
        return cls(spec.local_steps, spec.lr, spec.batch_size, spec.capture)

    @property
    def images(self) -> int:
        """How many images a client visits in the round: ``steps`` batches of ``batch_size``."""
        return self.steps * self.batch_size


@dataclass
class LocalResult:
    """A client's reply arrays (name -> tensor) and what it reports about them."""

    arrays: dict[str, torch.Tensor]
    loss: float
    rejuvenated: int
    num_examples: int
    defense_metrics: dict[str, float] = field(default_factory=dict)


def round_batches(
    cell: Cell, partition_indices: np.ndarray, *, partition_id: int, round: int, hyper: LocalHyper
) -> list[np.ndarray]:
    """Dataset indices of each local step's batch in ``round``."""
    seed = derive_seed(cell.seed, "batch", partition_id)
    return [
        batch_indices(partition_indices, round=round, step=step, batch_size=hyper.batch_size, seed=seed)
        for step in range(hyper.steps)
    ]


def optimizer_steps(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> list[float]:
    """One optimizer step per batch on the mean cross-entropy; returns the loss of each step."""
    losses = []
    for inputs, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@dataclass(frozen=True)
class PrivateSteps:
    """DP-SGD for one client's round: the defense step, its noise seed and the accountant's sample rate."""

    config: DPSGD
    seed: int
    sample_rate: float


def local_update(
    model: nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    lr: float,
    *,
    private: PrivateSteps | None = None,
) -> tuple[dict[str, torch.Tensor], float, int, dict[str, float]]:
    """Train ``model`` in place with SGD (FL and WR attached), or DP-SGD when ``private`` is given;
    returns ``w_local - w_global`` per ``state_dict`` entry, the mean loss, the number of rejuvenated
    weights and what DP-SGD reports (``dpsgd.epsilon`` of these steps; empty without it)."""
    start = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    metrics: dict[str, float] = {}
    with attach(optimizer, model) as handle:
        if private is None:
            losses = optimizer_steps(model, optimizer, batches)
        else:
            trained = dp_train(
                model, optimizer, batches, private.config, seed=private.seed, sample_rate=private.sample_rate
            )
            losses = trained.losses
            metrics = {"dpsgd.epsilon": trained.epsilon, "dpsgd.delta": private.config.delta}
        rejuvenated = handle.rejuvenated_total
    update = {name: tensor.detach() - start[name] for name, tensor in model.state_dict().items()}
    return update, float(np.mean(losses)), rejuvenated, metrics


def private_steps(
    cell: Cell, *, partition_size: int, partition_id: int, round: int, hyper: LocalHyper
) -> PrivateSteps | None:
    """The cell's DP-SGD for this client and round, or None when its defense set has no ``dpsgd``."""
    config = cell.defense.find(DPSGD)
    if config is None:
        return None
    if partition_size == 0:
        raise ValueError(f"DP-SGD needs a non-empty partition; partition {partition_id} is empty")
    return PrivateSteps(
        config=config,
        seed=derive_seed(cell.seed, "dpsgd", partition_id, round),
        sample_rate=min(1.0, hyper.batch_size / partition_size),
    )


def batch_gradient(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor
) -> tuple[dict[str, torch.Tensor], float]:
    """The FL-scaled gradient of the mean cross-entropy on one batch, per parameter name."""
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(inputs), labels)
    loss.backward()
    scale_gradients(model)
    gradient = {
        name: param.grad.detach().clone() if param.grad is not None else torch.zeros_like(param)
        for name, param in model.named_parameters()
    }
    return gradient, float(loss.detach())


def defend(
    cell: Cell, arrays: dict[str, torch.Tensor], *, partition_id: int, round: int
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The single call site of the client-side update defenses (``fedsyn.defenses``) on a reply.

    The arrays go through ``apply_defenses`` in reply order (the transforms leave integer buffers such as
    BatchNorm's step counter alone), seeded with ``derive_seed(seed, "defense", partition_id, round)``.
    Returns the defended arrays and what the defenses report (e.g. ``clip_noise.epsilon``).
    """
    if not cell.defense.steps:
        return arrays, {}
    names = list(arrays)
    defended = apply_defenses(
        cell.defense, [arrays[name] for name in names], seed=derive_seed(cell.seed, "defense", partition_id, round)
    )
    return dict(zip(names, defended.tensors)), dict(defended.metrics)


def client_round(
    cell: Cell,
    global_state: dict[str, torch.Tensor],
    *,
    train: ImageDataset,
    partition_indices: np.ndarray,
    partition_id: int,
    round: int,
    hyper: LocalHyper,
    imprint: ImprintSpec | None = None,
) -> LocalResult:
    """Everything a client computes in one round, from the global arrays to the (defended) reply;
    ``imprint``: the server sent its modified model this round (``fedsyn.task.active``)."""
    model = client_model(cell, partition_id, round, train.num_classes, train.in_shape, imprint=imprint)
    model.load_state_dict(global_state, strict=True)
    set_training_mode(model, cell.federation.bn_mode)
    chosen = round_batches(cell, partition_indices, partition_id=partition_id, round=round, hyper=hyper)
    batches = [train.batch(indices) for indices in chosen]
    private = private_steps(
        cell, partition_size=len(partition_indices), partition_id=partition_id, round=round, hyper=hyper
    )
    training_metrics: dict[str, float] = {}
    if hyper.capture == "gradient":
        if hyper.steps != 1:
            raise ValueError(f"capture 'gradient' is the gradient of one batch; got local steps {hyper.steps}")
        if private is not None:
            raise ValueError("capture 'gradient' is not supported with the 'dpsgd' defense; use capture 'update'")
        arrays, loss = batch_gradient(model, *batches[0])
        rejuvenated = 0
    else:
        arrays, loss, rejuvenated, training_metrics = local_update(model, batches, hyper.lr, private=private)
    arrays, defense_metrics = defend(cell, arrays, partition_id=partition_id, round=round)
    return LocalResult(arrays, loss, rejuvenated, len(partition_indices), {**training_metrics, **defense_metrics})


def accuracy_and_loss(model: nn.Module, data: ImageDataset, indices: np.ndarray) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` (eval mode) on ``data[indices]``; (0, 0) when empty."""
    if len(indices) == 0:
        return 0.0, 0.0
    model.eval()
    correct, total_loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(indices), EVAL_BATCH):
            inputs, labels = data.batch(indices[start : start + EVAL_BATCH])
            logits = model(inputs)
            total_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(dim=1) == labels).sum())
    return correct / len(indices), total_loss / len(indices)
