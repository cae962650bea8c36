"""The "trained" model state of a cell: centralised training before the federation, cached on disk.

The paper's Table 3 compares untrained models with models trained for 100 epochs (seed 001: SGD,
learning rate 0.01, no augmentation or regularisation). A cell with ``trained = E > 0`` starts its
federation from the weights of its *converted* model (its FL/WR/WS combination active during training)
after ``E`` epochs on the cell's training split.

Checkpoints are cached by a hash of everything that determines them (model, dataset, combination and its
hyperparameters, pretraining settings, epochs, seed, and whether the defense set has ``dpsgd``, which
swaps BatchNorm for GroupNorm), so cells that differ only in federation, other defense or attack
settings, and later sweeps, reuse them. The cache lives in ``$FEDSYN_CACHE/checkpoints`` when
``FEDSYN_CACHE`` is set, else ``~/.cache/fedsyn/checkpoints``. Each entry is ``<hash>.pt`` (the
``state_dict``) and ``<hash>.json`` (what it was trained from, the loss and accuracy per epoch, the test
accuracy). Files are written under a temporary name and renamed, and a lock file keeps two processes
from training the same checkpoint at once.

Randomness: initial weights from ``derive_seed(seed, "init", model label)`` (the same weights the
federation starts an untrained cell from), the conversion's WR streams and private FL factors from
``derive_seed(seed, "pretrain", "biomod")`` (shared FL factors: ``derive_seed(seed, "fl-shared")``, the
ones every client uses), the epoch order from ``derive_seed(seed, "pretrain", "shuffle", epoch)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedsyn.atomic import write_atomically, write_text_atomically
from fedsyn.biomod import attach, convert
from fedsyn.defenses import DPSGD
from fedsyn.experiment.grid import Cell
from fedsyn.seeding import derive_seed
from fedsyn.task.data import load_split
from fedsyn.task.model import plain_model
from fedsyn.task.training import accuracy_and_loss

from .locks import file_lock

CACHE_ENV = "FEDSYN_CACHE"
FORMAT_VERSION = 1


def checkpoint_dir() -> Path:
    """Where trained checkpoints are cached (see the module docstring)."""
    base = os.environ.get(CACHE_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "fedsyn"
    return root / "checkpoints"


def pretrain_spec(cell: Cell) -> dict[str, Any]:
    """Everything that determines a cell's trained weights (and nothing else)."""
    return {
        "format": FORMAT_VERSION,
        "seed": cell.seed,
        "dataset": cell.dataset.model_dump(mode="json"),
        "model": cell.model.model_dump(mode="json"),
        "biomod": cell.biomod.model_dump(mode="json"),
        "pretrain": cell.pretrain.model_dump(mode="json"),
        "epochs": cell.trained,
        # DP-SGD cells train a BatchNorm-free architecture (fedsyn.defenses.dpsgd.prepare_model).
        **({"architecture": "dp-compatible"} if cell.defense.find(DPSGD) is not None else {}),
    }


def pretrain_key(cell: Cell) -> str:
    canonical = json.dumps(pretrain_spec(cell), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(cell: Cell, *, log: Any = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train the cell's converted model for ``cell.trained`` epochs; returns (state_dict, training record)."""
    data = load_split(cell.dataset, "train")
    shared = cell.biomod.fl and cell.biomod.fl_scope == "shared"
    model = convert(
        plain_model(cell, data.num_classes, data.in_shape),
        cell.biomod,
        seed=derive_seed(cell.seed, "pretrain", "biomod"),
        fl_seed=derive_seed(cell.seed, "fl-shared") if shared else None,
    )
    device = _device()
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cell.pretrain.lr)
    handle = attach(optimizer, model)
    loss_fn = nn.CrossEntropyLoss()
    samples = min(len(data), cell.pretrain.max_samples or len(data))
    history = []
    start = time.monotonic()
    for epoch in range(cell.trained):
        model.train()
        order = torch.randperm(
            len(data), generator=torch.Generator().manual_seed(derive_seed(cell.seed, "pretrain", "shuffle", epoch))
        )[:samples]
        total_loss, correct = 0.0, 0
        for begin in range(0, samples, cell.pretrain.batch_size):
            x, y = data.batch(order[begin : begin + cell.pretrain.batch_size])
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            out = model(x)
            loss = loss_fn(out, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"pretraining {cell.model.label} ({cell.combo}) diverged at epoch {epoch + 1}: loss {loss.item()}; "
                    f"lower pretrain.lr (now {cell.pretrain.lr})"
                )
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
        history.append({"epoch": epoch + 1, "loss": total_loss / samples, "train_accuracy": correct / samples})
        if log is not None:
            log(f"pretrain {cell.model.label} {cell.combo}: epoch {epoch + 1}/{cell.trained} loss {total_loss / samples:.4f}")
    handle.remove()
    model.cpu()
    test = load_split(cell.dataset, "test")
    test_accuracy, test_loss = accuracy_and_loss(model, test, np.arange(len(test)))
    record = {
        "spec": pretrain_spec(cell),
        "history": history,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "seconds": time.monotonic() - start,
        "device": str(device),
        "torch_version": torch.__version__,
        "rejuvenated_total": handle.rejuvenated_total,
    }
    return {name: tensor.detach() for name, tensor in model.state_dict().items()}, record


def trained_weights(cell: Cell, *, cache: Path | None = None, log: Any = None) -> Path | None:
    """Path of the cell's trained ``state_dict`` (training it on a cache miss); None for an untrained cell."""
    if cell.trained == 0:
        return None
    cache = cache or checkpoint_dir()
    key = pretrain_key(cell)
    weights, record_path = cache / f"{key}.pt", cache / f"{key}.json"
    with file_lock(cache / f"{key}.lock"):
        if weights.is_file() and record_path.is_file():
            return weights
        state, record = train(cell, log=log)
        write_text_atomically(record_path, json.dumps(record, indent=2))
        write_atomically(weights, lambda p: torch.save(state, p))
    return weights
