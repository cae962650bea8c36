"""The client's local SGD, replayed differentiably on candidate images (the "weight update" attack).

Assumption about the client (it must match fedsyn's client, and it is the one breaching makes): the
client holds B images and visits them in order, cycling: step s trains on the images at positions
``s * batch_size, ..., s * batch_size + min(batch_size, B) - 1``, taken modulo B. With
``batch_size >= B`` every step sees the whole batch. Each step is plain SGD on the mean cross-entropy
of its images, ``w <- w - lr * factors * grad`` (``factors`` are the FL factors an informed attacker
knows, 1 otherwise). The result is ``w_S - w_0``, differentiable with respect to the images.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import grad

from .config import LocalUpdate
from .replica import Params, task_loss


def client_batches(num_images: int, update: LocalUpdate) -> list[torch.Tensor]:
    """Positions of the images each local step uses (see the module docstring)."""
    size = min(update.batch_size, num_images)
    return [torch.arange(step * size, step * size + size) % num_images for step in range(update.steps)]


def unrolled_update(
    model: nn.Module,
    params: Params,
    images: torch.Tensor,
    labels: torch.Tensor,
    update: LocalUpdate,
    factors: Params | None = None,
) -> Params:
    """``w_S - w_0`` after the client's ``update.steps`` SGD steps on ``images`` (B, C, H, W).

    Written with ``torch.func.grad`` so that it composes with ``torch.func.vmap`` (batched restarts) and
    with ordinary autograd on ``images``.
    """
    factors = factors or {}
    step_grad = grad(lambda p, x, y: task_loss(model, p, x, y))
    current = dict(params)
    for positions in client_batches(images.shape[0], update):
        positions = positions.to(images.device)
        grads = step_grad(current, images[positions], labels[positions])
        current = {
            name: value - update.lr * (grads[name] * factors[name] if name in factors else grads[name])
            for name, value in current.items()
        }
    return {name: current[name] - params[name] for name in params}
