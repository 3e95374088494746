"""A WCS for every frame by stars: a few anchors, every other frame registered to one
(DESIGN §3.3).

Anchors are the frames the rest is tied to: in each session (a run of frames without a long
DATE-OBS break), cut into chunks of ``astrometry.anchor_every`` frames, the best frame of each
chunk (most stars, then smallest FWHM) — preferring one that already has a WCS (sidecar or
header), otherwise plate-solved. Every other frame is matched to the nearest anchor in time by
its star catalogue (``match.match_stars``) and gets the anchor's distortion plus a fitted
linear part (``fit_wcs.fit_registered_wcs``); its WCS is written as a sidecar recording the
anchor, the residual rms and the number of stars. A frame that already came with a WCS is
re-fitted the same way (``astrometry.refine``), so independent solver errors do not blur the
stack; if it matches no anchor it keeps its own WCS. A frame without WCS that matches no anchor
is plate-solved; if that fails too it is skipped with both reasons.

Anchor solves run in parallel threads (one solver process each). Registration costs a few
milliseconds per frame and runs in the calling process, so the result is the same on every
backend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from supadupstack.astrometry.fit_wcs import RegisteredWcs, fit_registered_wcs
from supadupstack.astrometry.match import match_stars
from supadupstack.astrometry.register import (
    REGISTERED_CARD,
    existing_wcs,
    no_wcs_reason,
    save_sidecar,
    set_wcs,
    solve_frames,
)
from supadupstack.config import AstrometryConfig
from supadupstack.errors import FrameError
from supadupstack.frames.model import Frame, Skip
from supadupstack.frames.sessions import split_sessions, time_key

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
ANCHOR_TRIES = 3  # frames of a chunk tried in turn when its best frame does not solve
NEAREST_ANCHORS = 3  # anchors a frame is tried against, nearest in time first


@dataclass
class WcsSummary:
    """What the astrometry stage did, for the console, the report and the log."""

    anchors: list[str] = field(default_factory=list)
    solved: int = 0
    registered: int = 0
    refined: int = 0
    kept: int = 0  # given WCSs kept as they were (refine off, or no anchor matched)
    solves_failed: int = 0
    rms_px: list[float] = field(default_factory=list)
    catalogues: dict = field(default_factory=dict)  # made / read back / cache folder
    seconds: dict = field(default_factory=dict)  # wall time of the solves and registrations

    def line(self) -> str:
        rms = f", median rms {np.median(self.rms_px):.3f} px" if self.rms_px else ""
        return (
            f"{len(self.anchors)} anchor(s), {self.solved} solved, {self.registered} registered, "
            f"{self.refined} refined{rms}"
        )

    def to_dict(self) -> dict:
        return {
            "anchors": self.anchors,
            "solved": self.solved,
            "registered": self.registered,
            "refined": self.refined,
            "kept_as_given": self.kept,
            "solves_failed": self.solves_failed,
            "median_rms_px": float(np.median(self.rms_px)) if self.rms_px else None,
            "catalogues": self.catalogues,
            "seconds": self.seconds,
            "register_ms_per_frame": self.register_ms(),
        }

    def register_ms(self) -> float | None:
        """Wall milliseconds per registration attempt (match + fit), or None."""
        n = self.seconds.get("register_attempts", 0)
        return round(1000.0 * self.seconds.get("register", 0.0) / n, 2) if n else None


def _given(frame: Frame) -> bool:
    """A WCS the user or a solver gave (not a registration this project cached)."""
    return frame.wcs is not None and not (frame.wcs_note or "").startswith("registered")


def _score(frame: Frame) -> tuple:
    q = frame.quality
    fwhm = q.fwhm_px if q is not None and np.isfinite(q.fwhm_px) else np.inf
    return (-(q.n_stars if q is not None else 0), fwhm, str(frame.path))


def _chunks(frames: list[Frame], gap_min: float, every: int) -> list[list[Frame]]:
    """Time-ordered frames cut into sessions, each cut into runs of ``every`` frames."""
    ordered = sorted(frames, key=time_key)
    out = []
    for session in split_sessions(ordered, gap_min):
        for k in range(0, len(session), every):
            out.append([ordered[i] for i in session[k : k + every]])
    return out


def _candidates(chunk: list[Frame]) -> list[Frame]:
    """Anchor candidates of a chunk, best first; a frame with a given WCS wins outright."""
    given = sorted((f for f in chunk if _given(f)), key=_score)
    return given[:1] if given else sorted(chunk, key=_score)[:ANCHOR_TRIES]


def choose_anchors(
    chunks: list[list[Frame]], cfg: AstrometryConfig, solve: bool, progress: Progress | None
) -> list[Frame]:
    """One anchor per chunk: its best frame with a WCS, else the best that solves."""
    anchors: list[Frame | None] = [None] * len(chunks)
    tries = [_candidates(c) for c in chunks]
    for k, cands in enumerate(tries):
        if cands and _given(cands[0]):
            anchors[k] = cands[0]
    for attempt in range(ANCHOR_TRIES if solve else 0):
        todo = [k for k in range(len(chunks)) if anchors[k] is None and attempt < len(tries[k])]
        if not todo:
            break
        outcome = solve_frames([tries[k][attempt] for k in todo], cfg, progress)
        for k, res in zip(todo, outcome, strict=True):
            if not isinstance(res, str):
                anchors[k] = tries[k][attempt]
            else:
                log.info("anchor candidate %s not solved: %s", tries[k][attempt].path, res)
    return [a for a in anchors if a is not None]


def register_to(frame: Frame, anchor: Frame) -> RegisteredWcs | None:
    """The frame's WCS from the stars it shares with ``anchor``, or None (no match)."""
    (a_xy, a_sig), (f_xy, f_sig) = anchor.catalogue.positions(), frame.catalogue.positions()
    match = match_stars(a_xy, f_xy)
    if match is None:
        return None
    ia, jf = match.pairs[:, 0], match.pairs[:, 1]
    pa, pf = a_xy[ia], f_xy[jf]
    sigma = np.hypot(a_sig[ia], f_sig[jf])
    # first guess of the frame's reference point on the sky: through the matched transform
    crpix = anchor.wcs.wcs.crpix - 1.0
    inv = np.linalg.inv(np.vstack([match.transform, [0.0, 0.0, 1.0]]))
    start = anchor.wcs.all_pix2world([(inv @ [crpix[0], crpix[1], 1.0])[:2]], 0)[0]
    start_crval = (float(start[0]), float(start[1]))
    return fit_registered_wcs(anchor.wcs, pa, pf, (frame.width, frame.height), start_crval, sigma)


