"""Privacy against utility: a scatter of each configuration's attack score over its test accuracy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first: reports run headless)

from fedsyn.experiment.names import COMBOS  # noqa: E402

from .tables import METRIC_TITLES, UtilityPoint  # noqa: E402

_MARKERS = "osD^vP*Xhp"


def privacy_utility_plot(points: Sequence[UtilityPoint], metric: str, path: Path) -> Path | None:
    """One panel per (defense, attacker, method): x = final test accuracy, y = mean attack score.

    Colour = FL/WR/WS combination, marker = model, filled = trained, hollow = untrained. Points without an
    accuracy or a score are left out; returns None (and writes nothing) when no point remains.
    """
    usable = [p for p in points if p.accuracy is not None and p.score.mean is not None and math.isfinite(p.score.mean)]
    if not usable:
        return None
    panels = sorted({(p.defense, p.attacker, p.method) for p in usable}, key=lambda g: (g[0] != "none", g))
    models = sorted({p.model for p in usable})
    colours = plt.get_cmap("tab10")
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.2 * nrows), squeeze=False)
    for ax, (defense, attacker, method) in zip(axes.flat, panels):
        for p in (p for p in usable if (p.defense, p.attacker, p.method) == (defense, attacker, method)):
            colour = colours(COMBOS.index(p.combo) % 10 if p.combo in COMBOS else 9)
            ax.scatter(
                p.accuracy,
                p.score.mean,
                marker=_MARKERS[models.index(p.model) % len(_MARKERS)],
                s=55,
                facecolors=colour if p.trained else "none",
                edgecolors=colour,
                linewidths=1.5,
            )
        ax.set_title(f"defense: {defense}, attacker: {attacker}, {method}", fontsize=10)
        ax.set_xlabel("final test accuracy")
        ax.set_ylabel(METRIC_TITLES[metric])
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    present = [c for c in COMBOS if any(p.combo == c for p in usable)]
    handles = [
        plt.Line2D([], [], linestyle="", marker="o", color=colours(COMBOS.index(c) % 10), label=c) for c in present
    ] + [
        plt.Line2D([], [], linestyle="", marker=_MARKERS[i % len(_MARKERS)], color="grey", label=m)
        for i, m in enumerate(models)
    ]
    fig.legend(handles=handles, loc="center right", fontsize=8, title="filled = trained", title_fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
