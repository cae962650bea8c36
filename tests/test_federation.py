"""The federation on Flower's real simulation engine: 4 clients x 2 rounds of a small ConvNet with
FL+WR+WS, one client replying NaN (``federation.faulty_clients``, the fault-injection switch). The
federation runs once per dataset through ``fedsyn federate`` (photos always, CIFAR-10 when
FEDSYN_CIFAR10_DIR points at the JPEG export); the tests read its capture and attack it with
``fedsyn attack``. A second federation runs a SecAgg+ cell (3 clients x 2 rounds), whose capture holds
only the clients' mean update per round.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import attacks
from fedsyn.biomod import fuzzy_factors
from fedsyn.cli import main
from fedsyn.defenses import DefenseSet, apply_defenses
from fedsyn.evaluation.capture import Capture, CaptureError, CaptureWriter
from fedsyn.evaluation.evaluator import ROWS_FILE
from fedsyn.evaluation.knowledge import attack_inputs
from fedsyn.experiment.grid import Cell, expand
from fedsyn.experiment.schema import ConfigError, parse_config
from fedsyn.federation.settings import (
    RunConfigError,
    parse_node_config,
    parse_run_config,
    run_config,
)
from fedsyn.seeding import derive_seed
from fedsyn.sweep.pretrain import pretrain_key
from fedsyn.task.data import client_partitions, dataset_spec, load_split
from fedsyn.task.model import client_model, server_model
from fedsyn.task.training import LocalHyper, client_round, local_update, round_batches

CLIENTS, ROUNDS, FAULTY = 4, 2, 3


def experiment(dataset: dict, **federation: object) -> dict:
    return {
        "name": "test-federation",
        "seed": 3,
        "dataset": dataset,
        "models": [{"name": "convnet", "options": {"width": 8}}],
        "biomod": {"combos": ["fl+wr+ws"]},
        "federation": {
            "clients": CLIENTS,
            "rounds": ROUNDS,
            "local_steps": 2,
            "batch_size": 4,
            "eval_samples": 64,
            "faulty_clients": [FAULTY],
            **federation,
        },
        "attack": {"clients": [0, FAULTY], "rounds": [1], "inversion": {"iterations": 2, "restarts": 1}},
    }


def make_cell(data: dict, **federation: object) -> Cell:
    return expand(parse_config(experiment(data, **federation)))[0]


@pytest.fixture(scope="module", params=["photos", "cifar10"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Capture:
    """One federation per dataset, through ``fedsyn federate``; returns its capture."""
    if request.param == "photos":
        data = {"name": "photos", "options": {"per_class": 40}}
    else:
        data = {"name": "imagefolder", "root": str(request.getfixturevalue("cifar10_dir"))}
    folder = tmp_path_factory.mktemp(f"federation-{request.param}")
    config = folder / "experiment.yaml"
    config.write_text(yaml.safe_dump(experiment(data)))
    assert main(["federate", str(config), "--out", str(folder / "federation")]) == 0
    (capture_dir,) = (folder / "federation").iterdir()
    return Capture(capture_dir)


def test_every_round_completes_with_test_accuracy(run: Capture) -> None:
    assert run.completed
    rounds = run.summary["rounds"]
    assert [r["round"] for r in rounds] == list(range(1, ROUNDS + 1))
    for summary in rounds:
        assert 0.0 <= summary["accuracy"] <= 1.0 and math.isfinite(summary["loss"])
        assert (summary["accepted"], summary["rejected"]) == (CLIENTS - 1, 1)


def test_round_one_is_captured(run: Capture) -> None:
    assert (run.directory / "global_r1.pt").is_file()
    round_one = [e for e in run.entries if e.round == 1]
    assert sorted(e.partition_id for e in round_one) == list(range(CLIENTS))
    assert len({e.node_id for e in round_one}) == CLIENTS
    for entry in round_one:
        name = f"update_r1_p{entry.partition_id}.pt" if entry.ok else f"rejected_r1_n{entry.node_id}.pt"
        assert entry.file == name and (run.directory / name).is_file()
        assert (entry.capture, entry.steps, entry.lr, entry.batch_size) == ("update", 2, 0.01, 4)
        assert entry.config_hash == run.cell.key
        assert set(entry.shapes) == set(run.global_state(1))


def recomputed_update(capture: Capture, round: int, partition_id: int) -> dict[str, torch.Tensor]:
    """A client's reply arrays recomputed outside Flower from the captured global arrays, with one torch
    thread like the clients (client-threads = 1; CPU kernels are exact per thread count)."""
    cell = capture.cell
    train = load_split(dataset_spec(cell), "train")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return client_round(
            cell,
            capture.global_state(round),
            train=train,
            partition_indices=client_partitions(cell, train)[partition_id],
            partition_id=partition_id,
            round=round,
            hyper=LocalHyper.from_cell(cell),
        ).arrays
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("round", [1, 2])
def test_captured_update_equals_what_the_client_computed(run: Capture, round: int) -> None:
    """Recompute each honest client's reply outside Flower, from the captured global arrays."""
    for partition_id in range(CLIENTS):
        if partition_id == FAULTY:
            continue
        computed = recomputed_update(run, round, partition_id)
        captured = run.tensors(run.entry(round, partition_id))
        assert captured.keys() == computed.keys()
        for name, tensor in computed.items():
            assert torch.equal(captured[name], tensor), f"partition {partition_id}, {name}"