def _nearest(frame: Frame, anchors: list[Frame], place: dict[int, tuple]) -> list[Frame]:
    """Anchors to try, best first: same session, then nearest in time order."""
    session, rank = place[id(frame)]

    def key(a: Frame) -> tuple:
        a_session, a_rank = place[id(a)]
        return (a_session != session, abs(a_rank - rank), a_rank)

    return sorted(anchors, key=key)[:NEAREST_ANCHORS]


def _record(frame: Frame, reg: RegisteredWcs, anchor: Frame, source: str, write: bool) -> None:
    set_wcs(frame, reg.wcs, source)
    frame.wcs_rms_px = reg.rms_px
    frame.wcs_note = f"{source} to {anchor.name} (rms {reg.rms_px:.3f} px, {reg.n_stars} stars)"
    if write:
        cards = {
            REGISTERED_CARD: ("registered", "WCS by star registration (supadupstack)"),
            "SDSANCH": (anchor.name[-68:], "anchor"),
            "SDSRMS": (round(reg.rms_px, 4), "[px] weighted rms of matched stars"),
            "SDSNSTAR": (reg.n_stars, "matched stars"),
        }
        save_sidecar(frame, reg.wcs, cards)


def attach_wcs_by_stars(
    frames: list[Frame],
    cfg: AstrometryConfig,
    gap_min: float,
    solve: bool = True,
    progress: Progress | None = None,
) -> tuple[list[Frame], list[Skip], WcsSummary]:
    """Give every frame (each with ``frame.catalogue``) a WCS; see the module docstring.

    Returns (frames with a WCS, in input order; skips with the reason; what was done). With
    ``solve`` False nothing is plate-solved and frames left without WCS are kept (source
    "none", the reason in ``wcs_note``), as ``inspect`` lists them.
    """
    summary = WcsSummary()
    skips: dict[int, Skip] = {}
    problems: dict[int, str | None] = {}
    usable: list[Frame] = []
    for i, frame in enumerate(frames):
        try:
            wcs, source, problems[id(frame)] = existing_wcs(frame)
        except FrameError as exc:
            skips[i] = Skip(frame.path, f"no WCS: {exc}")
            continue
        set_wcs(frame, wcs, source)
        usable.append(frame)
    t0 = time.monotonic()
    chunks = _chunks(usable, gap_min, cfg.anchor_every)
    anchors = choose_anchors(chunks, cfg, solve, progress)
    summary.anchors = [str(a.path) for a in anchors]
    summary.solved = sum(1 for a in anchors if a.wcs_source == "solved")
    t1 = time.monotonic()
    unmatched = _register_all(usable, anchors, _places(usable, gap_min), cfg, summary, problems)
    t2 = time.monotonic()
    _solve_unmatched(unmatched, cfg, solve, bool(anchors), progress, problems, summary)
    t3 = time.monotonic()
    summary.seconds.update(solve=round(t1 - t0 + t3 - t2, 3), register=round(t2 - t1, 3))
    index = {id(f): i for i, f in enumerate(frames)}
    for f in unmatched:
        if f.wcs is None and solve:
            skips[index[id(f)]] = Skip(f.path, f.wcs_note or "no WCS")
    kept = [f for f in frames if index[id(f)] not in skips]
    return kept, [skips[i] for i in sorted(skips)], summary


