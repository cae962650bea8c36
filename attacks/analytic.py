"""The analytic attack on a fully connected input layer: the images in closed form, no optimisation.

For ``y = W x + b`` on the flattened, normalised image, ``dL/dW[j,:] = dL/db[j] * x`` (Phong et al.
2017). One image is the robust per-pixel aggregate of the row ratios (:mod:`attacks.row_ratio`); a
batch is separated into its images by the rows dominated by one image and by ICA on the rank-B
gradient (:mod:`attacks.separation`). The target may be a gradient or an update ``w_local - w_global``:
the update of the input layer is a sum of rank-one rows ``D[j, n] x_n`` over the local steps, whatever
their number, so the same algebra applies (exactly without FL and WR).

What the informed attacker knows is used when given: FL factors are divided out of the weight (and bias)
rows, and entries its mask drops are left out of every aggregate.

Applicability: the model's first parametrised operation must be a fully connected layer on the image
(:func:`attacks.input_layer.find_input_layer`); otherwise :class:`NotApplicable` says why. The result is
deterministic: the only random draws (the subspace sketch, the ICA start) come from ``config.seed``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .config import AttackConfig
from .inputs import AttackInputs, NotApplicable
from .input_layer import InputLayer, find_input_layer
from .inversion import Reconstruction
from .labels import recover_labels
from .replica import last_layer_index
from .row_ratio import aggregate_rows
from .separation import separate
from .targets import check_factors, check_target, check_tensors


def analytic(inputs: AttackInputs) -> Reconstruction:
    """Recover ``inputs.num_images`` images from the input layer's rows of ``inputs.target``."""
    config = inputs.config if inputs.config is not None else AttackConfig()
    mean, std = _channel_stats(inputs.mean, inputs.std)
    image_shape = tuple(inputs.image_shape) if inputs.image_shape is not None else (mean.numel(), 32, 32)
    layer = find_input_layer(inputs.model, image_shape)
    if isinstance(layer, str):
        raise NotApplicable(layer)
    target = check_target(inputs.model, inputs.target)
    weight_grad, bias_grad = _layer_signal(inputs, layer, target)
    keep = _keep_mask(inputs, layer, weight_grad)
    count = inputs.num_images
    stats: dict[str, object] = {
        "method": "analytic",
        "layer": layer.kind,
        "layer_outputs": layer.outputs,
        "converged": True,
        "informed_factors": inputs.fl_factors is not None,
        "masked": inputs.mask is not None,
    }
    if count == 1:
        estimate = aggregate_rows(weight_grad, bias_grad, keep)
        flat = estimate.image.unsqueeze(0)
        stats.update(rows_used=estimate.rows, outlier_share=estimate.outliers, row_spread=estimate.spread,
                     sources=["rows"], pixels_missing=int(flat.isnan().sum()))
        flat = flat.nan_to_num()  # a pixel every row lost to the mask: the dataset mean
    else:
        flat, details = _separate(weight_grad, bias_grad, keep, count, config.seed)
        stats.update(details)
    images = flat.view(count, *image_shape).float() * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    labels, label_source = _labels(inputs, target)
    stats["label_source"] = label_source
    return Reconstruction(images=images.clamp(0, 1), labels=labels, stats=stats)


def _separate(
    weight_grad: torch.Tensor, bias_grad: torch.Tensor, keep: torch.Tensor, count: int, seed: int
) -> tuple[torch.Tensor, dict[str, object]]:
    """B flattened images and the stats of the separation; images found as row clusters are refined by
    the robust row aggregate over the cluster's rows, which rejects WR's jumps itself (a pixel whose
    entries the mask drops in every row keeps the low-rank fit's value)."""
    separation = separate(weight_grad, bias_grad, keep, count, seed)
    images, rows_used = [], []
    for coordinates, source, members in zip(separation.coordinates, separation.sources, separation.members):
        if source == "rows":
            estimate = aggregate_rows(weight_grad[members], bias_grad[members], keep[members])
            images.append(torch.where(estimate.image.isnan(), separation.basis @ coordinates, estimate.image))
        else:
            images.append(separation.basis @ coordinates)
        rows_used.append(int(members.numel()))
    details = {
        "sources": separation.sources,
        "rows_used": rows_used,
        "rows_active": int(separation.rows.numel()),
        "outlier_share": 1.0 - float(separation.kept.float().mean()),
        "ica_used": "ica" in separation.sources,
        "ica_converged": separation.ica_converged,
        "ica_iterations": separation.ica_iterations,
        "singular_values": separation.singular_values,
    }
    return torch.stack(images), details


def _layer_signal(inputs: AttackInputs, layer: InputLayer, target: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The input layer's weight rows and bias entries in float64, FL factors divided out when known.

    An update is ``-lr`` times a sum of gradients; the ratio and the separation are invariant to that
    common factor, so the update is used as it is.
    """
    weight_grad, bias_grad = target[layer.weight].double(), target[layer.bias].double()
    if inputs.fl_factors is not None:
        factors = check_factors(inputs.model, inputs.fl_factors)
        if factors[layer.weight] is not None:
            weight_grad = weight_grad / factors[layer.weight].double()
        if factors[layer.bias] is not None:
            bias_grad = bias_grad / factors[layer.bias].double()
    return weight_grad.cpu(), bias_grad.cpu()


def _keep_mask(inputs: AttackInputs, layer: InputLayer, weight_grad: torch.Tensor) -> torch.Tensor:
    if inputs.mask is None:
        return torch.ones_like(weight_grad, dtype=torch.bool)
    masks = check_tensors(inputs.model, inputs.mask, "mask", allow_none=True)
    weight_mask = masks[layer.weight]
    return torch.ones_like(weight_grad, dtype=torch.bool) if weight_mask is None else weight_mask.bool().cpu()


def _labels(inputs: AttackInputs, target: list[torch.Tensor]) -> tuple[torch.Tensor, str]:
    """Given labels, or labels recovered from the last layer (an update's sign flipped to a gradient's)."""
    if inputs.labels is not None:
        labels = torch.as_tensor(inputs.labels).flatten().to(torch.int64).cpu()
        if labels.numel() != inputs.num_images:
            raise ValueError(f"labels must be {inputs.num_images} integers, got {inputs.labels!r}")
        return labels, "given"
    config = inputs.config if inputs.config is not None else AttackConfig()
    last = target[last_layer_index(inputs.model)]
    gradient_like = last if inputs.update is None else -last
    labels = recover_labels(gradient_like.cpu(), inputs.num_images, strategy=config.label_strategy)
    return labels, f"recovered ({config.label_strategy})"


def _channel_stats(mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten().cpu()
    std_t = torch.as_tensor(std, dtype=torch.float32).flatten().cpu()
    if mean_t.numel() == 0 or mean_t.numel() != std_t.numel() or not (std_t > 0).all():
        raise ValueError("mean and std need one value per channel each, and std must be positive")
    return mean_t, std_t
