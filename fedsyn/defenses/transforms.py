"""The update transforms: clipping plus Gaussian noise, top-k pruning, quantisation.

Each takes the update as a list of tensors (aligned with what the client sends) and returns new
tensors; inputs are never modified. Only floating-point tensors are transformed: integer tensors
(e.g. BatchNorm's ``num_batches_tracked``) carry no gradient information and pass unchanged.
Random draws come from a CPU ``torch.Generator`` so the numbers do not depend on the device.
"""

from __future__ import annotations

import math

import torch

from .config import ClipNoise, Prune, Quantize


def _floats(update: list[torch.Tensor]) -> list[int]:
    return [i for i, t in enumerate(update) if t.is_floating_point()]


def global_norm(update: list[torch.Tensor]) -> float:
    """L2 norm of all floating-point entries of the update together."""
    squares = [update[i].detach().double().pow(2).sum() for i in _floats(update)]
    return math.sqrt(float(sum(squares))) if squares else 0.0


def _normal_like(tensor: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32) * std
    return noise.to(device=tensor.device, dtype=tensor.dtype)


def clip_and_noise(
    update: list[torch.Tensor], config: ClipNoise, generator: torch.Generator
) -> tuple[list[torch.Tensor], dict[str, float]]:
    """Scale the update to L2 norm at most ``clip``, then add N(0, (noise_multiplier * clip)^2) per entry.

    Returns the new update and ``{"norm": pre-clip norm, "clipped": 1.0 or 0.0}``.
    """
    norm = global_norm(update)
    scale = min(1.0, config.clip / norm) if norm > 0 else 1.0
    std = config.noise_multiplier * config.clip
    out = list(update)
    for i in _floats(update):
        clipped = update[i] * scale
        out[i] = clipped + _normal_like(clipped, std, generator) if std > 0 else clipped
    return out, {"norm": norm, "clipped": float(scale < 1.0)}


def _keep_top(flat: torch.Tensor, keep: int) -> torch.Tensor:
    """Boolean mask of the ``keep`` largest magnitudes of ``flat`` (ties broken by position)."""
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if keep > 0:
        order = torch.argsort(flat.abs(), descending=True, stable=True)
        mask[order[:keep]] = True
    return mask


def _kept_count(size: int, fraction: float) -> int:
    return size - int(math.floor(fraction * size))


def prune(update: list[torch.Tensor], config: Prune) -> tuple[list[torch.Tensor], dict[str, float]]:
    """Zero the ``fraction`` of entries with the smallest magnitude, per tensor or over the whole update.

    A tensor (or update) of n entries keeps ``n - floor(fraction * n)`` entries: exactly those of
    largest magnitude. Returns the new update and ``{"kept": fraction of entries kept}``.
    """
    floats = _floats(update)
    out = list(update)
    if config.scope == "global" and floats:
        flat = torch.cat([update[i].detach().reshape(-1).to("cpu", torch.float64) for i in floats])
        mask = _keep_top(flat, _kept_count(flat.numel(), config.fraction))
        masks = torch.split(mask, [update[i].numel() for i in floats])
    else:
        masks = [_keep_top(update[i].detach().reshape(-1), _kept_count(update[i].numel(), config.fraction))
                 for i in floats]
    kept = total = 0
    for i, mask in zip(floats, masks):
        mask = mask.to(update[i].device).view_as(update[i])
        out[i] = update[i] * mask
        kept += int(mask.sum())
        total += mask.numel()
    return out, {"kept": kept / total if total else 1.0}


def quantize_sign(tensor: torch.Tensor) -> torch.Tensor:
    """``mean(|t|) * sign(t)``: one bit per entry plus one scale per tensor, same L1 norm as ``t``."""
    return tensor.abs().mean() * torch.sign(tensor) if tensor.numel() else tensor.clone()


def quantize_uniform(
    tensor: torch.Tensor, bits: int, rounding: str, generator: torch.Generator
) -> torch.Tensor:
    """Round every entry to one of ``2**bits`` evenly spaced levels on ``[min(t), max(t)]``.

    ``stochastic`` rounds up with probability equal to the distance from the level below (in level
    units), which makes the result unbiased; ``nearest`` rounds to the closest level.
    """
    if tensor.numel() == 0:
        return tensor.clone()
    low, high = tensor.min(), tensor.max()
    if high == low:
        return tensor.clone()
    step = (high - low) / (2**bits - 1)
    position = (tensor - low) / step
    if rounding == "nearest":
        index = torch.round(position)
    else:
        draw = torch.rand(tensor.shape, generator=generator, dtype=torch.float32).to(tensor.device, position.dtype)
        index = torch.floor(position) + (draw < position - torch.floor(position)).to(position.dtype)
    return low + index.clamp(0, 2**bits - 1) * step


def quantize(
    update: list[torch.Tensor], config: Quantize, generator: torch.Generator
) -> tuple[list[torch.Tensor], dict[str, float]]:
    """Quantise each floating-point tensor of the update (``sign`` or ``uniform``, see ``Quantize``)."""
    out = list(update)
    for i in _floats(update):
        if config.mode == "sign":
            out[i] = quantize_sign(update[i])
        else:
            out[i] = quantize_uniform(update[i], config.levels_bits, config.rounding_mode, generator)
    return out, {"bits": float(config.levels_bits)}
