"""The BatchNorm threat model: the clients' mode, the running statistics the server sends, and the batch
statistics the attacker recovers from a captured update (fedsyn.task.batchnorm, evaluation.knowledge)."""

from __future__ import annotations

import pytest
import torch

from attacks.bnstats import input_statistics
from fedsyn.evaluation.capture import IndexEntry
from fedsyn.evaluation.knowledge import batch_statistics, bn_stats_source
from fedsyn.experiment.grid import Cell, expand
from fedsyn.experiment.schema import ConfigError, parse_config
from fedsyn.task.batchnorm import batchnorm_layers, calibrate, public_indices, public_running_stats, set_training_mode
from fedsyn.task.data import client_partitions, dataset_spec, load_split
from fedsyn.task.model import client_model, server_model
from fedsyn.task.training import LocalHyper, client_round, round_batches


def config(federation: dict | None = None, inversion: dict | None = None, model: str = "convnet") -> dict:
    models = [{"name": "convnet", "options": {"width": 4}}] if model == "convnet" else [model]
    return {
        "name": "test-bn",
        "seed": 5,
        "dataset": {"name": "photos", "options": {"per_class": 20}},
        "models": models,
        "biomod": {"combos": ["none"]},
        "federation": {"clients": 2, "rounds": 1, "local_steps": 1, "batch_size": 4, **(federation or {})},
        "attack": {"inversion": {"iterations": 2, **(inversion or {})}},
    }


def make_cell(**kwargs: object) -> Cell:
    return expand(parse_config(config(**kwargs)))[0]


def test_attack_bn_mode_follows_the_clients_unless_set() -> None:
    assert parse_config(config()).attack.inversion.bn_mode == "train"
    assert parse_config(config({"bn_mode": "eval"})).attack.inversion.bn_mode == "eval"
    mismatch = parse_config(config({"bn_mode": "train"}, {"bn_mode": "eval"}))
    assert (mismatch.federation.bn_mode, mismatch.attack.inversion.bn_mode) == ("train", "eval")
    with pytest.raises(ConfigError, match="federation.bn_mode"):
        parse_config(config({"bn_mode": "frozen"}))
    with pytest.raises(ConfigError, match="federation.bn_stats"):
        parse_config(config({"bn_stats": "private"}))


def test_training_mode_freezes_only_batchnorm() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5))
    set_training_mode(model, "eval")
    assert [m.training for m in model] == [True, False, True]
    set_training_mode(model, "train")
    assert all(m.training for m in model)


def _round(cell: Cell, capture: str = "update"):
    train = load_split(dataset_spec(cell), "train")
    part = client_partitions(cell, train)[0]
    global_state = {k: v.clone() for k, v in server_model(cell, train.num_classes, train.in_shape).state_dict().items()}
    hyper = LocalHyper(1, cell.federation.lr, cell.federation.batch_size, capture)
    result = client_round(cell, global_state, train=train, partition_indices=part, partition_id=0, round=1, hyper=hyper)
    (indices,) = round_batches(cell, part, partition_id=0, round=1, hyper=hyper)
    return train, global_state, result, indices


def _entry(cell: Cell, capture: str = "update", steps: int = 1) -> IndexEntry:
    return IndexEntry(round=1, partition_id=0, node_id=1, status="ok", reason=None, file="x", capture=capture,
                      steps=steps, lr=0.01, batch_size=4, num_examples=4, loss=1.0, rejuvenated=0, config_hash=cell.key)


def test_eval_mode_clients_leave_the_running_buffers_alone() -> None:
    _, _, result, _ = _round(make_cell(federation={"bn_mode": "eval"}))
    buffers = [name for name in result.arrays if name.endswith(("running_mean", "running_var"))]
    assert buffers and all(torch.count_nonzero(result.arrays[name]) == 0 for name in buffers)
    _, _, trained, _ = _round(make_cell())
    assert any(torch.count_nonzero(trained.arrays[name]) > 0 for name in buffers)


