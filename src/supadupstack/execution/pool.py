"""Local process pools that are safe with numba's threaded kernels.

A plain ``fork`` of a process that has already run an OpenMP-threaded numba kernel aborts
("fork() called from a process already using GNU OpenMP"), so workers start from a
``forkserver``. Each worker limits numba and OpenCV to its share of the cores, so N workers ×
threads never oversubscribe the machine.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor


def limit_threads(threads: int) -> None:
    """Give each worker its share of the cores in numba and OpenCV (both default to all)."""
    import cv2
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    cv2.setNumThreads(threads)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes, each with numba limited to cores // workers threads."""
    cores = os.cpu_count() or 1
    ctx = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=limit_threads,
        initargs=(max(1, cores // max(workers, 1)),),
    )
