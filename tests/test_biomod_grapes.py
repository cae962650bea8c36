import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedsyn.biomod import BiomodConfig, convert, grapes_factors

GRAPES = BiomodConfig(grapes=True)


def expected_modulation(weight: torch.Tensor) -> torch.Tensor:
    importance = torch.stack([row.abs().sum() for row in weight])  # over inputs (and kernel)
    return torch.maximum(torch.ones_like(importance), 2 * importance / importance.max())


def test_factors_are_max_one_two_importance_over_max_and_skip_the_output_layer() -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 8), nn.ReLU(),
                          nn.Linear(8, 3))
    model = convert(plain, GRAPES)
    factors = grapes_factors(model)
    assert sorted(factors) == ["0", "3"]
    torch.testing.assert_close(factors["0"], expected_modulation(plain[0].weight))
    torch.testing.assert_close(factors["3"], expected_modulation(plain[3].weight))
    assert factors["3"].min() >= 1 and factors["3"].max() == 2  # the strongest unit gets exactly 2


def plain_with_modulated_errors(plain: nn.Sequential, hidden: list[int]) -> nn.Sequential:
    """The plain model with tensor hooks that scale each hidden layer's output error by M: an independent
    way of writing the propagating GRAPES rule."""

    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        factor = expected_modulation(module.weight.detach())
        output.register_hook(lambda grad: grad * factor.view(-1, *[1] * (output.dim() - 2)))

    for index in hidden:
        plain[index].register_forward_hook(hook)
    return plain


@pytest.mark.parametrize("use_conv", [False, True])
def test_propagating_modulation_gives_the_hand_written_gradients(use_conv: bool) -> None:
    torch.manual_seed(0)
    if use_conv:
        layers = [nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6, 3)]
        x = torch.randn(5, 2, 5, 5)
        hidden = [0, 2]
    else:
        layers = [nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3)]
        x = torch.randn(5, 6)
        hidden = [0, 2]
    plain = nn.Sequential(*layers)
    model = convert(plain, GRAPES)
    y = torch.randint(0, 3, (5,))
    F.cross_entropy(model(x), y).backward()
    reference = plain_with_modulated_errors(plain, hidden)
    F.cross_entropy(reference(x), y).backward()
    for (name, param), (_, ref) in zip(model.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(param.grad, ref.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_output_layer_gradient_is_untouched_and_the_last_hidden_is_scaled_row_wise() -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    model = convert(plain, GRAPES)
    x, y = torch.randn(4, 6), torch.randint(0, 3, (4,))
    F.cross_entropy(model(x), y).backward()
    F.cross_entropy(plain(x), y).backward()
    torch.testing.assert_close(model[2].weight.grad, plain[2].weight.grad)
    factor = expected_modulation(plain[0].weight)
    torch.testing.assert_close(model[0].weight.grad, plain[0].weight.grad * factor[:, None])
    assert not torch.allclose(model[0].weight.grad, plain[0].weight.grad)


def test_forward_values_and_inference_are_unchanged() -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(6, 8), nn.ReLU(inplace=True), nn.Linear(8, 3))
    model = convert(plain, GRAPES)
    x = torch.randn(4, 6)
    torch.testing.assert_close(model(x), plain(x))
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x))