def test_attacker_recovers_the_client_batch_statistics_from_one_update() -> None:
    cell = make_cell()
    train, global_state, result, indices = _round(cell)
    model = server_model(cell, train.num_classes, train.in_shape)
    model.load_state_dict(global_state)
    stats, reason = batch_statistics(cell, model, result.arrays, _entry(cell), "train", 0.1)
    assert reason is None and len(stats) == len(batchnorm_layers(model))
    first = batchnorm_layers(model)[0]
    seen = []
    first.register_forward_pre_hook(lambda _m, args: seen.append(input_statistics(args[0])))
    model.train()
    model(train.batch(indices)[0])
    torch.testing.assert_close(stats[0][0], seen[0][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(stats[0][1], seen[0][1], atol=1e-5, rtol=1e-4)


def test_batch_statistics_say_why_they_are_missing() -> None:
    cell = make_cell()
    train, global_state, result, _ = _round(cell)
    model = server_model(cell, train.num_classes, train.in_shape)
    model.load_state_dict(global_state)
    gradient = {name: result.arrays[name] for name, _ in model.named_parameters()}
    cases = [
        (gradient, _entry(cell, "gradient"), "train", 0.1, "holds no BatchNorm buffers"),
        (result.arrays, _entry(cell, steps=2), "train", 0.1, "2 local steps"),
        (result.arrays, _entry(cell), "eval", 0.1, "the attack runs BatchNorm in eval mode"),
        (result.arrays, _entry(cell), "train", 0.0, "bn_prior is 0"),
    ]
    for tensors, entry, mode, weight, why in cases:
        stats, reason = batch_statistics(cell, model, tensors, entry, mode, weight)
        assert stats is None and why in reason
    lenet = make_cell(model="lenet")
    plain = server_model(lenet, train.num_classes, train.in_shape)
    assert batch_statistics(lenet, plain, {}, _entry(lenet), "train", 0.1)[1] == "the model has no BatchNorm"
    assert bn_stats_source(lenet, plain) == "no batchnorm" and bn_stats_source(cell, model) == "defaults"


def test_public_statistics_are_the_public_images_exact_moments() -> None:
    cell = make_cell(federation={"bn_stats": "public", "bn_public_samples": 24})
    test = load_split(dataset_spec(cell), "test")
    chosen = public_indices(cell, test)
    assert len(chosen) == 24 and len(set(chosen.tolist())) == 24
    model = server_model(cell, test.num_classes, test.in_shape)
    buffers = public_running_stats(cell, model.state_dict(), test)
    first = batchnorm_layers(model)[0]
    name = next(n for n, m in model.named_modules() if m is first)
    seen = []
    first.register_forward_pre_hook(lambda _m, args: seen.append(input_statistics(args[0])))
    with torch.no_grad():
        model.train()(test.batch(chosen)[0])
    torch.testing.assert_close(buffers[f"{name}.running_mean"], seen[0][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(buffers[f"{name}.running_var"], seen[0][1], atol=1e-5, rtol=1e-4)
    assert bn_stats_source(cell, model) == "public"
    untouched = client_model(cell, 0, 1, test.num_classes, test.in_shape)
    calibrate(untouched, test, chosen[:0])
    assert torch.equal(batchnorm_layers(untouched)[0].running_var, torch.ones_like(first.running_var))


@pytest.mark.slow
def test_rows_record_the_batchnorm_threat_model(tmp_path) -> None:
    """A real federation (one step, train mode) attacked by both methods: every row names both BN modes and
    the statistics' source; Inverting Gradients used the recovered batch statistics, the analytic
    attack (no fully connected input layer here) says it does not apply."""
    import yaml

    from fedsyn.cli import main
    from fedsyn.evaluation.capture import Capture
    from fedsyn.evaluation.evaluator import attack_capture

    data = config({"eval_samples": 16, "batch_size": 2}, {"iterations": 3})
    data["attack"]["methods"] = ["inverting-gradients", "analytic"]
    data["attack"]["clients"] = [0]
    path = tmp_path / "bn.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["federate", str(path), "--out", str(tmp_path / "federation")]) == 0
    (capture_dir,) = (tmp_path / "federation").iterdir()
    rows = attack_capture(Capture(capture_dir).directory, out=tmp_path / "attack")
    inverting, analytic = rows
    assert all(
        (r["client_bn_mode"], r["attack_bn_mode"], r["bn_stats_source"]) == ("train", "train", "defaults") for r in rows
    )
    assert inverting["status"] == "ok" and inverting["bn_prior"] == 0.1 and inverting["bn_prior_missing"] is None
    assert inverting["converged"] in (True, False)
    assert analytic["status"] == "not applicable" and analytic["converged"] is None
