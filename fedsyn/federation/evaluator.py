"""Attack a capture and score the reconstructions: one result row per (round, client, attacker).

The attack side gets only what crossed the protocol (the capture) and the public architecture; the
evaluator alone rebuilds each client's true batch, with the client's own deterministic selection
(``fedsyn.federation.training.round_batches``), to score the reconstruction (``attacks.metrics``).

The batch of a round is the concatenation of the local steps' batches in step order, ``steps *
batch_size`` images; that is the order ``attacks`` assumes the client visited its images in.

With SecAgg+ the server holds no client's update, only the round's aggregate (the mean over the
partitions it ``covers``): that is the round's one target, whichever clients the attack spec names, and
its row has ``partition_id`` ``AGGREGATE_ID`` (-1) and ``aggregate_of`` (the covered partitions). Its
true batch is the covered clients' batches one after the other in partition order, ``K * steps *
batch_size`` images for K clients; the oblivious attacker takes ``-aggregate`` for the gradient of all
of them, the informed one models the mean of K local trainings (``attacks.LocalUpdate(clients=K)``).

Attackers (METHODS.md, "Oblivious vs informed"):

- ``oblivious`` treats what it captured as the gradient of one batch: a captured update ``w_local -
  w_global`` becomes the gradient direction ``-update``; no FL factors, no local hyperparameters.
- ``informed`` knows what the threat model lets it know: the local hyperparameters of an update
  (``attacks.LocalUpdate``, the attack unrolls the client's SGD), the FL factors when they are
  shared (``biomod.fl_scope: shared``, derived from the federation seed like the clients do), and the
  cell's WR settings and defense set: it leaves the weights WR re-drew and the entries pruning zeroed
  out of the matching.

Both use the model the server knows (``cell_model.server_model``: architecture and WS structure, the
global arrays of that round) in the BatchNorm mode of ``attack.inversion.bn_mode``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.utils import save_image

import attacks
from attacks.config import LocalUpdate
from fedsyn.biomod import fuzzy_factors
from fedsyn.data import ImageDataset
from fedsyn.defenses.knowledge import informed_mask, rejuvenation_bounds
from fedsyn.seeding import derive_seed
from fedsyn.sweep.grid import Cell
from fedsyn.sweep.schema import AttackSpec

from .capture import Capture, CaptureError, IndexEntry
from .cell_model import client_model, server_model
from .client_data import client_partitions, dataset_spec, load_split
from .training import LocalHyper, round_batches

ROWS_FILE = "rows.jsonl"
SCORE_FIELDS = (
    "mse",
    "psnr",
    "ssim",
    "lpips",
    "mse_pct",
    "label_acc",
    "best_psnr",
    "best_ssim",
    "best_lpips",
    "best_mse_pct",
)


def true_batch(cell: Cell, train: ImageDataset, entry: IndexEntry) -> tuple[torch.Tensor, torch.Tensor]:
    """The images ([0, 1]) and labels behind ``entry``'s arrays in visiting order: the client's, or for a
    secure aggregate the covered clients' one after the other in partition order (their equal shares)."""
    partitions = entry.covers if entry.aggregate else [entry.partition_id]
    if None in partitions or None in (entry.steps, entry.lr, entry.batch_size, entry.capture):
        raise CaptureError(f"round {entry.round}: the reply does not name its partition and local hyperparameters")
    hyper = LocalHyper(entry.steps, entry.lr, entry.batch_size, entry.capture)
    owned = client_partitions(cell, train)
    chosen = np.concatenate(
        [
            index
            for partition_id in partitions
            for index in round_batches(
                cell, owned[partition_id], partition_id=partition_id, round=entry.round, hyper=hyper
            )
        ]
    )
    return train.unit(chosen), train.labels[chosen]


def _fl_shared(cell: Cell) -> bool:
    return cell.biomod.fl and cell.biomod.fl_scope == "shared"


def shared_factors(
    cell: Cell, model: torch.nn.Module, client: torch.nn.Module | None
) -> list[torch.Tensor | None] | None:
    """The FL factors an informed attacker can derive (``fl_scope: shared``), aligned with ``model.parameters()``.

    ``client`` is any client's converted model (needed only when the factors are shared, else ``None``):
    shared factors come from the federation seed alone, so any partition and round give the same ones."""
    if not _fl_shared(cell):
        return None
    factors = fuzzy_factors(client)
    return [factors.get(name) for name, _ in model.named_parameters()]


def attack_inputs(
    cell: Cell,
    attacker: str,
    model: torch.nn.Module,
    tensors: dict[str, torch.Tensor],
    entry: IndexEntry,
    train: ImageDataset,
) -> dict[str, Any]:
    """``target``, ``update``, ``fl_factors`` and ``mask`` for ``attacks.reconstruct`` as ``attacker`` sees
    them. The informed attacker's mask leaves out the weights WR re-drew and the entries pruning zeroed
    (``fedsyn.defenses.knowledge.informed_mask``)."""
    target = [tensors[name] for name, _ in model.named_parameters()]
    if attacker == "oblivious":
        if entry.capture == "update":
            target = [-tensor for tensor in target]
        return {"target": target, "update": None, "fl_factors": None, "mask": None}
    update = None
    if entry.capture == "update":
        clients = len(entry.covers) if entry.aggregate else 1
        update = LocalUpdate(steps=entry.steps, lr=entry.lr, batch_size=entry.batch_size, clients=clients)
    # Any client's converted model shows what is public: which layers rejuvenate (its WR stream is not
    # used) and the shared FL factors. Built once, and only when one of the two needs it.
    client = None
    if cell.biomod.wr or _fl_shared(cell):
        client = client_model(cell, 0, 1, train.num_classes, train.in_shape)
    bounds = rejuvenation_bounds(client) if cell.biomod.wr else {}
    mask = informed_mask(
        model, target, biomod=cell.biomod, defense=cell.defense, bounds=bounds, capture=entry.capture, steps=entry.steps
    )
    return {"target": target, "update": update, "fl_factors": shared_factors(cell, model, client), "mask": mask}


