"""The client's local SGD, replayed differentiably on candidate images (the "weight update" attack).

Assumption about the client (it must match fedsyn's client, and it is the one breaching makes): the
client holds B images and visits them in order, cycling: step s trains on the images at positions
``s * batch_size, ..., s * batch_size + min(batch_size, B) - 1``, taken modulo B. With
``batch_size >= B`` every step sees the whole batch. Each step is plain SGD on the mean cross-entropy
of its images, ``w <- w - lr * factors * grad`` (``factors`` are the FL factors an informed attacker
knows, 1 otherwise). The result is ``w_S - w_0``, differentiable with respect to the images.

A secure aggregate (``update.clients = K``, what a SecAgg+ server sees) is the mean of K such updates
from the same start weights: the images are K consecutive equal shares, share k holding client k's
images, and each client ran the procedure above on its own share. For one local step that mean is the
step on the gradient of the whole batch (the mean of K equal-sized mean losses is the mean loss of
their union), which is why the attack treats one-step aggregates like one client's step; that equality
breaks only where BatchNorm normalises with batch statistics (``bn_mode="train"``), which couple the
images of one share and not across shares.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import grad

from .config import LocalUpdate
from .replica import Params, task_loss


def client_batches(num_images: int, update: LocalUpdate) -> list[torch.Tensor]:
    """Positions of the images each local step of one client uses (see the module docstring)."""
    size = min(update.batch_size, num_images)
    return [torch.arange(step * size, step * size + size) % num_images for step in range(update.steps)]


def client_shares(num_images: int, clients: int) -> list[slice]:
    """The consecutive equal share of the images each of ``clients`` clients trained on."""
    if num_images % clients:
        raise ValueError(f"{num_images} images do not split into {clients} equal client shares")
    size = num_images // clients
    return [slice(k * size, (k + 1) * size) for k in range(clients)]


def _client_update(
    model: nn.Module,
    params: Params,
    images: torch.Tensor,
    labels: torch.Tensor,
    update: LocalUpdate,
    factors: Params,
) -> Params:
    """``w_S - w_0`` of one client's ``update.steps`` SGD steps on its ``images``."""
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


def unrolled_update(
    model: nn.Module,
    params: Params,
    images: torch.Tensor,
    labels: torch.Tensor,
    update: LocalUpdate,
    factors: Params | None = None,
) -> Params:
    """The mean over ``update.clients`` clients of ``w_S - w_0`` after their ``update.steps`` SGD steps,
    each on its share of ``images`` (B, C, H, W); one client's update when ``clients`` is 1.

    Written with ``torch.func.grad`` so that it composes with ``torch.func.vmap`` (batched restarts) and
    with ordinary autograd on ``images``.
    """
    factors = factors or {}
    updates = [
        _client_update(model, params, images[share], labels[share], update, factors)
        for share in client_shares(images.shape[0], update.clients)
    ]
    return {name: sum(delta[name] for delta in updates) / len(updates) for name in params}
