"""The informed attacker's knowledge: rejuvenated weights found in real WR updates, defense masks."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attacks.informed import combine_masks, rejuvenation_mask, support_mask
from fedsyn.biomod import BiomodConfig, attach, convert, converted_layers
from fedsyn.data import load_dataset
from fedsyn.defenses import DefenseSet, Prune, apply_defenses
from fedsyn.defenses.knowledge import informed_mask, rejuvenation_bounds
from fedsyn.models import build_model


@pytest.fixture(scope="module")
def photos():  # type: ignore[no-untyped-def]
    return load_dataset("photos")


def local_training(model: nn.Module, batches, lr: float) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """Train like a client (FL/WR hooked on SGD); return, per parameter, which entries WR re-drew.

    The truth comes from WR itself: one post-step hook before ``attach``'s (weights after the SGD step)
    and one after it (weights after WR); entries that differ between the two were re-drawn.
    """
    params = list(model.parameters())
    redrawn = [torch.zeros_like(p, dtype=torch.bool) for p in params]
    stepped: list[torch.Tensor] = []
    optimizer = torch.optim.SGD(params, lr=lr)
    optimizer.register_step_post_hook(lambda *_: stepped.__setitem__(slice(None), [p.detach().clone() for p in params]))
    handle = attach(optimizer, model)

    def mark(*_: object) -> None:
        for seen, before, param in zip(redrawn, stepped, params):
            seen |= param.detach() != before

    optimizer.register_step_post_hook(mark)
    for inputs, labels in batches:
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    handle.remove()
    return redrawn


def without_wr(model: nn.Module) -> nn.Module:
    """A copy whose layers skip WR (same FL factors): the update the client would have sent without it."""
    clean = copy.deepcopy(model)
    for _, layer in converted_layers(clean):
        layer.wr_rng = None
    return clean


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


def wr_round(photos, combo: str, steps: int, lr: float = 0.01):  # type: ignore[no-untyped-def]
    plain = build_model("convnet", photos.num_classes, photos.in_shape, width=8, seed=0)
    model = convert(plain, BiomodConfig.from_combo(combo), seed=1)
    global_weights = [p.detach().clone() for p in model.parameters()]
    generator = torch.Generator().manual_seed(2)
    batches = [photos.batch(torch.randint(0, len(photos), (8,), generator=generator)) for _ in range(steps)]
    clean = without_wr(model)
    local_training(clean, batches, lr)
    redrawn = local_training(model, batches, lr)
    update = [p.detach() - w for p, w in zip(model.parameters(), global_weights)]
    clean_update = [p.detach() - w for p, w in zip(clean.parameters(), global_weights)]
    bounds = rejuvenation_bounds(model)
    aligned = [bounds.get(name) for name, _ in model.named_parameters()]
    return update, clean_update, global_weights, aligned, redrawn


@pytest.mark.parametrize("combo", ["wr", "fl+wr+ws"])
def test_detector_finds_rejuvenated_weights_in_a_real_update(photos, combo: str) -> None:  # type: ignore[no-untyped-def]
    update, clean_update, global_weights, bounds, redrawn = wr_round(photos, combo, steps=1)
    keep = rejuvenation_mask(update, global_weights, bounds, d_re=14.0, steps=1)
    rejuvenating = [i for i, bound in enumerate(bounds) if bound is not None]
    assert rejuvenating and all(bool(keep[i].all()) for i in range(len(bounds)) if bounds[i] is None)
    truth = torch.cat([redrawn[i].flatten() for i in rejuvenating])
    flagged = torch.cat([~keep[i].flatten() for i in rejuvenating])
    assert 0.01 < truth.float().mean() < 0.2  # WR re-drew a few percent of the weights
    precision = float((flagged & truth).sum() / flagged.sum())
    recall = float((flagged & truth).sum() / truth.sum())
    assert precision > 0.9 and recall > 0.9, (precision, recall)
    # what it buys the attacker: the kept entries point where the update without WR points
    u, clean, kept = (torch.cat([t[i].flatten() for i in rejuvenating]) for t in (update, clean_update, keep))
    assert cosine(u, clean) < 0.5
    assert cosine(u[kept], clean[kept]) > 0.95


def test_detector_over_several_local_steps(photos) -> None:  # type: ignore[no-untyped-def]
    update, _, global_weights, bounds, redrawn = wr_round(photos, "wr", steps=4)
    keep = rejuvenation_mask(update, global_weights, bounds, d_re=14.0, steps=4)
    rejuvenating = [i for i, bound in enumerate(bounds) if bound is not None]
    truth = torch.cat([redrawn[i].flatten() for i in rejuvenating])
    flagged = torch.cat([~keep[i].flatten() for i in rejuvenating])
    energy = torch.cat([update[i].flatten() for i in rejuvenating]).pow(2)
    assert float((flagged & truth).sum() / flagged.sum()) > 0.8
    assert float((flagged & truth).sum() / truth.sum()) > 0.9
    assert float(energy[flagged & truth].sum() / energy[truth].sum()) > 0.99  # the large re-draws are all found


def test_updates_without_wr_are_left_alone(photos) -> None:  # type: ignore[no-untyped-def]
    update, clean_update, global_weights, bounds, _ = wr_round(photos, "wr", steps=1)
    keep = rejuvenation_mask(clean_update, global_weights, bounds, d_re=14.0, steps=1)
    dropped = sum(int((~k).sum()) for k in keep) / sum(k.numel() for k in keep)
    assert dropped < 0.01


def test_support_mask_recovers_what_pruning_kept() -> None:
    generator = torch.Generator().manual_seed(3)
    update = [torch.randn(20, 10, generator=generator), torch.randn(10, generator=generator)]
    pruned = apply_defenses(DefenseSet(name="p", steps=(Prune(type="prune", fraction=0.9),)), update, seed=0).tensors
    for mask, tensor in zip(support_mask(pruned), pruned):
        assert int(mask.sum()) == tensor.numel() - int(0.9 * tensor.numel())
    combined = combine_masks(support_mask(pruned), [torch.zeros(20, 10, dtype=torch.bool), torch.ones(10, dtype=torch.bool)])
    assert combined is not None and not combined[0].any() and int(combined[1].sum()) == 1
    assert combine_masks(None, None) is None


def test_informed_mask_follows_the_cell(photos) -> None:  # type: ignore[no-untyped-def]
    update, _, global_weights, _, _ = wr_round(photos, "wr", steps=1)
    config = BiomodConfig.from_combo("wr")
    client = convert(build_model("convnet", photos.num_classes, photos.in_shape, width=8, seed=0), config, seed=9)
    server = build_model("convnet", photos.num_classes, photos.in_shape, width=8, seed=0)
    server.load_state_dict(client.state_dict())
    bounds = rejuvenation_bounds(client)
    assert set(bounds) == {name for name, p in server.named_parameters() if name.endswith("weight") and p.dim() > 1}
    with torch.no_grad():
        for param, weight in zip(server.parameters(), global_weights):
            param.copy_(weight)
    kwargs = dict(biomod=config, bounds=bounds, steps=1)
    mask = informed_mask(server, update, defense=DefenseSet(), capture="update", **kwargs)
    assert mask is not None and sum(int((~m).sum()) for m in mask) > 0
    assert informed_mask(server, update, defense=DefenseSet(), capture="gradient", **kwargs) is None
    pruned = DefenseSet(name="p", steps=(Prune(type="prune", fraction=0.5),))
    both = informed_mask(server, update, defense=pruned, capture="update", **kwargs)
    assert both is not None and sum(int(m.sum()) for m in both) < sum(int(m.sum()) for m in mask)