def _row(cell: Cell, entry: IndexEntry, attacker: str, attack: AttackSpec, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "cell_key": cell.key,
        "round": entry.round,
        "partition_id": entry.partition_id,
        "attacker": attacker,
        "status": "ok",
        "error": None,
        "labels": attack.labels,
        **{name: None for name in SCORE_FIELDS},
        "lpips_missing": None,
        "attack_seconds": None,
        "iterations": None,
        "image_path": None,
    }
    if entry.aggregate:
        row["aggregate_of"] = list(entry.covers)
    row.update(fields)
    return row


def _save_grid(path: Path, true_images: torch.Tensor, rec_images: torch.Tensor, pairing: list[int]) -> None:
    """True images over their paired reconstructions, one column per image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    paired = rec_images.detach().cpu()[pairing].clamp(0, 1)
    save_image(torch.cat([true_images.cpu(), paired]), path, nrow=len(true_images), padding=2)


def attack_entry(
    capture: Capture, entry: IndexEntry, attacker: str, attack: AttackSpec, train: ImageDataset, out: Path
) -> dict[str, Any]:
    """Attack and score one captured reply; failures become a row with status ``failed``."""
    cell = capture.cell
    if not entry.ok:
        return _row(cell, entry, attacker, attack, status="rejected", error=entry.reason)
    try:
        model = server_model(cell, train.num_classes, train.in_shape)
        model.load_state_dict(capture.global_state(entry.round), strict=True)
        inputs = attack_inputs(cell, attacker, model, capture.tensors(entry), entry, train)
        true_images, true_labels = true_batch(cell, train, entry)
        config = attack.inversion.model_copy(
            update={
                "seed": derive_seed(cell.seed, "attack", entry.round, entry.partition_id, attacker),
                "architecture": attack.inversion.architecture or cell.model.name,
            }
        )
        started = time.monotonic()
        rec = attacks.reconstruct(
            model,
            inputs["target"],
            num_images=len(true_images),
            labels=true_labels if attack.labels == "known" else None,
            mean=train.mean,
            std=train.std,
            config=config,
            update=inputs["update"],
            fl_factors=inputs["fl_factors"],
            mask=inputs["mask"],
            image_shape=train.in_shape,
        )
        seconds = time.monotonic() - started
        scores = attacks.metrics.score(rec.images, true_images, rec_labels=rec.labels, true_labels=true_labels)
        who = "aggregate" if entry.aggregate else f"p{entry.partition_id}"
        image = f"{cell.key}/r{entry.round}_{who}_{attacker}.png"
        _save_grid(out / image, true_images, rec.images, scores.pairing)
    except Exception as err:  # one bad update must not stop the others; the row says what happened
        return _row(cell, entry, attacker, attack, status="failed", error=f"{type(err).__name__}: {err}")
    return _row(
        cell,
        entry,
        attacker,
        attack,
        **{name: scores.get(name) for name in SCORE_FIELDS},
        lpips_missing=scores.missing.get("lpips"),
        attack_seconds=seconds,
        iterations=rec.stats.get("iterations", config.iterations),
        image_path=image,
    )


def _targets(capture: Capture, attack: AttackSpec) -> Iterator[IndexEntry]:
    """The captured replies the attack spec asks for, its rounds and clients in that order; a client
    whose reply was not captured (it failed before naming itself) gets a rejected stand-in. A round with
    a secure aggregate yields the aggregate alone."""
    clients = range(capture.cell.federation.clients) if attack.clients == "all" else attack.clients
    for round in attack.rounds:
        aggregate = capture.aggregate(round)
        if aggregate is not None:
            yield aggregate
            continue
        for partition_id in clients:
            try:
                yield capture.entry(round, partition_id)
            except CaptureError as err:
                yield missing_entry(capture.cell, round, partition_id, str(err))


def missing_entry(cell: Cell, round: int, partition_id: int, reason: str) -> IndexEntry:
    """An index entry standing for a reply that is not in the capture."""
    unknown = dict.fromkeys(("file", "capture", "steps", "lr", "batch_size", "num_examples", "loss", "rejuvenated"))
    return IndexEntry(
        round=round,
        partition_id=partition_id,
        node_id=0,
        status="rejected",
        reason=reason,
        config_hash=cell.key,
        **unknown,
    )


def attack_capture(capture_dir: Path, *, attack: AttackSpec | None = None, out: Path | None = None) -> list[dict]:
    """Attack every update of ``capture_dir`` that ``attack`` (default: the cell's own attack spec) selects.

    Writes the PNG grids and ``rows.jsonl`` (one JSON row per line) to ``out`` (default
    ``<capture>/attack``); each row's ``image_path`` is relative to ``out``. Returns the rows (CONTRACTS.md
    "Result rows").
    """
    capture = Capture(Path(capture_dir))
    if not capture.completed:
        raise CaptureError(f"{capture.directory} is an unfinished capture (its federation stopped early)")
    attack = attack or capture.cell.attack
    out = Path(out) if out is not None else capture.directory / "attack"
    out.mkdir(parents=True, exist_ok=True)
    train = load_split(dataset_spec(capture.cell), "train")
    rows = [
        attack_entry(capture, entry, attacker, attack, train, out)
        for entry in _targets(capture, attack)
        for attacker in attack.attackers
    ]
    with open(out / ROWS_FILE, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row, default=float) + "\n")
    return rows