def test_next_global_is_fedavg_of_the_accepted_updates(run: Capture) -> None:
    accepted = [e for e in run.entries if e.round == 1 and e.ok]
    assert FAULTY not in [e.partition_id for e in accepted]
    weights = np.array([e.num_examples for e in accepted], dtype=np.float64)
    weights /= weights.sum()
    before, after = run.global_state(1), run.global_state(2)
    for name, start in before.items():
        mean = sum(w * run.tensors(e)[name].double() for w, e in zip(weights, accepted))
        expected = start.double() + mean
        if start.is_floating_point():
            torch.testing.assert_close(after[name].double(), expected, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(after[name], expected.round().to(start.dtype)), name


def test_client_returning_nan_is_rejected_while_the_round_completes(run: Capture) -> None:
    faulty = [e for e in run.entries if e.partition_id == FAULTY]
    assert len(faulty) == ROUNDS
    for entry in faulty:
        assert entry.status == "rejected" and "NaN" in entry.reason
        assert torch.isnan(run.tensors(entry)["0.0.weight"]).all()
    assert all(e.ok for e in run.entries if e.partition_id != FAULTY)


def test_attack_one_client_on_a_small_budget(run: Capture, tmp_path: Path) -> None:
    assert main(["attack", str(run.directory), "--out", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in (tmp_path / ROWS_FILE).read_text().splitlines()]
    by_client = {row["partition_id"]: row for row in rows}
    assert set(by_client) == {0, FAULTY}
    ok = by_client[0]
    assert ok["status"] == "ok", ok["error"]
    assert ok["cell_key"] == run.cell.key and ok["iterations"] == 2 and ok["labels"] == "known"
    assert ok["seed"] == run.cell.seed == 3
    assert ok["compiled"] is False and ok["compile_seconds"] == 0  # a 2-iteration attack stays eager under "auto"
    assert ok["precision"] == "fp32"
    for metric in ("mse", "psnr", "ssim", "mse_pct", "label_acc"):
        assert math.isfinite(ok[metric]), metric
    assert ok["lpips"] is not None or ok["lpips_missing"]
    assert (tmp_path / ok["image_path"]).is_file()
    assert sum(ok["image_psnr"]) / len(ok["image_psnr"]) == pytest.approx(ok["psnr"])
    assert all(math.isfinite(ok[f"ref_{metric}"]) for metric in ("mse", "psnr", "ssim", "mse_pct"))
    rejected = by_client[FAULTY]
    assert rejected["status"] == "rejected" and "NaN" in rejected["error"] and rejected["mse"] is None


def test_informed_attacker_leaves_rejuvenated_weights_out(run: Capture) -> None:
    """The evaluator hands the informed attacker its WR mask; the oblivious one matches everything."""
    cell, entry = run.cell, run.entry(1, 0)
    train = load_split(dataset_spec(cell), "train")
    model = server_model(cell, train.num_classes, train.in_shape)
    model.load_state_dict(run.global_state(1))
    tensors = run.tensors(entry)
    assert attack_inputs(cell, "oblivious", model, tensors, entry, train)["mask"] is None
    mask = attack_inputs(cell, "informed", model, tensors, entry, train)["mask"]
    flagged = sum(int((~keep).sum()) for keep in mask)
    assert entry.rejuvenated > 0 and 0.5 * entry.rejuvenated <= flagged <= 2 * entry.rejuvenated


def test_run_and_node_config_errors_name_the_key(tmp_path: Path) -> None:
    cell = make_cell({"name": "photos"})
    settings = parse_run_config(run_config(cell, tmp_path, client_threads=2))
    assert settings.cell == cell and settings.client_threads == 2
    assert settings.capture_dir == tmp_path / cell.key
    with pytest.raises(RunConfigError, match="unknown run config key"):
        parse_run_config({"num-server-rounds": 3})
    with pytest.raises(RunConfigError, match="client-threads must be an integer"):
        parse_run_config({**run_config(cell, tmp_path), "client-threads": "one"})
    with pytest.raises(RunConfigError, match="num-partitions=2 but the cell federates 4"):
        parse_node_config({"partition-id": 0, "num-partitions": 2}, CLIENTS)
    with pytest.raises(RunConfigError, match="partition-id"):
        parse_node_config({}, CLIENTS)


def test_capture_writer_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a capture")
    with pytest.raises(CaptureError, match="holds no capture"):
        CaptureWriter.create(tmp_path, make_cell({"name": "photos"}))
    with pytest.raises(CaptureError, match="cell.json is missing"):
        Capture(tmp_path)


def test_gradient_capture_is_the_fl_scaled_gradient_of_one_batch() -> None:
    cell = make_cell({"name": "photos", "options": {"per_class": 20}}, capture="gradient", local_steps=1)
    train = load_split(dataset_spec(cell), "train")
    part = client_partitions(cell, train)[1]
    hyper = LocalHyper.from_cell(cell)
    model = client_model(cell, 1, 2, train.num_classes, train.in_shape)
    start = {name: t.clone() for name, t in model.state_dict().items()}
    result = client_round(cell, start, train=train, partition_indices=part, partition_id=1, round=2, hyper=hyper)
    (indices,) = round_batches(cell, part, partition_id=1, round=2, hyper=hyper)
    model.train()
    inputs, labels = train.batch(indices)
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(inputs), labels), list(params.values()))
    factors = fuzzy_factors(model)
    assert set(result.arrays) == set(params) and factors
    for (name, param), grad in zip(params.items(), grads):
        expected = grad * factors[name] if name in factors else grad
        torch.testing.assert_close(result.arrays[name], expected, rtol=0, atol=0)
    assert result.rejuvenated == 0


