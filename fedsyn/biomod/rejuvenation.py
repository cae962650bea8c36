"""Weight rejuvenation (WR), paper eqs. 3-4.

Per layer, ``sigma_re = |w_max| / d_re`` and each weight is re-drawn with probability
``P_re(w) = 1 - Phi(|w| / sigma_re)``. A re-drawn weight gets a fresh value from the distribution the
layer's ``reset_parameters()`` draws from: PyTorch's default for ``nn.Linear`` and ``nn.Conv2d`` is
``kaiming_uniform_(a=sqrt(5))``, i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``. Fresh values are drawn
only for the selected entries; the entries of a fully drawn tensor are i.i.d., so this is the same
law. Biases are never rejuvenated (the paper re-draws weights ``w_{n,i}``).

Both passes are exact and work on the weight's own memory; they differ in what they spend, because a
CPU is bound by work per weight and a GPU by host synchronisations.

On the CPU, ``fedsyn.biomod.wr_kernel`` does the pass as one compiled loop (numba) that reads each
weight once, decides almost every weight with a bound on ``P_re`` and a few random bits, and finishes
the few candidates exactly; its draws are a keyed hash of each weight's index. A large weight is split
into parts that run on torch's own OpenMP threads (``fedsyn.biomod.torch_threads``), as many as torch
trains with.

On a GPU every weight gets a float64 ``u`` and a fresh value and one ``where`` writes the result:
a few elementwise kernels and no device-to-host transfer until the counts are read, once per pass
over all layers.

Randomness: the layer's stream ``wr_rng`` (a CPU ``torch.Generator`` seeded by ``convert``) gives one
seed per pass: the CPU kernel's keys, or the seed of a generator on the GPU. The result depends only on
the seed and the device type (CPU and CUDA draw differently), not on the thread count.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import nn

from .layers import BiomodLayer, converted_layers
from .wr_kernel import redraw_cpu


def redraw_probability(a: torch.Tensor) -> torch.Tensor:
    """``1 - Phi(a)`` for ``a = |w| / sigma_re >= 0`` (eq. 3), computed with erfc for the tail."""
    return 0.5 * torch.special.erfc(a * (1.0 / math.sqrt(2.0)))


def init_bound(weight: torch.Tensor) -> float:
    """Half-width of ``kaiming_uniform_(a=sqrt(5))``, PyTorch's ``reset_parameters`` for Linear/Conv2d."""
    fan_in = weight[0].numel()
    return 1.0 / math.sqrt(fan_in) if fan_in else 0.0


_device_generators = threading.local()


def pass_seed(layer: BiomodLayer) -> int:
    """The next seed of ``layer``'s WR stream: one per pass."""
    return int(torch.randint(2**63 - 1, (1,), generator=layer.wr_rng))


def device_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``.

    One generator per thread and device is reused (re-seeded every pass), because creating a CUDA
    generator costs more than a small layer's whole pass.
    """
    by_device = vars(_device_generators).setdefault("by_device", {})  # this thread's generators
    if device not in by_device:
        by_device[device] = torch.Generator(device=device)
    return by_device[device].manual_seed(seed)


def redraw_everywhere(
    flat: torch.Tensor, sigma: torch.Tensor, bound: float, generator: torch.Generator
) -> torch.Tensor:
    """The accelerator pass: a float64 ``u`` and a fresh value for every weight, then one ``where``.

    A few elementwise kernels with no host synchronisation (``sigma`` stays on the device); on a
    GPU that is cheaper than finding the candidates, which needs a device-to-host count.
    Returns the re-drawn count as a device tensor.
    """
    twice_p = flat.double().abs_().div_(sigma * math.sqrt(2.0)).erfc_()
    u = torch.rand(flat.numel(), generator=generator, device=flat.device, dtype=torch.float64)
    chosen = u.mul_(2.0) < twice_p
    fresh = torch.empty_like(flat).uniform_(-bound, bound, generator=generator)
    torch.where(chosen, fresh, flat, out=flat)
    return chosen.sum()


def redraw(layer: BiomodLayer) -> torch.Tensor:
    """Run one WR pass on ``layer``'s weight in place; return the re-drawn count as a 0-d tensor."""
    weight = layer.weight
    with torch.no_grad():
        flat = weight.detach().reshape(-1)  # a view for (the usual) contiguous weights
        seed = pass_seed(layer)
        low, high = torch.aminmax(flat)
        w_max = torch.maximum(-low, high)
        d_re, bound = layer.biomod_config.d_re, init_bound(weight)
        if flat.device.type == "cpu":
            sigma = float(w_max) / d_re if w_max > 0 else 1.0
            count = torch.tensor(redraw_cpu(flat, sigma, bound, seed))
        else:
            sigma_t = torch.where(w_max > 0, w_max.double() / d_re, 1.0)
            count = redraw_everywhere(flat, sigma_t, bound, device_generator(flat.device, seed))
        if flat.data_ptr() != weight.data_ptr():
            weight.copy_(flat.view_as(weight))
    return count


def rejuvenate_layers(layers: list[BiomodLayer]) -> dict[str, int]:
    """One WR pass on each of ``layers``; re-drawn counts by layer name, read back in one transfer."""
    if not layers:
        return {}
    counts = [redraw(layer) for layer in layers]
    totals = torch.stack([count.to(counts[0].device) for count in counts]).tolist()
    return {layer.biomod_name: int(total) for layer, total in zip(layers, totals)}


def wr_layers(model: nn.Module) -> list[BiomodLayer]:
    """The converted layers of ``model`` that rejuvenate."""
    return [layer for _, layer in converted_layers(model) if layer.wr_rng is not None]


def rejuvenate(model: nn.Module) -> dict[str, int]:
    """Run one WR pass on every rejuvenating layer now; return re-drawn counts by layer name.

    ``attach`` calls this after optimizer steps; call it directly for training loops without an optimizer.
    """
    return rejuvenate_layers(wr_layers(model))
