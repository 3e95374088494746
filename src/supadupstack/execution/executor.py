"""Where units of work (batches, frames) run: in-process, a local process pool, or dask.

``run_jobs(fn, jobs, cfg)`` yields ``(index, result)`` as jobs finish, whatever the backend,
so callers can show progress and still place results by index. The result of a run does not
depend on the backend: each job is a pure function of its inputs, and BLAS runs on one thread
in every process (``threads``).

A job that raises yields a ``JobFailed`` (one-line reason; the traceback goes to the run log)
and the other jobs go on, except for a ``SupaDupError`` (a full disk, an unwritable folder),
which stops the run with its own one-line message. A worker process that dies (OOM killer)
stops the run too: finished units are on disk and a rerun reuses them. On any exit before
the end (Ctrl-C, SIGTERM, an error) the pool's workers are killed at once.

``execution.memory_budget_mb`` caps the number of concurrent workers when the caller says how
much memory one job needs (``job_mb``).

dask.distributed: ``execution.scheduler = "tcp://host:8786"`` connects to a running cluster
(its workers must have supadupstack installed and see the same file paths);
``execution.dask_local = N`` starts a LocalCluster of N single-threaded worker processes on
loopback for the duration of the call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from supadupstack.config import ExecutionConfig
from supadupstack.errors import SupaDupError
from supadupstack.execution.pool import start_jobs, stop_pool
from supadupstack.execution.threads import limit_threads, pin_blas

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobFailed:
    """A job that raised instead of returning a result; ``reason`` is one line."""

    reason: str


def local_workers(cfg: ExecutionConfig) -> int:
    return cfg.workers or os.cpu_count() or 1


def workers_for(cfg: ExecutionConfig, n_jobs: int, job_mb: float | None = None) -> int:
    """Local worker processes for ``n_jobs`` jobs: cores (or ``-j``), capped by the memory
    budget when one job needs about ``job_mb`` MB."""
    workers = min(local_workers(cfg), max(n_jobs, 1))
    if job_mb and job_mb > 0:
        workers = min(workers, max(1, int(cfg.memory_budget_mb // job_mb)))
    return workers


def describe(cfg: ExecutionConfig, n_jobs: int, job_mb: float | None = None) -> str:
    """One line naming the backend a run with these settings uses."""
    if cfg.scheduler:
        return f"dask scheduler {cfg.scheduler}"
    if cfg.dask_local:
        return f"dask LocalCluster ({cfg.dask_local} workers)"
    workers = workers_for(cfg, n_jobs, job_mb)
    return "in-process" if workers <= 1 else f"local process pool ({workers} workers)"


def _failure(exc: BaseException, index: int, tb_text: str | None = None) -> JobFailed:
    if isinstance(exc, SupaDupError):
        raise exc
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if tb_text is None:
        tb_text = "".join(traceback.format_exception(exc))
    log.warning("job %d failed: %s", index, reason)
    log.info("job %d traceback:\n%s", index, tb_text.rstrip())
    return JobFailed(reason)


def _call(fn: Callable[[Any], Any], job: Any, index: int) -> Any:
    """Run one job in this process on a pickled copy of it, exactly what a worker receives.

    Pickling is not exact for every object: an astropy WCS travels as header text and comes
    back with CRVAL changed by ~1e-12 deg, and the pipeline's thresholds turn that into
    visible differences. A copy made the same way keeps in-process runs byte-identical to
    pool and dask runs.
    """
    job = pickle.loads(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
    try:
        return fn(job)
    except Exception as exc:  # noqa: BLE001 - one job's failure is reported, the run goes on
        return _failure(exc, index)


def run_jobs(
    fn: Callable[[Any], Any],
    jobs: Iterable[Any],
    cfg: ExecutionConfig,
    job_mb: float | None = None,
) -> Iterator[tuple[int, Any]]:
    """Run ``fn(job)`` for every job; yield (index, result or JobFailed) in completion order."""
    jobs = list(jobs)
    if not jobs:
        return
    if cfg.scheduler or cfg.dask_local:
        yield from _run_dask(fn, jobs, cfg)
        return
    workers = workers_for(cfg, len(jobs), job_mb)
    if workers <= 1:
        for i, job in enumerate(jobs):
            yield i, _call(fn, job, i)
        return
    yield from _run_pool(fn, jobs, workers)


def _run_pool(fn, jobs: list, workers: int) -> Iterator[tuple[int, Any]]:
    pool, futures = start_jobs(fn, jobs, workers)
    try:
        for fut in as_completed(futures):
            i = futures[fut]
            exc = fut.exception()
            if isinstance(exc, BrokenProcessPool):
                raise SupaDupError(
                    "a worker process died (killed, or out of memory?): run again with fewer "
                    "workers (-j) or a smaller execution.memory_budget_mb; finished work is reused"
                )
            if exc is not None:
                remote = getattr(exc.__cause__, "tb", None)
                yield i, _failure(exc, i, remote)
                continue
            yield i, fut.result()
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def _pinned_call(fn: Callable[[Any], Any], job: Any) -> Any:
    """A job on a dask worker: BLAS on one thread there too (an external cluster's workers
    were started by someone else)."""
    pin_blas()
    return fn(job)


@contextlib.contextmanager
def _dask_client(cfg: ExecutionConfig):
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - a pinned dependency
        raise SupaDupError("dask.distributed is not installed") from None
    if cfg.scheduler:
        try:
            client = Client(cfg.scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SupaDupError(f"cannot reach dask scheduler {cfg.scheduler}: {why}") from None
        with client:
            yield client
        return
    cluster = LocalCluster(
        n_workers=cfg.dask_local,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    with cluster, Client(cluster) as client:
        client.run(limit_threads, max(1, (os.cpu_count() or 1) // cfg.dask_local))
        yield client


def _run_dask(fn, jobs: list, cfg: ExecutionConfig) -> Iterator[tuple[int, Any]]:
    from distributed import as_completed as dask_completed

    with _dask_client(cfg) as client:
        log.info("dask: %d jobs on %s", len(jobs), client.scheduler_info().get("address", "?"))
        run_id = uuid.uuid4().hex[:12]  # keys unique per call: a long-lived cluster caches by key
        futures = [
            client.submit(_pinned_call, fn, job, pure=False, key=f"supadupstack-{run_id}-{i}")
            for i, job in enumerate(jobs)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in dask_completed(futures):
                i = index[fut.key]
                if fut.status == "error":
                    exc = fut.exception()
                    tb = "".join(traceback.format_tb(fut.traceback())) + repr(exc)
                    yield i, _failure(exc, i, tb)
                    continue
                yield i, fut.result()
        except BaseException:
            client.cancel(futures, force=True)
            raise