def test_client_defenses_transform_the_reply() -> None:
    """The reply is the client's update passed through ``apply_defenses`` with the client's round seed."""
    data = experiment({"name": "photos", "options": {"per_class": 20}})
    data["defenses"] = [[{"type": "clip_noise", "clip": 0.05, "noise_multiplier": 0.5}]]
    cell = expand(parse_config(data))[0]
    plain = cell.model_copy(update={"defense": DefenseSet()})
    train = load_split(dataset_spec(cell), "train")
    part = client_partitions(cell, train)[2]
    state = client_model(cell, 2, 1, train.num_classes, train.in_shape).state_dict()

    def reply(of: Cell) -> object:
        hyper = LocalHyper.from_cell(of)
        return client_round(of, state, train=train, partition_indices=part, partition_id=2, round=1, hyper=hyper)

    defended, undefended = reply(cell), reply(plain)
    seed = derive_seed(cell.seed, "defense", 2, 1)
    expected = apply_defenses(cell.defense, list(undefended.arrays.values()), seed=seed)
    for (name, tensor), want in zip(defended.arrays.items(), expected.tensors):
        assert torch.equal(tensor, want), name
    assert defended.defense_metrics["clip_noise.clipped"] == 1.0 and defended.defense_metrics["clip_noise.epsilon"] > 0
    assert torch.equal(defended.arrays["0.1.num_batches_tracked"], undefended.arrays["0.1.num_batches_tracked"])


