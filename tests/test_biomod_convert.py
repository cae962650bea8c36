import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedsyn.biomod import COMBOS, BioConv2d, BiomodConfig, BioLinear, attach, convert, fuzzy_factors, rejuvenate
from fedsyn.models import build_model

ALL = BiomodConfig(fl=True, wr=True, ws=True, grapes=True, d_re=3.0)


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 6), nn.ReLU(),
                         nn.Linear(6, 3))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, 6, 6, generator=generator), torch.randint(0, 3, (4,), generator=generator)
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


@pytest.mark.parametrize("combo", COMBOS)
def test_every_combination_keeps_parameters_and_state_dict_keys(combo: str) -> None:
    plain = small_net()
    model = convert(plain, BiomodConfig.from_combo(combo), seed=0)
    assert list(model.state_dict()) == list(plain.state_dict())
    for (name, param), (_, ref) in zip(model.named_parameters(), plain.named_parameters()):
        assert torch.equal(param, ref), name
    assert model(torch.randn(2, 3, 6, 6)).shape == (2, 3)


def test_all_flags_off_gives_a_plain_copy() -> None:
    plain = small_net()
    model = convert(plain, BiomodConfig(), seed=0)
    assert model is not plain and type(model[0]) is nn.Conv2d and type(model[3]) is nn.Linear
    assert model[0].weight is not plain[0].weight
    handle = attach(torch.optim.SGD(model.parameters(), lr=0.1), model)
    assert handle.rejuvenated_total == 0


def test_the_input_model_is_left_untouched() -> None:
    plain = small_net()
    before = copy.deepcopy(plain.state_dict())
    model = convert(plain, ALL, seed=0)
    train_step(model, torch.optim.SGD(model.parameters(), lr=0.5))
    attach(torch.optim.SGD(model.parameters(), lr=0.5), model)
    assert type(plain[0]) is nn.Conv2d
    for key, value in plain.state_dict().items():
        assert torch.equal(value, before[key])


def test_a_deepcopy_trains_independently_of_its_original() -> None:
    model = convert(small_net(), ALL, seed=0)
    twin = copy.deepcopy(model)
    original = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.5)
    handle = attach(optimizer, twin)
    train_step(twin, optimizer)
    assert handle.rejuvenated_last > 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert any(not torch.equal(twin.state_dict()[k], original[k]) for k in original)
    assert type(twin[0]) is BioConv2d and type(twin[3]) is BioLinear
    assert all(fuzzy_factors(twin)[n] is not f for n, f in fuzzy_factors(model).items())
    assert rejuvenate(model)["0"] >= 0 and twin[0].wr_rng is not model[0].wr_rng


def test_attach_refuses_an_optimizer_of_another_model() -> None:
    model = convert(small_net(), ALL, seed=0)
    twin = copy.deepcopy(model)
    with pytest.raises(ValueError, match="optimizer holds none of the converted model's weights"):
        attach(torch.optim.SGD(model.parameters(), lr=0.1), twin)


def test_converted_models_pickle_and_reload_with_their_factors() -> None:
    model = convert(small_net(), ALL, seed=0)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.equal(fuzzy_factors(loaded)["0.weight"], fuzzy_factors(model)["0.weight"])
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(loaded(x), model(x))


def test_layer_types_and_output_layer_choose_what_is_converted() -> None:
    plain = small_net()
    linear_only = convert(plain, BiomodConfig(ws=True, layer_types=("linear",)))
    assert type(linear_only[0]) is nn.Conv2d and linear_only[3].split_gamma == 2
    with pytest.raises(ValueError, match="layer '5' .* 3 outputs"):  # the head is split once it is not the output
        convert(plain, BiomodConfig(ws=True), output_layer="3")
    four_classes = nn.Sequential(*plain[:5], nn.Linear(6, 4))
    named = convert(four_classes, BiomodConfig(ws=True), output_layer="3")
    assert named[3].split_gamma == 1 and named[5].split_gamma == 2
    with pytest.raises(ValueError, match="output_layer 'head'.*candidates: \\['0', '3', '5'\\]"):
        convert(plain, BiomodConfig(ws=True), output_layer="head")


def test_bad_inputs_give_clear_errors() -> None:
    model = convert(small_net(), ALL, seed=0)
    with pytest.raises(ValueError, match="already converted"):
        convert(model, ALL)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        convert(small_net(), ALL, seed=-1)
    with pytest.raises(ValueError, match="no layers of types \\('conv2d',\\)"):
        convert(nn.Sequential(nn.Linear(2, 2)), BiomodConfig(fl=True, layer_types=("conv2d",)))


def test_gradient_of_the_gradient_flows_through_every_modifier() -> None:
    """Gradient inversion differentiates the parameter gradient w.r.t. the input images."""
    model = convert(small_net(), ALL, seed=0)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    loss = F.cross_entropy(model(x), torch.tensor([0, 1]))
    grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    (image_grad,) = torch.autograd.grad(sum(g.square().sum() for g in grads), x)
    assert image_grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["resnet20", "convnet", "lenet"])
def test_paper_models_convert_train_and_keep_their_keys(name: str) -> None:
    plain = build_model(name, num_classes=10, in_shape=(3, 16, 16), seed=0)
    model = convert(plain, BiomodConfig(fl=True, wr=True, ws=True), seed=0)
    assert list(model.state_dict()) == list(plain.state_dict())
    classifier = [m for m in model.modules() if isinstance(m, (BioLinear, BioConv2d))][-1]
    assert classifier.split_gamma == 1
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    handle = attach(optimizer, model)
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([1, 2])
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert handle.steps == 1 and torch.isfinite(model(x)).all()
