"""Numeric thread pools, pinned so that a run's numbers never depend on them.

OpenBLAS (inside numpy and scipy) splits a product among its threads in a way that changes
the rounding with the thread count and the CPU's kernel, and the pipeline's hard thresholds
(SNR cuts, clip masks) turn such 1-ulp differences into visible ones. So every process of a
run (the CLI, library calls of ``pipeline``, each pool or dask worker) runs BLAS on one thread:
its uses here are small least-squares fits, and the one large product (the resampling map) is
a numba loop with a fixed order. numba and OpenCV keep their threads: their kernels compute
each output pixel in one thread, in one order, so the thread count changes only the speed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy  # noqa: F401  (loads numpy's OpenBLAS)
import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS, a second copy)
from threadpoolctl import threadpool_limits


def pin_blas() -> None:
    """Limit every BLAS library loaded in this process to one thread, for good (workers)."""
    threadpool_limits(1, user_api="blas")


@contextlib.contextmanager
def single_thread_blas() -> Iterator[None]:
    """BLAS on one thread inside the block, the caller's setting restored after it."""
    with threadpool_limits(1, user_api="blas"):
        yield


def limit_threads(threads: int) -> None:
    """A worker's share of the cores for numba and OpenCV (both default to all); BLAS on one."""
    import cv2
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    cv2.setNumThreads(threads)
    pin_blas()
