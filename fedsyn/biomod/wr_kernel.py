"""The CPU pass of weight rejuvenation (eqs. 3-4) as one compiled loop over a layer's weights (numba).

Each weight ``w_i`` is re-drawn iff ``u_i < P_re(w_i) = 1 - Phi(|w_i| / sigma_re)``, and a re-drawn
weight gets ``v_i`` mapped onto its layer's init range ``U(-bound, bound)``; ``u_i`` and ``v_i`` are
uniform on ``[0, 1)`` with 53 bits. They come from a counter-based generator: a weight's bits are a
keyed hash of its index (two rounds of a 32-bit integer hash, ``_hash``, with a key pair per stream
and pass). The result depends only on the pass's seed and the weight's position: any thread count and
any chunking give the same re-draws.

Deciding ``u_i < P_re`` exactly needs ``erfc`` and 53 bits of ``u_i``, which would cost far more than
the pass may (issue 14). So the loop first tests a bound that needs neither: with ``a = |w| / sigma_re``
and ``x = a^2 / 2``, the normal tail bounds ``P_re(a) <= exp(-x) / 2`` and ``P_re(a) <= phi(a) / a``
(Mills' ratio) and ``exp(x) >= T(x) = 1 + x + x^2/2! + ... + x^6/6!`` give

    P_re(a) <= 1 / (T(x) * max(2, a * sqrt(2 pi))),

and ``u_i`` is at least ``u_hi``, its top 24 bits. A weight with ``u_hi * T(x) * max(2, a * sqrt(2 pi))
>= 1`` (up to a margin for float32 rounding) is not re-drawn. That decides all but a few percent of the
weights in a branch-free float32 loop that the compiler vectorises; it writes one flag byte per
weight, and the candidates are found eight flags at a time (a word of flags that is zero, the usual
case, costs one test). A candidate is decided from the top 32 bits of ``u_i`` against ``P_re`` at the
edges of its bucket of ``a`` (a table) where they suffice, else from all 53 bits against ``erfc`` in
float64.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import torch
from scipy import special

from .torch_threads import run_on_torch_threads

CHUNK = 1 << 14
"""Weights per chunk: a chunk's flags stay in L1 between the bound loop and the candidates' loop."""
MARGIN = 1.0 + 2.0**-12
"""Slack on the bound test for float32 rounding in ``a``, ``x`` and ``T(x)`` (all far below 2**-12)."""
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
TABLE_END = 8.0
_EDGES = np.linspace(0.0, TABLE_END, 4097)
UPPER = np.append(0.5 * special.erfc(_EDGES[:-1] * _INV_SQRT2), 0.5 * special.erfc(TABLE_END * _INV_SQRT2))
"""``P_re`` at the lower edge of each of 4096 buckets of ``a`` in ``[0, TABLE_END)``, then at ``TABLE_END``
for every larger ``a``: a ``u`` at or above it is not re-drawn."""
LOWER = np.append(0.5 * special.erfc(_EDGES[1:] * _INV_SQRT2), 0.0)
"""``P_re`` at each bucket's upper edge (0 beyond ``TABLE_END``): a ``u`` below it is re-drawn."""
STREAMS = 4
"""Key pairs per pass: the top 32 bits of u, its low 21 bits, and v's high and low bits."""


@numba.njit(inline="always")
def _round(x: np.uint32) -> np.uint32:
    """A 32-bit integer hash with good avalanche (xor-shift-multiply, constants from C. Wellons). Every
    step is cast back to uint32, so that the compiler keeps 32-bit lanes (numba widens to 64 bits)."""
    x = np.uint32(x ^ (x >> np.uint32(16)))
    x = np.uint32(x * np.uint32(0x7FEB352D))
    x = np.uint32(x ^ (x >> np.uint32(15)))
    x = np.uint32(x * np.uint32(0x846CA68B))
    return np.uint32(x ^ (x >> np.uint32(16)))


@numba.njit(inline="always")
def _hash(i: int, keys: np.ndarray, stream: int) -> np.uint32:
    """32 random bits of weight ``i`` in ``stream``: two keyed rounds."""
    return _round(np.uint32(_round(np.uint32(np.uint32(i) ^ keys[2 * stream])) ^ keys[2 * stream + 1]))


@numba.njit(inline="always")
def _unit(bits: np.uint32) -> float:
    """Unsigned bits as a float64 (through int64: the unsigned conversion is slow)."""
    return np.float64(np.int64(bits))


