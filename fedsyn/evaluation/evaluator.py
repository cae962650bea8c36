"""Attack a capture and score the reconstructions: one result row per (round, client, attacker, method).

The attack side gets only what crossed the protocol (the capture) and the public architecture; the
evaluator alone rebuilds each client's true batch, with the client's own deterministic selection
(``fedsyn.task.training.round_batches``), to score the reconstruction (``attacks.metrics``).

The batch of a round is the concatenation of the local steps' batches in step order, ``steps *
batch_size`` images; that is the order ``attacks`` assumes the client visited its images in.

With SecAgg+ the server holds no client's update, only the round's aggregate (the mean over the
partitions it ``covers``): that is the round's one target, whichever clients the attack spec names, and
its row has ``partition_id`` ``AGGREGATE_ID`` (-1) and ``aggregate_of`` (the covered partitions). Its
true batch is the covered clients' batches one after the other in partition order, ``K * steps *
batch_size`` images for K clients; the oblivious attacker takes ``-aggregate`` for the gradient of all
of them, the informed one models the mean of K local trainings (``attacks.LocalUpdate(clients=K)``).

Every attack method of ``attack.methods`` (names of ``attacks.METHODS``) runs on every (round, client,
attacker) through ``attacks.run_method``, from the same inputs and the same seed; a method that cannot
act on the target (``attacks.NotApplicable``) gives a row with status ``not applicable`` and its reason.

The attackers ``oblivious`` and ``informed`` differ in what the threat model lets them know
(``fedsyn.evaluation.knowledge``, docs/methods.md "Oblivious vs informed"). Both use the model the
server knows (``fedsyn.task.model.server_model``: architecture and WS structure, the global arrays of
that round) in the BatchNorm mode of ``attack.inversion.bn_mode``; in an active server's modified round
(``attack.active``) that model is wrapped in the imprint block the server sent, and every row of the
capture carries the modification's utility cost (``fedsyn.evaluation.utility``: ``accuracy_before``,
``accuracy_modified``, ``accuracy_unmodified``, kept in the store's ``extra_json``).
The attack runs BatchNorm in ``attack.inversion.bn_mode`` (the clients' ``federation.bn_mode``
unless the config sets it on purpose). Every row records both modes and where the running statistics
came from; with clients and attack in train mode and one local step, the attack also gets the batch
statistics recovered from the captured BatchNorm buffers (``knowledge.batch_statistics``) and the row
records the prior's weight, or why it was not used.
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
from fedsyn.data import ImageDataset
from fedsyn.experiment.grid import Cell
from fedsyn.experiment.schema import AttackSpec
from fedsyn.results.fields import REFERENCE_OF, SCORE_FIELDS, ResultRow
from fedsyn.seeding import derive_seed
from fedsyn.task.data import client_partitions, dataset_spec, load_split
from fedsyn.task.model import server_model
from fedsyn.task.training import LocalHyper, round_batches

from .capture import Capture, CaptureError, IndexEntry
from .knowledge import attack_inputs, batch_statistics, bn_stats_source
from .utility import utility_cost

ROWS_FILE = "rows.jsonl"


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


def _row(cell: Cell, entry: IndexEntry, attacker: str, method: str, attack: AttackSpec, **fields: Any) -> dict[str, Any]:
    """The result row of one (reply, attacker, method); ``fields`` fill in status, error and scores.
    Every row records the BatchNorm modes of the clients and of the attack."""
    row = ResultRow(
        client_bn_mode=cell.federation.bn_mode,
        attack_bn_mode=attack.inversion.bn_mode,
        cell_key=cell.key,
        seed=cell.seed,
        round=entry.round,
        partition_id=entry.partition_id,
        attacker=attacker,
        method=method,
        labels=attack.labels,
        aggregate_of=tuple(entry.covers) if entry.aggregate else None,
        **fields,
    )
    return row.as_dict()


def _iterations_run(stats: dict[str, Any]) -> int:
    """The optimisation steps the winning restart ran (it may stop early on a plateau); 0 for a
    closed-form method, which reports none."""
    run = stats.get("iterations_run")
    if run:
        return int(run[stats.get("best_restart", 0)])
    return int(stats.get("iterations", 0))


def _save_grid(path: Path, true_images: torch.Tensor, rec_images: torch.Tensor, pairing: list[int]) -> None:
    """True images over their paired reconstructions, one column per image (black where none was paired)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = rec_images.detach().cpu().clamp(0, 1)
    blank = torch.zeros_like(true_images[0].cpu())
    paired = torch.stack([rec[j] if j != attacks.pairing.UNPAIRED else blank for j in pairing])
    save_image(torch.cat([true_images.cpu(), paired]), path, nrow=len(true_images), padding=2)


def reference_scores(true_images: torch.Tensor, mean: tuple[float, ...]) -> dict[str, float]:
    """``ref_<metric>`` of a trivial reconstruction that needs no update: every image the training split's
    mean colour (the report's baseline check compares the attack with it)."""
    flat = torch.tensor(mean, dtype=true_images.dtype).view(1, -1, 1, 1).expand_as(true_images).contiguous()
    scores = attacks.metrics.score(flat, true_images.cpu(), lpips=False)
    return {f"ref_{name}": scores.get(name) for name in REFERENCE_OF}


