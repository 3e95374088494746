"""Classic mode, step 2 (DESIGN §5.2): one master tile per group, on a local TAN WCS.

The local WCS is a gnomonic projection at the group centre whose CD matrix is the global
canvas's pixel Jacobian at that point and whose pixels are offset from the canvas pixels by
whole numbers there. Two tangent planes ~0.5° apart differ by ~θ·r², ≤ 0.15 px across a
Seestar frame (at the far corners of a 2×2 mosaic panel), so the later tile → canvas
resampling is a near-integer shift and hardly blurs; the tile itself is an ordinary TAN image that
any viewer can read.

Inside a group: calibrate and gate every frame, resample it onto the local grid, pick the
reference frame (sharpest, least noisy, nearest the middle of the run), scale each frame to it
by the stars they share (grey, photometric) with the sky offset matched (pixel regression when
too few stars), reject frames whose stars are below ``quality.min_transparency`` of the
reference, then reject and combine pixels with the stacking engine. The tile is stored in the
work directory as FITS: data (C, h, w) in the reference frame's ADU, ``COVERAGE`` extension
(frames per pixel), its local WCS.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from supadupstack.canvas.canvas import Canvas, frame_footprint
from supadupstack.canvas.resample import Patch
from supadupstack.config import Config
from supadupstack.frames.model import Frame
from supadupstack.outputs.atomic import write_atomic
from supadupstack.stacking.frameset import stack_frames


@dataclass
class MasterTile:
    """Where a group's stack lives and what went into it (``path`` empty: nothing usable)."""

    index: int
    path: str
    frames_used: list[str]
    rejected: dict[str, str] = field(default_factory=dict)
    reference_frame: str | None = None
    centre: tuple[float, float] = (0.0, 0.0)
    shape: tuple[int, int] = (0, 0)
    coverage_sum: float = 0.0
    noise: list[float] = field(default_factory=list)
    transparency: list[float | None] = field(default_factory=list)
    normalisation: list[str] = field(default_factory=list)
    gradients: list[dict | None] = field(default_factory=list)  # per frame, vs the reference
    gradient: dict | None = None  # the stack's own sky gradient
    rejected_pixel_fraction: float = 0.0
    exposure_s: float | None = None  # median sub-exposure of the frames used
    seconds: float = 0.0
    reused: bool = False


def _tan(ra0: float, dec0: float, cd: np.ndarray, crpix: tuple[float, float]) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = list(crpix)
    w.wcs.cd = cd
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    w.wcs.set()
    return w


def local_canvas(
    frames: list[Frame], canvas: Canvas, centre: tuple[float, float], pad: int = 4
) -> tuple[Canvas, tuple[int, int]]:
    """Local TAN grid at ``centre`` covering the frames, pixel-aligned with the canvas.

    Returns the local Canvas and (Y0, X0): local pixel (y, x) ≈ canvas pixel (y + Y0, x + X0)
    near the centre (exact to first order there, ≤ 0.15 px across a tile).
    """
    ra0, dec0 = centre
    (xc,), (yc,) = canvas.wcs.wcs_world2pix([ra0], [dec0], 0)
    step = 50.0
    px = np.array([xc - step, xc + step, xc, xc])
    py = np.array([yc, yc, yc - step, yc + step])
    ra, dec = canvas.wcs.wcs_pix2world(px, py, 0)
    plane = _tan(ra0, dec0, np.eye(2), (1.0, 1.0))  # pixel = intermediate coords (deg)
    xi, eta = plane.wcs_world2pix(ra, dec, 0)
    cd = np.array([[xi[1] - xi[0], xi[3] - xi[2]], [eta[1] - eta[0], eta[3] - eta[2]]]) / (2 * step)
    fx, fy = math.floor(xc), math.floor(yc)
    wcs = _tan(ra0, dec0, cd, (xc - fx + 1.0, yc - fy + 1.0))  # canvas (fy, fx) → local (0, 0)
    xs, ys = [], []
    for f in frames:
        foot = frame_footprint(f.wcs, f.width, f.height, 32)
        x, y = wcs.wcs_world2pix(foot[:, 0], foot[:, 1], 0)
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    sx, sy = math.floor(np.min(x)) - pad, math.floor(np.min(y)) - pad
    width = math.ceil(np.max(x)) + pad + 1 - sx
    height = math.ceil(np.max(y)) + pad + 1 - sy
    wcs.wcs.crpix = [wcs.wcs.crpix[0] - sx, wcs.wcs.crpix[1] - sy]
    wcs.wcs.set()
    return Canvas(wcs=wcs, shape=(int(height), int(width))), (fy + sy, fx + sx)


