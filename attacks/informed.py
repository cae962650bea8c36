"""What the informed attacker does with the defenses and training rules it knows about.

Both functions return masks aligned with the update (one bool tensor per parameter, ``True`` = use
this entry in the matching); ``combine_masks`` intersects them. The attack compares the candidate's
signal with the target on the kept entries only.

Weight rejuvenation (docs/methods.md, "WR") replaces a weight by a fresh draw from ``U(-b, b)``,
``b = 1 / sqrt(fan_in)``, after an optimizer step, so the update of a re-drawn weight is
``fresh - w_global`` (plus the gradient steps after the redraw): a value of the size of the weights
themselves, not of a learning-rate-sized step, and unrelated to the client's images. Matching it
drowns the gradient signal (on an untrained ResNet20, one local step at lr 0.01 re-draws ~9% of the
weights and leaves the update with cosine ~0.01 to the clean one). ``rejuvenation_mask`` finds those
entries with a likelihood-ratio test, per entry, that uses only what the server has: the global
weights, the update and the (public) WR settings, not the client's private WR stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

LN2 = math.log(2.0)


def _redraw_probability(global_weight: torch.Tensor, d_re: float, steps: int) -> torch.Tensor:
    """Prior that an entry was re-drawn at least once in ``steps`` steps (eq. 3 at the global weights)."""
    peak = global_weight.abs().max()
    if peak == 0:
        return torch.full_like(global_weight, 1.0 - 0.5**steps)
    per_step = 0.5 * torch.special.erfc(global_weight.abs() * d_re / peak / math.sqrt(2.0))
    return 1.0 - (1.0 - per_step) ** steps


def _step_scale(update: torch.Tensor) -> torch.Tensor:
    """Laplace scale of the gradient steps, per output unit (row): median |u| / ln 2.

    The median ignores the re-drawn minority; rows differ a lot in gradient size (dead or saturated
    units), so one scale per row keeps large-gradient rows from looking re-drawn.
    """
    magnitude = update.abs()
    if update.dim() < 2:
        median = magnitude.median()
    else:
        median = magnitude.flatten(1).median(dim=1).values.view(-1, *([1] * (update.dim() - 1)))
    return (median / LN2).clamp_min(torch.finfo(update.dtype).tiny)


def rejuvenated_entries(
    update: torch.Tensor,
    global_weight: torch.Tensor,
    *,
    bound: float,
    d_re: float,
    steps: int = 1,
    min_posterior: float = 0.1,
    slack: float = 3.0,
) -> torch.Tensor:
    """Bool tensor: entries of one rejuvenating weight's update that look re-drawn.

    The test compares, per entry, two explanations of the update ``u`` at global weight ``w``:

    - re-drawn (prior ``pi`` = probability that WR re-drew ``w`` in ``steps`` steps): the local weight
      ``w + u`` is uniform on ``[-bound, bound]`` (widened by ``slack`` step scales for the gradient
      steps after the redraw), density ``1 / (2 bound)``;
    - gradient steps (prior ``1 - pi``): ``u`` is Laplace with the row's robust scale ``s``.

    An entry is flagged when its posterior probability of having been re-drawn exceeds ``min_posterior``:
    ``pi / (2 bound) > odds * (1 - pi) exp(-|u|/s) / (2 s)`` with ``odds = min_posterior / (1 - min_posterior)``.
    The default 0.1 leans towards flagging because the costs are lopsided: a missed redraw leaves a
    weight-sized error in the target, a false alarm drops one gradient entry from the matching.
    """
    if bound <= 0 or d_re <= 0 or steps < 1 or not 0 < min_posterior < 1:
        raise ValueError(
            f"need bound > 0, d_re > 0, steps >= 1 and 0 < min_posterior < 1, got {bound}, {d_re}, {steps}, {min_posterior}"
        )
    update = update.detach().double()
    weight = global_weight.detach().to(update)
    scale = _step_scale(update)
    prior = _redraw_probability(weight, d_re, steps).clamp(1e-300, 1.0 - 1e-16)
    log_redrawn = torch.log(prior) - math.log(2.0 * bound)
    log_gradient = torch.log1p(-prior) - torch.log(2.0 * scale) - update.abs() / scale
    in_range = (weight + update).abs() <= bound + slack * scale
    log_odds = math.log(min_posterior / (1.0 - min_posterior))
    return in_range & (log_redrawn > log_gradient + log_odds)


def rejuvenation_mask(
    update: Sequence[torch.Tensor],
    global_weights: Sequence[torch.Tensor],
    bounds: Sequence[float | None],
    *,
    d_re: float,
    steps: int = 1,
    min_posterior: float = 0.1,
) -> list[torch.Tensor]:
    """Keep-mask per tensor: ``False`` where ``rejuvenated_entries`` flags a re-drawn weight.

    ``bounds[i]`` is the WR initialisation bound of tensor ``i`` (``1 / sqrt(fan_in)`` of a
    rejuvenating layer's weight) or ``None`` for tensors WR never touches (biases, norms, and every
    tensor of layers without WR): those keep all entries. ``steps`` is the client's local steps.
    """
    if not len(update) == len(global_weights) == len(bounds):
        raise ValueError(
            f"update, global_weights and bounds must align: {len(update)}, {len(global_weights)}, {len(bounds)}"
        )
    masks = []
    for i, (delta, weight, bound) in enumerate(zip(update, global_weights, bounds)):
        if delta.shape != weight.shape:
            raise ValueError(f"tensor {i}: update shape {tuple(delta.shape)} != global shape {tuple(weight.shape)}")
        if bound is None:
            masks.append(torch.ones(delta.shape, dtype=torch.bool, device=delta.device))
        else:
            flagged = rejuvenated_entries(
                delta, weight, bound=bound, d_re=d_re, steps=steps, min_posterior=min_posterior
            )
            masks.append(~flagged.to(delta.device))
    return masks


def support_mask(update: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Keep-mask of the entries that are not exactly zero.

    Against top-k pruning the zeros are entries the defense removed, not gradient values near zero:
    matching them would ask the candidate's gradient to vanish where the true one did not.
    """
    return [tensor != 0 for tensor in update]


def combine_masks(*masks: Sequence[torch.Tensor] | None) -> list[torch.Tensor] | None:
    """Entry-wise AND of keep-masks; ``None`` arguments (no mask) are skipped; ``None`` if all are."""
    given = [list(mask) for mask in masks if mask is not None]
    if not given:
        return None
    if len({len(mask) for mask in given}) != 1:
        raise ValueError(f"masks of different lengths: {[len(mask) for mask in given]}")
    combined = given[0]
    for mask in given[1:]:
        combined = [a & b for a, b in zip(combined, mask)]
    return combined
