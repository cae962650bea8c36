"""The analytic attack on a fully connected input layer (attacks.METHODS["analytic"]) against real
client computations: exact for a plain MLP, robust to FL/WR/WS, batches separated, not applicable to
convolutional models."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import attacks
from attacks.input_layer import find_input_layer
from fedsyn.biomod import BiomodConfig, convert, fuzzy_factors
from fedsyn.models import build_model
from fedsyn.task.training import batch_gradient, local_update

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
SHAPE = (3, 16, 16)
LR = 0.01


def _normalise(images: torch.Tensor) -> torch.Tensor:
    return (images - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)


def _synthetic(count: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1]: 4x4 noise upsampled bilinearly."""
    coarse = torch.rand(count, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=SHAPE[1:], mode="bilinear", align_corners=False)


def _model(combo: str, width: int = 512, shape: tuple[int, int, int] = SHAPE) -> torch.nn.Module:
    plain = build_model("mlp", 10, shape, seed=0, width=width)
    return convert(plain, BiomodConfig.from_combo(combo) if combo != "none" else BiomodConfig(), seed=0)


def _capture(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The client's reply as the federation computes it: FL-scaled gradient, or the update of one SGD step
    with FL and WR attached; aligned with ``model.parameters()``."""
    model = copy.deepcopy(model).train()
    if mode == "gradient":
        signal, _ = batch_gradient(model, _normalise(images), labels)
    else:
        signal, *_ = local_update(model, [(_normalise(images), labels)], LR)
    return [signal[name] for name, _ in model.named_parameters()]


def _attack(model, images, labels, mode, **extra) -> attacks.Reconstruction:
    update = None if mode == "gradient" else attacks.LocalUpdate(steps=1, lr=LR, batch_size=len(images))
    inputs = attacks.AttackInputs(
        model=model,
        target=_capture(model, images, labels, mode),
        num_images=len(images),
        mean=MEAN,
        std=STD,
        update=update,
        image_shape=tuple(images.shape[1:]),
        **extra,
    )
    return attacks.run_method("analytic", inputs)


def _psnr(rec: torch.Tensor, true: torch.Tensor) -> list[float]:
    return [float(p["psnr"]) for p in attacks.metrics.score(rec, true, lpips=False).per_image]


@pytest.mark.parametrize("mode", ["gradient", "update"])
def test_plain_mlp_gives_the_image_exactly(mode):
    images, labels = _synthetic(1), torch.tensor([3])
    rec = _attack(_model("none"), images, labels, mode)
    assert _psnr(rec.images, images)[0] > 100
    assert rec.labels.tolist() == [3]
    assert rec.stats["converged"] is True and rec.stats["method"] == "analytic"
    assert rec.stats["rows_used"] > 100


def test_weight_splitting_keeps_the_identity_exact():
    images, labels = _synthetic(1), torch.tensor([1])
    model = _model("ws")
    assert find_input_layer(model, SHAPE).kind == "BioLinear"
    assert _psnr(_attack(model, images, labels, "update").images, images)[0] > 100


def test_all_three_methods_in_update_capture_stay_above_40_db():
    images, labels = _synthetic(1), torch.tensor([5])
    rec = _attack(_model("fl+wr+ws"), images, labels, "update")
    assert _psnr(rec.images, images)[0] > 40
    assert rec.stats["outlier_share"] > 0  # WR's jumps were seen and rejected
    assert rec.stats["row_spread"] > 0.01  # the FL factors make the rows disagree


def test_informed_attacker_divides_out_the_fl_factors():
    images, labels = _synthetic(1), torch.tensor([2])
    model = _model("fl")
    named = fuzzy_factors(model)
    factors = [named.get(name) for name, _ in model.named_parameters()]
    oblivious = _psnr(_attack(model, images, labels, "gradient").images, images)[0]
    informed = _psnr(_attack(model, images, labels, "gradient", fl_factors=factors).images, images)[0]
    assert informed > 100 > oblivious


def test_batch_of_four_is_separated_and_deterministic():
    images, labels = _synthetic(4, seed=1), torch.tensor([0, 1, 2, 3])
    model = _model("none", width=1024)
    first = _attack(model, images, labels, "gradient")
    second = _attack(model, images, labels, "gradient")
    assert torch.equal(first.images, second.images)
    psnr = _psnr(first.images, images)
    assert sum(p > 30 for p in psnr) >= 3, psnr
    assert len(first.stats["sources"]) == 4


def test_batch_with_fl_wr_ws_in_update_capture():
    images, labels = _synthetic(4, seed=2), torch.tensor([4, 5, 6, 7])
    psnr = _psnr(_attack(_model("fl+wr+ws", width=1024), images, labels, "update").images, images)
    assert sum(p > 30 for p in psnr) >= 3, psnr


def test_ica_separates_a_batch_without_single_image_rows():
    # 256 units and 8 images: hardly any output is active for one image only, so ICA does the work.
    images, labels = _synthetic(8, seed=3), torch.arange(8)
    rec = _attack(_model("none", width=256), images, labels, "gradient")
    assert rec.stats["sources"] == ["ica"] * 8 and rec.stats["ica_converged"]
    psnr = _psnr(rec.images, images)
    assert sum(p > 25 for p in psnr) >= 5, psnr


@pytest.mark.parametrize("name", ["lenet", "convnet"])
def test_convolutional_model_is_not_applicable(name):
    model = build_model(name, 10, seed=0)
    inputs = attacks.AttackInputs(
        model=model, target=[torch.ones_like(p) for p in model.parameters()], num_images=1, mean=MEAN, std=STD
    )
    with pytest.raises(attacks.NotApplicable, match="no fully connected layer takes the image as input"):
        attacks.run_method("analytic", inputs)


def test_probe_leaves_the_model_untouched():
    model = build_model("convnet", 10, seed=0, width=8).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert isinstance(find_input_layer(model, (3, 32, 32)), str)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _cifar_image() -> torch.Tensor | None:
    value = os.environ.get("FEDSYN_CIFAR10_DIR")
    test = Path(value) / "test" if value else None
    if test is None or not test.is_dir():
        return None
    first_class = sorted(p for p in test.iterdir() if p.is_dir())[0]
    path = sorted(first_class.glob("*.jpg"))[0]
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


@pytest.mark.parametrize(("combo", "mode", "floor"), [("none", "gradient", 100), ("fl+wr+ws", "update", 40)])
def test_real_cifar_image_from_the_paper_mlp(combo, mode, floor):
    image = _cifar_image()
    if image is None:
        pytest.skip("FEDSYN_CIFAR10_DIR is not set to a folder with test/")
    rec = _attack(_model(combo, width=3000, shape=(3, 32, 32)), image, torch.tensor([0]), mode)
    assert _psnr(rec.images, image)[0] > floor
