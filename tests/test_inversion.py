"""attacks.reconstruct: shapes, determinism, real reconstructions, unrolling, threat-model options, errors."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import ValidationError

import attacks
from attacks.replica import replica
from attacks.targets import matched_signal
from attacks.unroll import client_batches, unrolled_update
from fedsyn.models import build_model

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _cifar_root() -> Path | None:
    value = os.environ.get("FEDSYN_CIFAR10_DIR")
    if value and (Path(value) / "test").is_dir():
        return Path(value)
    return None


@pytest.fixture(scope="module")
def real_batch() -> tuple[torch.Tensor, torch.Tensor, tuple[float, ...], tuple[float, ...]]:
    """Four real images in [0, 1] of distinct classes: CIFAR-10 test JPEGs when present, else photo patches."""
    root = _cifar_root()
    if root is not None:
        classes = sorted(p.name for p in (root / "test").iterdir() if p.is_dir())[:4]
        images = []
        for name in classes:
            path = sorted((root / "test" / name).glob("*.jpg"))[0]
            array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
            images.append(torch.from_numpy(array).permute(2, 0, 1))
        return torch.stack(images), torch.arange(4), CIFAR_MEAN, CIFAR_STD
    from fedsyn.data import load_dataset

    data = load_dataset("photos", split="test")
    first = [int((data.labels == c).nonzero()[0]) for c in range(4)]
    return data.unit(first), data.labels[first], data.mean, data.std


def _normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    return (images - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def _gradient(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, mean, std) -> list[torch.Tensor]:
    loss = F.cross_entropy(model(_normalise(images, mean, std)), labels)
    return [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((10 * torch.log10(1 / ((a - b) ** 2).flatten(1).mean(1))).mean())


def _lenet(classes: int = 10) -> torch.nn.Module:
    return build_model("lenet", classes, seed=0).eval()


def test_shapes_range_labels_and_stats(real_batch):
    images, labels, mean, std = real_batch
    model = _lenet()
    target = _gradient(model, images[:2], labels[:2], mean, std)
    cfg = attacks.AttackConfig(iterations=5, tv=1e-4)
    rec = attacks.reconstruct(model, target, num_images=2, mean=mean, std=std, config=cfg)
    assert rec.images.shape == (2, 3, 32, 32) and rec.images.dtype == torch.float32
    assert float(rec.images.min()) >= 0 and float(rec.images.max()) <= 1
    assert rec.labels.dtype == torch.int64 and rec.labels.shape == (2,)
    assert rec.stats["iterations_run"] == [5] and len(rec.stats["loss_curve"]) == 5
    assert rec.stats["labels"] == "recovered (auto)" and rec.stats["bn_mode"] == "eval"
    assert rec.stats["ms_per_iteration"] > 0 and rec.stats["target"] == "gradient"


def test_same_seed_same_images_other_seed_other_images(real_batch):
    images, labels, mean, std = real_batch
    model = _lenet()
    target = _gradient(model, images[:1], labels[:1], mean, std)

    def run(seed: int) -> torch.Tensor:
        cfg = attacks.AttackConfig(iterations=10, seed=seed, tv=1e-4)
        return attacks.reconstruct(model, target, num_images=1, labels=labels[:1], mean=mean, std=std, config=cfg).images

    first = run(0)
    assert torch.equal(first, run(0))
    assert not torch.equal(first, run(1))


def test_lenet_gradient_of_one_image_is_inverted(real_batch):
    images, labels, mean, std = real_batch
    model = _lenet()
    target = _gradient(model, images[:1], labels[:1], mean, std)
    cfg = attacks.AttackConfig(iterations=300, tv=1e-4)
    rec = attacks.reconstruct(model, target, num_images=1, labels=labels[:1], mean=mean, std=std, config=cfg)
    random = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert _psnr(rec.images, images[:1]) > _psnr(random, images[:1]) + 5


def test_untrained_convnet_one_real_image_above_20_db(real_batch):
    """The issue's spec: an untrained ConvNet's gradient of one real image gives more than 20 dB."""
    images, labels, mean, std = real_batch
    model = build_model("convnet", 10, seed=0, width=32).eval()
    target = _gradient(model, images[:1], labels[:1], mean, std)
    # About 37 ms per iteration on an idle 2-core CPU; CIFAR-10's first airplane gives 23.0 dB here
    # (width 16 stays below 20 dB at this budget: 18.9).
    cfg = attacks.AttackConfig(iterations=1000, tv=1e-4)
    rec = attacks.reconstruct(model, target, num_images=1, labels=labels[:1], mean=mean, std=std, config=cfg)
    assert _psnr(rec.images, images[:1]) > 20


def _client_update(model, images, labels, update: attacks.LocalUpdate, factors=None) -> list[torch.Tensor]:
    """The client's own local training, as fedsyn's client runs it: torch.optim.SGD on cycling batches."""
    local = copy.deepcopy(model)
    optimiser = torch.optim.SGD(local.parameters(), lr=update.lr)
    for positions in client_batches(images.shape[0], update):
        optimiser.zero_grad()
        F.cross_entropy(local(images[positions]), labels[positions]).backward()
        if factors is not None:
            for param, factor in zip(local.parameters(), factors):
                if factor is not None:
                    param.grad.mul_(factor)
        optimiser.step()
    return [(a - b).detach() for a, b in zip(local.parameters(), model.parameters())]


def test_client_batches_cycle_through_the_images():
    update = attacks.LocalUpdate(steps=3, lr=0.1, batch_size=2)
    assert [b.tolist() for b in client_batches(3, update)] == [[0, 1], [2, 0], [1, 2]]
    assert [b.tolist() for b in client_batches(2, attacks.LocalUpdate(steps=2, lr=0.1, batch_size=8))] == [[0, 1]] * 2


@pytest.mark.parametrize("with_factors", [False, True])
def test_unrolled_update_on_true_images_equals_the_client_update(real_batch, with_factors):
    images, labels, mean, std = real_batch
    model = build_model("convnet", 10, seed=0, width=8).eval()
    x = _normalise(images[:3], mean, std)
    update = attacks.LocalUpdate(steps=3, lr=0.05, batch_size=2)
    factors = None
    if with_factors:
        gen = torch.Generator().manual_seed(1)
        factors = [torch.empty_like(p).uniform_(0.75, 1.25, generator=gen) if p.ndim > 1 else None for p in model.parameters()]
    real = _client_update(model, x, labels[:3], update, factors)
    params = {n: p.detach() for n, p in model.named_parameters()}
    named_factors = None
    if factors is not None:
        named_factors = {n: f for (n, _), f in zip(model.named_parameters(), factors) if f is not None}
    replayed = unrolled_update(model, params, x, labels[:3], update, named_factors)
    for (name, _), value in zip(model.named_parameters(), real):
        torch.testing.assert_close(replayed[name], value, rtol=1e-5, atol=1e-7, msg=name)


def test_attack_on_a_two_step_update_beats_random(real_batch):
    images, labels, mean, std = real_batch
    model = _lenet()
    update = attacks.LocalUpdate(steps=2, lr=0.1, batch_size=1)
    target = _client_update(model, _normalise(images[:2], mean, std), labels[:2], update)
    cfg = attacks.AttackConfig(iterations=200, tv=1e-4)
    rec = attacks.reconstruct(model, target, num_images=2, labels=labels[:2], mean=mean, std=std, config=cfg, update=update)
    assert rec.stats["target"] == "update (2 steps, unrolled)"
    random = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert _psnr(rec.images, images[:2]) > _psnr(random, images[:2]) + 5


def test_one_step_update_is_a_scaled_gradient(real_batch):
    images, labels, mean, std = real_batch
    model = _lenet()
    gradient = _gradient(model, images[:1], labels[:1], mean, std)
    update = attacks.LocalUpdate(steps=1, lr=0.5, batch_size=1)
    sent = [-0.5 * g for g in gradient]
    for got, want in zip(matched_signal(sent, update, None, "eval"), gradient):
        torch.testing.assert_close(got, want)
    rec = attacks.reconstruct(model, sent, num_images=1, mean=mean, std=std, update=update,
                              config=attacks.AttackConfig(iterations=2))
    assert rec.labels.tolist() == labels[:1].tolist()


def test_informed_attacker_divides_out_the_fl_factors(real_batch):
    images, labels, mean, std = real_batch
    model = _lenet()
    gradient = _gradient(model, images[:1], labels[:1], mean, std)
    gen = torch.Generator().manual_seed(0)
    factors = [torch.empty_like(g).uniform_(0.5, 1.5, generator=gen) if g.ndim > 1 else None for g in gradient]
    scaled = [g if f is None else g * f for g, f in zip(gradient, factors)]
    informed = matched_signal(scaled, None, factors, "eval")
    for got, want in zip(informed, gradient):
        torch.testing.assert_close(got, want)
    oblivious = matched_signal(scaled, None, None, "eval")
    assert not torch.allclose(oblivious[0], gradient[0])
    rec = attacks.reconstruct(model, scaled, num_images=1, labels=labels[:1], mean=mean, std=std,
                              fl_factors=factors, config=attacks.AttackConfig(iterations=2))
    assert rec.stats["informed"] is True


def test_batched_restarts_match_sequential_restarts(real_batch):
    images, labels, mean, std = real_batch
    model = _lenet()
    target = _gradient(model, images[:1], labels[:1], mean, std)
    results = {}
    for mode in ("batched", "sequential"):
        cfg = attacks.AttackConfig(iterations=1, restarts=3, restart_mode=mode, tv=1e-4)
        results[mode] = attacks.reconstruct(model, target, num_images=1, labels=labels[:1], mean=mean, std=std, config=cfg)
    assert results["batched"].stats["restart_mode"] == "batched"
    assert results["sequential"].stats["restart_mode"] == "sequential"
    batched, sequential = results["batched"].stats, results["sequential"].stats
    # After one iteration each restart's best iterate is its start: same draws, same objective.
    np.testing.assert_allclose(batched["restart_losses"], sequential["restart_losses"], rtol=0, atol=1e-6)
    assert torch.allclose(results["batched"].images, results["sequential"].images)
    assert batched["best_restart"] == sequential["best_restart"]
    assert batched["matching_loss"] == min(batched["restart_losses"])


def test_batchnorm_train_mode_with_batched_restarts(real_batch):
    images, labels, mean, std = real_batch
    model = build_model("resnet20", 10, seed=0).train()
    target = _gradient(model, images[:2], labels[:2], mean, std)
    cfg = attacks.AttackConfig(iterations=4, restarts=2, bn_mode="train", tv=1e-2)
    rec = attacks.reconstruct(model, target, num_images=2, labels=labels[:2], mean=mean, std=std, config=cfg)
    assert rec.stats["bn_mode"] == "train" and rec.stats["finite"]
    assert model.bn1.running_mean is not None, "the caller's model must not be modified"


@pytest.mark.parametrize("objective", ["cosine_layerwise", "l2"])
def test_other_objectives_lower_their_loss(real_batch, objective):
    images, labels, mean, std = real_batch
    model = _lenet()
    target = _gradient(model, images[:1], labels[:1], mean, std)
    cfg = attacks.AttackConfig(iterations=60, objective=objective, tv=0)
    rec = attacks.reconstruct(model, target, num_images=1, labels=labels[:1], mean=mean, std=std, config=cfg)
    curve = rec.stats["loss_curve"]
    assert min(curve[-10:]) < 0.5 * curve[0]


def test_progress_line_goes_to_stderr(real_batch, capsys):
    images, labels, mean, std = real_batch
    model = _lenet()
    target = _gradient(model, images[:1], labels[:1], mean, std)
    attacks.reconstruct(model, target, num_images=1, labels=labels[:1], mean=mean, std=std,
                        config=attacks.AttackConfig(iterations=3, progress=True))
    err = capsys.readouterr().err
    assert "iteration 3/3" in err and "eta" in err


def test_default_tv_per_architecture():
    assert attacks.AttackConfig(architecture="resnet20").tv_weight == attacks.DEFAULT_TV["resnet20"]
    assert attacks.AttackConfig(architecture="resnet20", tv=0.5).tv_weight == 0.5
    assert attacks.default_tv("no-such-model") == attacks.default_tv(None)


def test_bad_inputs_give_clear_errors(real_batch):
    images, labels, mean, std = real_batch
    model = _lenet()
    target = _gradient(model, images[:1], labels[:1], mean, std)
    names = [n for n, _ in model.named_parameters()]

    def run(t, **kw):
        kw.setdefault("num_images", 1)
        return attacks.reconstruct(model, t, mean=mean, std=std, config=attacks.AttackConfig(iterations=1), **kw)

    with pytest.raises(ValueError, match=f"first missing: '{names[-1]}'"):
        run(target[:-1])
    with pytest.raises(ValueError, match=f"parameter '{names[0]}' has shape"):
        run([target[0].flatten(), *target[1:]])
    with pytest.raises(ValueError, match=f"parameter '{names[2]}' contains NaN"):
        run([*target[:2], torch.full_like(target[2], float("nan")), *target[3:]])
    with pytest.raises(ValueError, match="num_images must be an integer >= 1"):
        run(target, num_images=0)
    with pytest.raises(ValueError, match="labels must be 1 integers"):
        run(target, labels=[1, 2])
    with pytest.raises(ValueError, match="image_shape"):
        run(target, image_shape=(3, 16, 16))
    with pytest.raises(ValueError, match="all zeros"):
        run([torch.zeros_like(t) for t in target])
    with pytest.raises(ValidationError, match="objective"):
        attacks.AttackConfig(objective="cosine-similarity")
    with pytest.raises(ValidationError, match="iterations"):
        attacks.AttackConfig(iterations=0)
    with pytest.raises(ValidationError, match="extra"):
        attacks.AttackConfig(step_size=0.1)


def test_cosine_over_parts_matches_the_flat_cosine_and_its_gradient():
    """Matcher.parts (no concatenation, a hand-written backward pass) gives the flat cosine's value and
    the same gradient with respect to every part."""
    from attacks.objectives import Matcher, flatten

    generator = torch.Generator().manual_seed(3)
    shapes = [(7, 5), (5,), (3, 2, 4)]
    target = [torch.randn(s, generator=generator) for s in shapes]
    signals = [(t + 0.3 * torch.randn(t.shape, generator=generator)).requires_grad_(True) for t in target]
    matcher = Matcher("cosine", target)
    flat_value = matcher(flatten(signals))
    flat_grads = torch.autograd.grad(flat_value, signals)
    parts_value = matcher.parts(signals)
    parts_grads = torch.autograd.grad(parts_value, signals)
    torch.testing.assert_close(parts_value, flat_value, rtol=1e-5, atol=1e-7)
    for got, want in zip(parts_grads, flat_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    assert float(parts_value) > 0.01  # the signals differ from the target: a real distance was compared


def test_mask_limits_the_matching_to_kept_entries(real_batch):
    images, labels, mean, std = real_batch
    model = _lenet()
    target = _gradient(model, images[:1], labels[:1], mean, std)
    from attacks.objectives import Matcher, flatten

    keep = [torch.rand(t.shape, generator=torch.Generator().manual_seed(i)) > 0.5 for i, t in enumerate(target)]
    signal = flatten(target) + 0.01 * torch.randn(flatten(target).shape, generator=torch.Generator().manual_seed(9))
    masked = Matcher("cosine", target, keep)(signal)
    kept = flatten(keep)
    direct = 1 - torch.nn.functional.cosine_similarity(signal[kept], flatten(target)[kept], dim=0)
    torch.testing.assert_close(masked, direct, rtol=1e-4, atol=1e-6)
    assert torch.equal(Matcher("cosine", target, [None] * len(target))(signal), Matcher("cosine", target)(signal))
    rec = attacks.reconstruct(model, target, num_images=1, labels=labels[:1], mean=mean, std=std, mask=keep,
                              config=attacks.AttackConfig(iterations=2))
    assert rec.stats["masked"] is True
    with pytest.raises(ValueError, match="mask for parameter"):
        attacks.reconstruct(model, target, num_images=1, mean=mean, std=std, mask=[k.flatten() for k in keep],
                            config=attacks.AttackConfig(iterations=1))


def test_one_step_aggregate_is_unrolled_per_client_where_batchnorm_couples_a_share():
    """A SecAgg+ mean of two clients' single steps: in eval mode it is one gradient of all the images;
    with batch statistics each client normalised its own share, so the attack replays the clients."""
    model = build_model("convnet", 10, seed=0, width=4).train()
    gen = torch.Generator().manual_seed(0)
    x, labels = torch.randn(4, 3, 32, 32, generator=gen), torch.tensor([0, 1, 2, 3])
    update = attacks.LocalUpdate(steps=1, lr=0.1, batch_size=2, clients=2)
    shares = []
    for share in (slice(0, 2), slice(2, 4)):
        local = copy.deepcopy(model)
        grads = torch.autograd.grad(F.cross_entropy(local(x[share]), labels[share]), list(local.parameters()))
        shares.append([-0.1 * g for g in grads])
    aggregate = [(a + b) / 2 for a, b in zip(*shares)]
    train_cfg = attacks.AttackConfig(iterations=2, bn_mode="train")
    rec = attacks.reconstruct(model, aggregate, num_images=4, labels=labels, mean=(0.5,) * 3, std=(0.25,) * 3,
                              config=train_cfg, update=update)
    assert rec.stats["target"] == "update (1 step, mean of 2 clients, unrolled)"
    assert not update.scaled_gradient("train") and update.scaled_gradient("eval")
    net = replica(model, train_cfg, torch.device("cpu"))  # BatchNorm on batch statistics, no running ones
    replayed = unrolled_update(net, {n: p.detach() for n, p in net.named_parameters()}, x, labels, update)
    for (name, _), value in zip(net.named_parameters(), aggregate):
        torch.testing.assert_close(replayed[name], value, rtol=1e-4, atol=1e-6, msg=name)
    whole = torch.autograd.grad(F.cross_entropy(model(x), labels), list(model.parameters()))
    assert not torch.allclose(-0.1 * whole[0], aggregate[0], rtol=1e-3, atol=1e-6)
    eval_rec = attacks.reconstruct(model.eval(), aggregate, num_images=4, labels=labels, mean=(0.5,) * 3,
                                   std=(0.25,) * 3, config=attacks.AttackConfig(iterations=2), update=update)
    assert eval_rec.stats["target"] == "update (1 step, mean of 2 clients)"


@pytest.mark.parametrize(("name", "images", "override", "expected"), [
    ("resnet20", 1, None, True), ("resnet20", 2, None, False), ("convnet", 1, None, False), ("convnet", 1, True, True),
])
def test_channels_last_follows_the_measured_architecture_table(name, images, override, expected):
    model = build_model(name, 10, seed=0, **({"width": 4} if name == "convnet" else {})).eval()
    x, labels = torch.rand(images, 3, 32, 32), torch.arange(images)
    target = torch.autograd.grad(F.cross_entropy(model(x), labels), list(model.parameters()))
    cfg = attacks.AttackConfig(iterations=1, architecture=name, channels_last=override, device="cpu")
    rec = attacks.reconstruct(model, list(target), num_images=images, labels=labels, mean=(0.5,) * 3,
                              std=(0.25,) * 3, config=cfg)
    assert rec.stats["channels_last"] is expected


def test_compiled_objective_matches_the_eager_one(real_batch, monkeypatch):
    """compile=True traces the functional objective into one inductor graph; it must compute the same
    objective (vmap over restarts and an unrolled two-step update, the widest path, in one test). The
    default compile="auto" leaves an attack this small eager and compiles it once the threshold is low."""
    images, labels, mean, std = real_batch
    model = _lenet()
    update = attacks.LocalUpdate(steps=2, lr=0.1, batch_size=1)
    target = unrolled_update(replica(model, attacks.AttackConfig(), torch.device("cpu")),
                             {n: p.detach() for n, p in model.named_parameters()},
                             _normalise(images[:2], mean, std), labels[:2], update, {})
    target = [target[n].detach() for n, _ in model.named_parameters()]
    stats = {}
    for compiled, threshold in ((False, attacks.flops.AUTO_COMPILE_TFLOP), (True, 0.0)):
        monkeypatch.setattr(attacks.flops, "AUTO_COMPILE_TFLOP", threshold)
        cfg = attacks.AttackConfig(iterations=3, restarts=2, tv=1e-4)
        rec = attacks.reconstruct(model, target, num_images=2, labels=labels[:2], mean=mean, std=std,
                                  update=update, config=cfg)
        stats[compiled] = rec.stats
    assert stats[True]["compiled"] is True and stats[True]["compile_seconds"] > 0
    assert stats[True]["compile_rule"].startswith("auto:") and ">= 0" in stats[True]["compile_rule"]
    assert stats[True]["channels_last"] is True  # compiled CPU attacks run channels-last
    assert stats[False]["compiled"] is False and stats[False]["compile_seconds"] == 0
    assert "projected TFLOP <" in stats[False]["compile_rule"]
    # 1 - cos near 0 in float32: the two graphs sum in different orders, so compare to a few float32 ulps of 1.
    np.testing.assert_allclose(stats[True]["restart_losses"], stats[False]["restart_losses"], rtol=0, atol=2e-6)
    np.testing.assert_allclose(stats[True]["loss_curve"], stats[False]["loss_curve"], rtol=1e-4, atol=2e-6)


def test_evaluation_flops_grow_with_the_batch_and_exceed_the_forward_pass():
    """The FLOP count behind compile="auto": linear in the number of images for an MLP, and the double
    backward pass costs several forward passes."""
    net = replica(build_model("mlp", 10, seed=0, width=64), attacks.AttackConfig(), torch.device("cpu"))
    one, four = (attacks.flops.evaluation_flops(net, (3, 32, 32), batch) for batch in (1, 4))
    forward = 2 * (3072 * 64 + 64 * 64 + 64 * 10)
    assert four == 4 * one
    assert one >= 3 * forward


def test_dlg_recovers_a_lenet_image_where_the_cosine_only_smooths(real_batch):
    """The suite's `dlg` method (Euclidean matching, no TV, no loss floor) against Inverting Gradients on
    LeNet, whose cosine is nearly flat in the image: same budget, same start, DLG far ahead."""
    images, labels, mean, std = real_batch
    model = _lenet()
    target = _gradient(model, images[:1], labels[:1], mean, std)
    inputs = dict(model=model, target=target, num_images=1, labels=labels[:1], mean=mean, std=std,
                  fl_factors=None, update=None, mask=None, image_shape=None, bn_stats=None)
    config = attacks.AttackConfig(iterations=400, architecture="lenet")
    psnr, stats = {}, {}
    for method in ("inverting-gradients", "dlg"):
        rec = attacks.run_method(method, attacks.AttackInputs(config=config, **inputs))
        psnr[method], stats[method] = _psnr(rec.images, images[:1]), rec.stats
    assert stats["dlg"]["objective"] == "l2" and stats["dlg"]["tv"] == 0.0
    assert stats["inverting-gradients"]["objective"] == "cosine"
    assert psnr["dlg"] > 22.0
    assert psnr["dlg"] > psnr["inverting-gradients"] + 5.0


def test_bf16_precision_evaluates_the_model_in_bfloat16_and_still_inverts(real_batch):
    """precision="bf16": the model's convolutions run in bfloat16 on both objective paths (the losses
    move off the fp32 ones by more than float32 rounding, but only a little) and the attack still
    inverts an untrained ConvNet's gradient."""
    images, labels, mean, std = real_batch
    model = build_model("convnet", 10, seed=0, width=16).eval()
    target = _gradient(model, images[:1], labels[:1], mean, std)

    def attack(precision: str, iterations: int, restarts: int) -> attacks.Reconstruction:
        cfg = attacks.AttackConfig(iterations=iterations, restarts=restarts, tv=1e-4, precision=precision)
        return attacks.reconstruct(model, target, num_images=1, labels=labels[:1], mean=mean, std=std, config=cfg)

    for restarts in (1, 2):  # the module-autograd path, then the batched torch.func path
        fp32, bf16 = (attack(precision, 3, restarts).stats for precision in ("fp32", "bf16"))
        assert bf16["precision"] == "bf16" and fp32["precision"] == "fp32"
        first32, first16 = np.array(fp32["restart_losses"]), np.array(bf16["restart_losses"])
        assert np.all(np.abs(first16 - first32) > 1e-5) and np.allclose(first16, first32, rtol=0.2)
    rec = attack("bf16", 300, 1)
    random = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert _psnr(rec.images, images[:1]) > _psnr(random, images[:1]) + 8
