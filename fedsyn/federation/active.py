"""The active server's side of a modified round, shared by both server paths (plain and SecAgg+).

In the cell's active round (``attack.active.round``) the server sends the arrays of the model wrapped
in its imprint block (``fedsyn.task.active.modified_state``) with ``model-modification`` in the train
config, expects replies of the wrapped model's names and shapes, and records the spec in the round's
line of ``federation.json`` (``modification``). After aggregating, it drops the block and goes on with
the base model's arrays: every other round is plain.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from fedsyn.experiment.grid import Cell
from fedsyn.task.active import active_round, imprint_design, modified_state, plain_state
from fedsyn.task.data import dataset_spec, load_split
from fedsyn.task.model import plain_model

from .protocol import expected_arrays, modification_config
from .server_round import RoundBook


class ActiveServer:
    """What the server sends and expects per round: the plain model, or in the active round the modified one."""

    def __init__(self, cell: Cell, capture: str) -> None:
        self.cell = cell
        self.round = active_round(cell)
        self.spec = None if self.round is None else imprint_design(cell)
        self._expected: dict[str, tuple[int, ...]] = {}
        if self.spec is not None:
            test = load_split(dataset_spec(cell), "test")
            model = plain_model(cell, test.num_classes, test.in_shape, imprint=self.spec)
            self._expected = expected_arrays(model, capture)

    def modifies(self, round: int) -> bool:
        return self.spec is not None and round == self.round

    def outgoing(self, round: int, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The arrays sent in ``round``: ``arrays`` themselves, or the modified model built around them."""
        if not self.modifies(round):
            return dict(arrays)
        test = load_split(dataset_spec(self.cell), "test")
        base = {name: torch.from_numpy(np.asarray(array).copy()) for name, array in arrays.items()}
        return {name: t.numpy() for name, t in modified_state(self.cell, self.spec, base, test).items()}

    def config(self, round: int) -> dict[str, str]:
        """The train config entries of ``round`` beyond the local hyperparameters."""
        return modification_config(self.spec if self.modifies(round) else None)

    def expected(self, round: int, plain: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Reply names and shapes of ``round`` (``plain``: those of the unmodified model)."""
        return self._expected if self.modifies(round) else plain

    def record(self, round: int, book: RoundBook) -> None:
        """Mark the round in ``federation.json`` when its model was modified."""
        if self.modifies(round):
            book.modified(self.spec.model_dump(mode="json"))

    def continued(self, round: int, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The global arrays the next round starts from: the block dropped after the modified round."""
        return plain_state(arrays) if self.modifies(round) else dict(arrays)
