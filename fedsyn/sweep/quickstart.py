"""``fedsyn quickstart``: the shipped ``quickstart.yaml`` sweep (all eight FL/WR/WS combinations of a
small CNN on scikit-image's photos, tiny attack budget), then its report.

The shipped configs live in the repository's ``configs/`` folder; the package reaches them as
``fedsyn/configs`` (a link to that folder, installed as package data), so ``shipped_config`` finds them in
a source checkout, an editable install and a wheel alike.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fedsyn.experiment.schema import ConfigError, ExperimentConfig, load_config, parse_config
from fedsyn.report import build_report

from .runner import SweepSummary, run_sweep

QUICKSTART = "quickstart.yaml"
QUICKSTART_DATASETS: tuple[str, ...] = ("photos", "cifar10", "imagefolder")
"""The datasets the quickstart can switch to: the shipped photos, and CIFAR-10 from torchvision's files
(``cifar10``) or from an image-folder export (``imagefolder``)."""


def shipped_config(name: str) -> Path:
    """Path of a config shipped with fedsyn (``quickstart.yaml``, ``table3.yaml``, ...)."""
    folder = resources.files("fedsyn") / "configs"
    path = Path(str(folder / name))
    if not path.is_file():
        available = sorted(p.name for p in Path(str(folder)).glob("*.yaml")) if Path(str(folder)).is_dir() else []
        raise ConfigError(
            f"shipped config {name!r} not found in {folder} (available: {', '.join(available) or 'none'}); "
            "reinstall fedsyn, or pass a config file of your own to `fedsyn sweep`"
        )
    return path


def quickstart_config(dataset: str = "photos", data_root: str | None = None) -> ExperimentConfig:
    """The quickstart config, switched to CIFAR-10 (torchvision files or an image-folder export) on request."""
    if dataset not in QUICKSTART_DATASETS:
        raise ConfigError(f"quickstart dataset must be one of {', '.join(QUICKSTART_DATASETS)}, got {dataset!r}")
    config = load_config(shipped_config(QUICKSTART))
    if dataset == "photos":
        if data_root is not None:
            raise ConfigError("--data-root is for --dataset cifar10 or imagefolder; the photos ship with scikit-image")
        return config
    if dataset == "imagefolder" and data_root is None:
        raise ConfigError("--dataset imagefolder needs --data-root PATH (a folder with train/<class>/ and test/<class>/)")
    data = config.model_dump(mode="json")
    data["name"] = f"{config.name}-{dataset}"
    data["dataset"] = {"name": dataset, "root": data_root}
    return parse_config(data, f"{QUICKSTART} with --dataset {dataset}")


def quickstart(
    out_dir: Path, *, dataset: str = "photos", data_root: str | None = None, workers: int = 1
) -> SweepSummary:
    """Run (or resume) the quickstart sweep into ``out_dir`` and write its report there (also when some cells
    failed: the report lists them); returns the sweep's summary."""
    summary = run_sweep(quickstart_config(dataset, data_root), Path(out_dir), workers=workers)
    path = build_report(Path(out_dir))
    print(f"report written to {path}")
    return summary
