"""Inter-mega-tile renormalisation (DESIGN §4.3).

Each mega-tile gets a per-channel gain (and, with the ``linear`` rule, an offset) that maps it
onto the reference mega-tile: ``renormalised = gain · tile + offset``. Medians are taken on the
pixels the tile shares with the reference when they overlap enough, so both measure the same
sky.

- ``median_gain``: gain = median_ref / median_tile. Right only when everything above zero
  scales together; a camera pedestal (bias) or an additive sky (moon, light pollution) makes it
  measure the sky ratio instead of the transparency ratio.
- ``linear``: the slope is measured on the stars the two tiles share (clipped ratio of their
  catalogue fluxes, Moffat-fit totals that do not depend on seeing; grey): a pixel regression
  is dominated by sky pixels and confused by seeing differences. The offset then maps the
  tile's clipped median onto the reference's, so the backgrounds agree without any later
  background matching. With too few common stars it falls back to a pixel regression, then
  to ``median_gain`` (noted).

A star-based check (luminance ratio of common stars' aperture fluxes after renormalisation,
apertures of 3 FWHM of each tile: an estimator independent of the fit) is reported per tile;
1.00 means the photometry agrees.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from supadupstack.canvas.canvas import Canvas
from supadupstack.canvas.resample import Patch
from supadupstack.catalogue.detect import median_fwhm
from supadupstack.config import SdsConfig
from supadupstack.stacking.normalize import fit_linear_info
from supadupstack.stacking.photometry import (
    clipped_median,
    common_area,
    flux_ratio,
    photometric_fit,
    star_fluxes,
)
from supadupstack.stacking.star_photometry import patch_stars

log = logging.getLogger(__name__)
CHECK_FWHMS = 3.0  # aperture radius of the star check, in FWHM of each image


@dataclass
class TileGain:
    """Renormalisation of one mega-tile (per channel) and its checks."""

    index: int
    gain: list[float]
    offset: list[float]
    median_tile: list[float]
    median_ref: list[float]
    common_pixels: int
    clamped: bool = False
    star_ratio: float | None = None
    n_stars: int = 0
    notes: list[str] = field(default_factory=list)


def choose_reference(boxes, coverage_sums, canvas: Canvas, rule: str) -> int:
    """Index of the reference tile by rule: coverage (largest sum), central, or first."""
    if rule == "first":
        return 0
    if rule == "central":
        cy, cx = canvas.shape[0] / 2, canvas.shape[1] / 2
        dist = [abs(y + h / 2 - cy) + abs(x + w / 2 - cx) for y, x, h, w in boxes]
        return int(np.argmin(dist))
    return int(np.argmax(coverage_sums))


def _own(p: Patch) -> np.ndarray:
    d = np.asarray(p.data)
    m = (np.asarray(p.weight) > 0) & np.isfinite(d).all(axis=-1)
    return d[m]


def identity_gain(index: int, ref: Patch) -> TileGain:
    nch = ref.data.shape[-1]
    return TileGain(index, [1.0] * nch, [0.0] * nch, [], [], int((ref.weight > 0).sum()))


def tile_gain(
    index: int,
    tile: Patch,
    ref: Patch,
    cfg: SdsConfig,
    ref_stars: np.ndarray | None = None,
    tile_stars: np.ndarray | None = None,
) -> TileGain:
    """Gain (and offset for ``linear``) of ``tile`` relative to ``ref``, clamped to the range.

    ``ref_stars`` / ``tile_stars``: the star catalogues of both on the canvas
    (``patch_stars``; the reference's made once for all tiles), made here when not given.
    """
    area = common_area(tile, ref)
    if area is not None:
        t_img, r_img, mask = area
        t_px, r_px = t_img[mask], r_img[mask]
    else:
        t_px, r_px = _own(tile), _own(ref)
    nch = tile.data.shape[-1]
    med_t = [clipped_median(t_px[:, c]) for c in range(nch)]
    med_r = [clipped_median(r_px[:, c]) for c in range(nch)]
    notes = [] if area is not None else ["no sufficient overlap: medians over each tile"]
    lum_t, lum_r = float(np.sum(med_t)), float(np.sum(med_r))
    grey = lum_r / lum_t if np.isfinite(lum_t) and lum_t > 0 and np.isfinite(lum_r) else 1.0
    gain = [grey] * nch  # DESIGN §4.3: one gain per tile, applied to the whole tile
    if cfg.renorm == "linear":
        slope, how = _linear_slope(tile, ref, area, ref_stars, tile_stars)
        if slope is None:
            notes.append("linear rule: too few common stars and no pixel fit; used median_gain")
        else:
            notes.append(f"linear gain from {how}")
            gain = slope
    clamped = any(not (cfg.gain_min <= g <= cfg.gain_max) for g in gain)
    if clamped:
        log.warning(
            "mega-tile %d: gain %s clamped to [%g, %g]", index, gain, cfg.gain_min, cfg.gain_max
        )
        notes.append(f"gain clamped to [{cfg.gain_min}, {cfg.gain_max}]")
        gain = [float(np.clip(g, cfg.gain_min, cfg.gain_max)) for g in gain]
    offset = [0.0] * nch
    if cfg.renorm == "linear":
        offset = [mr - g * mt for g, mt, mr in zip(gain, med_t, med_r, strict=True)]
    common = 0 if area is None else int(area[2].sum())
    return TileGain(index, gain, offset, med_t, med_r, common, clamped, notes=notes)


def _linear_slope(
    tile: Patch, ref: Patch, area, ref_stars, tile_stars
) -> tuple[list[float] | None, str]:
    """Grey slope from common stars, else per-channel pixel regression, else None."""
    fit = photometric_fit(tile, ref, tile_stars, ref_stars)
    nch = tile.data.shape[-1]
    if fit is not None:
        return [fit.scale] * nch, f"{fit.n_stars} common stars"
    if area is not None:
        a, _, ok = fit_linear_info(*area)
        if ok.all():
            return [float(v) for v in a], "pixel regression"
    return None, ""


def apply_gain(data: np.ndarray, g: TileGain) -> np.ndarray:
    """gain · data + offset per channel (float32)."""
    gain, offset = np.asarray(g.gain, np.float32), np.asarray(g.offset, np.float32)
    return (data * gain + offset).astype(np.float32)


def star_check(
    tile: Patch,
    ref: Patch,
    g: TileGain,
    tile_stars: np.ndarray | None = None,
    ref_stars: np.ndarray | None = None,
) -> tuple[float | None, int]:
    """Luminance flux ratio (renormalised tile / reference) of common stars, and their count.

    An estimator independent of the fit: clipped Σ-ratio of aperture sums, each image's
    aperture CHECK_FWHMS × its own median FWHM (so both enclose the same fraction of a
    star's light whatever the seeing), annulus 1.5-2.5 apertures. A PSF-shape or background
    mismatch between the tiles shows up as a departure from 1.00. ``tile_stars`` /
    ``ref_stars``: the two canvas catalogues (made from the patches when not given); the
    stars are measured at the reference's positions.
    """
    area = common_area(tile, ref)
    if area is None:
        return None, 0
    t_img, r_img, both = area
    tile_stars = patch_stars(tile) if tile_stars is None else tile_stars
    ref_stars = patch_stars(ref) if ref_stars is None else ref_stars
    fwhm_t, fwhm_r = median_fwhm(tile_stars), median_fwhm(ref_stars)
    if not (np.isfinite(fwhm_t) and np.isfinite(fwhm_r)):
        return None, 0
    oy, ox = max(tile.y0, ref.y0), max(tile.x0, ref.x0)
    positions = (ref_stars["x"] - ox, ref_stars["y"] - oy)
    ft, fr = star_fluxes(
        apply_gain(t_img, g),
        r_img,
        both,
        CHECK_FWHMS * fwhm_t,
        positions=positions,
        radius_ref=CHECK_FWHMS * fwhm_r,
    )
    if ft.shape[0] == 0:
        return None, 0
    return flux_ratio(ft.sum(axis=1), fr.sum(axis=1)), int(ft.shape[0])
