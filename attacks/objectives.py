"""The attack's objective: gradient matching plus the total-variation image prior.

Matching acts on flat signals: every parameter's gradient (or unrolled update) concatenated in
``model.parameters()`` order into one vector of P values, or a (R, P) stack of them, one row per
restart. Working on one flat vector keeps the objective to a handful of large tensor operations
instead of several per parameter, which matters on a busy CPU. One restart's cosine can also take the
parameters' gradients as they come (:meth:`Matcher.parts`): no concatenated copy, and a hand-written
backward pass of one fused operation per parameter instead of autograd's chain of element-wise products,
which on a large fully connected model was the biggest share of an iteration.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .config import Objective

# Guards the cosine against an all-zero candidate gradient (it is then 1, "no similarity").
_TINY = 1e-30


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate ``tensors`` into one vector, last dimension first flattened per tensor."""
    return torch.cat([t.reshape(-1) for t in tensors])


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV of Geiping et al. (2020): mean |horizontal difference| + mean |vertical difference|.

    The means run over all neighbouring pixel pairs inside each image and over channels and images (no
    padding at the border). ``images`` is (B, C, H, W), giving a scalar, or (R, B, C, H, W), giving one
    value per restart. breaching's TotalVariation layer computes the same differences with a padded
    convolution, so it also counts the border pixels against zero; its weights are not interchangeable
    with these to the last digit.
    """
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(start_dim=-4).mean(-1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(start_dim=-4).mean(-1)
    return dx + dy


class _PartsCosine(torch.autograd.Function):
    """``1 - <s, u> / |s|`` for ``s`` given in parts and ``u`` the unit target split alike.

    Backward: ``d/ds = -u / |s| + <s, u> s / |s|^3``, one ``addcmul`` per part. Only the first derivative
    exists (the attack differentiates the objective once, with respect to the images)."""

    @staticmethod
    def forward(ctx, units: tuple[torch.Tensor, ...], *parts: torch.Tensor) -> torch.Tensor:
        flat = [p.reshape(-1) for p in parts]
        dot = torch.stack([torch.dot(p, u) for p, u in zip(flat, units)]).sum()
        inverse = torch.rsqrt(torch.stack([torch.dot(p, p) for p in flat]).sum().clamp_min(_TINY))
        ctx.units = units
        ctx.save_for_backward(dot, inverse, *parts)
        return 1 - dot * inverse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        dot, inverse, *parts = ctx.saved_tensors
        along_u = -grad * inverse
        along_s = grad * dot * inverse**3
        return (None, *(torch.addcmul(p * along_s, u.view_as(p), along_u) for p, u in zip(parts, ctx.units)))


class Matcher:
    """Distance between candidate signals and the target, ``(..., P) -> (...)``.

    - ``cosine``: ``1 - <s, t> / (|s| |t|)`` over the whole concatenated vector (Geiping et al., eq. 4).
    - ``cosine_layerwise``: one minus the mean over parameters of each parameter's cosine; parameters
      whose target is all zero (untouched by the client) are left out of the mean.
    - ``l2``: ``|s - t|^2``, the squared Euclidean distance of Zhu et al. (2019), "Deep Leakage".


    ``mask`` (bool, aligned with ``target``, ``None`` entries keep everything) restricts the comparison
    to the kept entries: an informed attacker drops entries it knows carry no image information (see
    :mod:`attacks.informed`).
    """

    def __init__(
        self, kind: Objective, target: Sequence[torch.Tensor], mask: Sequence[torch.Tensor | None] | None = None
    ) -> None:
        self.kind = kind
        self.index = None
        parts = list(target)
        if mask is not None:
            keep = [torch.ones_like(t, dtype=torch.bool) if m is None else m.to(t.device, torch.bool) for t, m in zip(target, mask)]
            self.index = flatten(keep).nonzero().squeeze(1)
            parts = [t[k] for t, k in zip(target, keep)]
        self.target = flatten(parts)
        if not self.target.any():
            raise ValueError("the target is zero on every kept entry: there is nothing to match")
        self.unit = self.target / self.target.norm().clamp_min(_TINY)
        self.sizes = [t.numel() for t in parts]
        self.unit_parts = self.unit.split(self.sizes)
        self.live = [bool(t.any()) for t in parts]

    def __call__(self, signal: torch.Tensor) -> torch.Tensor:
        if self.index is not None:
            signal = signal.index_select(-1, self.index)
        if self.kind == "cosine":
            return 1 - (signal @ self.unit) * torch.rsqrt((signal * signal).sum(-1).clamp_min(_TINY))
        if self.kind == "l2":
            diff = signal - self.target
            return (diff * diff).sum(-1)
        return self._layerwise(signal)

    def parts(self, signals: Sequence[torch.Tensor]) -> torch.Tensor:
        """The distance for one restart whose signal comes as ``signals`` (aligned with the target's
        parts): the same value as ``self(flatten(signals))``, for the cosine without its flat copy."""
        if self.kind != "cosine" or self.index is not None:
            return self(flatten(signals))
        return _PartsCosine.apply(self.unit_parts, *signals)

    def _layerwise(self, signal: torch.Tensor) -> torch.Tensor:
        cosines = [
            (s * t).sum(-1) * torch.rsqrt((s * s).sum(-1).clamp_min(_TINY) * (t * t).sum())
            for s, t, live in zip(signal.split(self.sizes, -1), self.target.split(self.sizes), self.live)
            if live
        ]
        return 1 - torch.stack(cosines, -1).mean(-1)