def attack_entry(
    capture: Capture, entry: IndexEntry, attacker: str, attack: AttackSpec, train: ImageDataset, out: Path
) -> list[dict[str, Any]]:
    """Attack and score one captured reply with every method of ``attack.methods``, one row each."""
    return [attack_with(capture, entry, attacker, method, attack, train, out) for method in attack.methods]


def attack_with(
    capture: Capture, entry: IndexEntry, attacker: str, method: str, attack: AttackSpec, train: ImageDataset, out: Path
) -> dict[str, Any]:
    """One method's row for one captured reply; a rejected reply, an inapplicable method and a failure
    each give a row without scores that says why."""
    cell = capture.cell
    if not entry.ok:
        return _row(cell, entry, attacker, method, attack, status="rejected", error=entry.reason)
    bn_fields: dict[str, Any] = {}
    try:
        imprint = capture.modification(entry.round)
        model = server_model(cell, train.num_classes, train.in_shape, imprint=imprint)
        model.load_state_dict(capture.global_state(entry.round), strict=True)
        tensors = capture.tensors(entry)
        inputs = attack_inputs(cell, attacker, model, tensors, entry, train, imprint)
        bn_stats, bn_missing = batch_statistics(
            cell, model, tensors, entry, attack.inversion.bn_mode, attack.inversion.bn_prior
        )
        bn_fields = {"bn_stats_source": bn_stats_source(cell, model), "bn_prior_missing": bn_missing}
        true_images, true_labels = true_batch(cell, train, entry)
        config = attack.inversion.model_copy(
            update={
                "seed": derive_seed(cell.seed, "attack", entry.round, entry.partition_id, attacker),
                "architecture": attack.inversion.architecture or cell.model.name,
            }
        )
        started = time.monotonic()
        rec = attacks.run_method(
            method,
            attacks.AttackInputs(
                model=model,
                target=inputs["target"],
                num_images=len(true_images),
                labels=true_labels if attack.labels == "known" else None,
                mean=train.mean,
                std=train.std,
                config=config,
                update=inputs["update"],
                fl_factors=inputs["fl_factors"],
                mask=inputs["mask"],
                image_shape=train.in_shape,
                bn_stats=bn_stats,
            ),
        )
        seconds = time.monotonic() - started
        bn_fields["bn_prior"] = rec.stats.get("bn_prior")
        if bn_fields["bn_prior"] is None and bn_missing is None:
            bn_fields["bn_prior_missing"] = f"the {method} method does not use BatchNorm statistics"
        scores = attacks.metrics.score(rec.images, true_images, rec_labels=rec.labels, true_labels=true_labels)
        who = "aggregate" if entry.aggregate else f"p{entry.partition_id}"
        image = f"{cell.key}/r{entry.round}_{who}_{attacker}_{method}.png"
        _save_grid(out / image, true_images, rec.images, scores.pairing)
    except attacks.NotApplicable as reason:
        return _row(cell, entry, attacker, method, attack, status="not applicable", error=str(reason), **bn_fields)
    except Exception as err:  # one bad update must not stop the others; the row says what happened
        error = f"{type(err).__name__}: {err}"
        return _row(cell, entry, attacker, method, attack, status="failed", error=error, **bn_fields)
    return _row(
        cell,
        entry,
        attacker,
        method,
        attack,
        **{name: scores.get(name) for name in SCORE_FIELDS},
        **reference_scores(true_images, train.mean),
        image_psnr=tuple(image["psnr"] for image in scores.per_image),
        recovered_30db=int(scores["recovered_30db"]),
        recovered_psnr=scores.get("recovered_psnr"),
        lpips_missing=scores.missing.get("lpips"),
        attack_seconds=seconds,
        iterations=_iterations_run(rec.stats),
        converged=rec.stats.get("converged"),
        compiled=rec.stats.get("compiled"),
        compile_seconds=rec.stats.get("compile_seconds"),
        precision=rec.stats.get("precision"),
        image_path=image,
        **bn_fields,
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
    ``<capture>/attack``); each row's ``image_path`` is relative to ``out``. Returns the rows
    (``ResultRow.as_dict``, docs/results.md).
    """
    capture = Capture(Path(capture_dir))
    if not capture.completed:
        raise CaptureError(f"{capture.directory} is an unfinished capture (its federation stopped early)")
    attack = attack or capture.cell.attack
    out = Path(out) if out is not None else capture.directory / "attack"
    out.mkdir(parents=True, exist_ok=True)
    train = load_split(dataset_spec(capture.cell), "train")
    rows = [
        row
        for entry in _targets(capture, attack)
        for attacker in attack.attackers
        for row in attack_entry(capture, entry, attacker, attack, train, out)
    ]
    cost = utility_cost(capture)
    rows = [{**row, **cost} for row in rows]
    with open(out / ROWS_FILE, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row, default=float) + "\n")
    return rows
