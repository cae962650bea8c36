"""CIFAR-10 and CIFAR-100 through torchvision, from disk unless a download is asked for.

The data root defaults to ``$FEDSYN_DATA``, else ``~/.cache/fedsyn/data``; torchvision's layout is
expected below it (``cifar-10-batches-py/`` or ``cifar-100-python/``). CIFAR-100 uses its 100 fine labels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .dataset import RawSplit
from .errors import DatasetNotFoundError

DATA_ENV = "FEDSYN_DATA"


def default_data_root() -> Path:
    """Where downloadable datasets live when no root is given: ``$FEDSYN_DATA`` or ``~/.cache/fedsyn/data``."""
    return Path(os.environ.get(DATA_ENV) or Path.home() / ".cache" / "fedsyn" / "data").expanduser()


def load_cifar_split(name: str, root: str | os.PathLike[str] | None, split: str, download: bool) -> RawSplit:
    """Split ``split`` of ``name`` ("cifar10" or "cifar100") from torchvision's files under ``root``."""
    # torchvision is imported here: it takes about a second, and most runs never read these datasets.
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, title = {"cifar10": (CIFAR10, "CIFAR-10"), "cifar100": (CIFAR100, "CIFAR-100")}[name]
    root = Path(root).expanduser() if root is not None else default_data_root()
    looked_at = root / cls.base_folder
    try:
        data = cls(root=str(root), train=split == "train", download=download)
    except RuntimeError as err:
        raise DatasetNotFoundError(_missing_message(name, title, root, looked_at)) from err
    except OSError as err:
        raise DatasetNotFoundError(
            f"downloading {title} into {root} failed ({err}). "
            + _missing_message(name, title, root, looked_at)
        ) from err
    images = np.ascontiguousarray(data.data.transpose(0, 3, 1, 2))
    return RawSplit(images=images, labels=np.asarray(data.targets, dtype=np.int64), classes=list(data.classes))


def _missing_message(name: str, title: str, root: Path, looked_at: Path) -> str:
    export = "the CIFAR-10 JPEG export" if name == "cifar10" else f"a {title} image-folder export"
    return (
        f"{title} was not found: looked for torchvision's files in {looked_at}. To provide it, "
        f"pass download=True to let torchvision download it into {root}; or put the extracted "
        f"'{looked_at.name}' folder under root=DIR (default ${DATA_ENV} or ~/.cache/fedsyn/data); "
        f"or use imagefolder with {export} (train/<class>/*.jpg, test/<class>/*.jpg): "
        "load_dataset('imagefolder', root=EXPORT_DIR)."
    )
