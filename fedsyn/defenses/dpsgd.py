"""DP-SGD in a client's local training, with Opacus' per-sample gradients, clipping and noise.

Models with synaptic diversity: converted layers (``BioLinear`` / ``BioConv2d``) are subclasses that
Opacus has no hand-written per-sample rule for, so it computes their per-sample gradients with
``torch.func`` (vmap over the layer's own forward, weight splitting and GRAPES included); those were
checked against one-sample-at-a-time autograd (tests/test_defenses.py). FL and WR stay hooked on the
plain optimizer (``fedsyn.biomod.attach``): Opacus' ``DPOptimizer`` calls that optimizer's ``step``
after clipping and noising, so FL scales the privatised gradient and WR re-draws afterwards; both
are post-processing and keep the DP guarantee.

BatchNorm mixes the samples of a batch, so per-sample gradients do not exist for it and Opacus
refuses it. ``dp_compatible`` replaces every BatchNorm by GroupNorm (``opacus.validators.
ModuleValidator.fix``: ``GroupNorm(min(32, C), C)``); a cell with DP-SGD uses that architecture on
the server, on every client and in the attack (``prepare_model``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from fedsyn.errors import FedsynError

from .accounting import dpsgd_epsilon
from .config import DPSGD
from .defense_set import DefenseSet

if TYPE_CHECKING:
    from opacus.optimizers import DPOptimizer

# Opacus is imported where it is used: importing it takes seconds, and every Flower client process,
# sweep worker and CLI call imports this module whether or not its cell uses DP-SGD.

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class DPIncompatibleModelError(FedsynError, ValueError):
    """A model that Opacus cannot compute per-sample gradients for (e.g. it still has BatchNorm)."""


def dp_compatible(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that DP-SGD can train: BatchNorm replaced by GroupNorm, nothing else changed.

    GroupNorm starts at weight 1, bias 0 (no random draw), so the result is a pure function of ``model``.
    """
    from opacus.validators import ModuleValidator

    fixed = ModuleValidator.fix(model)
    _check_compatible(fixed)
    return fixed


def prepare_model(model: nn.Module, defense_set: DefenseSet) -> nn.Module:
    """The architecture a cell trains: ``dp_compatible(model)`` when the set has DP-SGD, else ``model``.

    Call it on the plain model right after ``fedsyn.models.build_model`` and before
    ``fedsyn.biomod.convert``, identically on the server, the clients and the attacker.
    """
    return dp_compatible(model) if defense_set.find(DPSGD) is not None else model


def _check_compatible(model: nn.Module) -> None:
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        listed = "; ".join(str(err) for err in errors[:5])
        raise DPIncompatibleModelError(
            f"Opacus cannot train this model with DP-SGD ({len(errors)} problem(s): {listed}); "
            "build it through fedsyn.defenses.prepare_model (BatchNorm becomes GroupNorm)"
        )


def _noise_generator(model: nn.Module, seed: int) -> torch.Generator:
    device = next(model.parameters()).device
    return torch.Generator(device=device).manual_seed(seed)


@contextmanager
def private_training(
    model: nn.Module, optimizer: torch.optim.Optimizer, config: DPSGD, *, batch_size: int, seed: int
) -> Iterator[DPOptimizer]:
    """Within the block, ``model``'s backward passes record per-sample gradients and the yielded
    optimizer's ``step`` clips each sample to ``max_grad_norm``, sums, adds
    N(0, (noise_multiplier * max_grad_norm)^2) and divides by ``batch_size`` before ``optimizer.step``.

    Use a mean-reduced loss and call ``model`` as usual. Hooks installed on ``optimizer`` (e.g.
    ``fedsyn.biomod.attach``) keep acting. Noise comes from a generator seeded with ``seed`` on the
    parameters' device. On exit the model is left without Opacus hooks or per-sample attributes.
    """
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    _check_compatible(model)
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="mean")
    try:
        with warnings.catch_warnings():
            # Opacus' hook on the first layer fires for its output gradient alone (the input needs none).
            warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
            yield DPOptimizer(
                optimizer,
                noise_multiplier=config.noise_multiplier,
                max_grad_norm=config.max_grad_norm,
                expected_batch_size=batch_size,
                loss_reduction="mean",
                generator=_noise_generator(model, seed),
            )
    finally:
        wrapped.to_standard_module()


@dataclass(frozen=True)
class DPTrainResult:
    """What ``dp_train`` did: optimizer steps, mean loss per step, epsilon of these steps alone."""

    steps: int
    losses: list[float]
    epsilon: float


def dp_train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    config: DPSGD,
    *,
    seed: int,
    sample_rate: float,
    loss_fn: LossFn = F.cross_entropy,
) -> DPTrainResult:
    """Train ``model`` in place with DP-SGD, one optimizer step per ``(inputs, labels)`` batch.

    ``sample_rate`` (batch size over the client's partition size) is for the accountant only; the
    epsilon returned covers these steps (a client's total over rounds: ``accounting.dpsgd_epsilon``
    with all its steps). ``optimizer`` is the plain optimizer over ``model``'s parameters, with any
    biomod hooks already attached.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("dp_train needs at least one batch")
    losses = []
    with private_training(model, optimizer, config, batch_size=len(batches[0][0]), seed=seed) as private:
        for inputs, labels in batches:
            private.expected_batch_size = len(inputs)
            private.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), labels)
            loss.backward()
            private.step()
            losses.append(float(loss.detach()))
        private.zero_grad(set_to_none=True)
    epsilon = dpsgd_epsilon(config.noise_multiplier, config.delta, sample_rate=sample_rate, steps=len(batches))
    return DPTrainResult(steps=len(batches), losses=losses, epsilon=epsilon)
