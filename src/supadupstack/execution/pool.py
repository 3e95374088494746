"""Local process pools whose workers are safe with numba, quiet on Ctrl-C and die with the run.

- A plain ``fork`` of a process that has already run an OpenMP-threaded numba kernel aborts
  ("fork() called from a process already using GNU OpenMP"), so workers start from a
  ``forkserver``.
- Each worker limits numba and OpenCV to its share of the cores (N workers × threads never
  oversubscribe the machine) and BLAS to one thread (``threads``: same numbers everywhere).
- Workers ignore SIGINT from birth (``_children_ignore_sigint``, preloaded by the fork
  server): Ctrl-C reaches the whole process group, and it is the parent's to handle (it stops
  the pool with ``stop_pool`` and prints one line), not every worker's.
- A watchdog thread in each worker ends it as soon as the parent process is gone, however the
  parent died (SIGKILL, OOM killer): no orphan goes on burning CPU or writing into the output.
- Pools start with Ctrl-C and SIGTERM deferred (``start_jobs``): ``submit`` forks a worker
  and only then records it, so a signal in between left a worker ``stop_pool`` did not know;
  it then failed to unpickle the pool's already-removed semaphore and printed a traceback
  under the one-line "stopped" message.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import psutil

from supadupstack.execution.threads import limit_threads

WATCH_INTERVAL_S = 0.25
# imported by the fork server only: it would make this process ignore Ctrl-C too
SERVER_PRELOAD = "supadupstack.execution._children_ignore_sigint"


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
    ctx.set_forkserver_preload([SERVER_PRELOAD])  # before the server starts
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(max(1, cores // max(workers, 1)), me.pid, me.create_time()),
    )


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside the block take effect as it ends.

    The Python handlers are swapped, not the signal mask: the kernel hands a process signal to
    any thread that does not block it, and Python then runs the handler in the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can set handlers, and only it receives their exceptions
        return
    arrived: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    old = {signum: signal.signal(signum, lambda s, _f: arrived.append(s)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
        if arrived:
            signal.raise_signal(arrived[0])


def start_jobs(
    fn: Callable[[Any], Any], jobs: list, workers: int
) -> tuple[ProcessPoolExecutor, dict]:
    """A new pool of ``workers`` running ``fn(job)`` for every job: (pool, {future: index}).

    Ctrl-C or SIGTERM meanwhile takes effect once the pool's queues exist and every worker is
    started and recorded in the pool, where ``stop_pool`` finds it; the pool is then stopped.
    """
    pool = None
    try:
        with signals_deferred():
            pool = process_pool(workers)
            futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
    except BaseException:
        if pool is not None:
            stop_pool(pool)
        raise
    return pool, futures


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and kill the workers now (an interrupted or failed run).

    ``shutdown`` alone waits for running jobs, which would go on writing mega-tiles after the
    user pressed Ctrl-C; the pool has no public way to end them before Python 3.14. The pool's
    manager thread is then waited for: it closes its wake-up pipe when it sees the workers
    gone, and Python 3.11's exit hook, writing to that pipe meanwhile, printed an ignored
    OSError's traceback under the one-line message.
    """
    procs = list(getattr(pool, "_processes", {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    for proc in procs:
        proc.join(timeout=5)
    if manager is not None:
        manager.join(timeout=5)
