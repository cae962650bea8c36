"""Privacy accounting for the two Gaussian-noise defenses.

Local DP (``ClipNoise``): one round releases ``clip(update) + N(0, (z * C)^2)``. Its L2 sensitivity is
``2 C`` under ``replace`` adjacency (the local model: any two clipped updates differ by at most
``2 C``) or ``C`` under ``add_remove`` (user-level DP as in DP-FedAvg), so the effective noise
multiplier is ``z / 2`` or ``z``.

- One round: the exact epsilon of the Gaussian mechanism, the analytic Gaussian mechanism of
  Balle & Wang (2018, Theorem 8): the release is (eps, delta)-DP iff
  ``Phi(mu/2 - eps/mu) - exp(eps) * Phi(-mu/2 - eps/mu) <= delta`` with ``mu = sensitivity / sigma``;
  we solve for the smallest such eps.
- Several rounds (a client that took part R times): Renyi DP of the Gaussian mechanism,
  ``R * alpha / (2 z_eff^2)`` at order alpha, composed over the rounds and converted to (eps, delta)
  with Opacus' RDP accountant (``opacus.accountants.analysis.rdp``, conversion of Balle et al. 2020).
  This worst case assumes the same record may be in every round's batch.

DP-SGD (``DPSGD``): Opacus' RDP accountant for the subsampled Gaussian mechanism over all local steps,
example-level add/remove adjacency, with ``sample_rate = batch_size / partition size``. fedsyn picks
each batch deterministically rather than by Poisson sampling, so this epsilon is the usual DP-SGD
approximation, not a proof for fedsyn's exact sampler.
"""

from __future__ import annotations

import math
from typing import Literal

from scipy.special import log_ndtr, ndtr

ORDERS: tuple[float, ...] = (
    *(1 + x / 10.0 for x in range(1, 100)),
    *range(11, 64),
    80, 96, 128, 192, 256, 384, 512, 1024,
)
"""Renyi orders searched when converting RDP to (eps, delta)."""


def effective_noise(noise_multiplier: float, adjacency: Literal["replace", "add_remove"]) -> float:
    """Noise std divided by the L2 sensitivity, for a clip-and-noise release (see module doc)."""
    return noise_multiplier / 2.0 if adjacency == "replace" else noise_multiplier


def _gaussian_delta(eps: float, mu: float) -> float:
    """delta(eps) of the Gaussian mechanism with ``mu = sensitivity / sigma`` (Balle & Wang, Thm 8)."""
    first = ndtr(mu / 2.0 - eps / mu)
    second = math.exp(eps + log_ndtr(-mu / 2.0 - eps / mu))
    return float(first - second)


def analytic_gaussian_epsilon(noise: float, delta: float) -> float:
    """Exact epsilon of one Gaussian release with noise std ``noise`` times the sensitivity.

    ``noise == 0`` gives ``inf`` (no privacy).
    """
    _check_delta(delta)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if noise == 0:
        return math.inf
    mu = 1.0 / noise
    if _gaussian_delta(0.0, mu) <= delta:
        return 0.0
    high = 1.0
    while _gaussian_delta(high, mu) > delta:
        high *= 2.0
    from scipy.optimize import brentq  # imported here: scipy.optimize takes about half a second

    return float(brentq(lambda eps: _gaussian_delta(eps, mu) - delta, 0.0, high, xtol=1e-12, rtol=1e-10))


def rdp_epsilon(noise: float, delta: float, *, sample_rate: float = 1.0, steps: int = 1) -> float:
    """Epsilon after ``steps`` (subsampled) Gaussian releases, by RDP composition (Opacus' analysis).

    ``noise`` is the noise std over the sensitivity; ``sample_rate`` 1 means every release sees the
    whole data (local DP rounds), below 1 the Poisson-subsampled Gaussian of DP-SGD.
    """
    _check_delta(delta)
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if steps == 0:
        return 0.0
    if noise == 0:
        return math.inf
    # Imported here: importing opacus takes seconds, and every config load imports this package.
    from opacus.accountants.analysis import rdp

    orders = list(ORDERS)
    curve = rdp.compute_rdp(q=sample_rate, noise_multiplier=noise, steps=steps, orders=orders)
    eps, _ = rdp.get_privacy_spent(orders=orders, rdp=curve, delta=delta)
    return float(eps)


def local_dp_epsilon(
    noise_multiplier: float,
    delta: float,
    *,
    adjacency: Literal["replace", "add_remove"] = "replace",
    rounds: int = 1,
) -> float:
    """Epsilon of clip-and-noise local DP after ``rounds`` participations.

    One round: the analytic Gaussian mechanism (exact). Several: RDP composition over the rounds.
    """
    noise = effective_noise(noise_multiplier, adjacency)
    if rounds == 1:
        return analytic_gaussian_epsilon(noise, delta)
    return rdp_epsilon(noise, delta, steps=rounds)


def dpsgd_epsilon(noise_multiplier: float, delta: float, *, sample_rate: float, steps: int) -> float:
    """Epsilon of DP-SGD after ``steps`` noisy steps at ``sample_rate`` (Opacus' RDP accountant)."""
    return rdp_epsilon(noise_multiplier, delta, sample_rate=sample_rate, steps=steps)


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
