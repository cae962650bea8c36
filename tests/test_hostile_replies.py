"""Crafted train replies fed into the real ``CapturingFedAvg.aggregate_train`` (no network): every one is
rejected with a recorded reason, the round completes with the honest replies, the global arrays stay
finite, and a partition's captured update only ever comes from the node that first claimed it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Error, Message, Metadata, MetricRecord, RecordDict

from fedsyn.evaluation.capture import Capture, CaptureWriter, update_file
from fedsyn.experiment.grid import Cell, expand
from fedsyn.experiment.schema import ConfigError, parse_config
from fedsyn.federation.active import ActiveServer
from fedsyn.federation.protocol import ReplyLimits
from fedsyn.federation.server_round import RoundBook
from fedsyn.federation.strategy import CapturingFedAvg
from fedsyn.task.training import LocalHyper

CLIENTS, PARTITION_SIZE = 4, 10
GLOBAL = {
    "w": np.zeros((2, 3), np.float32),
    "b": np.zeros(2, np.float32),
    "steps": np.array([5], np.int64),
}
EXPECTED = {name: a.shape for name, a in GLOBAL.items()}


def cell(**federation: Any) -> Cell:
    config = {
        "name": "hostile",
        "dataset": {"name": "photos"},
        "models": [{"name": "convnet", "options": {"width": 8}}],
        "biomod": {"combos": ["none"]},
        "federation": {"clients": CLIENTS, "rounds": 3, **federation},
    }
    return expand(parse_config(config))[0]


def good_arrays(value: float = 0.5) -> dict[str, np.ndarray]:
    return {"w": np.full((2, 3), value, np.float32), "b": np.full(2, value, np.float32), "steps": np.array([1], np.int64)}


def good_metrics(partition: Any) -> dict[str, Any]:
    return {
        "num-examples": PARTITION_SIZE,
        "partition-id": partition,
        "loss": 1.5,
        "rejuvenated": 0,
        "local-steps": 1,
        "lr": 0.01,
        "batch-size": 4,
    }


def metadata(node: int) -> Metadata:
    """What a SuperLink fills in for a reply from ``node``."""
    return Metadata(
        run_id=1,
        message_id=f"reply-{node}",
        src_node_id=node,
        dst_node_id=1,
        reply_to_message_id="train",
        group_id="1",
        created_at=0.0,
        ttl=60.0,
        message_type="train",
    )


def reply(node: int, arrays: dict[str, np.ndarray], metrics: dict[str, Any]) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord({name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in arrays.items()}),
            "metrics": MetricRecord(metrics),
        }
    )
    return Message(content=content, metadata=metadata(node))


def server(tmp_path: Path, **federation: Any) -> CapturingFedAvg:
    the_cell = cell(**federation)
    writer = CaptureWriter.create(tmp_path / "capture", the_cell)
    limits = ReplyLimits((PARTITION_SIZE,) * CLIENTS, the_cell.federation.max_update_norm)
    hyper = LocalHyper.from_cell(the_cell)
    return CapturingFedAvg(
        RoundBook(writer), hyper=hyper, expected=EXPECTED, limits=limits, active=ActiveServer(the_cell, hyper.capture)
    )


def run_round(strategy: CapturingFedAvg, round: int, replies: list[Message]) -> dict[str, np.ndarray] | None:
    strategy.book.begin(round, {name: a.copy() for name, a in GLOBAL.items()})
    arrays, _ = strategy.aggregate_train(round, replies)
    return None if arrays is None else {name: a.numpy() for name, a in arrays.items()}


def huge_wrong_shape() -> dict[str, np.ndarray]:
    return {**good_arrays(), "w": np.zeros((4000, 4000), np.float32)}


CASES: list[tuple[str, dict[str, np.ndarray], dict[str, Any], str]] = [
    ("complex64 NaN", {**good_arrays(), "w": np.full((2, 3), np.nan, np.complex64)}, good_metrics(2), "wrong dtypes"),
    ("float64 array", {**good_arrays(), "w": np.ones((2, 3), np.float64)}, good_metrics(2), "wrong dtypes"),
    ("int64 array", {**good_arrays(), "b": np.ones(2, np.int64)}, good_metrics(2), "wrong dtypes"),
    ("3e38 values", {**good_arrays(), "w": np.full((2, 3), 3e38, np.float32)}, good_metrics(2), "mean's range"),
    ("NaN in float32", {**good_arrays(), "b": np.array([0.0, np.nan], np.float32)}, good_metrics(2), "NaN or Inf"),
    ("NaN loss", good_arrays(), {**good_metrics(2), "loss": float("nan")}, "metric loss is not finite"),
    ("inf loss", good_arrays(), {**good_metrics(2), "loss": float("inf")}, "metric loss is not finite"),
    ("num-examples inf", good_arrays(), {**good_metrics(2), "num-examples": float("inf")}, "is not finite"),
    ("num-examples 1e30", good_arrays(), {**good_metrics(2), "num-examples": 1e30}, "is not in 1..10"),
    ("num-examples 0", good_arrays(), {**good_metrics(2), "num-examples": 0}, "is not in 1..10"),
    ("partition-id 99", good_arrays(), good_metrics(99), "partition-id 99 is not in 0..3"),
    ("partition-id -1", good_arrays(), good_metrics(-1), "partition-id -1 is not in 0..3"),
    ("partition-id 0.5", good_arrays(), good_metrics(0.5), "partition-id must be an integer"),
    ("metric of a list", good_arrays(), {**good_metrics(2), "loss": [1.0, 2.0]}, "metric loss must be a number"),
    ("missing loss", good_arrays(), {k: v for k, v in good_metrics(2).items() if k != "loss"}, "metrics lack"),
    ("unknown metric", good_arrays(), {**good_metrics(2), "score": 1.0}, "unknown metric"),
    ("4000x4000 wrong shape", huge_wrong_shape(), good_metrics(2), "wrong shapes"),
    ("missing array", {"w": good_arrays()["w"], "steps": good_arrays()["steps"]}, good_metrics(2), "missing ['b']"),
]


@pytest.mark.parametrize(("name", "arrays", "metrics", "reason"), CASES, ids=[case[0] for case in CASES])
def test_crafted_reply_is_rejected_and_the_round_completes(
    tmp_path: Path, name: str, arrays: dict[str, np.ndarray], metrics: dict[str, Any], reason: str
) -> None:
    strategy = server(tmp_path)
    honest = [reply(10, good_arrays(0.5), good_metrics(0)), reply(11, good_arrays(1.5), good_metrics(1))]
    stepped = run_round(strategy, 1, [honest[0], reply(12, arrays, metrics), honest[1]])
    assert stepped is not None
    assert all(np.isfinite(a).all() for a in stepped.values())
    np.testing.assert_allclose(stepped["w"], np.full((2, 3), 1.0))
    capture = Capture(tmp_path / "capture")
    hostile = next(entry for entry in capture.entries if entry.node_id == 12)
    assert hostile.status == "rejected" and reason in hostile.reason
    assert hostile.shapes == {name: list(a.shape) for name, a in arrays.items()}
    assert hostile.dtypes == {name: str(a.dtype) for name, a in arrays.items()}
    assert [entry.status for entry in capture.entries if entry.node_id != 12] == ["ok", "ok"]
    rejected_files = list((tmp_path / "capture").glob("rejected_*"))
    if sum(a.nbytes for a in arrays.values()) > sum(a.nbytes for a in GLOBAL.values()):
        assert rejected_files == [] and hostile.file is None
    else:
        assert [path.name for path in rejected_files] == [hostile.file]
    torch.testing.assert_close(capture.tensors(capture.entry(1, 0))["w"], torch.full((2, 3), 0.5))


def test_error_replies_and_repeated_partitions_are_rejected(tmp_path: Path) -> None:
    strategy = server(tmp_path)
    failed = Message(error=Error(code=3, reason="boom"), metadata=metadata(12))
    replies = [
        reply(10, good_arrays(), good_metrics(0)),
        failed,
        reply(11, good_arrays(), good_metrics(0)),
        reply(13, good_arrays(), {**good_metrics(1), "defense.clip_noise.epsilon": 1.0}),
    ]
    assert run_round(strategy, 1, replies) is not None
    reasons = [entry.reason for entry in Capture(tmp_path / "capture").entries]
    assert reasons[0] is None and "boom" in reasons[1]
    assert "partition 0 already replied" in reasons[2] and "metric names" in reasons[3]


def test_norm_bound_from_the_config_rejects_a_large_update(tmp_path: Path) -> None:
    strategy = server(tmp_path, max_update_norm=5.0)
    small, large = good_arrays(0.5), good_arrays(30.0)
    run_round(strategy, 1, [reply(10, small, good_metrics(0)), reply(11, large, good_metrics(1))])
    entries = Capture(tmp_path / "capture").entries
    assert [entry.status for entry in entries] == ["ok", "rejected"]
    assert "exceeds federation.max_update_norm 5.0" in entries[1].reason


def test_a_partition_update_only_comes_from_the_node_that_first_claimed_it(tmp_path: Path) -> None:
    strategy = server(tmp_path)
    run_round(strategy, 1, [reply(10, good_arrays(0.5), good_metrics(0)), reply(11, good_arrays(1.5), good_metrics(1))])
    impostor = reply(11, good_arrays(9.0), good_metrics(0))
    newcomer = reply(13, good_arrays(7.0), good_metrics(2.0))
    stepped = run_round(strategy, 2, [impostor, reply(10, good_arrays(0.5), good_metrics(0)), newcomer])
    assert stepped is not None
    round2 = [entry for entry in Capture(tmp_path / "capture").entries if entry.round == 2]
    assert [(entry.node_id, entry.status) for entry in round2] == [(11, "rejected"), (10, "ok"), (13, "ok")]
    assert "partition-id 0 belongs to node 10" in round2[0].reason
    update = torch.load(tmp_path / "capture" / update_file(2, 0), weights_only=True)
    torch.testing.assert_close(update["w"], torch.full((2, 3), 0.5))
    stolen = reply(13, good_arrays(7.0), good_metrics(1))
    run_round(strategy, 3, [stolen])
    last = Capture(tmp_path / "capture").entries[-1]
    assert last.status == "rejected" and "partition-id 1 belongs to node 11" in last.reason


def test_half_partition_next_to_a_real_zero_does_not_replace_its_update(tmp_path: Path) -> None:
    strategy = server(tmp_path)
    run_round(strategy, 1, [reply(10, good_arrays(0.5), good_metrics(0)), reply(12, good_arrays(9.0), good_metrics(0.5))])
    update = torch.load(tmp_path / "capture" / update_file(1, 0), weights_only=True)
    torch.testing.assert_close(update["w"], torch.full((2, 3), 0.5))


def test_round_keeps_the_global_arrays_when_every_reply_is_hostile(tmp_path: Path) -> None:
    strategy = server(tmp_path)
    replies = [reply(12 + i, arrays, metrics) for i, (_, arrays, metrics, _) in enumerate(CASES)]
    assert run_round(strategy, 1, replies) is None
    summary = Capture(tmp_path / "capture").entries
    assert len(summary) == len(CASES) and all(entry.status == "rejected" for entry in summary)


def test_norm_bound_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="federation.max_update_norm"):
        cell(max_update_norm=0)


def test_a_step_to_non_finite_global_arrays_is_not_taken(tmp_path: Path) -> None:
    the_cell = cell(clients=1)
    writer = CaptureWriter.create(tmp_path / "capture", the_cell)
    hyper = LocalHyper.from_cell(the_cell)
    strategy = CapturingFedAvg(
        RoundBook(writer),
        hyper=hyper,
        expected=EXPECTED,
        limits=ReplyLimits((PARTITION_SIZE,)),
        active=ActiveServer(the_cell, hyper.capture),
    )
    large = {**GLOBAL, "w": np.full((2, 3), 3e38, np.float32)}
    strategy.book.begin(1, large)
    assert strategy.aggregate_train(1, [reply(10, {**good_arrays(), "w": large["w"]}, good_metrics(0))]) == (None, None)
    strategy.book.evaluated(None)
    (summary,) = Capture(tmp_path / "capture").summary["rounds"]
    assert summary["accepted"] == 0 and "would not be finite" in summary["rejections"][0]
