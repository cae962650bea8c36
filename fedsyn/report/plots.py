"""Privacy against utility on one figure: every defense set and FL/WR/WS combination together.

One panel per (model column, attacker); x = the federated model's final test accuracy, y = the mean
worst-case score. Colour = combination, marker = defense set, both explained in legends outside the
axes; the dashed line is the trivial reconstruction's mean score (``report.baseline``), below which (for
PSNR) an attack has recovered nothing. An infinite mean (an exact reconstruction) is drawn above the
panel's finite values and labelled "inf".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first: reports run headless)
from matplotlib.lines import Line2D  # noqa: E402

from fedsyn.experiment.names import COMBOS  # noqa: E402

from .directions import direction_text  # noqa: E402
from .tables import METRIC_NAMES, column_rank, column_title  # noqa: E402
from .utility import UtilityPoint  # noqa: E402

_MARKERS = "osD^vP*Xhp<>"


def _colour(combo: str) -> tuple[float, ...]:
    cmap = plt.get_cmap("tab10")
    return cmap(COMBOS.index(combo) % 10 if combo in COMBOS else 9)


def privacy_utility_plot(points: Sequence[UtilityPoint], metric: str, path: Path) -> Path | None:
    """Draw ``points`` (one method's, normally the worst case) for ``metric``; None when nothing to draw."""
    usable = [p for p in points if p.accuracy is not None and p.means.get(metric) is not None]
    if not usable:
        return None
    panels = sorted({((p.model, p.trained), p.attacker) for p in usable}, key=lambda g: (column_rank(g[0]), g[1]))
    defenses = sorted({p.defense for p in usable}, key=lambda d: (d != "none", d))
    combos = [c for c in COMBOS if any(p.combo == c for p in usable)]
    combos += sorted({p.combo for p in usable} - set(combos))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols + 2.6, 3.8 * nrows), squeeze=False)
    reference_drawn = False
    for ax, (column, attacker) in zip(axes.flat, panels):
        members = [p for p in usable if ((p.model, p.trained), p.attacker) == (column, attacker)]
        references = [p.reference.get(metric) for p in members if p.reference.get(metric) is not None]
        finite = [p.means[metric] for p in members if math.isfinite(p.means[metric])] + references
        top = max(finite, default=1.0)
        ceiling = top + 0.1 * (abs(top) or 1.0)  # where an infinite mean (an exact reconstruction's PSNR) is drawn
        for p in members:
            value = p.means[metric]
            if not math.isfinite(value):
                ax.annotate("inf", (p.accuracy, ceiling), textcoords="offset points", xytext=(6, -3), fontsize=8)
            ax.scatter(
                p.accuracy,
                value if math.isfinite(value) else ceiling,
                marker=_MARKERS[defenses.index(p.defense) % len(_MARKERS)],
                s=60,
                color=_colour(p.combo),
                edgecolors="black",
                linewidths=0.5,
                zorder=3,
            )
        if references:
            ax.axhline(sum(references) / len(references), color="grey", linestyle="--", linewidth=1.2, zorder=1)
            reference_drawn = True
        ax.set_title(f"{column_title(column)}\nattacker: {attacker}", fontsize=9)
        ax.set_xlabel("final test accuracy", fontsize=9)
        ax.set_ylabel(f"{METRIC_NAMES[metric]}\n({direction_text(metric)})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.margins(x=0.15, y=0.15)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    combo_handles = [
        Line2D([], [], linestyle="", marker="o", markersize=8, markerfacecolor=_colour(c), markeredgecolor="black",
               label=c)
        for c in combos
    ]
    defense_handles = [
        Line2D([], [], linestyle="", marker=_MARKERS[i % len(_MARKERS)], markersize=8, markerfacecolor="white",
               markeredgecolor="black", label=d)
        for i, d in enumerate(defenses)
    ]
    right = 1 - 2.4 / fig.get_figwidth()
    first = fig.legend(handles=combo_handles, title="combination (colour)", loc="upper left",
                       bbox_to_anchor=(right + 0.01, 0.98), fontsize=8, title_fontsize=8, frameon=False)
    fig.add_artist(first)
    extra = [Line2D([], [], color="grey", linestyle="--", label="trivial reconstruction\n(mean colour)")]
    fig.legend(handles=defense_handles + (extra if reference_drawn else []), title="defense (marker)", loc="lower left",
               bbox_to_anchor=(right + 0.01, 0.02), fontsize=8, title_fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, right, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
