"""Inverting Gradients: the plateau stop and convergence flag, and TV weights chosen by the matching loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

import attacks
from fedsyn.models import build_model

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _images(count: int, size: int = 8) -> torch.Tensor:
    """Smooth images in [0, 1]: blurred noise, so that TV has something to prefer."""
    noise = torch.rand(count, 3, size // 2, size // 2, generator=torch.Generator().manual_seed(3))
    return F.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)


def _target(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    x = (images - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)
    return [g.detach() for g in torch.autograd.grad(F.cross_entropy(model(x), labels), list(model.parameters()))]


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))


def _attack(model, images, labels, **config):
    target = _target(model, images, labels)
    cfg = attacks.AttackConfig(device="cpu", **config)
    return attacks.reconstruct(model, target, num_images=len(labels), labels=labels, mean=MEAN, std=STD,
                               image_shape=tuple(images.shape[1:]), config=cfg)


def test_plateau_stops_an_easy_attack_early_and_reports_convergence():
    model = build_model("lenet", 10, seed=0).eval()
    rec = _attack(model, _images(1, 32), torch.tensor([2]), iterations=3000, tv=1e-4, plateau_window=30,
                  plateau_tol=1e-2, loss_tol=0)
    assert rec.stats["converged"] is True and rec.stats["stop_reason"] == "plateau"
    assert rec.stats["iterations_run"][0] < 3000
    assert len(rec.stats["loss_curve"]) == rec.stats["iterations_run"][0]


def test_loss_tolerance_stops_the_attack():
    rec = _attack(_linear(), _images(1), torch.tensor([2]), iterations=3000, tv=0, plateau_window=None, loss_tol=1e-2)
    assert rec.stats["stop_reason"] == "loss below tolerance" and rec.stats["converged"] is True
    assert rec.stats["matching_loss"] <= 1e-2 and rec.stats["iterations_run"][0] < 3000


def test_a_budget_too_small_is_not_converged():
    model = build_model("lenet", 10, seed=0).eval()
    images = _images(1, 32)
    rec = _attack(model, images, torch.tensor([1]), iterations=30, tv=1e-4, plateau_window=25)
    assert rec.stats["iterations_run"] == [30]
    assert rec.stats["converged"] is False and rec.stats["stop_reason"] == "budget"


def test_plateau_off_runs_the_whole_budget():
    model = build_model("lenet", 10, seed=0).eval()
    rec = _attack(model, _images(1, 32), torch.tensor([1]), iterations=60, tv=1e-4, plateau_window=None, loss_tol=0)
    assert rec.stats["iterations_run"] == [60] and rec.stats["stop_reason"] == "budget"


def test_tv_candidates_pick_the_lowest_matching_loss_not_the_lowest_objective():
    """After one iteration each restart's best iterate is its random start, whose matching loss does not
    depend on its TV weight. Giving the restart with the lower matching loss a huge TV weight makes its
    objective the larger one; it must win all the same."""
    model, images, labels = _linear(), _images(2), torch.tensor([0, 3])
    plain = _attack(model, images, labels, iterations=1, restarts=2, tv=(0.0, 0.0))
    best = plain.stats["best_restart"]
    weights = (100.0, 0.0) if best == 0 else (0.0, 100.0)
    chosen = _attack(model, images, labels, iterations=1, restarts=2, tv=weights)
    np.testing.assert_allclose(chosen.stats["restart_losses"], plain.stats["restart_losses"], rtol=0, atol=1e-6)
    assert chosen.stats["best_restart"] == best
    assert chosen.stats["tv"] == 100.0 and chosen.stats["restart_tv"] == list(weights)
    assert torch.equal(chosen.images, plain.images)


def test_tv_candidates_are_per_restart_in_the_batched_computation():
    """vmap'd restarts with different TV weights follow the same paths as the restarts run one by one."""
    model = build_model("lenet", 10, seed=0).eval()
    images, labels = _images(1, 32), torch.tensor([4])
    runs = {mode: _attack(model, images, labels, iterations=4, restarts=3, tv=(1e-4, 1.0, 10.0), restart_mode=mode)
            for mode in ("batched", "sequential")}
    batched, sequential = runs["batched"].stats, runs["sequential"].stats
    np.testing.assert_allclose(batched["restart_losses"], sequential["restart_losses"], rtol=1e-4, atol=1e-6)
    assert batched["restart_tv"] == pytest.approx([1e-4, 1.0, 10.0])
    assert batched["tv"] == batched["restart_tv"][batched["best_restart"]]


def test_tv_candidates_need_enough_restarts():
    with pytest.raises(ValidationError, match="restarts"):
        attacks.AttackConfig(tv=[1e-4, 1e-2, 0.2], restarts=2)
    with pytest.raises(ValidationError, match="tv"):
        attacks.AttackConfig(tv=[])
    assert attacks.AttackConfig(tv=[1e-4, 0.2], restarts=4).restart_tv() == [1e-4, 0.2, 1e-4, 0.2]
