"""Client partitions: coverage, determinism, non-emptiness and label skew."""

import numpy as np
import pytest
import torch

from fedsyn.data import SCHEMES, UnknownSchemeError, partition

LABELS = np.repeat(np.arange(10), 100)  # 1000 samples, 10 balanced classes


def _assert_exact_cover(parts, n):
    assert all(len(p) > 0 and p.dtype == np.int64 for p in parts)
    joined = np.concatenate(parts)
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))


def _mean_kl(parts, labels, classes=10):
    """Mean KL divergence of each client's label histogram from the global one."""
    overall = np.bincount(labels, minlength=classes) / len(labels)
    kls = []
    for p in parts:
        hist = np.bincount(labels[p], minlength=classes) / len(p)
        nz = hist > 0
        kls.append(float(np.sum(hist[nz] * np.log(hist[nz] / overall[nz]))))
    return float(np.mean(kls))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_sample_once_and_deterministic(scheme):
    parts = partition(LABELS, 7, scheme=scheme, seed=3)
    assert len(parts) == 7
    _assert_exact_cover(parts, len(LABELS))
    again = partition(torch.from_numpy(LABELS), 7, scheme=scheme, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = partition(LABELS, 7, scheme=scheme, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def test_iid_sizes_are_balanced():
    sizes = [len(p) for p in partition(LABELS, 7)]
    assert max(sizes) - min(sizes) <= 1


def test_small_alpha_skews_label_histograms():
    iid = partition(LABELS, 10, scheme="iid")
    skewed = partition(LABELS, 10, scheme="dirichlet", alpha=0.1)
    mild = partition(LABELS, 10, scheme="dirichlet", alpha=100.0)
    assert _mean_kl(iid, LABELS) < 0.1
    assert _mean_kl(skewed, LABELS) > 10 * _mean_kl(iid, LABELS)
    assert _mean_kl(skewed, LABELS) > 5 * _mean_kl(mild, LABELS)
    top_share = np.mean([np.bincount(LABELS[p]).max() / len(p) for p in skewed])
    assert top_share > 0.5  # on average one class dominates a client


def test_dirichlet_never_leaves_a_client_empty():
    labels = np.repeat(np.arange(2), 10)
    parts = partition(labels, 15, scheme="dirichlet", alpha=0.01, seed=0)
    _assert_exact_cover(parts, len(labels))


def test_shards_give_each_client_few_classes():
    parts = partition(LABELS, 10, scheme="shards", shards_per_client=2, seed=1)
    _assert_exact_cover(parts, len(LABELS))
    assert all(len(p) == 100 for p in parts)
    assert all(len(np.unique(LABELS[p])) <= 2 for p in parts)


def test_bad_arguments():
    with pytest.raises(UnknownSchemeError, match="iid, dirichlet, shards"):
        partition(LABELS, 3, scheme="pathological")
    with pytest.raises(ValueError, match="num_clients"):
        partition(LABELS[:5], 6)
    with pytest.raises(ValueError, match="alpha"):
        partition(LABELS, 3, scheme="dirichlet", alpha=0.0)
    with pytest.raises(ValueError, match="shards_per_client"):
        partition(LABELS[:10], 6, scheme="shards", shards_per_client=2)
    with pytest.raises(ValueError, match="integers"):
        partition(LABELS.astype(float), 3)
