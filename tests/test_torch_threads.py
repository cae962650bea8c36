import threading

import pytest
import torch

from fedsyn.biomod.torch_threads import on_torch_threads_available, run_on_torch_threads

PARALLEL = pytest.mark.skipif(
    not on_torch_threads_available(), reason="torch's OpenMP runtime is not found in this process"
)


@PARALLEL
def test_tasks_run_at_the_same_time_on_torchs_threads() -> None:
    """Each task waits (without the GIL) for the other: run one after another, the barrier breaks."""
    torch.ones(1 << 20).sum()  # torch's OpenMP workers exist and spin, as after a training step
    barrier = threading.Barrier(2, timeout=10)
    threads = run_on_torch_threads([lambda: (barrier.wait(), threading.get_ident())[1]] * 2, threads=2)
    assert len(set(threads)) == 2 and threading.get_ident() in threads


def test_results_keep_the_order_of_the_tasks_and_every_task_runs_once() -> None:
    ran: list[int] = []

    def task(index: int) -> int:
        ran.append(index)
        return index * index

    assert run_on_torch_threads([lambda i=i: task(i) for i in range(7)], threads=2) == [i * i for i in range(7)]
    assert sorted(ran) == list(range(7))


def test_one_thread_runs_the_tasks_in_the_calling_thread() -> None:
    caller = threading.get_ident()
    assert run_on_torch_threads([threading.get_ident] * 3, threads=1) == [caller] * 3


def test_a_failing_task_raises_in_the_caller_after_the_others_ran() -> None:
    ran: list[str] = []

    def fails() -> None:
        raise ValueError("part 1 failed")

    with pytest.raises(ValueError, match="part 1 failed"):
        run_on_torch_threads([lambda: ran.append("a"), fails, lambda: ran.append("c")], threads=2)
    assert sorted(ran) == ["a", "c"]
