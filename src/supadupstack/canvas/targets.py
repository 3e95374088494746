"""Which frames belong on one canvas, decided before the canvas is sized (DESIGN §3.4).

A folder may hold several targets (M 94 one night, M 81 the next), or a frame whose WCS is
wildly wrong (a sidecar of another image, a 100× scale). Stacking them together would make a
canvas of tens of gigapixels and the run would die of memory. So:

- ``scale_outliers``: a frame whose pixel scale is more than ``SCALE_FACTOR`` from the median
  of the set is set aside with its reason (mixed S30/S50 sets differ by 1.7×; a wrong scale
  by 10× or more).
- ``group_by_pointing``: frames are linked when their footprints (circles of the half
  diagonal) meet; each connected group is one target: a mosaic's overlapping panels stay
  together, two targets apart. Groups are ordered largest first (ties: earliest frame), and
  named by the OBJECT most of their frames carry.
- ``select_target``: the group the user names (its number, 1 = largest, or its OBJECT),
  by default the largest; the others are listed as skipped.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from supadupstack.astrometry.wcs_sources import centre_radec
from supadupstack.errors import SupaDupError
from supadupstack.frames.model import Frame, Skip

SCALE_FACTOR = 3.0


@dataclass
class Target:
    """One pointing group: its frames (time order kept), a label and its sky centre (deg)."""

    number: int
    frames: list[Frame]
    name: str
    ra: float
    dec: float

    def describe(self) -> str:
        return (
            f"target {self.number} ({self.name}: {len(self.frames)} frame(s) near RA "
            f"{self.ra:.3f} Dec {self.dec:+.3f})"
        )


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])


def scale_outliers(frames: list[Frame]) -> tuple[list[Frame], list[Skip]]:
    """Frames kept, and those whose pixel scale differs from the median by > SCALE_FACTOR."""
    scales = [f.scale_arcsec for f in frames]
    good = [s for s in scales if s and math.isfinite(s) and s > 0]
    if not good:
        return frames, []
    med = float(np.median(good))
    kept, skips = [], []
    for f, s in zip(frames, scales, strict=True):
        if s and math.isfinite(s) and s > 0 and max(s / med, med / s) <= SCALE_FACTOR:
            kept.append(f)
        else:
            shown = f"{s:.3g}" if s and math.isfinite(s) else "unknown"
            skips.append(
                Skip(f.path, f'WCS pixel scale {shown}"/px is far from the set\'s {med:.3g}"/px')
            )
    return kept, skips


def group_by_pointing(frames: list[Frame]) -> list[Target]:
    """Connected groups of frames whose footprint circles meet, largest first."""
    if not frames:
        return []
    centres = np.array([centre_radec(f.wcs, f.width, f.height) for f in frames])
    radius = np.radians(
        [(f.scale_arcsec or 0.0) * math.hypot(f.width, f.height) / 2 / 3600 for f in frames]
    )
    vec = _unit(centres[:, 0], centres[:, 1])
    parent = list(range(len(frames)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    reach = 2 * math.sin(min(float(radius.max()) * 2, math.pi) / 2)  # chord of 2·largest radius
    for i, j in sorted(cKDTree(vec).query_pairs(reach)):
        angle = 2 * math.asin(min(1.0, float(np.linalg.norm(vec[i] - vec[j])) / 2))
        if angle <= radius[i] + radius[j]:
            parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(frames)):
        groups.setdefault(root(i), []).append(i)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0]))
    return [_target(n, [frames[i] for i in g], vec[g]) for n, g in enumerate(ordered, 1)]


def _target(number: int, frames: list[Frame], vec: np.ndarray) -> Target:
    m = vec.mean(axis=0)
    ra = math.degrees(math.atan2(m[1], m[0])) % 360.0
    dec = math.degrees(math.asin(max(-1.0, min(1.0, m[2] / float(np.linalg.norm(m))))))
    names = Counter(f.object_name for f in frames if f.object_name)
    name = names.most_common(1)[0][0] if names else "no OBJECT"
    return Target(number, frames, name, ra, dec)


def _norm(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name).lower()


def select_target(
    targets: list[Target], wanted: str | None
) -> tuple[Target, list[Skip], list[Target]]:
    """(the chosen target, a skip for every frame of the others, the others)."""
    if not targets:
        raise SupaDupError("no frame with a WCS to choose a target from")
    chosen = targets[0]
    if wanted is not None and wanted.strip():
        text = wanted.strip()
        match = [t for t in targets if text.isdigit() and int(text) == t.number]
        match = match or [t for t in targets if _norm(t.name) == _norm(text)]
        if not match:
            listed = "; ".join(t.describe() for t in targets[:5])
            raise SupaDupError(f"no target {text!r} among the inputs: {listed}")
        chosen = match[0]
    others = [t for t in targets if t is not chosen]
    skips = [
        Skip(f.path, f"another target: {t.describe()}; use --target {t.number} to stack it")
        for t in others
        for f in t.frames
    ]
    return chosen, skips, others
