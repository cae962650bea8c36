"""attacks.recover_labels on real gradients of real (untrained) models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attacks
from fedsyn.models import build_model


def _last_layer_grads(model: torch.nn.Module, labels: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight gradient, bias gradient) of the classifier for random images with ``labels``."""
    images = torch.randn(len(labels), 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    loss = F.cross_entropy(model(images), labels)
    weight, bias = torch.autograd.grad(loss, list(model.parameters())[-2:])
    return weight, bias


@pytest.mark.parametrize("label", [0, 3, 9])
def test_idlg_is_exact_for_one_image(label):
    model = build_model("convnet", 10, seed=0, width=8).eval()
    weight, bias = _last_layer_grads(model, torch.tensor([label]))
    assert attacks.recover_labels(weight, 1).tolist() == [label]
    assert attacks.recover_labels(bias, 1).tolist() == [label]
    assert attacks.recover_labels(bias, 1, strategy="idlg").dtype == torch.int64


def test_batch_heuristic_recovers_distinct_labels():
    model = build_model("resnet20", 10, seed=0).eval()
    labels = torch.tensor([7, 1, 4, 8])
    weight, bias = _last_layer_grads(model, labels)
    assert attacks.recover_labels(weight, 4).tolist() == [1, 4, 7, 8]
    assert attacks.recover_labels(weight, 4, strategy="idlg").tolist() == [1, 4, 7, 8]
    # The bias alone only estimates: the untrained model's confidence pushes some present class up.
    assert len(set(attacks.recover_labels(bias, 4).tolist()) & {1, 4, 7, 8}) >= 2


def test_batch_heuristic_repeats_labels_when_the_batch_is_larger_than_the_classes():
    model = build_model("lenet", 3, seed=0).eval()
    labels = torch.tensor([0, 0, 0, 2, 2])
    weight, _ = _last_layer_grads(model, labels)
    recovered = attacks.recover_labels(weight, 5).tolist()
    # Presence is exact (row minima); how often each class repeats is only estimated.
    assert len(recovered) == 5 and set(recovered) == {0, 2}


def test_reconstruct_uses_recovered_labels():
    model = build_model("lenet", 10, seed=0).eval()
    images = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    loss = F.cross_entropy(model(images), torch.tensor([6]))
    target = [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]
    rec = attacks.reconstruct(model, target, num_images=1, mean=(0, 0, 0), std=(1, 1, 1),
                              config=attacks.AttackConfig(iterations=1))
    assert rec.labels.tolist() == [6]


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        attacks.recover_labels(torch.zeros(10), 0)
    with pytest.raises(ValueError, match="got shape"):
        attacks.recover_labels(torch.zeros(2, 3, 4), 1)
    with pytest.raises(ValueError, match="NaN or Inf"):
        attacks.recover_labels(torch.tensor([0.1, float("nan")]), 1)
    with pytest.raises(ValueError, match="picks distinct classes"):
        attacks.recover_labels(torch.randn(3), 4, strategy="idlg")