def dpsgd_cell(**federation: object) -> Cell:
    data = experiment({"name": "photos", "options": {"per_class": 20}}, **federation)
    data["defenses"] = [[{"type": "dpsgd", "max_grad_norm": 0.5, "noise_multiplier": 1.0}]]
    return expand(parse_config(data))[0]


def test_dpsgd_cell_trains_its_clients_with_dp_sgd() -> None:
    """With ``dpsgd`` every party builds the model without BatchNorm, and the client's local steps are
    DP-SGD steps: a different update from plain SGD, an epsilon in the reply, same seed same update."""
    cell = dpsgd_cell()
    train = load_split(dataset_spec(cell), "train")
    part = client_partitions(cell, train)[1]
    hyper = LocalHyper.from_cell(cell)
    model = client_model(cell, 1, 1, train.num_classes, train.in_shape)
    undefended = client_model(
        cell.model_copy(update={"defense": DefenseSet()}), 1, 1, train.num_classes, train.in_shape
    )
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in undefended.modules())
    for party in (model, server_model(cell, train.num_classes, train.in_shape)):
        assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in party.modules())
        assert any(isinstance(m, torch.nn.GroupNorm) for m in party.modules())
    state = {name: t.clone() for name, t in model.state_dict().items()}

    def reply() -> object:
        return client_round(cell, state, train=train, partition_indices=part, partition_id=1, round=1, hyper=hyper)

    private, again = reply(), reply()
    epsilon = private.defense_metrics["dpsgd.epsilon"]
    assert math.isfinite(epsilon) and epsilon > 0
    for name, tensor in private.arrays.items():
        assert torch.equal(tensor, again.arrays[name]), name
    batches = [train.batch(i) for i in round_batches(cell, part, partition_id=1, round=1, hyper=hyper)]
    sgd_update, *_ = local_update(model, batches, hyper.lr)
    assert set(sgd_update) == set(private.arrays)
    assert any(not torch.allclose(sgd_update[name], private.arrays[name]) for name in sgd_update)


def test_dpsgd_with_gradient_capture_is_refused() -> None:
    with pytest.raises(ConfigError, match="dpsgd.*capture 'gradient'"):
        dpsgd_cell(capture="gradient", local_steps=1)


def test_dpsgd_cells_do_not_share_pretrained_checkpoints_with_batchnorm_cells() -> None:
    """A DP-SGD cell's architecture has GroupNorm, so its trained checkpoint is cached under its own key."""
    data = experiment({"name": "photos"})
    data["trained"] = [1]
    data["defenses"] = ["none", {"type": "prune", "fraction": 0.5}, {"type": "dpsgd"}]
    plain, pruned, private = expand(parse_config(data))
    assert pretrain_key(plain) == pretrain_key(pruned) != pretrain_key(private)


SECAGG = {"type": "secagg", "num_shares": 3, "reconstruction_threshold": 2}
SECAGG_CLIENTS = 3
SECAGG_IMAGES = 2 * 2
"""Images per client and round in the SecAgg+ cell: 2 local steps of batch 2."""


