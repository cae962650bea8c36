"""Image grids: for one model, trained state, defense, attacker and method, the same client batch as every
FL/WR/WS combination's attack left it (each row: the evaluator's PNG, true images over reconstructions)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402  (headless backend first)
import matplotlib.pyplot as plt  # noqa: E402

from fedsyn.experiment.names import COMBOS  # noqa: E402


@dataclass
class ImageGrid:
    model: str
    trained: int
    defense: str
    attacker: str
    method: str
    round: int
    partition_id: int
    path: Path

    @property
    def title(self) -> str:
        # A negative partition id is a SecAgg+ round's aggregate (docs/results.md, "partition_id").
        who = "the clients' aggregate" if self.partition_id < 0 else f"client {self.partition_id}"
        return (
            f"{self.model} {self.trained}ep, defense {self.defense}, attacker {self.attacker}, {self.method} "
            f"(round {self.round}, {who})"
        )


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


_PIXEL_SCALE = 2.0  # screen pixels per image pixel
_DPI = 100
_LABEL_INCHES = 1.0
_TITLE_INCHES = 0.55
_GAP_INCHES = 0.08


def _draw(grid: ImageGrid, combos: list[str], images: list[Any]) -> None:
    """One image per combination, stacked, at a fixed pixel scale with the combination on the left."""
    widths = [image.shape[1] * _PIXEL_SCALE / _DPI for image in images]
    heights = [image.shape[0] * _PIXEL_SCALE / _DPI for image in images]
    fig_w = max(widths) + _LABEL_INCHES + 0.2
    fig_h = sum(heights) + _GAP_INCHES * (len(images) - 1) + _TITLE_INCHES + 0.1
    fig = plt.figure(figsize=(max(fig_w, 4.5), fig_h), dpi=_DPI)
    top = fig_h - _TITLE_INCHES
    for combo, image, w, h in zip(combos, images, widths, heights):
        ax = fig.add_axes((_LABEL_INCHES / fig.get_figwidth(), (top - h) / fig_h, w / fig.get_figwidth(), h / fig_h))
        ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(combo, rotation=0, ha="right", va="center", fontsize=9)
        top -= h + _GAP_INCHES
    fig.text(0.02, 1 - 0.05 / fig_h, f"{grid.title}\nrows: true images over reconstructions", va="top", fontsize=8)
    fig.savefig(grid.path, dpi=_DPI)
    plt.close(fig)


def image_grids(rows: Sequence[dict[str, Any]], results_dir: Path, out_dir: Path) -> list[ImageGrid]:
    """Write one PNG per (model, trained, defense, attacker, method) with a row per combination; returns them.

    The batch shown is the first (round, client) that every combination attacked successfully, so the
    true images are the same in every row. Rows whose PNG is missing on disk are skipped.
    """
    groups: dict[tuple[str, int, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "ok" and row.get("image_path") and (results_dir / row["image_path"]).is_file():
            groups[(row["model"], int(row["trained"]), row["defense"], row["attacker"], row["method"])].append(row)
    out_dir.mkdir(parents=True, exist_ok=True)
    grids = []
    for (model, trained, defense, attacker, method), group in sorted(groups.items()):
        by_combo: dict[str, dict[tuple[int, int], dict[str, Any]]] = defaultdict(dict)
        for row in group:
            by_combo[row["combo"]][(int(row["round"]), int(row["partition_id"]))] = row
        combos = [c for c in COMBOS if c in by_combo] + sorted(set(by_combo) - set(COMBOS))
        common = set.intersection(*(set(by_combo[c]) for c in combos))
        place = min(common) if common else min(min(by_combo[c]) for c in combos)
        chosen = [(c, by_combo[c].get(place) or by_combo[c][min(by_combo[c])]) for c in combos]
        images = [mpimg.imread(results_dir / row["image_path"]) for _, row in chosen]
        name = _safe(f"grid_{model}_{trained}ep_{defense}_{attacker}_{method}.png")
        grid = ImageGrid(model, trained, defense, attacker, method, place[0], place[1], out_dir / name)
        _draw(grid, [combo for combo, _ in chosen], images)
        grids.append(grid)
    return grids
