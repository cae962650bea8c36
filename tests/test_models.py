import pytest
import torch

from fedsyn.models import MODEL_NAMES, UnknownModelError, build_model

PUBLISHED_SIZES = {"resnet20": 0.27e6, "resnet32": 0.46e6, "resnet56": 0.85e6}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n not in ("mlp", "alexnet")])
def test_every_model_maps_a_cifar_batch_to_logits(name: str) -> None:
    model = build_model(name, num_classes=7)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_large_models_build_with_paper_sizes() -> None:
    mlp = build_model("mlp", 100)
    assert [m.out_features for m in mlp if isinstance(m, torch.nn.Linear)] == [3000, 3000, 100]
    alexnet = build_model("alexnet", 10)
    assert alexnet(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name,size", sorted(PUBLISHED_SIZES.items()))
def test_cifar_resnets_have_the_published_parameter_counts(name: str, size: float) -> None:
    assert abs(n_params(build_model(name, 10)) - size) / size < 0.02


def test_convnet_width_option_and_other_input_shapes() -> None:
    narrow = build_model("convnet", 10, width=16)
    assert n_params(narrow) < n_params(build_model("convnet", 10))
    grey = build_model("lenet", 10, in_shape=(1, 28, 28))
    assert grey(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert build_model("mlp", 10, in_shape=(1, 28, 28), width=32)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_seed_makes_weights_reproducible_without_touching_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("lenet", 10, seed=5)
    after = torch.rand(1)
    b = build_model("lenet", 10, seed=5)
    c = build_model("lenet", 10, seed=6)
    assert torch.equal(before, after)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.state_dict()["0.0.weight"], c.state_dict()["0.0.weight"])


def test_zero_bias_zeroes_every_bias() -> None:
    model = build_model("convnet", 10, width=8, zero_bias=True)
    biases = [m.bias for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert biases and all(torch.count_nonzero(b) == 0 for b in biases)


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match="resnet20"):
        build_model("vgg11", 10)
    with pytest.raises(ValueError, match="6n\\+2"):
        from fedsyn.models.resnet import resnet

        resnet(21, 10, (3, 32, 32))
    with pytest.raises(ValueError, match="bad options"):
        build_model("lenet", 10, width=3)
