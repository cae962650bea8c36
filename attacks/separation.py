"""B images from one fully connected layer's gradient: rows dominated by one image, then ICA.

For a batch, row ``j`` of the input layer's weight gradient is ``sum_n D[j, n] x_n`` and its bias
gradient ``sum_n D[j, n]`` (``D[j, n]``: the error at output ``j`` for image ``n``, summed over local
steps), so the weight gradient ``G = D X`` has rank B. Projected on its top-B right singular vectors
``V``, row ``j`` has coordinates ``p_j = D[j] A`` with ``X = A V^T``.

1. Rows dominated by one image: behind a ReLU an output is often active for one image only, and then
   its ratio ``p_j / dL/db[j]`` is exactly that image's coordinates ``a_n``. Such rows pile up on B
   points; :func:`dominant_clusters` finds the points that many rows share.
2. The Cocktail Party attack (Kariyappa et al. 2023, "Cocktail Party Attack: Breaking Aggregation-Based
   Privacy in Federated Learning using Independent Component Analysis"): ``G`` is a linear mix of
   independent, non-Gaussian sources. Here the sources are taken to be the columns of ``D`` (the
   per-image errors across outputs, sparse behind a ReLU) and the samples the rows, so FastICA
   (Hyvarinen 1999, symmetric, log-cosh contrast) on the ``p_j`` recovers the mixing matrix ``A^T``
   up to the scale and sign of each column.
3. Scale and sign: with ``a_n = c_n u_n`` for the unit-free directions ``u_n``, the bias gradient is
   ``dL/db = P U^{-1} (1 / c)``, a least-squares problem for ``1 / c``, so no pixel-box heuristic is
   needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Rows whose ratio coordinates lie within this share of their norm belong to one cluster.
CLUSTER_RADIUS = 1e-2
# A cluster needs at least this many rows to count as an image.
MIN_CLUSTER_ROWS = 3
# Robust low-rank fit: first-guess outliers exceed this many times their expected magnitude; later ones, this
# many robust residual scales of their row; entries within EXACT_RESIDUAL row medians always fit.
JUMP_ROW_MEDIANS = 10.0
RESIDUAL_MADS = 20.0
EXACT_RESIDUAL = 0.05
ROBUST_FITS = 3
OVERSAMPLE = 8
POWER_ITERATIONS = 4
ICA_ITERATIONS = 500
ICA_TOLERANCE = 1e-10


@dataclass(frozen=True)
class Separation:
    """B images' coordinates in the basis ``basis`` (pixels, B), and where each came from.

    ``coordinates`` is (B, B), row n the coordinates of image n; ``sources[n]`` is ``"rows"`` (a
    cluster of rows dominated by image n, ``rows[n]`` of them) or ``"ica"``; ``members[n]`` holds the
    cluster's row indices (empty for ICA images); ``rows`` the rows used and ``kept`` their entries
    that the robust fit kept (``False``: an outlier).
    """

    basis: torch.Tensor
    coordinates: torch.Tensor
    sources: list[str]
    members: list[torch.Tensor]
    ica_converged: bool
    ica_iterations: int
    singular_values: list[float]
    kept: torch.Tensor
    rows: torch.Tensor


def robust_low_rank(
    weight_grad: torch.Tensor, rank: int, keep: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rank-``rank`` fit of a (rows, pixels) gradient that ignores outlying entries (WR's jumps).

    An entry is an outlier when it is more than ``JUMP_ROW_MEDIANS`` times the magnitude a rank-one
    model of medians expects (its row's median magnitude times its pixel's median relative magnitude,
    so that a bright pixel is not an outlier in every row): a first guess; then, fit by fit, when its residual exceeds ``RESIDUAL_MADS`` robust residual
    scales of its row; outliers are replaced by the fit and the fit repeated. ``keep`` (bool, same shape)
    marks the entries that may be used at all. Returns row coordinates (rows, rank), the basis
    (pixels, rank), the leading singular values and the final keep-mask.
    """
    tiny = torch.finfo(weight_grad.dtype).tiny
    magnitude = torch.where(keep, weight_grad.abs(), torch.nan)
    row_scale = magnitude.nanmedian(dim=1, keepdim=True).values.nan_to_num().clamp_min(tiny)
    column_scale = (magnitude / row_scale).nanmedian(dim=0, keepdim=True).values.nan_to_num()
    floor = EXACT_RESIDUAL * row_scale
    used = keep & (weight_grad.abs() <= JUMP_ROW_MEDIANS * row_scale * column_scale + floor)
    for _ in range(ROBUST_FITS):
        coordinates, basis, singular = _top_subspace(torch.where(used, weight_grad, 0.0), rank, generator)
        fit = coordinates @ basis.T
        filled = torch.where(used, weight_grad, fit)
        coordinates, basis, singular = _top_subspace(filled, rank, generator)
        residual = (weight_grad - coordinates @ basis.T).abs()
        spread = 1.4826 * torch.where(used, residual, torch.nan).nanmedian(dim=1, keepdim=True).values.nan_to_num()
        used = keep & (residual <= RESIDUAL_MADS * spread.clamp_min(0) + floor)
    filled = torch.where(used, weight_grad, coordinates @ basis.T)
    coordinates, basis, singular = _top_subspace(filled, rank, generator)
    return coordinates, basis, singular, used


