"""The canvas: one global celestial TAN WCS + shape shared by every later stage (DESIGN §3.3).

The canvas covers the union of the frames' true footprints (polygons traced along the frame
edges through the full WCS, SIP included). It is centred on the mean direction of the footprint
points (unit-vector mean, so RA wrap at 0/360° needs no special case), its pixel scale is the
median frame scale unless configured, and it is north-up or rotated to minimise the area of the
bounding rectangle. Pixel coordinates are 0-based with pixel centres at integers, so a canvas of
shape (H, W) spans -0.5 … W-0.5 in x.

The *projection* (tangent point, scale, rotation, and where the pixel grid falls: the phase of
CRPIX) is kept apart from the *extent*: two canvases of one projection differ by a whole-pixel
shift, so a tile made on one can be placed on the other without resampling. A run may pass the
projection of an earlier run (``previous``) to keep it while it still fits the frames: adding a
night then grows the canvas instead of moving every pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from supadupstack.config import CanvasConfig
from supadupstack.errors import SupaDupError


class CanvasError(SupaDupError):
    """No canvas can be built from the given footprints (none, or they span a hemisphere)."""


class CanvasTooLarge(CanvasError):
    """The canvas would exceed ``canvas.max_megapixels``; ``stretching`` indexes the footprints
    that reach its four extremes."""

    def __init__(self, message: str, stretching: list[int]):
        super().__init__(message)
        self.stretching = stretching


KEEP_PROJECTION_DEG = 1.0  # an earlier tangent point is kept while the data centre is this close
KEEP_SCALE_REL = 0.01  # ... and the median frame scale within this fraction of the kept one


@dataclass(frozen=True)
class Projection:
    """A canvas's TAN projection without its extent: tangent point (ra0, dec0) [deg], pixel
    scale [arcsec/px], rotation of the pixel axes from north-up [deg], and the grid phase
    (CRPIX1 mod 1, CRPIX2 mod 1) [px]; ``None`` phase: chosen by the first canvas."""

    ra0: float
    dec0: float
    scale_arcsec: float
    theta_deg: float = 0.0
    phase: tuple[float, float] | None = None

    def with_phase(self, phase: tuple[float, float]) -> Projection:
        return Projection(self.ra0, self.dec0, self.scale_arcsec, self.theta_deg, phase)


@dataclass
class Canvas:
    """Global output grid: a celestial TAN WCS without distortion and its shape (H, W)."""

    wcs: WCS
    shape: tuple[int, int]
    projection: Projection | None = None
    projection_kept: bool = False

    @property
    def height(self) -> int:
        return int(self.shape[0])

    @property
    def width(self) -> int:
        return int(self.shape[1])

    @property
    def scale_arcsec(self) -> float:
        """Pixel scale in arcsec/pixel (geometric mean of the two axes)."""
        return pixel_scale_arcsec(self.wcs)


def pixel_scale_arcsec(wcs: WCS) -> float:
    """Pixel scale of a celestial WCS at its reference point, arcsec/pixel (linear part only)."""
    sx, sy = proj_plane_pixel_scales(wcs.celestial)
    return float(math.sqrt(abs(sx * sy)) * 3600.0)


def frame_footprint(wcs: WCS, width: int, height: int, n_edge: int = 16) -> np.ndarray:
    """Sky polygon of a frame: (4·n_edge, 2) array of (ra, dec) degrees along its outer edges.

    The edges are the outer pixel borders (-0.5 and size-0.5 in 0-based pixels), traced with
    ``n_edge`` points per side through the full WCS (SIP honoured), counter-clockwise in pixels.
    """
    n = max(int(n_edge), 1)
    t = np.arange(n) / n
    x_lo, x_hi, y_lo, y_hi = -0.5, width - 0.5, -0.5, height - 0.5
    xs = np.concatenate(
        [x_lo + t * (x_hi - x_lo), np.full(n, x_hi), x_hi - t * (x_hi - x_lo), np.full(n, x_lo)]
    )
    ys = np.concatenate(
        [np.full(n, y_lo), y_lo + t * (y_hi - y_lo), np.full(n, y_hi), y_hi - t * (y_hi - y_lo)]
    )
    ra, dec = wcs.celestial.all_pix2world(xs, ys, 0)
    return np.column_stack([np.mod(ra, 360.0), dec])


def _unit_vectors(radec: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(radec[:, 0]), np.radians(radec[:, 1])
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _centre(radec: np.ndarray) -> tuple[float, float]:
    """Mean direction of the points (handles RA wrap and the poles), degrees."""
    v = _unit_vectors(radec).mean(axis=0)
    norm = float(np.linalg.norm(v))
    if norm < 1e-3:
        raise CanvasError("frame footprints surround the whole sky; no single TAN canvas fits")
    v /= norm
    return float(np.degrees(np.arctan2(v[1], v[0])) % 360.0), float(np.degrees(np.arcsin(v[2])))


def _tan_wcs(ra0: float, dec0: float, scale_deg: float, theta_deg: float) -> WCS:
    """TAN WCS at (ra0, dec0), CRPIX (1, 1); pixel x runs west and y north when theta = 0."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [1.0, 1.0]
    c, s = math.cos(math.radians(theta_deg)), math.sin(math.radians(theta_deg))
    w.wcs.cd = scale_deg * np.array([[-c, s], [s, c]])
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    w.wcs.set()
    return w


