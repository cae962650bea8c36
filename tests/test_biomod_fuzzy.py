import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedsyn.biomod import BiomodConfig, attach, convert, fuzzy_factors, scale_gradients

FL = BiomodConfig(fl=True, tau=0.5)


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 6, 6, generator=generator), torch.randint(0, 5, (8,), generator=generator)


def test_factors_cover_every_weight_lie_in_range_and_spread_uniformly() -> None:
    plain = nn.Sequential(nn.Linear(200, 300), nn.ReLU(), nn.Linear(300, 10))
    factors = fuzzy_factors(convert(plain, FL, seed=3))
    assert sorted(factors) == ["0.weight", "2.weight"]  # biases untouched by default
    values = torch.cat([f.flatten() for f in factors.values()])
    assert values.min() >= 1 - 0.25 and values.max() <= 1 + 0.25
    assert abs(values.mean().item() - 1.0) < 0.002  # U(0.75, 1.25): sd 0.144, n = 63000
    assert abs(values.std().item() - 0.5 / 12**0.5) < 0.002
    assert factors["0.weight"].shape == (300, 200)


def test_same_seed_same_factors_other_seed_other_factors_and_fl_seed_overrides() -> None:
    plain = small_net()
    first = fuzzy_factors(convert(plain, FL, seed=7))
    again = fuzzy_factors(convert(plain, FL, seed=7))
    other = fuzzy_factors(convert(plain, FL, seed=8))
    shared = fuzzy_factors(convert(plain, FL, seed=8, fl_seed=7))
    for name in first:
        assert torch.equal(first[name], again[name])
        assert torch.equal(first[name], shared[name])
        assert not torch.equal(first[name], other[name])


def test_factors_stay_out_of_parameters_buffers_and_state_dict() -> None:
    plain = small_net()
    model = convert(plain, BiomodConfig(fl=True, fl_bias=True))
    assert list(model.state_dict()) == list(plain.state_dict())
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in plain.parameters())
    assert list(model.buffers()) == []
    assert sorted(fuzzy_factors(model)) == ["0.bias", "0.weight", "3.bias", "3.weight"]


@pytest.mark.parametrize("fl_bias", [False, True])
def test_attached_sgd_step_equals_manual_step_with_gradient_times_factor(fl_bias: bool) -> None:
    plain = small_net()
    model = convert(plain, BiomodConfig(fl=True, tau=0.5, fl_bias=fl_bias), seed=1)
    lr = 0.1
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    handle = attach(optimizer, model)
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    F.cross_entropy(plain(x), y).backward()  # the plain gradient at the same weights
    factors = fuzzy_factors(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer.step()
    for name, param in model.named_parameters():
        plain_grad = dict(plain.named_parameters())[name].grad
        expected = before[name] - lr * plain_grad * factors.get(name, 1.0)
        torch.testing.assert_close(param.detach(), expected, rtol=1e-6, atol=1e-7)
    assert ("0.bias" in factors) == fl_bias
    handle.remove()


def test_removed_handle_stops_scaling() -> None:
    model = convert(small_net(), FL, seed=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    attach(optimizer, model).remove()
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    grad = model[0].weight.grad.clone()
    before = model[0].weight.detach().clone()
    optimizer.step()
    torch.testing.assert_close(model[0].weight.detach(), before - 0.1 * grad)


def test_scale_gradients_multiplies_the_raw_gradient_once() -> None:
    model = convert(small_net(), FL, seed=2)
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    raw = {name: p.grad.clone() for name, p in model.named_parameters()}
    scale_gradients(model)
    factors = fuzzy_factors(model)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, raw[name] * factors.get(name, 1.0))


def test_factors_follow_dtype_and_device_moves_and_deepcopies_own_theirs() -> None:
    model = convert(small_net(), FL, seed=2)
    twin = copy.deepcopy(model)
    model.double()
    assert all(f.dtype == torch.float64 for f in fuzzy_factors(model).values())
    assert all(f.dtype == torch.float32 for f in fuzzy_factors(twin).values())
    fuzzy_factors(twin)["0.weight"].fill_(2.0)
    assert fuzzy_factors(model)["0.weight"].max() < 1.5
