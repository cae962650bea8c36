"""Client-side defenses: configuration, update transforms, privacy accounting, DP-SGD with Opacus."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from fedsyn.biomod import BiomodConfig, attach, convert
from fedsyn.defenses import (
    DPSGD,
    ClipNoise,
    DefenseSet,
    Prune,
    Quantize,
    SecAgg,
    analytic_gaussian_epsilon,
    apply_defenses,
    dpsgd_epsilon,
    local_dp_epsilon,
    rdp_epsilon,
)
from fedsyn.defenses.dpsgd import DPIncompatibleModelError, dp_compatible, dp_train, prepare_model, private_training
from fedsyn.models import build_model


def update_of(*shapes: tuple[int, ...], seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for shape in shapes]


def one(step) -> DefenseSet:  # type: ignore[no-untyped-def]
    return DefenseSet(name=step.type, steps=(step,))


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


# --- configuration ---------------------------------------------------------------------------


def test_sets_are_ordered_and_types_unique() -> None:
    dp, prune = DPSGD(type="dpsgd"), Prune(type="prune")
    secagg = SecAgg(type="secagg")
    DefenseSet(name="ok", steps=(dp, prune, secagg))
    with pytest.raises(ValidationError, match="'dpsgd' acts during training"):
        DefenseSet(name="late", steps=(prune, dp))
    with pytest.raises(ValidationError, match="'secagg' .* must be the last"):
        DefenseSet(name="early", steps=(secagg, prune))
    with pytest.raises(ValidationError, match=r"repeated: \['prune'\]"):
        DefenseSet(name="twice", steps=(prune, Prune(type="prune", fraction=0.5)))


@pytest.mark.parametrize(
    "steps",
    [
        [{"type": "quantize", "mode": "sign"}],
        [{"type": "quantize", "mode": "uniform", "bits": 4}],
        [{"type": "dpsgd"}, {"type": "clip_noise"}, {"type": "prune", "fraction": 0.9}, {"type": "secagg"}],
    ],
)
def test_a_dumped_defense_set_validates_again(steps: list[dict]) -> None:
    """Cells travel to their processes as JSON, defaults written out; the 'sign' cell once failed here."""
    original = DefenseSet.model_validate({"name": "d", "steps": steps})
    again = DefenseSet.model_validate_json(original.model_dump_json())
    assert again == original


def test_quantize_defaults_resolve_per_mode() -> None:
    assert Quantize(type="quantize", mode="sign").levels_bits == 1
    assert Quantize(type="quantize").levels_bits == 8
    assert Quantize(type="quantize").rounding_mode == "stochastic"
    with pytest.raises(ValidationError, match="'rounding' applies to mode 'uniform' only"):
        Quantize(type="quantize", mode="sign", rounding="nearest")


def test_field_errors_name_the_problem() -> None:
    with pytest.raises(ValidationError, match="mode 'sign' is 1 bit"):
        Quantize(type="quantize", mode="sign", bits=4)
    with pytest.raises(ValidationError, match="reconstruction_threshold .* less than num_shares"):
        SecAgg(type="secagg", num_shares=3, reconstruction_threshold=3)
    with pytest.raises(ValidationError, match="num_shares"):
        SecAgg(type="secagg", num_shares=2)
    with pytest.raises(ValidationError, match="adjacency"):
        ClipNoise(type="clip_noise", adjacency="swap")


# --- clipping and noise -----------------------------------------------------------------------


def test_clip_scales_a_large_update_to_the_clip_norm_and_leaves_a_small_one() -> None:
    update = update_of((30, 20), (20,))
    norm = flat(update).norm().item()
    big = apply_defenses(one(ClipNoise(type="clip_noise", clip=norm / 4)), update, seed=1)
    assert flat(big.tensors).norm().item() == pytest.approx(norm / 4, rel=1e-5)
    torch.testing.assert_close(flat(big.tensors) * 4, flat(update))  # same direction
    assert big.metrics["clip_noise.clipped"] == 1.0 and big.metrics["clip_noise.norm"] == pytest.approx(norm)
    small = apply_defenses(one(ClipNoise(type="clip_noise", clip=norm * 2)), update, seed=1)
    torch.testing.assert_close(flat(small.tensors), flat(update))
    assert small.metrics["clip_noise.clipped"] == 0.0


def test_noise_has_the_configured_std_and_follows_the_seed() -> None:
    zeros = [torch.zeros(400, 500)]
    step = ClipNoise(type="clip_noise", clip=0.5, noise_multiplier=1.2)
    noisy = apply_defenses(one(step), zeros, seed=7).tensors[0]
    assert noisy.std().item() == pytest.approx(0.6, rel=0.01)
    assert abs(noisy.mean().item()) < 0.01
    assert torch.equal(noisy, apply_defenses(one(step), zeros, seed=7).tensors[0])
    assert not torch.equal(noisy, apply_defenses(one(step), zeros, seed=8).tensors[0])
    assert torch.equal(zeros[0], torch.zeros(400, 500))  # the input is left alone


# --- pruning ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_prune_keeps_exactly_the_largest_magnitudes_per_tensor(fraction: float) -> None:
    update = update_of((40, 30), (300,), seed=2)
    pruned = apply_defenses(one(Prune(type="prune", fraction=fraction)), update, seed=0).tensors
    for before, after in zip(update, pruned):
        n = before.numel()
        keep = n - math.floor(fraction * n)
        kept = after != 0
        assert int(kept.sum()) == keep
        assert torch.equal(after[kept], before[kept])  # kept entries are unchanged
        threshold = before.abs().flatten().sort(descending=True).values[keep - 1]
        assert bool((before.abs()[kept] >= threshold).all()) and bool((before.abs()[~kept] <= threshold).all())


def test_global_prune_ranks_the_whole_update() -> None:
    large, small = update_of((100,), (100,), seed=8)
    update = [large.sign() * (1 + large.abs()), small.clamp(-0.5, 0.5)]  # every entry of the second is smaller
    pruned = apply_defenses(one(Prune(type="prune", fraction=0.5, scope="global")), update, seed=0)
    assert int((pruned.tensors[0] != 0).sum()) == 100 and int((pruned.tensors[1] != 0).sum()) == 0
    assert pruned.metrics["prune.kept"] == 0.5


# --- quantisation -----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_uniform_quantisation_uses_2_to_the_bits_levels_on_min_max(bits: int, rounding: str) -> None:
    tensor = update_of((50, 40), seed=3)[0]
    step = Quantize(type="quantize", bits=bits, rounding=rounding)
    quantised = apply_defenses(one(step), [tensor], seed=5).tensors[0]
    low, high = tensor.min(), tensor.max()
    spacing = (high - low) / (2**bits - 1)
    index = (quantised - low) / spacing
    torch.testing.assert_close(index, index.round(), atol=1e-4, rtol=0)
    assert len(torch.unique(index.round())) <= 2**bits
    error = (quantised - tensor).abs().max()
    assert error <= (spacing / 2 if rounding == "nearest" else spacing) + 1e-6


def test_stochastic_rounding_is_unbiased() -> None:
    tensor = torch.full((100_000,), 0.3)
    tensor[0], tensor[1] = 0.0, 1.0  # levels 0 and 1 for one bit
    quantised = apply_defenses(one(Quantize(type="quantize", bits=1)), [tensor], seed=11).tensors[0]
    assert set(torch.unique(quantised).tolist()) == {0.0, 1.0}
    assert quantised[2:].mean().item() == pytest.approx(0.3, abs=0.005)


def test_sign_quantisation_keeps_signs_and_the_mean_magnitude() -> None:
    tensor = update_of((64, 8), seed=4)[0]
    tensor[0, 0] = 0.0
    quantised = apply_defenses(one(Quantize(type="quantize", mode="sign")), [tensor], seed=0).tensors[0]
    scale = tensor.abs().mean()
    assert set(torch.unique(quantised).tolist()) <= {-scale.item(), 0.0, scale.item()}
    assert torch.equal(torch.sign(quantised), torch.sign(tensor))


# --- accounting -------------------------------------------------------------------------------


def test_analytic_gaussian_matches_balle_and_wang() -> None:
    # Balle & Wang (2018): eps = 1, delta = 1e-5 needs sigma = 3.73 (the classical bound needs 4.84).
    assert analytic_gaussian_epsilon(3.7306, 1e-5) == pytest.approx(1.0, abs=1e-3)
    # the tight value lies just under the PRV accountant's upper estimate for the same release
    from opacus.accountants import PRVAccountant

    accountant = PRVAccountant()
    accountant.step(noise_multiplier=2.0, sample_rate=1.0)
    with pytest.warns(RuntimeWarning):
        prv = accountant.get_epsilon(delta=1e-5)
    exact = analytic_gaussian_epsilon(2.0, 1e-5)
    assert exact <= prv <= exact + 0.05


def test_epsilon_falls_with_noise_and_grows_with_rounds() -> None:
    values = [analytic_gaussian_epsilon(z, 1e-5) for z in (0.5, 1.0, 2.0, 4.0, 8.0)]
    assert values == sorted(values, reverse=True) and values[-1] > 0
    assert analytic_gaussian_epsilon(0.0, 1e-5) == math.inf
    rounds = [local_dp_epsilon(2.0, 1e-5, rounds=r) for r in (1, 2, 5, 20)]
    assert rounds == sorted(rounds)
    # RDP for one round is an upper bound on the exact value
    assert rdp_epsilon(1.0, 1e-5) > analytic_gaussian_epsilon(1.0, 1e-5)
    # replace adjacency doubles the sensitivity: same as add/remove with half the noise
    assert local_dp_epsilon(2.0, 1e-5) == pytest.approx(local_dp_epsilon(1.0, 1e-5, adjacency="add_remove"))


def test_dpsgd_epsilon_is_opacus_rdp_accountant() -> None:
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    for _ in range(300):
        accountant.step(noise_multiplier=1.1, sample_rate=0.004)
    ours = dpsgd_epsilon(1.1, 1e-5, sample_rate=0.004, steps=300)
    assert ours == pytest.approx(accountant.get_epsilon(delta=1e-5), rel=0.02)
    assert dpsgd_epsilon(2.0, 1e-5, sample_rate=0.004, steps=300) < ours


# --- composition ------------------------------------------------------------------------------


def test_defenses_compose_in_order_and_report_metrics() -> None:
    update = update_of((20, 10), (10,), seed=6)
    clip = ClipNoise(type="clip_noise", clip=1.0, noise_multiplier=0.5)
    prune = Prune(type="prune", fraction=0.9)
    prune_then_noise = apply_defenses(DefenseSet(name="a", steps=(prune, clip)), update, seed=3)
    noise_then_prune = apply_defenses(DefenseSet(name="b", steps=(clip, prune)), update, seed=3)
    assert float((flat(prune_then_noise.tensors) == 0).float().mean()) == 0.0  # noise fills the zeros
    assert float((flat(noise_then_prune.tensors) == 0).float().mean()) > 0.85
    assert set(noise_then_prune.metrics) == {
        "clip_noise.norm", "clip_noise.clipped", "clip_noise.epsilon", "clip_noise.delta", "prune.kept"
    }
    assert noise_then_prune.metrics["clip_noise.epsilon"] == pytest.approx(local_dp_epsilon(0.5, 1e-5))


def test_training_and_transport_defenses_leave_the_update_alone() -> None:
    update = update_of((5, 5), seed=7) + [torch.tensor(3)]
    defended = apply_defenses(DefenseSet(name="x", steps=(DPSGD(type="dpsgd"), SecAgg(type="secagg"))), update, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(defended.tensors, update)) and defended.metrics == {}


def test_integer_tensors_pass_and_nan_is_refused() -> None:
    counter = torch.tensor(12)
    defended = apply_defenses(one(ClipNoise(type="clip_noise", noise_multiplier=1.0)), [torch.ones(3), counter], seed=0)
    assert torch.equal(defended.tensors[1], counter)
    with pytest.raises(ValueError, match=r"update\[1\].*NaN"):
        apply_defenses(one(Prune(type="prune")), [torch.ones(3), torch.tensor([1.0, math.nan])], seed=0)


# --- DP-SGD with Opacus -----------------------------------------------------------------------


def tiny_convnet() -> nn.Module:
    return build_model("convnet", 10, (3, 12, 12), width=4, seed=0)


def test_batchnorm_is_replaced_for_dpsgd_and_refused_otherwise() -> None:
    plain = tiny_convnet()
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.1)
    with pytest.raises(DPIncompatibleModelError, match="BatchNorm becomes GroupNorm"):
        with private_training(plain, optimizer, DPSGD(type="dpsgd"), batch_size=4, seed=0):
            pass
    fixed = prepare_model(plain, DefenseSet(name="dp", steps=(DPSGD(type="dpsgd"),)))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fixed.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in fixed.modules()) == 8
    assert prepare_model(plain, DefenseSet()) is plain
    torch.testing.assert_close(dp_compatible(plain)[0][0].weight, plain[0][0].weight)


@pytest.mark.parametrize(
    "combo", [BiomodConfig(), BiomodConfig(fl=True, wr=True, ws=True), BiomodConfig(ws=True, grapes=True)]
)
@pytest.mark.parametrize("architecture", ["mlp", "convnet"])
def test_opacus_per_sample_gradients_are_exact_for_biomod_models(combo: BiomodConfig, architecture: str) -> None:
    """Opacus' per-sample gradients of converted (WS, GRAPES) layers equal autograd on one sample at a time.

    In float64: in float32, CPU convolutions of a batch and of single images differ by ~1e-3
    (relative) in plain autograd already, which would hide a real error of that size.
    """
    if architecture == "mlp":
        plain = build_model("mlp", 10, (3, 12, 12), width=16, depth=2, seed=0)
    else:
        plain = dp_compatible(tiny_convnet())
    model = convert(plain, combo, seed=1).double()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(5, 3, 12, 12, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 10, (5,), generator=generator)
    reference = []
    for i in range(len(inputs)):
        single = copy.deepcopy(model)
        F.cross_entropy(single(inputs[i : i + 1]), labels[i : i + 1]).backward()
        reference.append([p.grad.clone() for p in single.parameters()])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # relative to the whole gradient: a conv bias before GroupNorm has a (float-noise) zero gradient
    scale = torch.cat([g.reshape(-1) for grads in reference for g in grads]).norm()
    with private_training(model, optimizer, DPSGD(type="dpsgd"), batch_size=5, seed=0):
        F.cross_entropy(model(inputs), labels).backward()
        for index, param in enumerate(model.parameters()):
            expected = torch.stack([grads[index] for grads in reference])
            assert (param.grad_sample - expected).norm() / scale < 1e-10
    assert not hasattr(next(model.parameters()), "grad_sample")  # Opacus is gone after the block


def test_dp_train_without_noise_and_clipping_is_fl_scaled_sgd() -> None:
    """With clipping and noise off, a DP-SGD step equals plain SGD, and FL still scales the gradient."""
    plain = build_model("mlp", 10, (3, 8, 8), width=12, depth=1, seed=0)
    model = convert(plain, BiomodConfig(fl=True, tau=0.5), seed=3)
    reference = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(1)
    batch = (torch.randn(6, 3, 8, 8, generator=generator), torch.randint(0, 10, (6,), generator=generator))

    sgd = torch.optim.SGD(reference.parameters(), lr=0.5)
    with attach(sgd, reference):
        F.cross_entropy(reference(batch[0]), batch[1]).backward()
        sgd.step()

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    open_config = DPSGD(type="dpsgd", max_grad_norm=1e6, noise_multiplier=0.0)
    with attach(optimizer, model) as handle:
        result = dp_train(model, optimizer, [batch], open_config, seed=0, sample_rate=0.1)
    assert handle.steps == 1 and result.steps == 1
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_dp_train_clips_noises_rejuvenates_and_follows_the_seed() -> None:
    plain = dp_compatible(tiny_convnet())
    config = DPSGD(type="dpsgd", max_grad_norm=0.5, noise_multiplier=1.0)
    generator = torch.Generator().manual_seed(2)
    batches = [(torch.randn(4, 3, 12, 12, generator=generator), torch.randint(0, 10, (4,), generator=generator))
               for _ in range(2)]

    def run(seed: int) -> tuple[list[torch.Tensor], int, float]:
        model = convert(plain, BiomodConfig(wr=True, ws=True), seed=5)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        with attach(optimizer, model) as handle:
            result = dp_train(model, optimizer, batches, config, seed=seed, sample_rate=0.01)
        return [p.detach().clone() for p in model.parameters()], handle.rejuvenated_total, result.epsilon

    first, rejuvenated, epsilon = run(0)
    again, _, _ = run(0)
    other, _, _ = run(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert rejuvenated > 0  # WR's post-step hook fired through Opacus' optimizer
    assert epsilon == pytest.approx(dpsgd_epsilon(1.0, 1e-5, sample_rate=0.01, steps=2))
