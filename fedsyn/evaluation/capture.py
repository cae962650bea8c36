"""The capture directory: what the malicious server recorded of one cell's federation.

Layout (one directory per cell federation, ``<out-dir>/<cell key>``)::

    cell.json              the Cell (``Cell.model_dump_json``): what was federated, incl. the attack spec
    index.jsonl            one JSON object per client reply (and per secure aggregate), in arrival order
                           (``IndexEntry``)
    global_r{R}.pt         the global arrays the server sent in round R (name -> tensor, a state_dict)
    update_r{R}_p{P}.pt    partition P's accepted reply in round R (name -> tensor): ``w_local - w_global``
                           for every state_dict entry (capture ``update``) or one batch's gradient per
                           parameter (capture ``gradient``)
    aggregate_r{R}.pt      with SecAgg+ (defense ``secagg``): the one thing the server learns of the
                           clients' arrays in round R, their ``num_examples``-weighted mean (same names)
    rejected_r{R}_n{N}.pt  the arrays of a reply from node N that the server rejected in round R
    federation.json        per-round test accuracy and loss, accepted/rejected counts, seconds, and
                           ``modification`` (the ``ImprintSpec``) in a round whose model an active
                           server modified; ``completed`` turns true after the last round

Tensors are stored with ``torch.save`` and read with ``torch.load(weights_only=True)``, only from inside
the capture folder (an index ``file`` such as ``../x.pt`` is refused, ``fedsyn.paths``); they are the
exact arrays that crossed the protocol (Flower serialises with ``numpy.save``, which is lossless).
Rounds not listed in ``federation.capture_rounds`` get index entries but no array files (``file`` is
null). A reply that arrived with an error has no file either; one that was rejected for its contents
(see ``fedsyn.federation.protocol``: NaN/Inf, wrong names, shapes or dtypes, bad metrics, a partition
claimed by another node) keeps its arrays in a ``rejected_*`` file so the rejection can be inspected,
but only when they take no more bytes than a valid reply would: a client cannot make the server write
more than a model's worth of arrays per reply. The index records every reply's array shapes and dtypes.

Index entry fields: ``round``, ``partition_id`` (null when an error reply did not say), ``node_id``,
``status`` (``ok`` | ``rejected`` | ``masked``), ``reason`` (why rejected, else null), ``file``,
``capture`` (``update`` | ``gradient``), ``steps``, ``lr``, ``batch_size`` (the local hyperparameters
the client reported), ``num_examples``, ``loss``, ``rejuvenated``, ``shapes`` (name -> list),
``dtypes`` (name -> numpy dtype name; absent in older captures),
``config_hash`` (the cell key), ``defense`` (what the client's defenses reported, e.g.
``clip_noise.epsilon``), ``covers`` (see below; absent in captures written before it existed).

A SecAgg+ round has one ``masked`` entry per client whose masked arrays went into the sum: the server
saw its metrics (partition, hyperparameters, loss, defense metrics) in the clear but never its arrays,
so ``file`` is null. The round's aggregate has its own entry: ``partition_id`` ``AGGREGATE_ID`` (-1),
``node_id`` 0 (no single node), ``covers`` the sorted partition ids whose arrays it is the mean of
(empty for every other entry), ``file`` ``aggregate_r{R}.pt``, the local hyperparameters the server
asked every client for, ``num_examples`` the clients' total and ``loss`` their weighted mean loss;
``ok``, or ``rejected`` when the mean has wrong shapes or NaN/Inf (the global arrays then stay).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from fedsyn.atomic import write_atomically, write_text_atomically
from fedsyn.errors import FedsynError
from fedsyn.experiment.grid import Cell
from fedsyn.paths import inside
from fedsyn.models import ImprintSpec

CELL_FILE = "cell.json"
INDEX_FILE = "index.jsonl"
SUMMARY_FILE = "federation.json"
FORMAT_VERSION = 1
AGGREGATE_ID = -1
"""The ``partition_id`` of a secure aggregate's index entry and of its result rows."""


class CaptureError(FedsynError, ValueError):
    """A capture directory that is missing parts or does not parse."""


def global_file(round: int) -> str:
    return f"global_r{round}.pt"


def update_file(round: int, partition_id: int) -> str:
    return f"update_r{round}_p{partition_id}.pt"


def aggregate_file(round: int) -> str:
    return f"aggregate_r{round}.pt"


def rejected_file(round: int, node_id: int) -> str:
    return f"rejected_r{round}_n{node_id}.pt"


@dataclass(frozen=True)
class IndexEntry:
    """One client reply, or one round's secure aggregate, as the server recorded it (a line of
    ``index.jsonl``)."""

    round: int
    partition_id: int | None
    node_id: int
    status: str
    reason: str | None
    file: str | None
    capture: str | None
    steps: int | None
    lr: float | None
    batch_size: int | None
    num_examples: int | None
    loss: float | None
    rejuvenated: int | None
    config_hash: str
    shapes: dict[str, list[int]] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    defense: dict[str, float] = field(default_factory=dict)
    covers: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def aggregate(self) -> bool:
        """True for a secure aggregate's entry (it covers the partitions in ``covers``)."""
        return bool(self.covers)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    cpu = {name: tensor.detach().cpu() for name, tensor in tensors.items()}
    write_atomically(path, lambda temporary: torch.save(cpu, temporary))


