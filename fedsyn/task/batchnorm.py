"""BatchNorm as part of the threat model: the clients' mode and the running statistics the server sends.

``federation.bn_mode`` is how the clients' BatchNorm layers normalise during local training: ``train``
with the statistics of the batch at hand (the running buffers then move, and the update carries the
change), ``eval`` with the running statistics of the global model (Geiping et al. 2020's setting and that
of an honest-but-curious server in ``breaching``). Other layers that differ between modes (dropout) stay
in training mode either way.

In ``eval`` mode the running statistics decide what the clients compute, so where they come from is part
of the threat model (``federation.bn_stats``): ``defaults`` sends them as the model was built (mean 0,
variance 1 for an untrained model; the pretraining's for a trained one), ``public`` recalibrates them on
``bn_public_samples`` images of the test split, which no client holds (drawn with ``derive_seed(seed,
"bn-public")``), through the model the clients run (its WS structure included).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedsyn.data import ImageDataset
from fedsyn.experiment.grid import Cell
from fedsyn.seeding import derive_seed

from .model import server_model

CALIBRATION_BATCH = 128


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers in module order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_training_mode(model: nn.Module, bn_mode: str) -> nn.Module:
    """Put ``model`` in training mode with its BatchNorm layers in ``bn_mode`` (``train`` or ``eval``)."""
    if bn_mode not in ("train", "eval"):
        raise ValueError(f"bn_mode must be 'train' or 'eval', got {bn_mode!r}")
    model.train()
    if bn_mode == "eval":
        for layer in batchnorm_layers(model):
            layer.eval()
    return model


def public_indices(cell: Cell, test: ImageDataset) -> np.ndarray:
    """The test-split images that calibrate ``bn_stats: public``: a seeded draw of ``bn_public_samples``."""
    wanted = cell.federation.bn_public_samples
    if wanted > len(test):
        raise ValueError(f"federation.bn_public_samples is {wanted}, but the test split has {len(test)} images")
    order = np.random.default_rng(derive_seed(cell.seed, "bn-public")).permutation(len(test))
    return np.sort(order[:wanted])


@torch.no_grad()
def calibrate(model: nn.Module, data: ImageDataset, indices: np.ndarray) -> None:
    """Replace every BatchNorm layer's running statistics with the exact mean and (unbiased) variance of
    its input over ``data[indices]`` (cumulative averaging, ``momentum=None``), in place."""
    layers = batchnorm_layers(model)
    momenta = [layer.momentum for layer in layers]
    was_training = model.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    model.train()
    try:
        for start in range(0, len(indices), CALIBRATION_BATCH):
            inputs, _ = data.batch(indices[start : start + CALIBRATION_BATCH])
            model(inputs)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.train(was_training)


def public_running_stats(
    cell: Cell, state: dict[str, torch.Tensor], test: ImageDataset
) -> dict[str, torch.Tensor]:
    """The BatchNorm buffers of ``state`` recalibrated on the public images (``bn_stats: public``),
    through the model as the clients run it (WS structure; FL and WR do not change the forward pass
    at the global weights)."""
    model = server_model(cell, test.num_classes, test.in_shape)
    model.load_state_dict(state, strict=True)
    calibrate(model, test, public_indices(cell, test))
    buffers = {}
    for prefix, layer in model.named_modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            buffers[f"{prefix}.running_mean"] = layer.running_mean.clone()
            buffers[f"{prefix}.running_var"] = layer.running_var.clone()
    return buffers
