"""Weight rejuvenation (WR), paper eqs. 3-4.

Per layer, ``sigma_re = |w_max| / d_re`` and each weight is re-drawn with probability
``P_re(w) = 1 - Phi(|w| / sigma_re)``. A re-drawn weight gets a fresh value from the distribution the
layer's ``reset_parameters()`` draws from: PyTorch's default for ``nn.Linear`` and ``nn.Conv2d`` is
``kaiming_uniform_(a=sqrt(5))``, i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``. Fresh values are drawn
only for the selected entries; the entries of a fully drawn tensor are i.i.d., so this is the same
law. Biases are never rejuvenated (the paper re-draws weights ``w_{n,i}``).

Both passes below are exact and run in torch on the weight's own memory and device; they differ in
what they spend, because a CPU is bound by work per weight and a GPU by host synchronisations.

On the CPU a random number is drawn for only a small share of the weights. With ``u`` a weight's
uniform draw, a weight is selected iff ``u < P_re(w)``. Let ``L = 2**-8`` and ``c = Phi^-1(1 - L)``:

- weights with ``|w| < c * sigma_re`` (``P_re > L``, the "dense" candidates) each get their own ``u``;
- every other weight has ``P_re <= L``, so it can only be selected when ``u < L``. The weights with
  ``u < L`` form a Bernoulli(L) subset, whose positions are sampled directly (the gaps between
  successive members are Geometric(L)); for those, ``u`` is uniform on ``[0, L)`` and the test
  ``u < P_re`` is done exactly, in float64.

At initialisation ``|w| / sigma_re`` is uniform on ``[0, d_re]``, so about ``c / d_re`` of the weights
(a fifth at ``d_re = 14``) are dense candidates. The scan walks the weight in cache-sized chunks
through reusable buffers (no weight-sized temporary); each chunk's candidates are tested while the
chunk is in cache, and only the selected positions are kept.

On a GPU every weight gets a float64 ``u`` and a fresh value and one ``where`` writes the result:
a few elementwise kernels and no device-to-host transfer until the counts are read, once per pass
over all layers.

Randomness: the layer's stream ``wr_rng`` (a CPU ``torch.Generator`` seeded by ``convert``) gives one
seed per pass, which seeds a generator on the weight's device. The result depends only on the seed
and the device type (CPU and CUDA draw differently), not on the thread count.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import nn

from .layers import BiomodLayer, converted_layers

LEVEL = 2.0**-8
CUT = float(-torch.special.ndtri(torch.tensor(LEVEL, dtype=torch.float64)))  # P_re > LEVEL <=> |w|/sigma < CUT
CPU_CHUNK = 1 << 18  # weights per scan chunk on the CPU: the chunk and its scratch stay in L2/L3


def redraw_probability(a: torch.Tensor) -> torch.Tensor:
    """``1 - Phi(a)`` for ``a = |w| / sigma_re >= 0`` (eq. 3), computed with erfc for the tail."""
    return 0.5 * _twice_probability_(a.clone(), 1.0)


def _twice_probability_(magnitude: torch.Tensor, sigma: float) -> torch.Tensor:
    """``2 * P_re = erfc(|w| / (sigma * sqrt(2)))``, computed in place in ``magnitude``."""
    return magnitude.mul_(1.0 / (sigma * math.sqrt(2.0))).erfc_()


def init_bound(weight: torch.Tensor) -> float:
    """Half-width of ``kaiming_uniform_(a=sqrt(5))``, PyTorch's ``reset_parameters`` for Linear/Conv2d."""
    fan_in = weight[0].numel()
    return 1.0 / math.sqrt(fan_in) if fan_in else 0.0


def work_dtype(flat: torch.Tensor) -> torch.dtype:
    """The dtype the probabilities and fresh values are computed in: at least float32."""
    return torch.promote_types(flat.dtype, torch.float32)


def bernoulli_positions(size: int, level: float, generator: torch.Generator) -> torch.Tensor:
    """Sorted positions of a Bernoulli(``level``) subset of ``range(size)``, on ``generator``'s device.

    Successive members are Geometric(``level``) apart; gaps are drawn in batches a few standard
    deviations above the expected count until the running position passes ``size``.
    """
    expected = size * level
    batch = int(expected + 6.0 * math.sqrt(expected) + 16)
    found, last = [], -1
    while last < size:
        gaps = torch.empty(batch, dtype=torch.float64, device=generator.device)
        positions = gaps.geometric_(level, generator=generator).cumsum_(0).add_(last).long()
        found.append(positions[positions < size])
        last = int(positions[-1])
    return torch.cat(found)


