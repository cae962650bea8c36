"""Check what the server captured and turn it into the vector the attack matches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .config import LocalUpdate


def check_tensors(
    model: nn.Module, tensors: Sequence[torch.Tensor | None], what: str, *, allow_none: bool = False
) -> list[torch.Tensor | None]:
    """Validate a list aligned with ``model.parameters()``: length, shapes, finite values.

    Returns detached float32 copies (``None`` entries kept when ``allow_none``). Errors name the
    parameter at fault.
    """
    if isinstance(tensors, torch.Tensor) or not isinstance(tensors, Sequence):
        raise TypeError(f"{what} must be a list of tensors aligned with model.parameters(), got {type(tensors).__name__}")
    named = list(model.named_parameters())
    if len(tensors) != len(named):
        if len(tensors) < len(named):
            hint = f" (first missing: {named[len(tensors)][0]!r})"
        else:
            hint = f" (last parameter: {named[-1][0]!r})"
        raise ValueError(f"{what} has {len(tensors)} tensors but the model has {len(named)} parameters{hint}")
    checked: list[torch.Tensor | None] = []
    for (name, param), tensor in zip(named, tensors):
        if tensor is None and allow_none:
            checked.append(None)
            continue
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{what} for parameter {name!r} must be a tensor, got {type(tensor).__name__}")
        if tuple(tensor.shape) != tuple(param.shape):
            raise ValueError(
                f"{what} for parameter {name!r} has shape {tuple(tensor.shape)}, the parameter has {tuple(param.shape)}"
            )
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{what} for parameter {name!r} contains NaN or Inf")
        checked.append(tensor.detach().to(torch.float32))
    return checked


def check_target(model: nn.Module, target: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    checked = [t for t in check_tensors(model, target, "target") if t is not None]
    if not any(bool(t.any()) for t in checked):
        raise ValueError("target is all zeros: there is nothing to match")
    return checked


def check_factors(model: nn.Module, factors: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    checked = check_tensors(model, factors, "fl_factors", allow_none=True)
    for (name, _), factor in zip(model.named_parameters(), checked):
        if factor is not None and not (factor > 0).all():
            raise ValueError(f"fl_factors for parameter {name!r} must be positive")
    return checked


def unrolls(update: LocalUpdate | None, bn_mode: str) -> bool:
    """Whether the attack must replay the local training (see ``LocalUpdate.scaled_gradient``)."""
    return update is not None and not update.scaled_gradient(bn_mode)


def matched_signal(
    target: list[torch.Tensor], update: LocalUpdate | None, factors: list[torch.Tensor | None] | None, bn_mode: str
) -> list[torch.Tensor]:
    """What the candidate's signal is compared with.

    - gradient (``update is None``): the gradient, divided by the FL factors an informed attacker knows
      (the client multiplied its gradient by them, docs/methods.md "FL");
    - one local step: ``update = -lr * factors * gradient``, so ``-update / (lr * factors)``; for the
      mean of ``update.clients`` clients' steps that is the gradient of all their images together
      (see :mod:`attacks.unroll`) unless BatchNorm uses batch statistics;
    - otherwise the update itself: the attack unrolls the clients' SGD (with the factors inside it) and
      compares parameter differences.
    """
    factors = factors or [None] * len(target)
    if not unrolls(update, bn_mode):
        scale = 1.0 if update is None else -1.0 / update.lr
        return [t * scale if f is None else t * scale / f for t, f in zip(target, factors)]
    return target


def label_signal(matched: list[torch.Tensor], update: LocalUpdate | None, bn_mode: str) -> list[torch.Tensor]:
    """A gradient-like view for label recovery: the local steps sum to ``-update / lr`` (up to factors)."""
    if not unrolls(update, bn_mode):
        return matched
    return [-t for t in matched]
