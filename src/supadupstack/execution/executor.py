"""Where units of work (batches, frames) run: in-process, a local process pool, or dask.

``run_jobs(fn, jobs, cfg)`` yields ``(index, result)`` as jobs finish, whatever the backend,
so callers can show progress and still place results by index. The result of a run does not
depend on the backend: each job is a pure function of its inputs.

dask.distributed: ``execution.scheduler = "tcp://host:8786"`` connects to a running cluster
(its workers must have supadupstack installed and see the same file paths);
``execution.dask_local = N`` starts a LocalCluster of N single-threaded worker processes on
loopback for the duration of the call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import as_completed
from typing import Any

from supadupstack.config import ExecutionConfig
from supadupstack.errors import SupaDupError
from supadupstack.execution.pool import limit_threads, process_pool

log = logging.getLogger(__name__)


def describe(cfg: ExecutionConfig, n_jobs: int) -> str:
    """One line naming the backend a run with these settings uses."""
    if cfg.scheduler:
        return f"dask scheduler {cfg.scheduler}"
    if cfg.dask_local:
        return f"dask LocalCluster ({cfg.dask_local} workers)"
    workers = min(local_workers(cfg), max(n_jobs, 1))
    return "in-process" if workers <= 1 else f"local process pool ({workers} workers)"


def local_workers(cfg: ExecutionConfig) -> int:
    return cfg.workers or os.cpu_count() or 1


def run_jobs(
    fn: Callable[[Any], Any], jobs: Iterable[Any], cfg: ExecutionConfig
) -> Iterator[tuple[int, Any]]:
    """Run ``fn(job)`` for every job; yield (index, result) in completion order."""
    jobs = list(jobs)
    if not jobs:
        return
    if cfg.scheduler or cfg.dask_local:
        yield from _run_dask(fn, jobs, cfg)
        return
    workers = min(local_workers(cfg), len(jobs))
    if workers <= 1:
        for i, job in enumerate(jobs):
            yield i, fn(job)
        return
    with process_pool(workers) as pool:
        futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


@contextlib.contextmanager
def _dask_client(cfg: ExecutionConfig):
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - a pinned dependency
        raise SupaDupError("dask.distributed is not installed") from None
    if cfg.scheduler:
        try:
            client = Client(cfg.scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise SupaDupError(f"cannot reach dask scheduler {cfg.scheduler}: {exc}") from None
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
            client.submit(fn, job, pure=False, key=f"supadupstack-{run_id}-{i}")
            for i, job in enumerate(jobs)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in dask_completed(futures):
            yield index[fut.key], fut.result()
