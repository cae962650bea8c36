"""Weight rejuvenation (WR), paper eqs. 3-4.

Per layer, ``sigma_re = |w_max| / d_re`` and each weight is re-drawn with probability
``P_re(w) = 1 - Phi(|w| / sigma_re)``. A re-drawn weight gets a fresh value from the distribution the
layer's ``reset_parameters()`` draws from: PyTorch's default for ``nn.Linear`` and ``nn.Conv2d`` is
``kaiming_uniform_(a=sqrt(5))``, i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``. Fresh values are drawn
only for the selected entries; the entries of a fully drawn tensor are i.i.d., so this is the same
law. Biases are never rejuvenated (the paper re-draws weights ``w_{n,i}``).

Sampling is exact but avoids one random number per weight. With ``u`` a weight's uniform draw, a
weight is selected iff ``u < P_re(w)``. Let ``L = 2**-8`` and ``c = Phi^-1(1 - L)``:

- weights with ``|w| < c * sigma_re`` (``P_re > L``) each get their own ``u`` and are tested directly;
- every other weight has ``P_re <= L``, so it can only be selected when ``u < L``. The weights with
  ``u < L`` form a Bernoulli(L) subset, sampled sparsely (a binomial count, then positions without
  replacement); for those, ``u`` is uniform on ``[0, L)`` and the test ``u < P_re`` is done exactly.

Most weights are far from zero relative to ``sigma_re`` (at initialisation ``|w| / sigma_re`` is
uniform on ``[0, d_re]``), so only a small share of them needs a random number. The scan for
candidates runs in NumPy on a CPU float32 view of the weight (NumPy's compare and nonzero are
several times faster than torch's on CPU), in chunks of ``CHUNK`` weights spread over a thread pool
(NumPy releases the GIL); the probabilities of all candidates are then computed in one torch call.
Every chunk draws from its own generator, seeded from the layer's stream (``wr_rng``), so the result
depends only on the seed: not on the thread count, nor on the device.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
from scipy.special import ndtri
from torch import nn

from .layers import BiomodLayer, converted_layers

LEVEL = 2.0**-8
CUT = float(-ndtri(LEVEL))  # P_re(w) > LEVEL  <=>  |w| / sigma_re < CUT
CHUNK = 1 << 20


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


class _Candidates(NamedTuple):
    """Weights of one chunk that need the exact test, with their ``|w|`` and uniform draws."""

    index: np.ndarray  # positions in the flattened weight
    magnitude: np.ndarray  # |w|
    uniform: np.ndarray  # u, on [0, 1) for dense candidates and on [0, LEVEL) for sparse ones


def _scan(absw: np.ndarray, offset: int, sigma: float, seed: int) -> tuple[_Candidates, _Candidates]:
    """Dense and sparse candidates of one chunk (``absw`` is ``|w|`` as float32).

    Dense candidates are tested in float32 (their ``P_re > 2**-8``), sparse ones in float64, which
    resolves their small probabilities.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    cut = np.float32(CUT * sigma)
    dense = np.flatnonzero(absw < cut)
    dense_u = rng.random(dense.size, dtype=np.float32)
    count = int(rng.binomial(absw.size, LEVEL))
    sparse = rng.choice(absw.size, size=count, replace=False) if count else np.zeros(0, np.int64)
    sparse = sparse[absw[sparse] >= cut]  # the rest already has its own u in the dense set
    sparse_u = rng.random(sparse.size) * LEVEL
    return (
        _Candidates(dense + offset, absw[dense], dense_u),
        _Candidates(sparse + offset, absw[sparse].astype(np.float64), sparse_u),
    )


def _accepted(candidates: _Candidates, sigma: float) -> np.ndarray:
    """Positions of the candidates with ``u < P_re(|w| / sigma)`` (consumes their arrays)."""
    twice_p = _twice_probability_(torch.from_numpy(candidates.magnitude), sigma)
    keep = torch.from_numpy(candidates.uniform).mul_(2.0) < twice_p
    return candidates.index[keep.numpy()]


_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor | None:
    """A thread pool as wide as torch's intra-op pool (per process: a forked child gets its own)."""
    workers = torch.get_num_threads()
    if workers < 2:
        return None
    key = (os.getpid(), workers)
    if key not in _pools:
        _pools[key] = ThreadPoolExecutor(workers, thread_name_prefix="fedsyn-wr")
    return _pools[key]


def select(flat: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Positions in ``flat`` (a layer's float32 weights) selected for re-drawing in one WR pass.

    Chunks are scanned in parallel (NumPy only); the candidates are then tested chunk by chunk in
    torch on the calling thread, so torch's own thread pool is never entered from several threads.
    """
    starts = range(0, flat.size, CHUNK)
    seeds = rng.integers(0, 2**63, size=len(starts))

    def scan(start: int, seed: int) -> tuple[_Candidates, _Candidates]:
        return _scan(np.abs(flat[start : start + CHUNK]), start, sigma, int(seed))

    pool = _pool() if len(starts) > 1 else None
    scans = pool.map(scan, starts, seeds) if pool else map(scan, starts, seeds)
    return np.concatenate([_accepted(found, sigma) for pair in scans for found in pair])


def rejuvenate_layer(layer: BiomodLayer) -> int:
    """Run one WR pass on ``layer``'s weight in place; return how many weights were re-drawn.

    The selection runs on a float32 CPU copy or view of the weight (a view for CPU float32
    weights); only the selected entries are written back, on the weight's own device.
    """
    rng = layer.wr_rng
    if rng is None:
        return 0
    weight = layer.weight
    with torch.no_grad():
        flat = weight.detach().reshape(-1)  # a view for (the usual) contiguous weights
        low, high = torch.aminmax(flat)
        w_max = max(-float(low), float(high))
        sigma = w_max / layer.biomod_config.d_re if w_max > 0 else 1.0
        chosen = select(flat.to(device="cpu", dtype=torch.float32).numpy(), sigma, rng)
        if chosen.size:
            bound = init_bound(weight)
            fresh = torch.from_numpy(rng.uniform(-bound, bound, chosen.size))
            index = torch.from_numpy(chosen).to(flat.device)
            flat.index_copy_(0, index, fresh.to(device=flat.device, dtype=flat.dtype))
        if flat.data_ptr() != weight.data_ptr():
            weight.copy_(flat.view_as(weight))
    return int(chosen.size)


def wr_layers(model: nn.Module) -> list[BiomodLayer]:
    """The converted layers of ``model`` that rejuvenate."""
    return [layer for _, layer in converted_layers(model) if layer.wr_rng is not None]


def rejuvenate(model: nn.Module) -> dict[str, int]:
    """Run one WR pass on every rejuvenating layer now; return re-drawn counts by layer name.

    ``attach`` calls this after optimizer steps; call it directly for training loops without an optimizer.
    """
    return {layer.biomod_name: rejuvenate_layer(layer) for layer in wr_layers(model)}
