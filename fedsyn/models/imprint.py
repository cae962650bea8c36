"""The active server's imprint block (Fowl et al. 2022, "Robbing the Fed", section 3): a model wrapper.

``ImprintModel`` puts a fully connected block in front of any base model::

    z = x + reshape(expand(relu(measure(flatten(x)))))        base(z)

Every measuring row of ``measure`` computes the same linear statistic ``s(x) = a . x`` of the image (its
mean brightness, or a fixed random direction) against its own threshold: row ``i`` has weight
``alpha * a`` and bias ``-alpha * t_i`` with increasing ``t_i``, so it is active iff ``s(x) > t_i``.
Every column of ``expand`` is the same vector ``c``, so the loss gradient reaching the active rows is
the same scalar ``g_b = c . dL/dz_b`` for every row an image ``b`` activates. Hence

    dL/dW[i] = sum_{b: s_b > t_i} g_b x_b,        dL/db[i] = sum_{b: s_b > t_i} g_b,

and an image alone in the bin ``t_i < s <= t_{i+1}`` is exactly ``(dW[i] - dW[i+1]) / (db[i] - db[i+1])``
(paper eq. 4); the same holds for an update ``-lr * grad`` and for sums of updates (local steps, FedAvg,
a secure aggregate) as long as the image stays alone in its bin. ``attacks.imprint`` does the recovery.

Design choices, all in :class:`ImprintSpec` so that a server can rebuild the block from a small dict:

- ``alpha`` and ``|c|`` set two ratios. Their product bounds the perturbation
  ``alpha * |c| * sum_i relu(s - t_i)`` of the base model's input; ``|c| / alpha`` sets how large one
  step's update of the measuring weights is relative to the weights. Too large, and the weights lose
  their equal magnitudes within one step (WR then re-draws the smaller ones, and the bins move); too
  small, and the update, a difference of float32 weights, loses precision. The defaults keep the
  update a small fraction of the weights (benchmarks/imprint_attack.py measures the trade-off).
- ``c`` has entries ``+-output_scale`` (seeded signs) and the brightness direction has equal entries, so
  every weight of the block has the layer's largest magnitude and weight rejuvenation (WR, redraw
  probability ``1 - Phi(|w| / sigma_re)``) leaves them alone.
- ``copies`` rows per threshold let an attacker that does not know the clients' FL factors average them
  out; ``ws_gamma`` designs for weight splitting (WS sums rows ``n + g * K`` of ``K = rows / gamma``):
  the measuring rows are rows ``0 .. K-1`` and every other row is zero, so each group sums to one
  measurement.
- Thresholds are the quantiles ``(i + 1) / (bins + 1)`` of the statistic over public images: of a
  Gaussian with the spec's ``stat_mean``/``stat_std``, or the empirical quantiles of public images
  (:func:`empirical_thresholds`), passed to :class:`ImprintModel`.

Contract with ``attacks.imprint`` (which must not import fedsyn): the block is a module with the buffers
``imprint_thresholds`` (bins,) and ``imprint_rows`` (bins, copies; the ``measure`` rows of each
threshold), a ``measure`` linear layer whose ``weight``/``bias`` are parameters of the model, and the
attribute ``in_shape`` (C, H, W).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import ConfigDict, Field
from torch import nn

from fedsyn.strict import KnownFieldsModel

Statistic = Literal["brightness", "random"]


class ImprintSpec(KnownFieldsModel):
    """Everything that decides the imprint block; small enough to travel in a run config."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bins: int = Field(128, ge=2, description="number of thresholds (bins of the statistic)")
    statistic: Statistic = Field("brightness", description="brightness: mean pixel; random: seeded unit direction")
    stat_mean: float = Field(0.0, description="mean of the statistic over public images (normalised inputs)")
    stat_std: float = Field(0.5, gt=0, description="standard deviation of the statistic over public images")
    copies: int = Field(1, ge=1, description="measuring rows per threshold (averaged against unknown FL factors)")
    ws_gamma: int = Field(1, ge=1, description="WS division factor the block is designed for (1: plain)")
    alpha: float = Field(0.3, gt=0, description="scale of the measuring rows")
    output_scale: float = Field(1e-3, gt=0, description="magnitude of the entries of the expanding columns")
    seed: int = Field(0, ge=0, description="seed of the random direction and of the output signs")

    @property
    def rows(self) -> int:
        """Output count of the measuring layer."""
        return self.bins * self.copies * self.ws_gamma


