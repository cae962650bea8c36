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


def hungarian(rec: torch.Tensor, true: torch.Tensor) -> list[int]:
    """The permutation `perm` minimising the summed MSE; `rec[perm]` lines up with `true`.

    `perm[i]` is the index of the reconstruction paired with true image i. Both inputs are (B, ...) with
    the same shape; ties (identical images) are broken by scipy's solver, deterministically.
    """
    _, columns = linear_sum_assignment(mse_matrix(rec, true).numpy())
    return [int(j) for j in columns]