def _places(frames: list[Frame], gap_min: float) -> dict[int, tuple[int, int]]:
    """(session, rank in time order) of every frame, by ``id``."""
    ordered = sorted(frames, key=time_key)
    out = {}
    for s, session in enumerate(split_sessions(ordered, gap_min)):
        for i in session:
            out[id(ordered[i])] = (s, i)
    return out


def _register_all(frames, anchors, place, cfg, summary: WcsSummary, problems) -> list[Frame]:
    """Register every non-anchor frame; returns the frames that matched no anchor.

    A registration is written as the frame's sidecar, except over a sidecar file this project
    did not write (an unreadable one the user may want to look at): that file is left as it
    is and its problem added to the note."""
    is_anchor = {id(a) for a in anchors}
    unmatched = []
    for frame in sorted(frames, key=time_key):
        if id(frame) in is_anchor:
            continue
        given = _given(frame)
        if given and not cfg.refine:
            summary.kept += 1
            continue
        for anchor in _nearest(frame, anchors, place):
            summary.seconds["register_attempts"] = summary.seconds.get("register_attempts", 0) + 1
            reg = register_to(frame, anchor)
            if reg is not None:
                source = "refined" if given else "registered"
                problem = problems.get(id(frame))
                write = not given and cfg.write_sidecar and not problem
                _record(frame, reg, anchor, source, write)
                if problem:
                    frame.wcs_note += f"; {problem} (left as it is)"
                summary.rms_px.append(reg.rms_px)
                summary.refined += int(given)
                summary.registered += int(not given)
                break
        else:
            if given:
                frame.wcs_note = "not refined: its stars match no anchor"
                summary.kept += 1
            else:
                unmatched.append(frame)
    return unmatched


def _solve_unmatched(
    frames, cfg, solve, have_anchors, progress, problems, summary: WcsSummary
) -> None:
    """Plate-solve the frames that matched no anchor; the reason stays on those that fail."""
    n_stars = {id(f): len(f.catalogue.stars) for f in frames}
    for f in frames:  # a registration cached in an earlier run does not count any more
        set_wcs(f, None, "none")
    outcome = solve_frames(frames, cfg, progress) if solve and frames else []
    for k, f in enumerate(frames):
        res = outcome[k] if outcome else "plate solving not attempted"
        if isinstance(res, str):
            summary.solves_failed += int(bool(outcome))
            why = f"its {n_stars[id(f)]} stars match no anchor; {res}" if have_anchors else res
            f.wcs_note = no_wcs_reason(why, problems.get(id(f)))
        else:
            summary.solved += 1