def secagg_cell() -> Cell:
    """3 clients x 2 rounds of the width-8 ConvNet with SecAgg+ (BatchNorm's scalar step counters included)."""
    data = experiment(
        {"name": "photos", "options": {"per_class": 40}}, clients=SECAGG_CLIENTS, batch_size=2, faulty_clients=[]
    )
    data["defenses"] = [{"name": "secagg", "steps": [SECAGG]}]
    data["attack"] = {
        "clients": [0],
        "rounds": [1],
        "attackers": ["oblivious", "informed"],
        "inversion": {"iterations": 1, "restarts": 1},
    }
    (cell,) = expand(parse_config(data))
    return cell


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    """The SecAgg+ cell federated once on Flower's simulation engine; returns its capture."""
    from fedsyn.federation.simulation import federate

    return Capture(federate(secagg_cell(), tmp_path_factory.mktemp("federation-secagg")))


def test_secagg_capture_holds_one_aggregate_per_round_and_no_client_update(secure: Capture) -> None:
    files = sorted(path.name for path in secure.directory.iterdir())
    assert not [name for name in files if name.startswith(("update_", "rejected_"))], files
    everyone = list(range(SECAGG_CLIENTS))
    for round in range(1, ROUNDS + 1):
        entries = [e for e in secure.entries if e.round == round]
        masked = [e for e in entries if e.status == "masked"]
        assert sorted(e.partition_id for e in masked) == everyone
        assert all(e.file is None and e.num_examples == SECAGG_IMAGES and math.isfinite(e.loss) for e in masked)
        aggregate = secure.aggregate(round)
        assert aggregate is not None and aggregate.ok and aggregate in entries and len(entries) == SECAGG_CLIENTS + 1
        assert (aggregate.partition_id, aggregate.covers, aggregate.file) == (-1, everyone, f"aggregate_r{round}.pt")
        assert (aggregate.capture, aggregate.steps, aggregate.lr, aggregate.batch_size) == ("update", 2, 0.01, 2)
        assert aggregate.num_examples == SECAGG_CLIENTS * SECAGG_IMAGES
        assert set(secure.tensors(aggregate)) == set(secure.global_state(round))
    for summary in secure.summary["rounds"]:
        assert (summary["accepted"], summary["rejected"]) == (SECAGG_CLIENTS, 0)
        assert 0.0 <= summary["accuracy"] <= 1.0 and math.isfinite(summary["train_loss"])
    assert secure.completed and [r["round"] for r in secure.summary["rounds"]] == list(range(1, ROUNDS + 1))