def _top_subspace(matrix: torch.Tensor, rank: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``rank`` SVD by randomized subspace iteration (Halko et al. 2011): coordinates, basis, values."""
    width = min(rank + OVERSAMPLE, *matrix.shape)
    sketch = torch.randn(matrix.shape[1], width, generator=generator, dtype=matrix.dtype)
    q = torch.linalg.qr(matrix @ sketch).Q
    for _ in range(POWER_ITERATIONS):
        q = torch.linalg.qr(matrix @ torch.linalg.qr(matrix.T @ q).Q).Q
    u, s, vh = torch.linalg.svd(q.T @ matrix, full_matrices=False)
    return (q @ u[:, :rank]) * s[:rank], vh[:rank].T, s


def dominant_clusters(points: torch.Tensor, count: int) -> list[torch.Tensor]:
    """Row indices of up to ``count`` groups of near-identical points, largest first.

    Greedy: the point with the most neighbours within ``CLUSTER_RADIUS`` of its norm founds a group,
    the group's rows leave, and so on while a group has ``MIN_CLUSTER_ROWS`` rows.
    """
    if points.shape[0] == 0:
        return []
    norms = points.norm(dim=1)
    distance = torch.cdist(points, points)
    near = distance <= CLUSTER_RADIUS * norms.unsqueeze(1)
    left = torch.ones(points.shape[0], dtype=torch.bool)
    groups: list[torch.Tensor] = []
    while len(groups) < count:
        counts = (near & left.unsqueeze(0) & left.unsqueeze(1)).sum(dim=1)
        founder = int(counts.argmax())
        if int(counts[founder]) < MIN_CLUSTER_ROWS:
            break
        members = torch.nonzero(near[founder] & left).flatten()
        groups.append(members)
        left[members] = False
    return groups


def fast_ica(samples: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, bool, int]:
    """Mixing matrix (B, B) of ``samples`` (n, B), columns up to scale and sign, by symmetric FastICA.

    Returns the mixing matrix, whether the fixed-point iteration converged and how many it took.
    """
    dims = samples.shape[1]
    centred = samples - samples.mean(dim=0)
    covariance = centred.T @ centred / centred.shape[0]
    values, vectors = torch.linalg.eigh(covariance)
    values = values.clamp_min(torch.finfo(samples.dtype).eps * float(values.max()))
    whitening = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    white = centred @ whitening
    unmixing = _decorrelate(torch.randn(dims, dims, generator=generator, dtype=samples.dtype))
    converged = False
    iteration = 0
    for iteration in range(1, ICA_ITERATIONS + 1):
        projected = white @ unmixing.T
        g = torch.tanh(projected)
        slope = (1 - g * g).mean(dim=0)
        updated = _decorrelate(g.T @ white / white.shape[0] - slope.unsqueeze(1) * unmixing)
        change = float(((updated * unmixing).sum(dim=1).abs() - 1).abs().max())
        unmixing = updated
        if change < ICA_TOLERANCE:
            converged = True
            break
    return torch.linalg.inv(unmixing @ whitening), converged, iteration


def _decorrelate(matrix: torch.Tensor) -> torch.Tensor:
    """``(M M^T)^{-1/2} M``: the nearest matrix with orthonormal rows."""
    values, vectors = torch.linalg.eigh(matrix @ matrix.T)
    return vectors @ torch.diag(values.rsqrt()) @ vectors.T @ matrix


def scale_by_bias(coordinates: torch.Tensor, directions: torch.Tensor, bias_grad: torch.Tensor) -> torch.Tensor:
    """Scaled image coordinates (B, B) from ``directions`` (B, B, rows up to scale) and the bias gradient.

    Each row's coordinates are ``p_j = sum_n D[j, n] c_n u_n`` and its bias gradient ``sum_n D[j, n]``:
    with ``E = P U^{-1}``, ``dL/db = E (1 / c)``, solved by least squares.
    """
    mixing = torch.linalg.lstsq(directions.T, coordinates.T).solution.T
    inverse_scale = torch.linalg.lstsq(mixing, bias_grad.unsqueeze(1)).solution.flatten()
    return directions / inverse_scale.unsqueeze(1)


def separate(
    weight_grad: torch.Tensor, bias_grad: torch.Tensor, keep: torch.Tensor, count: int, seed: int
) -> Separation:
    """Separate ``count`` images from a weight gradient (rows, pixels), its bias gradient and the
    keep-mask of usable entries; rows whose weight gradient is all zero are left out. Rows with the
    same bias gradient count as one unit when clusters are counted."""
    rows = torch.nonzero((weight_grad * keep).abs().sum(dim=1) > 0).flatten()
    weight_grad, bias_grad, keep = weight_grad[rows], bias_grad[rows], keep[rows]
    generator = torch.Generator().manual_seed(seed)
    coordinates, basis, singular, used = robust_low_rank(weight_grad, count, keep, generator)
    ratios = coordinates / bias_grad.unsqueeze(1)
    # Weight splitting repeats each unit's bias gradient over its group's rows (copies that FL only
    # perturbs): cluster one row per distinct bias value so that copies cannot pass for an image.
    _, unit = torch.unique(bias_grad, return_inverse=True)
    first = torch.full((int(unit.max()) + 1,), rows.numel(), dtype=torch.int64).scatter_reduce(
        0, unit, torch.arange(rows.numel()), reduce="amin"
    )
    groups = [torch.isin(unit, unit[first[g]]).nonzero().flatten() for g in dominant_clusters(ratios[first], count)]
    images = [ratios[g].median(dim=0).values for g in groups]
    sources, members = ["rows"] * len(groups), [rows[g] for g in groups]
    converged, iterations = True, 0
    if len(groups) < count:
        mixing, converged, iterations = fast_ica(coordinates, generator)
        components = scale_by_bias(coordinates, mixing.T, bias_grad)
        for component in _unmatched(components, images):
            if len(images) == count:
                break
            images.append(component)
            sources.append("ica")
            members.append(torch.zeros(0, dtype=torch.int64))
    return Separation(
        basis=basis,
        coordinates=torch.stack(images),
        sources=sources,
        members=members,
        ica_converged=converged,
        ica_iterations=iterations,
        singular_values=[float(v) for v in singular[: count + 1]],
        kept=used,
        rows=rows,
    )


def _unmatched(components: torch.Tensor, found: list[torch.Tensor]) -> list[torch.Tensor]:
    """ICA components ordered from the least to the most similar (|cosine|) to a cluster already found."""
    if not found:
        return list(components)
    known = torch.stack(found)
    cosine = (components @ known.T) / (components.norm(dim=1, keepdim=True) * known.norm(dim=1) + 1e-300)
    closest = cosine.abs().max(dim=1).values
    return [components[i] for i in closest.argsort()]