def save_tile(path: Path, patch: Patch, wcs: WCS, cards: dict) -> Path:
    """Write a tile: primary (C, h, w) float32 with its local WCS, ``COVERAGE`` (h, w)."""
    hdr = wcs.to_header()
    for key, value in cards.items():
        hdr[key] = value
    primary = fits.PrimaryHDU(np.moveaxis(patch.data, -1, 0).astype(np.float32), header=hdr)
    cov = fits.ImageHDU(patch.weight.astype(np.float32), name="COVERAGE")
    return write_atomic(path, lambda p: fits.HDUList([primary, cov]).writeto(p))


def load_tile(path: str | Path) -> tuple[np.ndarray, np.ndarray, WCS]:
    """(data (h, w, C) float32, coverage (h, w) float32, local WCS) of a saved tile."""
    with fits.open(path, memmap=False) as hdul:
        data = np.moveaxis(np.asarray(hdul[0].data, dtype=np.float32), 0, -1)
        cov = np.asarray(hdul["COVERAGE"].data, dtype=np.float32)
        wcs = WCS(hdul[0].header).celestial
    return np.ascontiguousarray(data), cov, wcs


def _patch_on(local: Canvas, patch: Patch) -> Patch:
    """Place a stacked patch into the full local grid (NaN / 0 outside the patch)."""
    h, w = local.shape
    nch = patch.data.shape[-1]
    data = np.full((h, w, nch), np.nan, np.float32)
    cov = np.zeros((h, w), np.float32)
    y0, x0 = patch.y0, patch.x0
    ph, pw = patch.shape
    data[y0 : y0 + ph, x0 : x0 + pw] = patch.data
    cov[y0 : y0 + ph, x0 : x0 + pw] = patch.weight
    return Patch(0, 0, data, cov)


def build_master_tile(
    index: int,
    frames: list[Frame],
    centre: tuple[float, float],
    canvas: Canvas,
    cfg: Config,
    path: Path,
    key: str = "",
) -> MasterTile:
    """Gate, resample onto the local grid, normalise, reject and combine one group."""
    t0 = time.monotonic()
    local, _ = local_canvas(frames, canvas, centre)
    fs = stack_frames(frames, local, cfg, unit="tile")
    if fs.patch is None:
        return MasterTile(index, "", [], fs.rejected, centre=centre, seconds=time.monotonic() - t0)
    tile = _patch_on(local, fs.patch)
    cards = {"TILEIDX": index, "NFRAMES": len(fs.used), "TILEKEY": key}
    save_tile(path, tile, local.wcs, cards)
    return MasterTile(
        index=index,
        path=str(path),
        frames_used=[str(f.path) for f, _ in fs.used],
        rejected=fs.rejected,
        reference_frame=fs.reference_frame,
        centre=centre,
        shape=local.shape,
        coverage_sum=float(tile.weight.sum()),
        noise=fs.noise,
        transparency=fs.transparency,
        normalisation=fs.normalisation,
        gradients=fs.gradients,
        gradient=fs.gradient,
        rejected_pixel_fraction=fs.rejected_pixel_fraction,
        exposure_s=fs.exposure_s,
        seconds=time.monotonic() - t0,
    )


def usable_mask(coverage: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Pixels of a tile that take part in harmonisation and assembly.

    ``keep_fraction`` > 0 also drops pixels whose coverage is below that fraction of the
    tile's maximum: the rotated-corner slivers of alt-az data, trimmed per tile because in a
    mosaic the mosaic-wide coverage varies by design (overlaps) and cannot be cut globally.
    """
    valid = coverage > 0
    if keep_fraction > 0 and valid.any():
        valid &= coverage >= keep_fraction * float(coverage.max())
    return valid


def usable_tile(path: str | Path, keep_fraction: float) -> tuple[np.ndarray, np.ndarray, WCS]:
    """``load_tile`` with NaN data and zero coverage outside ``usable_mask``."""
    data, cov, wcs = load_tile(path)
    valid = usable_mask(cov, keep_fraction) & np.isfinite(data).all(axis=-1)
    data[~valid] = np.nan
    cov[~valid] = 0.0
    return data, cov, wcs
