"""attacks.metrics: pairing, pixel metrics, SSIM, LPIPS offline, label accuracy, input checks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchvision

from attacks import lpips_backbone, metrics


def random_images(batch: int, seed: int, side: int = 32) -> torch.Tensor:
    return torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


def save_alexnet_features(path: Path, seed: int) -> dict[str, torch.Tensor]:
    """A randomly initialised torchvision AlexNet's feature weights, saved as a state dict file.

    Only the `features.*` part is saved: that is all LPIPS reads, and it keeps the file at 10 MB.
    """
    torch.manual_seed(seed)
    state = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items() if k.startswith("features.")}
    torch.save(state, path)
    return state


def test_identical_images_score_perfectly():
    images = random_images(3, seed=0)
    scores = metrics.score(images, images.clone(), lpips=False)
    assert scores["mse"] == 0.0
    assert scores["mse_pct"] == 0.0
    assert scores["psnr"] == math.inf
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert scores["best_ssim"] == pytest.approx(1.0, abs=1e-12)
    assert all(row["psnr"] == math.inf for row in scores.per_image)


def test_gaussian_noise_gives_the_predicted_psnr():
    sigma = 0.05
    grey = torch.full((4, 3, 32, 32), 0.5)
    # Mid-grey +- 10 sigma stays inside [0, 1], so clamping leaves the noise untouched.
    noisy = grey + sigma * torch.randn(grey.shape, generator=torch.Generator().manual_seed(1))
    scores = metrics.score(noisy, grey, lpips=False)
    expected = 10 * math.log10(1 / sigma**2)
    assert all(abs(row["psnr"] - expected) < 0.3 for row in scores.per_image)
    assert scores["psnr"] == pytest.approx(expected, abs=0.15)
    assert scores["mse"] == pytest.approx(sigma**2, rel=0.05)
    assert scores["best_psnr"] == max(row["psnr"] for row in scores.per_image)
    assert scores["ssim"] < 0.9


def test_mse_pct_on_a_hand_computed_example():
    true = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]]])
    rec = torch.tensor([[[[0.3, 0.4], [0.6, 0.6]]]])
    scores = metrics.score(rec, true, lpips=False)
    # ||rec - true||^2 = 0.01 + 0.04 = 0.05; ||true||^2 = 0.04 + 0.16 + 0.36 + 0.64 = 1.2
    assert scores["mse_pct"] == pytest.approx(100 * 0.05 / 1.2)
    assert scores["mse"] == pytest.approx(0.05 / 4)
    assert scores["psnr"] == pytest.approx(10 * math.log10(80))
    assert "ssim" not in scores and "2x2" in scores.missing["ssim"]


def test_mse_pct_of_a_black_image():
    black = torch.zeros(2, 1, 8, 8)
    rec = black.clone()
    rec[1] = 0.1
    scores = metrics.score(rec, black, lpips=False)
    assert [row["mse_pct"] for row in scores.per_image] == [0.0, math.inf]
    assert scores["best_mse_pct"] == 0.0


def test_out_of_range_values_are_clamped():
    true = torch.full((1, 3, 8, 8), 1.0)
    scores = metrics.score(true + 0.5, true, lpips=False)
    assert scores["mse"] == 0.0


def test_pairing_undoes_a_shuffled_batch():
    true = random_images(6, seed=2)
    rec = (true + 0.05 * torch.randn(true.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    shuffle = torch.tensor([3, 0, 5, 1, 4, 2])
    ordered = metrics.score(rec, true, lpips=False)
    shuffled = metrics.score(rec[shuffle], true, lpips=False)

    inverse = torch.argsort(shuffle).tolist()
    assert metrics.pair(rec[shuffle], true) == inverse
    assert shuffled.pairing == inverse
    assert ordered.pairing == list(range(6))
    assert dict(shuffled) == dict(ordered)
    assert [row["rec_index"] for row in shuffled.per_image] == inverse


def test_best_values_are_the_most_leaked_image():
    true = random_images(3, seed=4)
    noise = torch.randn(true.shape, generator=torch.Generator().manual_seed(5))
    rec = (true + torch.tensor([0.2, 0.01, 0.1]).view(3, 1, 1, 1) * noise).clamp(0, 1)
    scores = metrics.score(rec, true, lpips=False)
    cleanest = scores.per_image[1]
    assert scores["best_mse"] == cleanest["mse"] < scores["mse"]
    assert scores["best_psnr"] == cleanest["psnr"] > scores["psnr"]
    assert scores["best_ssim"] == cleanest["ssim"] > scores["ssim"]
    assert scores["best_mse_pct"] == cleanest["mse_pct"] < scores["mse_pct"]


def test_label_accuracy_follows_the_pairing():
    true = random_images(4, seed=6)
    true_labels = torch.tensor([0, 1, 2, 3])
    shuffle = torch.tensor([1, 2, 3, 0])
    rec_labels = true_labels[shuffle].clone()
    rec_labels[0] = 9  # the reconstruction of true image 1 gets a wrong label

    scores = metrics.score(true[shuffle], true, rec_labels=rec_labels, true_labels=true_labels, lpips=False)
    assert scores["label_acc"] == 0.75  # compared in batch order instead, every label would be wrong
    assert [row["label_correct"] for row in scores.per_image] == [1.0, 0.0, 1.0, 1.0]
    assert "label_acc" not in metrics.score(true, true, lpips=False)


def test_fewer_reconstructions_pair_rectangularly_and_count_recovered_images() -> None:
    true = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    noisy = (true[1] + 0.1 * torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(4))).clamp(0, 1)
    rec = torch.stack([noisy, true[3]])  # image 3 exactly, image 1 at about 20 dB
    scores = metrics.score(rec, true, rec_labels=[7, 3], true_labels=[0, 1, 2, 3, 4], lpips=False)
    assert scores.pairing == [-1, 0, -1, 1, -1]
    assert scores["recovered_30db"] == 1.0 and scores["recovered_psnr"] == math.inf
    assert scores["label_acc"] == 0.2  # only image 3's label; unpaired images count as wrong
    grey = ((true[0] - 0.5) ** 2).mean().item()
    assert scores.per_image[0]["mse"] == pytest.approx(grey)
    nothing = metrics.score(true[:0], true, lpips=False)
    assert nothing["recovered_30db"] == 0.0 and "recovered_psnr" not in nothing


@pytest.mark.parametrize(
    ("rec", "true", "message"),
    [
        (torch.rand(4, 3, 8, 8), torch.rand(3, 3, 8, 8), "at most as many images"),
        (torch.rand(2, 3, 8, 4), torch.rand(3, 3, 8, 8), "the true images' shape"),
        (torch.rand(3, 8, 8), torch.rand(3, 8, 8), r"\(B, C, H, W\)"),
        (torch.full((1, 3, 8, 8), math.nan), torch.rand(1, 3, 8, 8), "rec_images contains 192 NaN"),
        (torch.rand(1, 3, 8, 8), torch.full((1, 3, 8, 8), math.inf), "true_images contains 192 NaN or infinite"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.rand(1, 3, 8, 8), "dtype torch.uint8"),
    ],
)
def test_bad_images_are_rejected(rec, true, message):
    with pytest.raises(ValueError, match=message):
        metrics.score(rec, true, lpips=False)
    with pytest.raises(ValueError, match=message):
        metrics.pair(rec, true)


def test_bad_labels_and_options_are_rejected():
    images = random_images(2, seed=7, side=8)
    with pytest.raises(ValueError, match="both rec_labels and true_labels"):
        metrics.score(images, images, rec_labels=[0, 1], lpips=False)
    with pytest.raises(ValueError, match="true_labels must be 2 integer"):
        metrics.score(images, images, rec_labels=[0, 1], true_labels=[0, 1, 2], lpips=False)
    with pytest.raises(ValueError, match="lpips must be 'auto', False or a path"):
        metrics.score(images, images, lpips=True)


def test_lpips_missing_backbone_is_reported_not_computed(empty_torch_home):
    images = random_images(2, seed=8)
    scores = metrics.score(images, images)
    expected_path = empty_torch_home / "hub" / "checkpoints" / lpips_backbone.ALEXNET_FILE
    assert "lpips" not in scores and "best_lpips" not in scores
    reason = scores.missing["lpips"]
    assert str(expected_path) in reason and "lpips=PATH" in reason
    assert scores["ssim"] == pytest.approx(1.0)  # the other metrics are still there

    explicit = metrics.score(images, images, lpips=empty_torch_home / "nowhere.pth")
    assert str(empty_torch_home / "nowhere.pth") in explicit.missing["lpips"]
    assert "lpips=False" in metrics.score(images, images, lpips=False).missing["lpips"]


def test_lpips_rejects_a_file_that_is_not_alexnet(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    images = random_images(1, seed=9)
    reason = metrics.score(images, images, lpips=path).missing["lpips"]
    assert "not a torchvision AlexNet state dict" in reason and "features.0.weight" in reason


def test_lpips_computes_with_a_given_backbone(tmp_path):
    path = tmp_path / "alexnet_features.pth"
    state = save_alexnet_features(path, seed=10)

    model = lpips_backbone.lpips_model(path, torch.device("cpu"))
    loaded = model.net.state_dict()
    assert all(torch.equal(loaded[name], state["features." + name.split(".", 1)[1]]) for name in loaded)
    assert lpips_backbone.lpips_model(path, torch.device("cpu")) is model  # built once

    true = random_images(2, seed=11)
    assert metrics.score(true, true, lpips=path)["lpips"] == 0.0
    noise = torch.randn(true.shape, generator=torch.Generator().manual_seed(12))
    distances = [metrics.score((true + s * noise).clamp(0, 1), true, lpips=path)["lpips"] for s in (0.02, 0.1, 0.3)]
    assert 0 < distances[0] < distances[1] < distances[2]

    # The lpips package's own [0, 1] -> [-1, 1] path gives the same per-image values.
    noisy = (true + 0.1 * noise).clamp(0, 1)
    expected = model(noisy, true, normalize=True).flatten().tolist()
    per_image = [row["lpips"] for row in metrics.score(noisy, true, lpips=path).per_image]
    assert per_image == pytest.approx(expected, rel=1e-5)

    grey = true.mean(dim=1, keepdim=True)  # one channel, repeated to three for AlexNet
    assert metrics.score((grey + 0.1 * noise[:, :1]).clamp(0, 1), grey, lpips=path)["lpips"] > 0
    small = metrics.score(true[..., :30, :30], true[..., :30, :30], lpips=path)
    assert "31x31" in small.missing["lpips"]


def test_lpips_auto_reads_the_torch_hub_cache(empty_torch_home):
    checkpoints = empty_torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    save_alexnet_features(checkpoints / lpips_backbone.ALEXNET_FILE, seed=13)
    true = random_images(2, seed=14)
    noisy = (true + 0.1 * torch.randn(true.shape, generator=torch.Generator().manual_seed(15))).clamp(0, 1)
    scores = metrics.score(noisy, true)
    assert not scores.missing
    assert scores["lpips"] > 0 and scores["best_lpips"] <= scores["lpips"]


def test_building_lpips_leaves_the_global_random_stream_alone(tmp_path):
    path = tmp_path / "alexnet_features.pth"
    save_alexnet_features(path, seed=16)
    torch.manual_seed(17)
    expected = torch.rand(3)
    torch.manual_seed(17)
    lpips_backbone.lpips_model(path, torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)


def test_fetch_backbone_offline_says_why_and_what_to_do(empty_torch_home, unreachable_network):
    target = empty_torch_home / "hub" / "checkpoints" / lpips_backbone.ALEXNET_FILE
    with pytest.raises(lpips_backbone.BackboneFetchError) as caught:
        lpips_backbone.fetch_backbone(progress=False)
    message = str(caught.value)
    assert "offline" in message and "Connection refused" in message
    assert lpips_backbone.ALEXNET_URL in message and str(target) in message
    assert not target.exists()


def test_fetch_backbone_keeps_a_cached_file_and_lpips_loads_it(empty_torch_home, unreachable_network):
    target = lpips_backbone.default_backbone_path()
    target.parent.mkdir(parents=True)
    state = save_alexnet_features(target, seed=18)

    assert lpips_backbone.fetch_backbone(progress=False) == target  # no network needed: it is cached
    loaded = lpips_backbone.lpips_model(target, torch.device("cpu")).net.state_dict()
    assert torch.equal(loaded["slice1.0.weight"], state["features.0.weight"])

    target.write_bytes(b"half a download")
    with pytest.raises(lpips_backbone.BackboneFetchError, match="unusable; delete it and fetch again"):
        lpips_backbone.fetch_backbone(progress=False)