def _pass(flat, first, inv_sigma, bound, keys, upper, lower):
    """Re-draw ``flat`` in place, chunk by chunk; returns the re-drawn count. ``flat[0]`` is the weight's
    entry ``first``: its draws are those of its index in the whole weight."""
    size = flat.size
    last = upper.size - 1
    scale = (upper.size - 1) / TABLE_END
    inv32 = np.float32(inv_sigma)
    limit = np.float32(MARGIN)
    count = 0
    flags = np.empty(CHUNK, dtype=np.uint8)
    words = flags.view(np.uint64)
    for chunk in range((size + CHUNK - 1) // CHUNK):
        start = chunk * CHUNK
        stop = min(size, start + CHUNK)
        for j in range(stop - start):
            a = abs(np.float32(flat[start + j])) * inv32
            x = np.float32(0.5) * a * a
            t = np.float32(1.0 / 120.0) + x * np.float32(1.0 / 720.0)  # T(x) by Horner's rule
            t = np.float32(1.0 / 24.0) + x * t
            t = np.float32(1.0 / 6.0) + x * t
            t = np.float32(0.5) + x * t
            t = np.float32(1.0) + x * t
            t = np.float32(1.0) + x * t
            top = _hash(first + start + j, keys, 0)
            spread = max(np.float32(2.0), a * np.float32(_SQRT_2PI))
            flags[j] = np.float32(np.int32(top >> np.uint32(8))) * np.float32(2.0**-24) * t * spread < limit
        flags[stop - start:] = 0  # the last chunk's tail
        # the candidates, eight flags per word: a flag byte is 0 or 1, so each candidate is one set bit
        for w in range(CHUNK // 8):
            bits = words[w]
            while bits:
                low = bits & (~bits + np.uint64(1))
                bits ^= low
                j = 8 * w + (math.frexp(np.float64(low))[1] - 1) // 8
                i = start + j
                index = first + i  # the weight's index in the whole tensor: its draws
                top = _unit(_hash(index, keys, 0))  # hashed again: storing every weight's bits cost more
                a = abs(np.float64(flat[i])) * inv_sigma
                k = min(int(a * scale), last)
                if top * 2.0**-32 >= upper[k]:
                    continue
                if (top + 1.0) * 2.0**-32 > lower[k]:
                    u = (top + _unit(_hash(index, keys, 1) >> np.uint32(11)) * 2.0**-21) * 2.0**-32
                    if u >= upper[k] or (u >= lower[k] and u >= 0.5 * math.erfc(a * _INV_SQRT2)):
                        continue
                v = (_unit(_hash(index, keys, 2)) * 2.0**21 + _unit(_hash(index, keys, 3) >> np.uint32(11))) * 2.0**-53
                flat[i] = (2.0 * v - 1.0) * bound
                count += 1
    return count


_PASS = numba.njit(cache=True, nogil=True, fastmath={"contract"})(_pass)
"""The pass compiled for one thread, releasing the GIL so that ``redraw_cpu`` can run parts of a weight
on several of torch's threads at once. Not numba's parallel loop: its OpenMP layer shares the
process's OpenMP runtime with torch and left torch's thread count changed (1 -> 2 in a federated
client, so the client's next training step summed in another order)."""

MIN_PART = 1 << 18
"""Fewest weights a part gets: a parallel region costs 40 microseconds or more, a part this size ~0.2 ms."""


def pass_keys(seed: int) -> np.ndarray:
    """The ``2 * STREAMS`` 32-bit keys of a pass, drawn from ``seed``."""
    return np.random.Generator(np.random.Philox(seed)).integers(0, 2**32, 2 * STREAMS, dtype=np.uint32)


def part_starts(size: int, threads: int) -> list[int]:
    """Where each thread's part of a ``size``-weight pass starts: at most ``threads`` parts of at least
    ``MIN_PART`` weights, each starting on a chunk boundary."""
    parts = max(1, min(threads, size // MIN_PART))
    chunks = (size + CHUNK - 1) // CHUNK
    return [CHUNK * (chunks * p // parts) for p in range(parts)]


def redraw_cpu(flat: torch.Tensor, sigma: float, bound: float, seed: int, threads: int | None = None) -> int:
    """One WR pass over ``flat`` (a contiguous CPU float32 or float64 weight) in place; the re-drawn count.

    A large weight is split into parts that run on up to ``threads`` of torch's OpenMP threads
    (default: torch's thread count, the share of the cores this process trains with). The draws depend
    on each weight's index only, so any split gives the same result.
    """
    if flat.numel() >= 2**32:
        raise ValueError(f"a weight of {flat.numel()} entries exceeds the WR kernel's 2**32 counter range")
    weights, keys = flat.numpy(), pass_keys(seed)
    threads = torch.get_num_threads() if threads is None else threads
    starts = part_starts(weights.size, threads)
    stops = starts[1:] + [weights.size]
    parts = [
        functools.partial(_PASS, weights[start:stop], start, 1.0 / sigma, bound, keys, UPPER, LOWER)
        for start, stop in zip(starts, stops)
    ]
    return int(sum(run_on_torch_threads(parts, threads)))
