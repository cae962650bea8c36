"""Run GIL-releasing tasks on torch's own OpenMP threads.

A CPU training step ends in torch's OpenMP parallel regions (the optimizer step), after which GNU
OpenMP keeps its worker threads spinning for milliseconds, waiting for the next region. Work that
runs on threads of its own right after the step shares a core with a spinning worker; a WR pass split
over two such threads took as long as on one. Started as an OpenMP parallel region of the runtime torch
uses (``GOMP_parallel``, which GNU, LLVM and Intel OpenMP all export), the tasks run on those very
workers instead.

Each thread of the region pulls the next task from a shared queue (under the GIL, the tasks' own work
must release it to run in parallel, as ``nogil`` numba functions do) until none are left, so every task
runs once whatever team size OpenMP grants. Where torch's runtime cannot be found (another parallel
backend, or no ``/proc/self/maps``), the tasks run one after another in the calling thread.
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Callable, Sequence, TypeVar

import torch

T = TypeVar("T")

_BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_RUNTIME_NAMES = ("libgomp", "libiomp5", "libomp")


@functools.cache
def _gomp_parallel() -> Callable[..., None] | None:
    """``GOMP_parallel`` of the OpenMP runtime loaded for torch, or None when there is none to find."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if line.count(" ") >= 5}
    except OSError:
        return None
    runtimes = sorted(path for path in paths if os.path.basename(path).startswith(_RUNTIME_NAMES))
    torch_dir = os.path.dirname(torch.__file__)
    bundled = [path for path in runtimes if path.startswith(torch_dir)]
    chosen = bundled or runtimes
    if len(chosen) != 1:
        return None
    parallel = getattr(ctypes.CDLL(chosen[0]), "GOMP_parallel", None)
    if parallel is None:
        return None
    parallel.argtypes = [_BODY, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    parallel.restype = None
    return parallel


def on_torch_threads_available() -> bool:
    """Whether ``run_on_torch_threads`` runs tasks in parallel in this process."""
    return _gomp_parallel() is not None


def run_on_torch_threads(tasks: Sequence[Callable[[], T]], threads: int) -> list[T]:
    """Run every task once on up to ``threads`` of torch's OpenMP threads; their results in order.

    The first exception a task raises is re-raised here after the region ends.
    """
    parallel = _gomp_parallel()
    if parallel is None or threads <= 1 or len(tasks) <= 1:
        return [task() for task in tasks]
    results: list[T | None] = [None] * len(tasks)
    errors: list[BaseException] = []
    pending = iter(enumerate(tasks))

    def body(_: int | None) -> None:
        for index, task in pending:  # each next() runs under the GIL: every task is taken once
            try:
                results[index] = task()
            except BaseException as error:  # handed to the caller below: a callback must not raise
                errors.append(error)

    parallel(_BODY(body), None, min(threads, len(tasks)), 0)
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]  (every slot was filled: no task raised)