def test_secagg_aggregate_is_the_mean_of_the_client_updates(secure: Capture) -> None:
    """Recompute every client's update outside Flower: the aggregate is their mean up to SecAgg+'s
    quantisation, unlike any one of them, and the next global is the global plus the aggregate."""
    # Each client's arrays are rounded stochastically to steps of 2 * clipping_range / quantization_range
    # (weight num_examples / max_weight = 1), so the mean is off by less than one step.
    step = 2 * 8.0 / 4194304
    for round in range(1, ROUNDS + 1):
        updates = [recomputed_update(secure, round, p) for p in range(SECAGG_CLIENTS)]
        aggregate = secure.tensors(secure.aggregate(round))
        for name, value in aggregate.items():
            mean = sum(update[name].double() for update in updates) / SECAGG_CLIENTS
            torch.testing.assert_close(value.double(), mean, rtol=0, atol=step, msg=f"round {round}, {name}")
        for update in updates:
            distance = max(float((aggregate[n].double() - t.double()).abs().max()) for n, t in update.items())
            assert distance > 100 * step
    before, after, aggregate = secure.global_state(1), secure.global_state(2), secure.tensors(secure.aggregate(1))
    for name, start in before.items():
        expected = start.double() + aggregate[name].double()
        if start.is_floating_point():
            torch.testing.assert_close(after[name].double(), expected, rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(after[name], expected.round().to(start.dtype)), name


@pytest.mark.slow  # a second federation of the SecAgg+ cell: ~25 s on 2 shared cores
def test_secagg_aggregates_are_reproducible(secure: Capture, tmp_path: Path) -> None:
    """Flower's stochastic quantisation draws from NumPy's global RNG, which the clients seed per round."""
    from fedsyn.federation.simulation import federate

    again = Capture(federate(secagg_cell(), tmp_path))
    for round in range(1, ROUNDS + 1):
        first, second = secure.tensors(secure.aggregate(round)), again.tensors(again.aggregate(round))
        assert all(torch.equal(first[name], second[name]) for name in first), round


def test_attack_on_the_secagg_aggregate(secure: Capture, tmp_path: Path) -> None:
    """One target per round, the aggregate, against all covered clients' images; rows fit the store."""
    from fedsyn.evaluation.evaluator import attack_capture, true_batch
    from fedsyn.results.store import open_store

    rows = attack_capture(secure.directory, out=tmp_path / "attack")
    assert [(row["partition_id"], row["attacker"]) for row in rows] == [(-1, "oblivious"), (-1, "informed")]
    for row in rows:
        assert row["status"] == "ok", row["error"]
        assert row["aggregate_of"] == list(range(SECAGG_CLIENTS)) and row["iterations"] == 1
        for metric in ("mse", "psnr", "ssim", "mse_pct", "label_acc"):
            assert math.isfinite(row[metric]), metric
        assert (tmp_path / "attack" / row["image_path"]).is_file()
    cell = secure.cell
    train = load_split(dataset_spec(cell), "train")
    images, labels = true_batch(cell, train, secure.aggregate(1))
    per_client = [true_batch(cell, train, secure.entry(1, p)) for p in range(SECAGG_CLIENTS)]
    assert torch.equal(images, torch.cat([i for i, _ in per_client])) and len(labels) == SECAGG_CLIENTS * SECAGG_IMAGES
    with open_store(tmp_path / "store") as store:
        store.commit_cell(cell, rows, rounds=secure.summary["rounds"])
        stored = store.results(cell_key=cell.key)
    assert [(row["partition_id"], json.loads(row["extra_json"])["aggregate_of"]) for row in stored] == [
        (-1, [0, 1, 2]),
        (-1, [0, 1, 2]),
    ]


def test_every_attack_method_gives_its_own_row(run: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """attack.methods runs each registered method on each (round, client, attacker); one that does not
    apply gives a 'not applicable' row with its reason and no numbers."""
    from fedsyn.evaluation.evaluator import attack_capture

    def never(inputs: attacks.AttackInputs) -> attacks.Reconstruction:
        raise attacks.NotApplicable(f"no fully connected input layer in a model of {len(inputs.target)} tensors")

    monkeypatch.setitem(attacks.METHODS, "never-applies", never)
    config = experiment({"name": "photos"})
    config["attack"]["methods"] = ["inverting-gradients", "never-applies"]
    spec = parse_config(config).attack
    rows = attack_capture(run.directory, attack=spec, out=tmp_path)
    assert [(r["partition_id"], r["method"]) for r in rows] == [
        (p, m) for p in (0, FAULTY) for m in ("inverting-gradients", "never-applies")
    ]
    ok, skipped = rows[0], rows[1]
    assert ok["status"] == "ok" and math.isfinite(ok["mse_pct"]) and ok["image_path"].endswith("_inverting-gradients.png")
    assert skipped["status"] == "not applicable" and "fully connected" in skipped["error"]
    assert all(skipped[name] is None for name in ("mse", "psnr", "ssim", "mse_pct", "label_acc", "image_path"))
    assert [r["status"] for r in rows[2:]] == ["rejected", "rejected"]


def test_attack_exits_non_zero_when_a_row_failed(run: Capture, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A capture whose update file of client 0 is gone: its row fails, the other is the usual rejection."""
    damaged = tmp_path / "capture"
    shutil.copytree(run.directory, damaged)
    (damaged / run.entry(1, 0).file).unlink()
    assert main(["attack", str(damaged), "--out", str(tmp_path / "attack")]) == 1
    assert "1 of 2 rows failed; first: CaptureError: capture file missing" in capsys.readouterr().err
