"""Image grids: for one model column, defense, attacker and method, every attacked target (seed, round,
client) as a stack of the evaluator's PNGs, one per FL/WR/WS combination (true images over paired
reconstructions), with each reconstruction's PSNR under it (``image_psnr``, docs/results.md).

The HTML shows the PNGs at an integer pixel scale, sized to their content; the PSNR labels line up with
the PNG's columns, whose geometry ``torchvision.utils.save_image`` fixes (a 2-pixel border around and
between images).
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsyn.experiment.names import COMBOS

from .tables import Column, column_rank, column_title

PNG_PADDING = 2
"""The border ``save_image`` draws around and between the images of the evaluator's PNG."""


@dataclass(frozen=True)
class GridRow:
    combo: str
    image: Path
    psnr: float | None
    image_psnr: tuple[float, ...] | None


@dataclass(frozen=True)
class GridTarget:
    seed: Any
    round: int
    partition_id: int
    rows: tuple[GridRow, ...]

    @property
    def title(self) -> str:
        # A negative partition id is a SecAgg+ round's aggregate (docs/results.md, "partition_id").
        who = "the clients' aggregate" if self.partition_id < 0 else f"client {self.partition_id}"
        seed = "" if self.seed is None else f", seed {self.seed}"
        return f"{who}, round {self.round}{seed}"


@dataclass(frozen=True)
class GridSet:
    column: Column
    defense: str
    attacker: str
    method: str
    targets: tuple[GridTarget, ...]

    @property
    def title(self) -> str:
        return f"{column_title(self.column)}; defense {self.defense}; attacker {self.attacker}; method {self.method}"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, read from its header."""
    with open(path, "rb") as handle:
        header = handle.read(24)
    if header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def image_sets(rows: Sequence[dict[str, Any]], results_dir: Path) -> list[GridSet]:
    """Every scored row with a PNG on disk, arranged by (column, defense, attacker, method) and target."""
    groups: dict[tuple[Column, str, str, str], dict[tuple[Any, int, int], list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for row in rows:
        if row["status"] == "ok" and row.get("image_path") and (results_dir / row["image_path"]).is_file():
            place = ((row["model"], int(row["trained"])), row["defense"], row["attacker"], row["method"])
            groups[place][(row.get("seed"), int(row["round"]), int(row["partition_id"]))].append(row)
    rank = {combo: i for i, combo in enumerate(COMBOS)}
    sets = []
    for (column, defense, attacker, method), targets in groups.items():
        built = []
        for (seed, round, partition_id), members in sorted(targets.items(), key=lambda item: repr(item[0])):
            members.sort(key=lambda row: rank.get(row["combo"], len(rank)))
            built.append(
                GridTarget(
                    seed,
                    round,
                    partition_id,
                    tuple(
                        GridRow(
                            row["combo"],
                            results_dir / row["image_path"],
                            row.get("psnr"),
                            tuple(row["image_psnr"]) if row.get("image_psnr") else None,
                        )
                        for row in members
                    ),
                )
            )
        sets.append(GridSet(column, defense, attacker, method, tuple(built)))
    sets.sort(key=lambda s: (column_rank(s.column), s.defense != "none", s.defense, s.attacker, s.method))
    return sets
