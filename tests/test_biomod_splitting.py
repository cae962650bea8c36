import copy

import pytest
import torch
from torch import nn

from fedsyn.biomod import BiomodConfig, convert

WS = BiomodConfig(ws=True, gamma=2)


def grouped_reference(plain_out: torch.Tensor, gamma: int, dim: int) -> torch.Tensor:
    """Eq. 5 written out one output at a time: output j carries the sum of outputs (j mod K) + g*K."""
    size = plain_out.shape[dim]
    groups = size // gamma
    columns = []
    for j in range(size):
        members = [(j % groups) + g * groups for g in range(gamma)]
        columns.append(plain_out.index_select(dim, torch.tensor(members)).sum(dim))
    return torch.stack(columns, dim)


def with_head(layer: nn.Module, head: nn.Module) -> nn.Sequential:
    """The layer under test plus a classifier after it (the last layer is never split)."""
    return nn.Sequential(layer, head)


@pytest.mark.parametrize("batch", [2, 64])  # 2 rows: outputs are summed; 64 rows: weight rows are summed
@pytest.mark.parametrize("gamma", [2, 3])
def test_linear_output_is_the_grouped_sum_tiled(batch: int, gamma: int) -> None:
    torch.manual_seed(0)
    plain = with_head(nn.Linear(16, 12), nn.Linear(12, 3))
    model = convert(plain, BiomodConfig(ws=True, gamma=gamma))
    x = torch.randn(batch, 16)
    expected = grouped_reference(plain[0](x), gamma, dim=1)
    torch.testing.assert_close(model[0](x), expected, rtol=1e-5, atol=1e-6)
    # group members are equal, e.g. outputs 0, 4, 8 for gamma=3
    assert torch.equal(model[0](x)[:, 0], model[0](x)[:, 12 // gamma])


@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (32, 3, 8, 8), (3, 5, 5)])  # incl. an unbatched input
@pytest.mark.parametrize("groups", [1, 3])
def test_conv2d_output_is_the_grouped_sum_over_channels_at_every_position(
    shape: tuple[int, ...], groups: int
) -> None:
    torch.manual_seed(0)
    plain = with_head(nn.Conv2d(3, 6, kernel_size=3, padding=1, groups=groups), nn.Conv2d(6, 2, 1))
    model = convert(plain, WS)
    x = torch.randn(*shape)
    expected = grouped_reference(plain[0](x), 2, dim=x.dim() - 3)
    torch.testing.assert_close(model[0](x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch", [2, 64])
def test_split_gradients_match_the_reference_formula(batch: int) -> None:
    torch.manual_seed(0)
    plain = with_head(nn.Linear(16, 8), nn.Linear(8, 3))
    model = convert(plain, WS)
    x = torch.randn(batch, 16)
    weights = torch.randn(batch, 8)
    (model[0](x) * weights).sum().backward()
    (grouped_reference(plain[0](x), 2, dim=1) * weights).sum().backward()
    torch.testing.assert_close(model[0].weight.grad, plain[0].weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model[0].bias.grad, plain[0].bias.grad, rtol=1e-5, atol=1e-5)


def test_the_classifier_is_never_split() -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 4))
    model = convert(plain, WS)
    hidden = torch.relu(model[0](torch.ones(1, 4)))
    torch.testing.assert_close(model[2](hidden), plain[2](hidden))
    assert model[2].split_gamma == 1 and model[0].split_gamma == 2


def test_indivisible_layer_error_names_the_qualified_layer() -> None:
    body = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU())
    plain = nn.Sequential()
    plain.add_module("body", body)
    plain.add_module("head", nn.Linear(5, 3))  # 5 outputs would not split, but the head is never split
    with pytest.raises(ValueError, match=r"'body\.2'.*5 outputs.*gamma=2"):
        convert(plain, WS)


def test_an_indivisible_classifier_is_fine_because_it_is_not_split() -> None:
    plain = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5))
    assert convert(plain, WS)(torch.ones(2, 4)).shape == (2, 5)


def test_conformance_with_the_authors_package_up_to_the_grouping_order() -> None:
    """bio_transformations groups adjacent outputs (n*G + g); eq. 5 groups strided ones (n + g*K).

    Permuting our weight rows so that our group n holds their group n must give their outputs, permuted.
    """
    bio = pytest.importorskip("bio_transformations", reason="pytorch-bio-transformations (dev extra) not installed")
    torch.manual_seed(0)
    gamma, outputs = 2, 8
    plain = nn.Sequential(nn.Linear(6, outputs), nn.ReLU(), nn.Linear(outputs, 4))
    theirs = bio.BioConverter(weight_splitting_Gamma=gamma).convert(copy.deepcopy(plain))
    groups = outputs // gamma
    ours_to_theirs = torch.tensor([n * gamma + g for g in range(gamma) for n in range(groups)])
    permuted = copy.deepcopy(plain)
    with torch.no_grad():
        permuted[0].weight.copy_(plain[0].weight[ours_to_theirs])
        permuted[0].bias.copy_(plain[0].bias[ours_to_theirs])
    ours = convert(permuted, BiomodConfig(ws=True, gamma=gamma))
    x = torch.randn(5, 6)
    torch.testing.assert_close(ours[0](x), theirs[0](x)[:, ours_to_theirs], rtol=1e-5, atol=1e-6)