def _min_area_angle(xy: np.ndarray) -> float:
    """Rotation (degrees, in (-45, 45]) whose axis-aligned bounding box of xy is smallest."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = xy[ConvexHull(xy).vertices]
    except (QhullError, ValueError):
        return 0.0
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 1], edges[:, 0]) % (np.pi / 2)
    angles = np.concatenate([[0.0], angles])
    best, best_area = 0.0, np.inf
    for a in angles:
        c, s = math.cos(a), math.sin(a)
        u = hull[:, 0] * c + hull[:, 1] * s
        v = -hull[:, 0] * s + hull[:, 1] * c
        area = float(np.ptp(u) * np.ptp(v))
        if area < best_area * (1 - 1e-9):
            best, best_area = float(a), area
    deg = math.degrees(best)
    return deg - 90.0 if deg > 45.0 else deg


def _projection(
    radec: np.ndarray, scales_arcsec: list[float], cfg: CanvasConfig, previous: Projection | None
) -> tuple[Projection, bool]:
    """The projection for these footprint points, and whether ``previous`` was kept."""
    if cfg.pixel_scale_arcsec is not None:
        scale = float(cfg.pixel_scale_arcsec)
    else:
        good = [s for s in scales_arcsec if s and np.isfinite(s) and s > 0]
        if not good:
            raise CanvasError("no valid frame pixel scale to choose the canvas scale from")
        scale = float(np.median(good))
    ra0, dec0 = _centre(radec)
    cos_sep = _unit_vectors(radec) @ _unit_vectors(np.array([[ra0, dec0]]))[0]
    if np.min(cos_sep) < 0.2:
        raise CanvasError("frame footprints span more than ~78 deg; too wide for one TAN canvas")
    if previous is not None and _still_fits(previous, ra0, dec0, scale, cfg):
        return previous, True
    theta = 0.0
    if cfg.orientation == "min_area":
        probe = _tan_wcs(ra0, dec0, scale / 3600.0, 0.0)
        xy = np.column_stack(probe.wcs_world2pix(radec[:, 0], radec[:, 1], 0))
        # new pixels = R(-a)·old pixels, i.e. CD_new = CD_0·R(a): exactly _tan_wcs(theta=a)
        theta = _min_area_angle(xy)
    return Projection(ra0 % 360.0, dec0, scale, theta), False


def _still_fits(p: Projection, ra0: float, dec0: float, scale: float, cfg: CanvasConfig) -> bool:
    """An earlier projection serves while its rule and scale match and the centre is near."""
    if (cfg.orientation == "north_up") != (p.theta_deg == 0.0):
        return False
    if cfg.pixel_scale_arcsec is not None:
        if float(cfg.pixel_scale_arcsec) != p.scale_arcsec:
            return False
    elif abs(scale / p.scale_arcsec - 1.0) > KEEP_SCALE_REL:
        return False
    here = _unit_vectors(np.array([[ra0, dec0]]))[0]
    there = _unit_vectors(np.array([[p.ra0, p.dec0]]))[0]
    return float(here @ there) >= math.cos(math.radians(KEEP_PROJECTION_DEG))


def build_canvas(
    footprints: list[np.ndarray],
    scales_arcsec: list[float],
    cfg: CanvasConfig,
    previous: Projection | None = None,
) -> Canvas:
    """Canvas covering the union of the footprints ((N, 2) ra/dec degrees each).

    Scale: ``cfg.pixel_scale_arcsec`` or the median of ``scales_arcsec``. Orientation:
    ``north_up`` (north +y, east -x) or ``min_area`` (rotation minimising the bounding box).
    ``cfg.padding_px`` pixels are added on every side. ``previous``: an earlier run's
    projection, kept when it still fits (see the module docstring). A canvas above
    ``cfg.max_megapixels`` raises ``CanvasTooLarge`` before anything is allocated.
    """
    pts = [np.asarray(f, dtype=float).reshape(-1, 2) for f in footprints]
    if not pts or sum(len(p) for p in pts) == 0:
        raise CanvasError("no frame footprints to build a canvas from")
    radec = np.concatenate(pts)
    proj, kept = _projection(radec, scales_arcsec, cfg, previous)
    wcs = _tan_wcs(proj.ra0, proj.dec0, proj.scale_arcsec / 3600.0, proj.theta_deg)
    x, y = wcs.wcs_world2pix(radec[:, 0], radec[:, 1], 0)  # tangent point at pixel (0, 0)
    pad = int(cfg.padding_px)
    # shift the grid so that the lowest footprint point sits at pixel edge pad - 0.5 (a kept
    # projection: the first shift at least that large with the kept phase)
    shift = [pad - 0.5 - float(np.min(x)), pad - 0.5 - float(np.min(y))]
    if proj.phase is not None:
        shift = [ph + math.ceil(s - ph - 1e-9) for s, ph in zip(shift, proj.phase, strict=True)]
    else:
        proj = proj.with_phase((shift[0] % 1.0, shift[1] % 1.0))
    width = max(1, math.ceil(float(np.max(x)) + shift[0] + pad + 0.5 - 1e-9))
    height = max(1, math.ceil(float(np.max(y)) + shift[1] + pad + 0.5 - 1e-9))
    if width * height > cfg.max_megapixels * 1e6:
        raise CanvasTooLarge(
            f"the canvas would be {width} x {height} px ({width * height / 1e6:.0f} MP), above "
            f"canvas.max_megapixels = {cfg.max_megapixels:g}",
            _stretching(pts, wcs),
        )
    wcs.wcs.crpix = [1.0 + shift[0], 1.0 + shift[1]]
    wcs.wcs.set()
    return Canvas(wcs=wcs, shape=(height, width), projection=proj, projection_kept=kept)


def _stretching(pts: list[np.ndarray], wcs: WCS) -> list[int]:
    """Indices of the footprints reaching the lowest/highest x and y (each once, in order)."""
    ends = []
    for p in pts:
        x, y = wcs.wcs_world2pix(p[:, 0], p[:, 1], 0)
        ends.append((float(np.min(x)), float(np.max(x)), float(np.min(y)), float(np.max(y))))
    e = np.array(ends)
    picks = [int(np.argmin(e[:, 0])), int(np.argmax(e[:, 1])), int(np.argmin(e[:, 2]))]
    picks.append(int(np.argmax(e[:, 3])))
    return list(dict.fromkeys(picks))


def canvas_from_frames(
    wcs_list: list[WCS],
    sizes: list[tuple[int, int]],
    cfg: CanvasConfig,
    n_edge: int = 16,
    previous: Projection | None = None,
) -> Canvas:
    """Canvas for frames given by their WCS and (height, width) sizes (= image.shape[:2])."""
    if len(wcs_list) != len(sizes):
        raise ValueError("wcs_list and sizes differ in length")
    foots = [frame_footprint(w, s[1], s[0], n_edge) for w, s in zip(wcs_list, sizes, strict=True)]
    scales = [pixel_scale_arcsec(w) for w in wcs_list]
    return build_canvas(foots, scales, cfg, previous)


def canvas_for_frames(frames, cfg: CanvasConfig, previous: Projection | None = None) -> Canvas:
    """Canvas for ``Frame`` records that carry a WCS (``frame.wcs``, width, height).

    Too large a canvas is refused with one line naming the frames that stretch it.
    """
    try:
        return canvas_from_frames(
            [f.wcs for f in frames], [(f.height, f.width) for f in frames], cfg, previous=previous
        )
    except CanvasTooLarge as exc:
        names = ", ".join(frames[i].path.name for i in exc.stretching)
        message = f"{exc}; the frames that stretch it: {names}"
        raise CanvasTooLarge(message, exc.stretching) from None
