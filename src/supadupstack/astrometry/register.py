"""Give every frame a WCS (DESIGN §3.2): header WCS → ``<stem>.wcs`` sidecar → plate solver.

Solving runs in parallel threads, each driving one solver subprocess in its own temporary
working directory. A solved WCS is written as a sidecar (atomically) so it is never solved
twice; frames that get no WCS are returned as ``Skip`` records with the reason, never dropped
silently.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from astropy.wcs import WCS

from supadupstack.astrometry import solvers
from supadupstack.astrometry.wcs_sources import (
    header_wcs,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from supadupstack.config import AstrometryConfig
from supadupstack.errors import FrameError, SupaDupError
from supadupstack.frames.fits_io import read_header
from supadupstack.frames.model import Frame, Skip

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]


def existing_wcs(frame: Frame) -> tuple[WCS | None, str, str | None]:
    """(wcs, source, problem) from the sidecar or the header, without solving.

    A ``<stem>.wcs`` sidecar wins over a header WCS: it is a solution the user made on purpose
    for this very file (often to replace a poor header WCS) and usually carries SIP terms.
    ``source`` is "sidecar", "header" or "none"; ``problem`` is the one-line reason a sidecar
    exists but cannot be used (else None). Raises FrameError when the header is unreadable.
    """
    problem = None
    side = sidecar_path(frame.path)
    if side.is_file():
        try:
            return read_sidecar(side, frame.width, frame.height), "sidecar", None
        except SupaDupError as exc:
            problem = str(exc)
    wcs = header_wcs(read_header(frame))
    if wcs is not None:
        if problem:
            log.warning("%s; using the header WCS instead", problem)
        return wcs, "header", None
    return None, "none", problem


def _set(frame: Frame, wcs: WCS | None, source: str) -> None:
    if wcs is not None:
        wcs.pixel_shape = (frame.width, frame.height)
    frame.wcs = wcs
    frame.wcs_source = source


def _save_sidecar(frame: Frame, wcs: WCS) -> None:
    """Write the sidecar; an unwritable folder only costs a warning (the WCS stays in memory)."""
    path = sidecar_path(frame.path)
    try:
        write_sidecar(wcs, path, frame.width, frame.height)
    except (OSError, SupaDupError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log.warning(
            "cannot write WCS sidecar %s (%s); the solution is kept in memory only", path, why
        )


def _solve_one(solver: solvers.Solver, frame: Frame, cfg: AstrometryConfig) -> WCS:
    with tempfile.TemporaryDirectory(prefix="supadupstack-solve-") as tmp:
        return solver.solve(frame, cfg, Path(tmp))


def attach_wcs(
    frames: list[Frame],
    cfg: AstrometryConfig,
    solve: bool,
    progress: Progress | None = None,
) -> tuple[list[Frame], list[Skip]]:
    """Set ``frame.wcs`` / ``frame.wcs_source`` ("header", "sidecar", "solved" or "none").

    Returns (frames kept, in input order; skips with "no WCS: <reason>"). With ``solve``
    False, frames without a WCS are kept with source "none" (only an unusable sidecar is a
    skip). With ``solve`` True, those frames are plate-solved in parallel (``cfg.workers``
    threads, 0 = number of cores) and a frame that cannot be solved is a skip.
    ``progress(done, total, message)`` is called after each solve attempt.
    """
    kept: dict[int, Frame] = {}
    skipped: dict[int, Skip] = {}
    pending: list[tuple[int, Frame, str | None]] = []
    for i, frame in enumerate(frames):
        try:
            wcs, source, problem = existing_wcs(frame)
        except FrameError as exc:
            skipped[i] = Skip(frame.path, f"no WCS: {exc}")
            continue
        _set(frame, wcs, source)
        if wcs is not None:
            kept[i] = frame
        elif solve:
            pending.append((i, frame, problem))
        elif problem:
            skipped[i] = Skip(frame.path, problem)
        else:
            kept[i] = frame

    if pending:
        solver = solvers.find_solver(cfg.solver)
        if solver is None:
            reason = solvers.no_solver_reason(cfg.solver)
            for i, frame, problem in pending:
                skipped[i] = Skip(frame.path, _no_wcs(reason, problem))
        else:
            _solve_all(solver, pending, cfg, progress, kept, skipped)

    order = sorted(kept)
    return [kept[i] for i in order], [skipped[i] for i in sorted(skipped)]


def _no_wcs(reason: str, problem: str | None) -> str:
    return f"no WCS: {reason}" + (f" ({problem})" if problem else "")


def _solve_all(
    solver: solvers.Solver,
    pending: list[tuple[int, Frame, str | None]],
    cfg: AstrometryConfig,
    progress: Progress | None,
    kept: dict[int, Frame],
    skipped: dict[int, Skip],
) -> None:
    workers = max(1, min(cfg.workers or os.cpu_count() or 1, len(pending)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="solve")
    try:
        futures = {pool.submit(_solve_one, solver, f, cfg): (i, f, p) for i, f, p in pending}
        _collect(futures, solver, cfg, progress, kept, skipped)
    except BaseException:  # Ctrl-C, SIGTERM: end the solver processes, do not wait for them
        pool.shutdown(wait=False, cancel_futures=True)
        solvers.RUNNING.kill_all()
        raise
    pool.shutdown(wait=True)


def _collect(futures, solver, cfg, progress, kept, skipped) -> None:
    """Record each finished solve: a WCS (and its sidecar) or a skip with the reason."""
    total, done = len(futures), 0
    for future in as_completed(futures):
        i, frame, problem = futures[future]
        done += 1
        try:
            wcs = future.result()
        except (SupaDupError, OSError) as exc:  # OSError: temp dir, reading the frame
            skipped[i] = Skip(frame.path, _no_wcs(str(exc), problem))
            if progress:
                progress(done, total, f"{frame.name}: not solved ({exc})")
            continue
        _set(frame, wcs, "solved")
        kept[i] = frame
        if cfg.write_sidecar:
            _save_sidecar(frame, wcs)
        if progress:
            progress(done, total, f"{frame.name}: solved by {solver.name}")
