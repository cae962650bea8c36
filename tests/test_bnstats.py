"""BatchNorm statistics as attacker knowledge: exact recovery from running buffers, and the prior."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attacks
from attacks.bnstats import FeatureRecorder, batch_statistics, feature_distance, recover_bn_stats
from fedsyn.models import build_model

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _buffers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(m.running_mean.clone(), m.running_var.clone()) for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_one_layer_batch_statistics_are_recovered_exactly(momentum):
    gen = torch.Generator().manual_seed(0)
    layer = nn.BatchNorm2d(5, momentum=momentum)
    layer.running_mean.uniform_(-1, 1, generator=gen)
    layer.running_var.uniform_(0.5, 2, generator=gen)
    old = (layer.running_mean.clone(), layer.running_var.clone())
    x = torch.randn(3, 5, 6, 7, generator=gen) * 2 + 1
    layer.train()(x)
    mean, var = batch_statistics(*old, layer.running_mean, layer.running_var, momentum)
    torch.testing.assert_close(mean, x.mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var, x.var((0, 2, 3), correction=1), rtol=1e-5, atol=1e-6)


def test_a_local_step_of_a_real_model_gives_its_batch_statistics():
    """One SGD step of a client in train mode: the global and local buffers give every layer's statistics."""
    model = build_model("resnet20", 10, seed=0)
    recorder_model = copy.deepcopy(model).train()
    recorder = FeatureRecorder(recorder_model)
    x, y = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 3])
    with recorder.recording() as truth:
        recorder_model(x)
    local = copy.deepcopy(model).train()
    old = _buffers(local)
    optimiser = torch.optim.SGD(local.parameters(), lr=0.1)
    F.cross_entropy(local(x), y).backward()
    optimiser.step()
    recovered = recover_bn_stats(old, _buffers(local), 0.1)
    assert len(recovered) == len(truth) == 19
    for (mean, var), (true_mean, true_var) in zip(recovered, truth):
        torch.testing.assert_close(mean, true_mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(var, true_var, rtol=1e-4, atol=1e-5)


def _feature_distance_of(model: nn.Module, images: torch.Tensor, target) -> float:
    probe = copy.deepcopy(model).train()
    recorder = FeatureRecorder(probe)
    x = (images - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)
    with torch.no_grad(), recorder.recording() as recorded:
        probe(x)
    return float(feature_distance(recorded, target))


@pytest.mark.parametrize("restarts", [1, 2])
def test_the_prior_pulls_the_feature_statistics_towards_the_clients(restarts):
    model = build_model("convnet", 10, seed=0, width=4).train()
    gen = torch.Generator().manual_seed(2)
    images = F.interpolate(torch.rand(2, 3, 8, 8, generator=gen), size=(32, 32), mode="bilinear")
    labels = torch.tensor([3, 7])
    probe = copy.deepcopy(model)
    recorder = FeatureRecorder(probe)
    x = (images - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)
    with recorder.recording() as stats:
        loss = F.cross_entropy(probe(x), labels)
    target = [g.detach() for g in torch.autograd.grad(loss, list(probe.parameters()))]
    stats = [(m.detach(), v.detach()) for m, v in stats]
    distances = {}
    for prior in (0.0, 1.0):
        cfg = attacks.AttackConfig(iterations=25, restarts=restarts, tv=1e-4, bn_mode="train", bn_prior=prior, device="cpu")
        rec = attacks.reconstruct(model, target, num_images=2, labels=labels, mean=MEAN, std=STD, config=cfg,
                                  bn_stats=stats)
        assert rec.stats["bn_prior"] == prior
        distances[prior] = _feature_distance_of(model, rec.images, stats)
    assert distances[1.0] < 0.5 * distances[0.0]


def test_bn_stats_must_fit_the_model():
    model = build_model("convnet", 10, seed=0, width=4).eval()
    x, y = torch.rand(1, 3, 32, 32), torch.tensor([1])
    target = list(torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters())))
    cfg = attacks.AttackConfig(iterations=1, device="cpu")
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    good = [(torch.zeros(m.num_features), torch.ones(m.num_features)) for m in layers]
    rec = attacks.reconstruct(model, target, num_images=1, labels=y, mean=MEAN, std=STD, config=cfg, bn_stats=good)
    assert rec.stats["bn_prior"] == cfg.bn_prior
    assert attacks.reconstruct(model, target, num_images=1, labels=y, mean=MEAN, std=STD, config=cfg).stats["bn_prior"] is None
    with pytest.raises(ValueError, match="BatchNorm layers"):
        attacks.reconstruct(model, target, num_images=1, labels=y, mean=MEAN, std=STD, config=cfg, bn_stats=good[:-1])
    with pytest.raises(ValueError, match=r"bn_stats\[0\] must hold two vectors"):
        attacks.reconstruct(model, target, num_images=1, labels=y, mean=MEAN, std=STD, config=cfg,
                            bn_stats=[(torch.zeros(3), torch.ones(3)), *good[1:]])
    with pytest.raises(ValueError, match="momentum"):
        batch_statistics(*good[0], *good[0], momentum=0.0)


def test_the_prior_enters_the_objective_of_an_unrolled_update():
    """Several local steps: the statistics are those of the first step, taken by one more forward pass."""
    model = build_model("convnet", 10, seed=0, width=4).train()
    x, y = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4)), torch.tensor([0, 5])
    update = attacks.LocalUpdate(steps=2, lr=0.1, batch_size=2)
    local = copy.deepcopy(model)
    recorder = FeatureRecorder(local)
    optimiser = torch.optim.SGD(local.parameters(), lr=0.1)
    for step in range(2):
        optimiser.zero_grad()
        with recorder.recording() as recorded:
            loss = F.cross_entropy(local(x), y)
        if step == 0:
            stats = [(m.detach(), v.detach()) for m, v in recorded]
        loss.backward()
        optimiser.step()
    target = [(a - b).detach() for a, b in zip(local.parameters(), model.parameters())]
    curves = {}
    for given in (None, stats):
        cfg = attacks.AttackConfig(iterations=2, tv=0, bn_mode="train", device="cpu")
        rec = attacks.reconstruct(model, target, num_images=2, labels=y, mean=MEAN, std=STD, config=cfg,
                                  update=update, bn_stats=given)
        assert rec.stats["target"] == "update (2 steps, unrolled)"
        curves[given is not None] = rec.stats["loss_curve"]
    # Same start, same matching loss: the first objective differs by the (positive) prior term alone.
    assert curves[True][0] > curves[False][0]
