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

from astropy.io import fits
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
            wcs = read_sidecar(side, frame.width, frame.height)
            frame.wcs_note = registered_note(side)
            return wcs, "sidecar", None
        except SupaDupError as exc:
            problem = str(exc)
    wcs = header_wcs(read_header(frame))
    if wcs is not None:
        if problem:
            log.warning("%s; using the header WCS instead", problem)
        return wcs, "header", None
    return None, "none", problem


REGISTERED_CARD = "SDSWCS"  # in sidecars this project wrote by registration (not a solve)


def registered_note(side: Path) -> str | None:
    """ "registered earlier to <anchor>" for a sidecar written by star registration: such a WCS
    is a cached registration, redone against this run's anchor, never an anchor itself."""
    try:
        header = fits.getheader(side)
    except (OSError, ValueError):
        return None
    if str(header.get(REGISTERED_CARD, "")).strip() != "registered":
        return None
    return f"registered earlier to {header.get('SDSANCH', '?')}"


def set_wcs(frame: Frame, wcs: WCS | None, source: str) -> None:
    if wcs is not None:
        wcs.pixel_shape = (frame.width, frame.height)
    frame.wcs = wcs
    frame.wcs_source = source


def save_sidecar(frame: Frame, wcs: WCS, cards: dict | None = None) -> None:
    """Write the sidecar; an unwritable folder only costs a warning (the WCS stays in memory)."""
    path = sidecar_path(frame.path)
    try:
        write_sidecar(wcs, path, frame.width, frame.height, cards)
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
        set_wcs(frame, wcs, source)
        if wcs is not None:
            kept[i] = frame
        elif solve:
            pending.append((i, frame, problem))
        elif problem:
            skipped[i] = Skip(frame.path, problem)
        else:
            kept[i] = frame

    if pending:
        outcomes = solve_frames([f for _, f, _ in pending], cfg, progress)
        for (i, frame, problem), res in zip(pending, outcomes, strict=True):
            if isinstance(res, str):
                skipped[i] = Skip(frame.path, no_wcs_reason(res, problem))
            else:
                kept[i] = frame

    order = sorted(kept)
    return [kept[i] for i in order], [skipped[i] for i in sorted(skipped)]


def no_wcs_reason(reason: str, problem: str | None) -> str:
    return f"no WCS: {reason}" + (f" ({problem})" if problem else "")


def solve_frames(
    frames: list[Frame], cfg: AstrometryConfig, progress: Progress | None = None
) -> list[WCS | str]:
    """Plate-solve ``frames`` in parallel threads (``cfg.workers``, 0 = cores); per frame the
    WCS (also set on the frame, source "solved", and written as a sidecar when
    ``cfg.write_sidecar``) or the one-line reason it could not be solved."""
    if not frames:
        return []
    solver = solvers.find_solver(cfg.solver)
    if solver is None:
        return [solvers.no_solver_reason(cfg.solver)] * len(frames)
    workers = max(1, min(cfg.workers or os.cpu_count() or 1, len(frames)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="solve")
    try:
        futures = {pool.submit(_solve_one, solver, f, cfg): i for i, f in enumerate(frames)}
        out = _collect(futures, frames, solver, cfg, progress)
    except BaseException:  # Ctrl-C, SIGTERM: end the solver processes, do not wait for them
        pool.shutdown(wait=False, cancel_futures=True)
        solvers.RUNNING.kill_all()
        raise
    pool.shutdown(wait=True)
    return out


def _collect(futures, frames, solver, cfg, progress) -> list[WCS | str]:
    """Each finished solve: a WCS (set on the frame, sidecar written) or the reason."""
    out: list[WCS | str] = [""] * len(frames)
    for done, future in enumerate(as_completed(futures), 1):
        i = futures[future]
        frame = frames[i]
        try:
            wcs = future.result()
        except (SupaDupError, OSError) as exc:  # OSError: temp dir, reading the frame
            out[i] = str(exc)
            if progress:
                progress(done, len(frames), f"{frame.name}: not solved ({exc})")
            continue
        set_wcs(frame, wcs, "solved")
        out[i] = wcs
        if cfg.write_sidecar:
            save_sidecar(frame, wcs)
        if progress:
            progress(done, len(frames), f"{frame.name}: solved by {solver.name}")
    return out
