"""The plain data the run's plots draw, built from what a run has: its frames (time,
quality, footprint) and its report (rejections, tiles). No matplotlib here: the drawing
modules (``plots_plan``, ``plots_summary``) take these records, so they are testable without
a run, and the modes pass plain lists down (``outputs`` never imports a mode).

Units: angles in degrees, times as MJD (UTC), sizes in pixels, levels in ADU.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
from astropy.wcs import WCS

from supadupstack.canvas.canvas import frame_footprint
from supadupstack.frames.model import Frame
from supadupstack.frames.sessions import split_sessions, time_key
from supadupstack.outputs.cards import distinct


def sessions_of(frames: list[Frame], gap_min: float) -> tuple[dict[str, int], list[str]]:
    """Session index of every frame (by path) and one label per session ("session 2:
    2025-03-27 01:45 UTC"), cut where DATE-OBS jumps by more than ``gap_min`` minutes."""
    ordered = sorted(frames, key=time_key)
    index: dict[str, int] = {}
    labels: list[str] = []
    for k, members in enumerate(split_sessions(ordered, gap_min)):
        for i in members:
            index[str(ordered[i].path)] = k
        start = ordered[members[0]].date_obs
        when = f": {start[:16].replace('T', ' ')} UTC" if start else ""
        labels.append(f"session {k + 1}{when}")
    return index, labels


def counted(n: int, word: str) -> str:
    """A count with its noun: "1 batch", "3 batches", "2 master tiles"."""
    if n == 1:
        return f"1 {word}"
    return f"{n} {word}{'es' if word.endswith(('ch', 'sh', 's', 'x')) else 's'}"


def object_name(frames: list[Frame]) -> str:
    """The OBJECT most frames name (the FITS ``OBJECT`` card's rule), or "" when none does."""
    names = distinct([f.object_name for f in frames])
    return names[0][0] if names else ""


@dataclass
class PlanPicture:
    """What the plan plot shows. ``footprints[i]`` is frame i's sky polygon, (k, 2) RA/Dec in
    degrees; ``batch[i]`` and ``session[i]`` index its batch and session; ``shape`` is the
    canvas (H, W) in px and ``wcs`` its celestial WCS; ``unit`` names a batch in the legend
    ("batch" in SDS, "group" for classic's master-tile groups)."""

    wcs: WCS
    shape: tuple[int, int]
    footprints: list[np.ndarray]
    batch: list[int]
    session: list[int]
    session_labels: list[str] = field(default_factory=list)
    title: str = "batch plan"
    unit: str = "batch"


def plan_picture(
    units: list[list[Frame]], wcs: WCS, shape: tuple[int, int], gap_min: float, unit: str
) -> PlanPicture:
    """The picture of frames split into ``units`` (SDS batches or classic groups, numbered by
    position) on a canvas of ``wcs`` and ``shape`` (H, W); sessions cut at gaps longer than
    ``gap_min`` minutes. Footprints are traced with 4 points a side: enough at plot scale."""
    frames = [f for u in units for f in u]
    session, labels = sessions_of(frames, gap_min)
    n_units = sum(1 for u in units if u)
    counts = f"{counted(len(frames), 'frame')} in {counted(n_units, unit)}, "
    counts += counted(len(labels), "session")
    name = object_name(frames)
    title = f"{name + ' — ' if name else ''}{unit} plan: {counts}"
    return PlanPicture(
        wcs=wcs,
        shape=shape,
        footprints=[frame_footprint(f.wcs, f.width, f.height, n_edge=4) for f in frames],
        batch=[k for k, u in enumerate(units) for _ in u],
        session=[session[str(f.path)] for f in frames],
        session_labels=labels,
        title=title,
        unit=unit,
    )


REASON_KINDS = (  # (pattern of a rejection reason, what the legend calls it)
    (r"^transparency", "low transparency (clouds?)"),
    (r"^FWHM", "FWHM too large"),
    (r"^black frame", "black frame"),
    (r"^sky ", "bright sky"),
    (r"stars <", "too few stars"),
    (r"finite pixels", "mostly no data"),
    (r"^empty or constant", "empty frame"),
    (r"does not overlap", "off the grid"),
    (r"failed", "processing failed"),
)


@dataclass
class FrameRow:
    """One frame: start time (MJD, None if unknown), session index, FWHM [px], stars, sky
    [ADU], transparency (vs its batch/tile reference; NaN if unknown), rejection reason."""

    mjd: float | None
    session: int
    fwhm_px: float
    n_stars: float
    sky_adu: float
    transparency: float
    reason: str | None = None


@dataclass
class TileRow:
    """One tile: index, median time of its frames (MJD), per-channel gain, star check."""

    index: int
    mjd: float | None
    gain: list[float]
    star_ratio: float | None = None
    reference: bool = False
    clamped: bool = False


@dataclass
class SummaryPicture:
    frames: list[FrameRow]
    tiles: list[TileRow] = field(default_factory=list)
    session_labels: list[str] = field(default_factory=list)
    title: str = "run summary"
    tile_word: str = "tile"


def reason_kind(reason: str) -> str:
    """A short name for a rejection reason, the same for every frame rejected for it (the
    reasons themselves carry each frame's numbers)."""
    for pattern, kind in REASON_KINDS:
        if re.search(pattern, reason):
            return kind
    generic = re.sub(r"[-+]?\d[\d.,:%]*", "#", reason).strip()
    return generic if len(generic) <= 32 else generic[:31] + "…"


def _number(value) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.nan


def _tile_rows(report: dict, mjd: dict[str, float | None]) -> tuple[list[TileRow], dict]:
    """The report's tiles as rows, and each used frame's transparency (by path): SDS gives
    it per frame in ``frame_normalisation``, classic as the tile's ``transparency`` list."""
    tiles, transparency = [], {}
    for t in report.get("tiles", []):
        norm = t.get("frame_normalisation", [])
        paths = [e["frame"] for e in norm]
        given = [e.get("transparency") for e in norm] if norm and "transparency" in norm[0] else []
        for p, v in zip(paths, given or t.get("transparency", []), strict=False):
            transparency[p] = _number(v)
        times = [mjd[p] for p in paths if mjd.get(p) is not None]
        tiles.append(
            TileRow(
                index=int(t["index"]),
                mjd=float(np.median(times)) if times else None,
                gain=[float(g) for g in t.get("gain", [])],
                star_ratio=t.get("star_ratio"),
                reference=bool(t.get("reference", t.get("anchor", False))),
                clamped=bool(t.get("clamped", False)),
            )
        )
    return tiles, transparency


def _frame_row(f: Frame, session: int, why: str | None, transparency: float) -> FrameRow:
    """One frame's row; a frame rejected for its transparency has it in its reason."""
    q = f.quality
    found = re.match(r"transparency ([\d.]+)", why or "")
    return FrameRow(
        mjd=f.mjd_obs,
        session=session,
        fwhm_px=_number(q.fwhm_px) if q else math.nan,
        n_stars=_number(q.n_stars) if q else math.nan,
        sky_adu=_number(float(np.mean(q.sky))) if q and q.sky else math.nan,
        transparency=float(found.group(1)) if found else transparency,
        reason=why,
    )


def summary_picture(report: dict, frames: list[Frame], gap_min: float) -> SummaryPicture:
    """Plain rows from a run's report (``frames_rejected``, ``tiles``) and its frames (time,
    quality); sessions cut at gaps longer than ``gap_min`` minutes."""
    session, labels = sessions_of(frames, gap_min)
    rejected = {r["path"]: r["reason"] for r in report.get("frames_rejected", [])}
    tiles, transparency = _tile_rows(report, {str(f.path): f.mjd_obs for f in frames})
    rows = [
        _frame_row(
            f,
            session[str(f.path)],
            rejected.get(str(f.path)),
            transparency.get(str(f.path), math.nan),
        )
        for f in sorted(frames, key=time_key)
    ]
    mode = str(report.get("mode", ""))
    word = "mega-tile" if mode == "sds" else "master tile" if mode == "classic" else "tile"
    name = object_name(frames)
    n_rej = sum(1 for r in rows if r.reason)
    title = (
        f"{name + ' — ' if name else ''}{'SDS' if mode == 'sds' else mode} run: "
        f"{counted(len(rows) - n_rej, 'frame')} used, {n_rej} rejected, "
        f"{counted(len(tiles), word)}"
    )
    return SummaryPicture(rows, tiles, labels, title, word)
