"""The deterministic per-step batch choice the evaluator replays."""

import numpy as np
import pytest

from fedsyn.data import batch_indices, partition

PART = partition(np.repeat(np.arange(10), 50), 4, scheme="iid", seed=0)[1]


def _batch(**changes):
    args = dict(round=2, step=1, batch_size=8, seed=5) | changes
    return batch_indices(PART, **args)


def test_deterministic_distinct_and_inside_the_partition():
    batch = _batch()
    assert batch.dtype == np.int64 and batch.shape == (8,)
    assert np.array_equal(batch, _batch())
    assert np.array_equal(batch, batch_indices(list(PART), round=2, step=1, batch_size=8, seed=5))
    assert len(set(batch.tolist())) == 8 and set(batch.tolist()) <= set(PART.tolist())


@pytest.mark.parametrize("change", [{"round": 3}, {"step": 0}, {"seed": 6}])
def test_changes_with_round_step_and_seed(change):
    assert not np.array_equal(_batch(), _batch(**change))


def test_depends_on_the_partition_contents():
    other = PART + 1
    assert not np.array_equal(_batch() + 1, batch_indices(other, round=2, step=1, batch_size=8, seed=5))


def test_whole_partition_and_bad_sizes():
    everything = batch_indices(PART, round=0, step=0, batch_size=len(PART), seed=0)
    assert np.array_equal(np.sort(everything), PART)
    with pytest.raises(ValueError, match="batch_size"):
        _batch(batch_size=len(PART) + 1)
    with pytest.raises(ValueError, match="round"):
        _batch(round=-1)