def select(flat: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Positions in ``flat`` (a layer's CPU weights) selected for re-drawing in one WR pass.

    One chunked scan: each chunk's dense candidates get their uniform draws and their test, and the
    chunk's share of the sparse sample its ``|w|``, while the chunk is still in cache; only the (few)
    selected positions and the sparse sample's magnitudes are kept.
    """
    size = flat.numel()
    chunk = min(size, CPU_CHUNK)
    magnitude = torch.empty(chunk, dtype=flat.dtype)
    below_as_float = torch.empty(chunk, dtype=flat.dtype)
    below = torch.empty(chunk, dtype=torch.bool)
    dtype = work_dtype(flat)
    cut = CUT * sigma
    sparse = bernoulli_positions(size, LEVEL, generator)
    sparse_ends = torch.searchsorted(sparse, torch.arange(0, size, chunk) + chunk).tolist()
    chosen, sparse_kept, sparse_magnitudes = [], [], []
    for start, sparse_start, sparse_end in zip(range(0, size, chunk), [0] + sparse_ends, sparse_ends):
        count = min(chunk, size - start)
        torch.abs(flat[start : start + count], out=magnitude[:count])
        # a float-valued comparison then a cast: on the CPU a comparison straight into bool is slower
        torch.lt(magnitude[:count], cut, out=below_as_float[:count])
        below[:count].copy_(below_as_float[:count])
        found = below[:count].nonzero().view(-1)
        twice_p = _twice_probability_(magnitude.index_select(0, found).to(dtype), sigma)
        u = torch.rand(found.numel(), generator=generator, dtype=dtype)
        chosen.append(found[u.mul_(2.0) < twice_p].add_(start))
        local = sparse[sparse_start:sparse_end] - start
        local_magnitude = magnitude.index_select(0, local)
        outside = local_magnitude >= cut  # exactly the weights the dense test above left out
        sparse_kept.append(local[outside].add_(start))
        sparse_magnitudes.append(local_magnitude[outside])
    kept = torch.cat(sparse_kept)
    u = torch.rand(kept.numel(), generator=generator, dtype=torch.float64)
    twice_p = _twice_probability_(torch.cat(sparse_magnitudes).double(), sigma)
    return torch.cat([*chosen, kept[u.mul_(2.0 * LEVEL) < twice_p]])


_device_generators = threading.local()


def pass_generator(layer: BiomodLayer, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded with the next seed of ``layer``'s WR stream.

    One generator per thread and device is reused (re-seeded every pass), because creating a CUDA
    generator costs more than a small layer's whole pass.
    """
    seed = int(torch.randint(2**63 - 1, (1,), generator=layer.wr_rng))
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


def redraw_candidates(flat: torch.Tensor, sigma: float, bound: float, generator: torch.Generator) -> torch.Tensor:
    """The CPU pass: ``select`` the few weights to re-draw, then write fresh values to those alone."""
    chosen = select(flat, sigma, generator)
    fresh = torch.empty(chosen.numel(), dtype=work_dtype(flat), device=flat.device)
    fresh.uniform_(-bound, bound, generator=generator)
    flat.index_copy_(0, chosen, fresh.to(flat.dtype))
    return torch.tensor(chosen.numel())


def redraw(layer: BiomodLayer) -> torch.Tensor:
    """Run one WR pass on ``layer``'s weight in place; return the re-drawn count as a 0-d tensor."""
    weight = layer.weight
    with torch.no_grad():
        flat = weight.detach().reshape(-1)  # a view for (the usual) contiguous weights
        generator = pass_generator(layer, flat.device)
        low, high = torch.aminmax(flat)
        w_max = torch.maximum(-low, high)
        d_re, bound = layer.biomod_config.d_re, init_bound(weight)
        if flat.device.type == "cpu":
            sigma = float(w_max) / d_re if w_max > 0 else 1.0
            count = redraw_candidates(flat, sigma, bound, generator)
        else:
            sigma_t = torch.where(w_max > 0, w_max.double() / d_re, 1.0)
            count = redraw_everywhere(flat, sigma_t, bound, generator)
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
