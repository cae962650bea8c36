"""Match reconstructed images to true images.

Gradient inversion recovers a batch as a set: the order of the reconstructed images says nothing about
which true image each one came from. Scores are therefore taken after an optimal one-to-one matching.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment


def mse_matrix(rec: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """`out[i, j]` = mean squared error between true image i and reconstruction j (float64)."""
    true_flat = true.flatten(1).double()
    rec_flat = rec.flatten(1).double()
    return torch.stack([((rec_flat - image) ** 2).mean(dim=1) for image in true_flat])


UNPAIRED = -1
"""The pairing entry of a true image that no reconstruction was paired with (fewer reconstructions)."""


def hungarian(rec: torch.Tensor, true: torch.Tensor) -> list[int]:
    """The pairing minimising the summed MSE; with as many reconstructions as true images, `rec[perm]`
    lines up with `true`.

    `perm[i]` is the index of the reconstruction paired with true image i. With fewer reconstructions
    than true images (a method that returns only what it recovered, like the imprint attack) the
    assignment is rectangular: each reconstruction goes to a distinct true image and the others get
    ``UNPAIRED``. Ties (identical images) are broken by scipy's solver, deterministically.
    """
    rows, columns = linear_sum_assignment(mse_matrix(rec, true).numpy())
    perm = [UNPAIRED] * len(true)
    for i, j in zip(rows, columns):
        perm[int(i)] = int(j)
    return perm