def direction(spec: ImprintSpec, in_shape: tuple[int, int, int]) -> torch.Tensor:
    """The unit-free direction ``a`` of the statistic ``s(x) = a . flatten(x)`` (float64)."""
    features = math.prod(in_shape)
    if spec.statistic == "brightness":
        return torch.full((features,), 1.0 / features, dtype=torch.float64)
    generator = torch.Generator().manual_seed(spec.seed)
    vector = torch.randn(features, generator=generator, dtype=torch.float64)
    return vector / vector.norm()


def statistic(spec: ImprintSpec, images: torch.Tensor) -> torch.Tensor:
    """The statistic of each (normalised) image in ``images`` (B, C, H, W), float64."""
    return images.flatten(1).double() @ direction(spec, tuple(images.shape[1:]))


def gaussian_thresholds(spec: ImprintSpec) -> torch.Tensor:
    """Quantiles ``(i + 1) / (bins + 1)`` of a Gaussian with the spec's mean and std."""
    levels = torch.arange(1, spec.bins + 1, dtype=torch.float64) / (spec.bins + 1)
    return torch.distributions.Normal(spec.stat_mean, spec.stat_std).icdf(levels)


def empirical_thresholds(spec: ImprintSpec, public_images: torch.Tensor) -> torch.Tensor:
    """Quantiles ``(i + 1) / (bins + 1)`` of the statistic over public (normalised) images."""
    levels = torch.arange(1, spec.bins + 1, dtype=torch.float64) / (spec.bins + 1)
    return torch.quantile(statistic(spec, public_images), levels)


class ImprintBlock(nn.Module):
    """``x + reshape(expand(relu(measure(flatten(x)))))`` with the binning weights of the module docstring."""

    def __init__(self, spec: ImprintSpec, in_shape: tuple[int, int, int], thresholds: torch.Tensor) -> None:
        super().__init__()
        thresholds = torch.as_tensor(thresholds, dtype=torch.float64)
        if thresholds.shape != (spec.bins,) or not bool((thresholds.diff() > 0).all()):
            raise ValueError(
                f"thresholds must be {spec.bins} strictly increasing values, got shape {tuple(thresholds.shape)}"
            )
        self.in_shape = tuple(in_shape)
        features = math.prod(self.in_shape)
        self.measure = nn.Linear(features, spec.rows)
        self.expand = nn.Linear(spec.rows, features)
        measuring = spec.bins * spec.copies
        rows = torch.arange(measuring).view(spec.bins, spec.copies)
        self.register_buffer("imprint_thresholds", thresholds.float())
        self.register_buffer("imprint_rows", rows)
        signs = torch.randint(0, 2, (features,), generator=torch.Generator().manual_seed(spec.seed + 1)) * 2 - 1
        with torch.no_grad():
            self.measure.weight.zero_()
            self.measure.bias.zero_()
            self.measure.weight[:measuring] = (spec.alpha * direction(spec, self.in_shape)).float()
            self.measure.bias[:measuring] = (-spec.alpha * thresholds).repeat_interleave(spec.copies).float()
            self.expand.weight.copy_((spec.output_scale * signs.float()).view(-1, 1).expand(-1, spec.rows))
            self.expand.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.expand(torch.relu(self.measure(x.flatten(1)))).view_as(x)


class ImprintModel(nn.Module):
    """``base(imprint(x))``; the block is registered first so that the base's classifier stays the
    model's last layer (``fedsyn.biomod.convert`` never splits it)."""

    def __init__(self, base: nn.Module, spec: ImprintSpec, in_shape: tuple[int, int, int],
                 thresholds: torch.Tensor | None = None) -> None:
        super().__init__()
        self.spec = spec
        if thresholds is None:
            thresholds = gaussian_thresholds(spec)
        self.imprint = ImprintBlock(spec, in_shape, thresholds)
        self.base = base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(self.imprint(x))


def imprint_spec(value: ImprintSpec | dict[str, Any]) -> ImprintSpec:
    """Validate a spec given as a dict (for example from a run config)."""
    return value if isinstance(value, ImprintSpec) else ImprintSpec.model_validate(value)
