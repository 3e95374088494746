"""Classic mode, step 1 (DESIGN §5.1): frames → groups (pointings / mosaic panels).

A frame joins the first group whose running centre lies within ``group_distance`` × the frame
size of the frame's own centre (frames are walked in time order, so the result does not
depend on file names); otherwise it starts a new group. "Frame size" is the short side of the
median frame in degrees (WCS scale × short side in pixels): a 2×2 Seestar mosaic with ~25 %
overlap has panel centres ≥ 0.75 short sides apart, while the dither and drift inside a panel
are a few per cent. Groups larger than ``max_frames_per_tile`` are split in time order into
near-equal runs, so no master tile gets a tiny tail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from supadupstack.config import ClassicConfig
from supadupstack.frames.model import Frame


@dataclass
class Group:
    """Frames of one pointing, in time order; ``centre`` = (ra, dec) in degrees."""

    index: int
    frames: list[Frame] = field(default_factory=list)
    centre: tuple[float, float] = (0.0, 0.0)
    pointing: int = 0  # groups split from one pointing share this number


def unit_vector(ra_deg: float, dec_deg: float) -> np.ndarray:
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    return np.array([math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)])


def to_radec(v: np.ndarray) -> tuple[float, float]:
    v = v / np.linalg.norm(v)
    return float(math.degrees(math.atan2(v[1], v[0])) % 360.0), float(math.degrees(math.asin(v[2])))


def frame_centre(frame: Frame) -> tuple[float, float]:
    """Sky position (ra, dec) degrees of the frame's central pixel, through its full WCS."""
    ra, dec = frame.wcs.celestial.all_pix2world(
        [(frame.width - 1) / 2.0], [(frame.height - 1) / 2.0], 0
    )
    return float(ra[0]) % 360.0, float(dec[0])


def frame_size_deg(frames: list[Frame]) -> float:
    """Short side of the median frame, degrees."""
    sizes = [
        min(f.width, f.height) * (f.scale_arcsec or 0.0) / 3600.0
        for f in frames
        if f.wcs is not None
    ]
    sizes = [s for s in sizes if s > 0 and math.isfinite(s)]
    return float(np.median(sizes)) if sizes else 0.0


def _separation_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two unit vectors, degrees (atan2 form: accurate at small angles)."""
    return float(math.degrees(math.atan2(np.linalg.norm(np.cross(a, b)), float(np.dot(a, b)))))


def group_frames(frames: list[Frame], cfg: ClassicConfig) -> list[Group]:
    """Groups of frames by pointing (leader clustering in time order), large ones split."""
    limit = cfg.group_distance * frame_size_deg(frames)
    pointings: list[tuple[np.ndarray, list[Frame]]] = []  # (sum of unit vectors, members)
    for f in frames:
        v = unit_vector(*frame_centre(f))
        for acc, members in pointings:
            if _separation_deg(acc / np.linalg.norm(acc), v) < limit:
                acc += v
                members.append(f)
                break
        else:
            pointings.append((v.copy(), [f]))
    groups: list[Group] = []
    for p, (_, members) in enumerate(pointings):
        n_parts = math.ceil(len(members) / cfg.max_frames_per_tile)
        for part in np.array_split(np.arange(len(members)), n_parts):
            chunk = [members[i] for i in part]
            centre = to_radec(np.sum([unit_vector(*frame_centre(f)) for f in chunk], axis=0))
            groups.append(Group(len(groups), chunk, centre, p))
    return groups
