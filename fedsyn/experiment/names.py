"""The experiment's closed vocabularies, each taken from the registry that owns it.

The schema validates against these tuples, and the result fields, the report and the CLI read them
from here, so a model or dataset added to its registry is a valid config value everywhere at once
(defense types come from ``fedsyn.defenses.registry`` through ``DefenseSet``; attack methods are
checked against ``attacks.METHODS`` itself). Only the lists without a registry of their own (the
attackers, the metrics and their privacy direction) are written out here.
"""

from __future__ import annotations

from collections.abc import Sequence

from fedsyn.biomod import COMBOS, METHODS as BIOMOD_METHODS, parse_combo
from fedsyn.data import DATASET_NAMES, DATASET_OPTIONS, SCHEMES
from fedsyn.models import MODEL_NAMES, MODEL_OPTIONS

MODELS: tuple[str, ...] = MODEL_NAMES
DATASETS: tuple[str, ...] = DATASET_NAMES
PARTITION_SCHEMES: tuple[str, ...] = SCHEMES
OPTIONS = {"model": MODEL_OPTIONS, "dataset": DATASET_OPTIONS}
"""Per model and per dataset name, the options model its builder or reader accepts."""

ATTACKERS: tuple[str, ...] = ("oblivious", "informed")
"""The threat models of the evaluator (docs/methods.md, "Oblivious vs informed")."""

METRICS: tuple[str, ...] = ("mse", "psnr", "ssim", "lpips", "mse_pct", "label_acc")
"""What ``attacks.metrics.score`` reports per attacked batch (the mean over its images)."""

BEST_OF: tuple[str, ...] = ("psnr", "ssim", "lpips", "mse_pct")
"""The metrics whose best single image a result row also keeps (``best_<metric>``)."""

HIGHER_IS_PRIVATE: dict[str, bool] = {
    "mse_pct": True,
    "psnr": False,
    "ssim": False,
    "lpips": True,
    "mse": True,
    "best_mse_pct": True,
    "best_lpips": True,
    "best_psnr": False,
    "best_ssim": False,
    "label_acc": False,
}
"""Every scored metric's direction: True where a higher value means the reconstruction leaks less."""

REPORT_METRICS: tuple[str, ...] = ("mse_pct", "psnr", "ssim", "lpips", "mse")
"""The image metrics a report can rank by, in the report's order."""


def one_of(name: str, allowed: Sequence[str], what: str) -> str:
    """``name`` if ``allowed`` holds it, else ``ValueError`` listing the allowed values."""
    if name not in allowed:
        raise ValueError(f"unknown {what} {name!r}; allowed: {', '.join(allowed)}")
    return name


def combo_flags(combo: str) -> dict[str, bool]:
    """``{"fl": ..., "wr": ..., "ws": ...}`` of a combination name of ``COMBOS``."""
    flags = parse_combo(combo)
    return {method: flags[method] for method in BIOMOD_METHODS}


__all__ = [
    "ATTACKERS",
    "BEST_OF",
    "BIOMOD_METHODS",
    "COMBOS",
    "DATASETS",
    "HIGHER_IS_PRIVATE",
    "METRICS",
    "MODELS",
    "OPTIONS",
    "PARTITION_SCHEMES",
    "REPORT_METRICS",
    "combo_flags",
    "one_of",
]