class CaptureWriter:
    """Writes one capture directory; used by the capturing strategy on the server."""

    def __init__(self, directory: Path, cell: Cell) -> None:
        self.directory = directory
        self.cell = cell
        self.rounds: list[dict[str, Any]] = []
        self._captured = set(cell.federation.capture_rounds or range(1, cell.federation.rounds + 1))

    @classmethod
    def create(cls, directory: Path, cell: Cell) -> CaptureWriter:
        """Start a fresh capture in ``directory``, replacing an earlier capture there (a rerun).

        Refuses to clear a non-empty directory that is not a capture, so a wrong ``out-dir`` cannot
        delete unrelated files.
        """
        if directory.exists() and any(directory.iterdir()):
            if not (directory / CELL_FILE).is_file():
                raise CaptureError(f"{directory} is not empty and holds no capture; choose another output folder")
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CELL_FILE).write_text(cell.model_dump_json(indent=2))
        (directory / INDEX_FILE).touch()
        writer = cls(directory, cell)
        writer.write_summary(completed=False, seconds=0.0)
        return writer

    def captures(self, round: int) -> bool:
        return round in self._captured

    def save_global(self, round: int, state: dict[str, torch.Tensor]) -> None:
        if self.captures(round):
            _save_tensors(self.directory / global_file(round), state)

    def save_reply(self, entry: IndexEntry, tensors: dict[str, torch.Tensor] | None) -> IndexEntry:
        """Store a reply's arrays (in captured rounds) and append its index line; returns the entry."""
        if tensors is not None and self.captures(entry.round):
            if entry.aggregate:
                name = aggregate_file(entry.round)
            elif entry.ok:
                name = update_file(entry.round, entry.partition_id)
            else:
                name = rejected_file(entry.round, entry.node_id)
            _save_tensors(self.directory / name, tensors)
            entry = IndexEntry(**{**asdict(entry), "file": name})
        with open(self.directory / INDEX_FILE, "a") as index:
            index.write(json.dumps(asdict(entry), allow_nan=True) + "\n")
        return entry

    def add_round(self, summary: dict[str, Any]) -> None:
        self.rounds.append(summary)

    def write_summary(self, *, completed: bool, seconds: float) -> None:
        write_text_atomically(
            self.directory / SUMMARY_FILE,
            json.dumps(
                {
                    "format": FORMAT_VERSION,
                    "cell_key": self.cell.key,
                    "clients": self.cell.federation.clients,
                    "rounds": self.rounds,
                    "completed": completed,
                    "seconds": seconds,
                },
                indent=2,
                allow_nan=True,
            ),
        )


class Capture:
    """Read access to a capture directory (for the evaluator, reports and tests)."""

    def __init__(self, directory: Path) -> None:
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"capture directory not found: {directory}")
        for name in (CELL_FILE, INDEX_FILE, SUMMARY_FILE):
            if not (directory / name).is_file():
                raise CaptureError(f"{directory} is not a capture: {name} is missing")
        self.directory = directory
        try:
            self.cell = Cell.model_validate_json((directory / CELL_FILE).read_text())
        except ValidationError as err:
            raise CaptureError(f"{directory / CELL_FILE} does not hold a valid cell: {err}") from None
        self.summary: dict[str, Any] = json.loads((directory / SUMMARY_FILE).read_text())
        self.entries = [self._entry(line) for line in (directory / INDEX_FILE).read_text().splitlines() if line]

    def _entry(self, line: str) -> IndexEntry:
        try:
            return IndexEntry(**json.loads(line))
        except (TypeError, json.JSONDecodeError) as err:
            raise CaptureError(f"{self.directory / INDEX_FILE}: bad line {line[:80]!r}: {err}") from None

    @property
    def completed(self) -> bool:
        return bool(self.summary.get("completed"))

    def entry(self, round: int, partition_id: int) -> IndexEntry:
        for entry in self.entries:
            if entry.round == round and entry.partition_id == partition_id:
                return entry
        raise CaptureError(f"{self.directory} has no reply of partition {partition_id} in round {round}")

    def aggregate(self, round: int) -> IndexEntry | None:
        """The secure aggregate's entry of ``round``, or None when the round has none (no SecAgg+)."""
        return next((entry for entry in self.entries if entry.round == round and entry.aggregate), None)

    def modification(self, round: int) -> ImprintSpec | None:
        """The imprint block the active server sent in ``round`` (its line's ``modification`` in
        ``federation.json``), or None when the round's model was the plain one."""
        for line in self.summary.get("rounds", []):
            if line.get("round") == round and line.get("modification") is not None:
                return ImprintSpec.model_validate(line["modification"])
        return None

    def global_state(self, round: int) -> dict[str, torch.Tensor]:
        return self._load(global_file(round))

    def tensors(self, entry: IndexEntry) -> dict[str, torch.Tensor]:
        if entry.file is None:
            raise CaptureError(f"round {entry.round}, partition {entry.partition_id}: no arrays were captured")
        return self._load(entry.file)

    def _load(self, name: str) -> dict[str, torch.Tensor]:
        path = inside(self.directory, name, source=str(self.directory / INDEX_FILE))
        if not path.is_file():
            raise CaptureError(f"capture file missing: {path}")
        return torch.load(path, weights_only=True)
