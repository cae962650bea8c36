"""The active malicious server through Flower's real simulation engine (``attack.active``).

Two clients train a small ConvNet for two rounds; in round 1 the server sends the model wrapped in an
imprint block (16 bins, thresholds from held-out test images). The capture records the modification,
round 2 is plain again, and the evaluator's imprint method reads client images out of round 1's
updates above 30 dB.
"""

from __future__ import annotations

import numpy as np
import pytest

import attacks
from attacks.config import LocalUpdate

from fedsyn.evaluation.capture import Capture
from fedsyn.evaluation.evaluator import attack_capture
from fedsyn.experiment.grid import expand
from fedsyn.experiment.schema import ConfigError, parse_config
from fedsyn.federation.simulation import federate
from fedsyn.task.active import imprint_design, modified_state, public_indices
from fedsyn.task.data import client_partitions, dataset_spec, eval_shard, load_split
from fedsyn.task.model import plain_model, server_model
from fedsyn.task.training import LocalHyper, client_round, round_batches


def experiment(**active: object) -> dict:
    return {
        "name": "test-active",
        "seed": 5,
        "dataset": {"name": "photos", "options": {"per_class": 40}},
        "models": [{"name": "convnet", "options": {"width": 8}}],
        "biomod": {"combos": ["none"]},
        "federation": {"clients": 2, "rounds": 2, "local_steps": 1, "batch_size": 4, "eval_samples": 16, "lr": 0.05},
        "attack": {
            "attackers": ["oblivious"],
            "methods": ["imprint"],
            "rounds": [1],
            "active": {"round": 1, "bins": 16, "public_images": 40, **active},
        },
    }


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    cell = expand(parse_config(experiment()))[0]
    return Capture(federate(cell, tmp_path_factory.mktemp("active")))


@pytest.mark.slow  # the fixture starts Flower's simulation (Ray): about a minute on 2 shared cores
def test_modified_round_is_recorded_and_the_next_round_is_plain(capture: Capture) -> None:
    spec = capture.modification(1)
    assert spec is not None and spec.bins == 16
    assert capture.modification(2) is None
    first, second = capture.global_state(1), capture.global_state(2)
    assert "imprint.measure.weight" in first and "imprint.imprint_thresholds" in first
    assert not any(name.startswith(("imprint.", "base.")) for name in second)
    replies = [entry for entry in capture.entries if entry.round == 1]
    assert len(replies) == 2 and all(entry.ok for entry in replies)
    assert "imprint.measure.weight" in capture.tensors(replies[0])
    assert all(line["accuracy"] is not None for line in capture.summary["rounds"])


@pytest.mark.slow  # shares the simulation above
def test_imprint_method_recovers_client_images_from_the_modified_round(capture: Capture, tmp_path) -> None:
    rows = attack_capture(capture.directory, out=tmp_path)
    assert [row["status"] for row in rows] == ["ok", "ok"]
    assert max(row["recovered_30db"] for row in rows) >= 1
    assert all(row["recovered_psnr"] is None or row["recovered_psnr"] > 30 for row in rows)
    line = capture.summary["rounds"][0]
    assert rows[0]["accuracy_modified"] == line["accuracy"]
    assert 0 <= rows[0]["accuracy_unmodified"] <= 1 and 0 <= rows[0]["accuracy_before"] <= 1


def test_client_trains_the_modified_model_and_its_update_gives_its_images_back() -> None:
    cell = expand(parse_config(experiment()))[0]
    train, test = (load_split(dataset_spec(cell), split) for split in ("train", "test"))
    spec = imprint_design(cell)
    base = plain_model(cell, train.num_classes, train.in_shape).state_dict()
    state = modified_state(cell, spec, base, test)
    hyper = LocalHyper.from_cell(cell)
    owned = client_partitions(cell, train)[0]
    result = client_round(
        cell, state, train=train, partition_indices=owned, partition_id=0, round=1, hyper=hyper, imprint=spec
    )
    model = server_model(cell, train.num_classes, train.in_shape, imprint=spec)
    model.load_state_dict(state, strict=True)
    target = [result.arrays[name] for name, _ in model.named_parameters()]
    rec = attacks.run_method(
        "imprint", attacks.AttackInputs(model, target, 4, train.mean, train.std, update=LocalUpdate(steps=1, lr=hyper.lr, batch_size=4))
    )
    true = train.unit(np.concatenate(round_batches(cell, owned, partition_id=0, round=1, hyper=hyper)))
    assert attacks.metrics.score(rec.images, true, lpips=False)["recovered_30db"] >= 2


def test_public_images_are_test_images_no_client_evaluates_on() -> None:
    cell = expand(parse_config(experiment()))[0]
    test = load_split(dataset_spec(cell), "test")
    public = public_indices(cell, test)
    held = np.concatenate([eval_shard(cell, test, p) for p in range(2)])
    assert len(public) == 40 and not set(public) & set(held)


def test_designs_give_one_cell_each_and_informed_designs_for_ws_and_fl() -> None:
    config = experiment(designs=["oblivious", "informed"], copies=3)
    config["biomod"] = {"combos": ["fl+ws"], "gamma": 2}
    oblivious, informed = expand(parse_config(config))
    assert (oblivious.attack.active.designs, informed.attack.active.designs) == (("oblivious",), ("informed",))
    assert (imprint_design(oblivious).copies, imprint_design(oblivious).ws_gamma) == (1, 1)
    assert (imprint_design(informed).copies, imprint_design(informed).ws_gamma) == (3, 2)
    config["biomod"] = {"combos": ["none", "wr"]}
    plain = expand(parse_config(config))
    assert [cell.attack.active.designs for cell in plain] == [("oblivious",), ("oblivious",)]


def test_active_round_must_be_attacked() -> None:
    config = experiment(round=2)
    with pytest.raises(ConfigError, match="attack.active.round 2 is not among attack.rounds"):
        parse_config(config)
