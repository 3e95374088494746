"""Local process pools whose workers are safe with numba, quiet on Ctrl-C and die with the run.

- A plain ``fork`` of a process that has already run an OpenMP-threaded numba kernel aborts
  ("fork() called from a process already using GNU OpenMP"), so workers start from a
  ``forkserver``.
- Each worker limits numba and OpenCV to its share of the cores (N workers × threads never
  oversubscribe the machine) and BLAS to one thread (``threads``: same numbers everywhere).
- Workers ignore SIGINT: Ctrl-C reaches the whole process group, and it is the parent's to
  handle (it stops the pool with ``stop_pool`` and prints one line), not every worker's.
- A watchdog thread in each worker ends it as soon as the parent process is gone, however the
  parent died (SIGKILL, OOM killer): no orphan goes on burning CPU or writing into the output.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import psutil

from supadupstack.execution.threads import limit_threads

WATCH_INTERVAL_S = 0.25


def _parent_alive(pid: int, started: float) -> bool:
    """True while the process ``pid`` started at ``started`` (epoch s) runs (not a zombie)."""
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == started and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _watch_parent(pid: int, started: float) -> None:
    while _parent_alive(pid, started):
        time.sleep(WATCH_INTERVAL_S)
    os._exit(1)  # the run is gone: stop at once, whatever this worker was doing


def _worker_init(threads: int, parent_pid: int, parent_started: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_threads(threads)
    watchdog = threading.Thread(
        target=_watch_parent, args=(parent_pid, parent_started), name="watch-parent", daemon=True
    )
    watchdog.start()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes, each with numba limited to cores // workers threads."""
    cores = os.cpu_count() or 1
    me = psutil.Process()
    ctx = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(max(1, cores // max(workers, 1)), me.pid, me.create_time()),
    )


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and kill the workers now (an interrupted or failed run).

    ``shutdown`` alone waits for running jobs, which would go on writing mega-tiles after the
    user pressed Ctrl-C; the pool has no public way to end them before Python 3.14.
    """
    procs = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    for proc in procs:
        proc.join(timeout=5)
