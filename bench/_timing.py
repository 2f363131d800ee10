"""Timing shared by the benchmarks: pin the thread counts, then time two engines step by step, alternating.

Alternating steps (ours, theirs, ours, ...) means load from other processes on a shared machine hits both engines
alike, so the *ratio* stays meaningful even when the absolute times do not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def default_threads() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pin_blas_threads(threads: int) -> None:
    """Set the BLAS/OpenMP thread counts; call before numpy or torch is first imported, or it has no effect."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def interleaved_times(ours: Callable[[], object], theirs: Callable[[], object], repeats: int,
                      warmup: int) -> tuple[list[float], list[float]]:
    """Seconds per step of both engines, alternating steps so that load from other processes hits both alike."""
    for _ in range(warmup):
        ours()
        theirs()
    times_ours, times_theirs = [], []
    for _ in range(repeats):
        for step, times in ((ours, times_ours), (theirs, times_theirs)):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return times_ours, times_theirs
