"""The active server's imprint block (fedsyn.models.imprint) and its exact recovery (attacks.imprint)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from attacks.imprint import recover
from attacks.methods import AttackInputs, NotApplicable, run_method
from attacks.pairing import mse_matrix
from fedsyn.biomod import BiomodConfig, attach, convert, fuzzy_factors
from fedsyn.models import ImprintModel, ImprintSpec, build_model, empirical_thresholds

SHAPE = (3, 16, 16)
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    return (images - 0.5) / 0.25


def _images(count: int, seed: int) -> torch.Tensor:
    """Images with a spread of brightness: random pixels around a random per-image level."""
    generator = torch.Generator().manual_seed(seed)
    level = torch.rand(count, 1, 1, 1, generator=generator)
    return (level + 0.3 * (torch.rand(count, *SHAPE, generator=generator) - 0.5)).clamp(0, 1)


def _model(spec: ImprintSpec) -> ImprintModel:
    thresholds = empirical_thresholds(spec, _normalise(_images(400, seed=99)))
    return ImprintModel(build_model("convnet", 10, SHAPE, seed=0, width=4), spec, SHAPE, thresholds=thresholds)


def _gradient(model: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    loss = F.cross_entropy(model(_normalise(images)), torch.arange(len(images)) % 10)
    return list(torch.autograd.grad(loss, list(model.parameters())))


def _psnr(recovered: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """PSNR of each true image against its closest recovered one (dB)."""
    return 10 * torch.log10(1 / mse_matrix(recovered, true).min(dim=1).values.clamp_min(1e-20))


@pytest.mark.parametrize("statistic", ["brightness", "random"])
def test_single_image_comes_back_to_float_precision(statistic: str) -> None:
    model = _model(ImprintSpec(bins=16, statistic=statistic)).eval()
    image = _images(1, seed=1)
    result = recover(model, _gradient(model, image), num_images=1, mean=MEAN, std=STD)
    assert result.images.shape == (1, *SHAPE)
    assert (result.images - image).abs().max() < 1e-4


def test_batch_of_16_mostly_recovered_from_gradient() -> None:
    model = _model(ImprintSpec(bins=128)).eval()
    images = _images(16, seed=2)
    result = run_method("imprint", AttackInputs(model, _gradient(model, images), 16, MEAN, STD))
    assert len(result.images) <= 16
    assert int((_psnr(result.images, images) > 30).sum()) >= 8


def test_update_after_one_sgd_step() -> None:
    model = _model(ImprintSpec(bins=128))
    images = _images(16, seed=3)
    client = convert(model, BiomodConfig()).train()
    before = [p.detach().clone() for p in client.parameters()]
    optimizer = torch.optim.SGD(client.parameters(), lr=0.01)
    F.cross_entropy(client(_normalise(images)), torch.arange(16) % 10).backward()
    optimizer.step()
    update = [p.detach() - b for p, b in zip(client.parameters(), before)]
    result = recover(model, update, num_images=16, mean=MEAN, std=STD, is_update=True)
    assert int((_psnr(result.images, images) > 30).sum()) >= 8


def test_mean_of_two_clients_two_local_steps_each() -> None:
    """A FedAvg (or secure) aggregate of several local steps still gives the images alone in a bin."""
    model = _model(ImprintSpec(bins=128))
    images = _images(16, seed=9)
    updates = []
    for share in images.split(8):
        client = convert(model, BiomodConfig()).train()
        before = [p.detach().clone() for p in client.parameters()]
        optimizer = torch.optim.SGD(client.parameters(), lr=0.01)
        for batch in share.split(4):
            optimizer.zero_grad()
            F.cross_entropy(client(_normalise(batch)), torch.arange(4)).backward()
            optimizer.step()
        updates.append([p.detach() - b for p, b in zip(client.parameters(), before)])
    aggregate = [sum(parts) / len(parts) for parts in zip(*updates)]
    result = recover(model, aggregate, num_images=16, mean=MEAN, std=STD, is_update=True)
    assert int((_psnr(result.images, images) > 30).sum()) >= 8


def test_informed_server_designs_for_weight_splitting_and_divides_out_fl() -> None:
    config = BiomodConfig(fl=True, ws=True, tau=0.5)
    model = _model(ImprintSpec(bins=64, ws_gamma=config.gamma))
    images = _images(16, seed=4)
    client = convert(model, config, seed=5).train()
    optimizer = torch.optim.SGD(client.parameters(), lr=0.01)
    before = [p.detach().clone() for p in client.parameters()]
    with attach(optimizer, client):
        F.cross_entropy(client(_normalise(images)), torch.arange(16) % 10).backward()
        optimizer.step()
    update = [p.detach() - b for p, b in zip(client.parameters(), before)]
    factors = fuzzy_factors(client)
    fl = [factors.get(name) for name, _ in client.named_parameters()]
    informed = recover(model, update, num_images=16, mean=MEAN, std=STD, fl_factors=fl, is_update=True)
    oblivious = recover(model, update, num_images=16, mean=MEAN, std=STD, is_update=True)
    recovered = int((_psnr(informed.images, images) > 30).sum())
    assert recovered >= 8
    assert recovered > int((_psnr(oblivious.images, images) > 30).sum())


def test_mask_drops_redrawn_entries_of_one_copy() -> None:
    model = _model(ImprintSpec(bins=16, copies=2)).eval()
    image = _images(1, seed=8)
    target = _gradient(model, image)
    corrupted = [t.clone() for t in target]
    mask: list[torch.Tensor | None] = [None] * len(target)
    rows = model.imprint.imprint_rows[:, 0]  # the first copy of every threshold
    corrupted[0][rows, :50] = 1.0  # entries a WR redraw replaced by values unrelated to the image
    mask[0] = torch.ones_like(target[0], dtype=torch.bool)
    mask[0][rows, :50] = False
    informed = recover(model, corrupted, num_images=1, mean=MEAN, std=STD, mask=mask)
    oblivious = recover(model, corrupted, num_images=1, mean=MEAN, std=STD)
    assert (informed.images - image).abs().max() < 1e-4
    assert (oblivious.images - image).abs().max() > 0.1


def test_not_applicable_without_imprint_block() -> None:
    model = build_model("convnet", 10, SHAPE, seed=0, width=4).eval()
    target = _gradient(model, _images(2, seed=6))
    with pytest.raises(NotApplicable, match="imprint"):
        run_method("imprint", AttackInputs(model, target, 2, MEAN, STD))


def test_build_model_from_spec_dict_and_bad_field() -> None:
    model = build_model("convnet", 10, SHAPE, seed=0, width=4, imprint={"bins": 8, "copies": 2})
    assert isinstance(model, ImprintModel)
    assert model.imprint.measure.weight.shape == (16, 3 * 16 * 16)
    assert model.imprint.imprint_rows.tolist()[0] == [0, 1]
    x = _normalise(_images(2, seed=7))
    assert (model.imprint(x) - x).abs().max() < 1e-2  # the base model still sees about x
    with pytest.raises(ValidationError, match="allowed fields"):
        ImprintSpec.model_validate({"bins": 8, "bogus": 1})
    with pytest.raises(ValidationError, match="statistic"):
        ImprintSpec(statistic="contrast")
