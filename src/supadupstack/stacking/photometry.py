"""Photometric normalisation of one canvas patch to another, from the stars they share.

Used to normalise frames inside a batch and mega-tiles across batches (both modes). The scale
comes from the stars both show: a pixel regression of two sky-dominated images is decided
by the sky and confused by seeing. Stars are paired through the images' catalogues; where
their seeing agrees, one aperture of 2.5 × the FWHM holds the same fraction of each star's
light in both and gives the lowest noise (4 % per star on simulated 10 s subs); where it
does not, a fixed aperture reads the worse-seeing image faint (8 px: 8-16 % at 2× seeing)
and the catalogue's Moffat-fit totals are used instead (seeing-invariant to ≤ 1 % on rendered
fields, but 10 % per-star scatter on sparse simulated subs: see ``star_photometry``). The
offset then maps the clipped sky median of one onto the other's over their common pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import sep

from supadupstack.canvas.resample import Patch
from supadupstack.catalogue.detect import median_fwhm
from supadupstack.frames.quality import detect_stars, luminance
from supadupstack.stacking.star_photometry import catalogue_ratio, matched_stars, patch_stars

MIN_COMMON_PIXELS = 2000
MIN_STARS = 5
SAME_SEEING = 0.1  # |ln FWHM ratio| up to which a common aperture is used
APERTURE_FWHMS = 2.5  # its radius, in FWHM of the worse-seeing image


@dataclass
class PhotometricFit:
    """x ≈ (ref − offset) / scale, i.e. scale·x + offset ≈ ref; grey scale, per-channel offset."""

    scale: float
    offset: list[float]
    n_stars: int
    sky_x: list[float]
    sky_ref: list[float]
    how: str = ""


def overlap(a: Patch, b: Patch):
    """Slices (into a, into b) of their common canvas region, or None."""
    y0, x0 = max(a.y0, b.y0), max(a.x0, b.x0)
    y1 = min(a.y0 + a.shape[0], b.y0 + b.shape[0])
    x1 = min(a.x0 + a.shape[1], b.x0 + b.shape[1])
    if y1 <= y0 or x1 <= x0:
        return None
    sa = (slice(y0 - a.y0, y1 - a.y0), slice(x0 - a.x0, x1 - a.x0))
    sb = (slice(y0 - b.y0, y1 - b.y0), slice(x0 - b.x0, x1 - b.x0))
    return sa, sb


def clipped_median(values: np.ndarray) -> float:
    """Median after up to 3 rounds of 3σ clipping (stars and hot spots out); NaN ignored.

    Large inputs are subsampled with a regular stride to at most 60,000 values: the median of
    a sky is then known to ~0.005 σ, far below anything the renormalisation can see.
    """
    v = np.asarray(values).ravel()
    if v.size > 60_000:
        v = v[:: v.size // 60_000 + 1]
    v = v[np.isfinite(v)].astype(np.float64)
    for _ in range(3):
        if v.size == 0:
            return float("nan")
        med = np.median(v)
        s = 1.4826 * np.median(np.abs(v - med))
        if s == 0:
            break
        v = v[np.abs(v - med) < 3 * s]
    return float(np.median(v)) if v.size else float("nan")


def sky_sample_index(mask: np.ndarray, limit: int = 60_000) -> np.ndarray:
    """Flat indices of the pixels ``clipped_median(image[mask])`` would use: the same regular
    subsample of the masked pixels, found without copying the full-size masked image."""
    idx = np.flatnonzero(mask)
    if idx.size > limit:
        idx = idx[:: idx.size // limit + 1]
    return idx


def common_area(x: Patch, ref: Patch):
    """(x image, ref image, mask of pixels valid in both) over the overlap, or None if small."""
    ov = overlap(x, ref)
    if ov is None:
        return None
    sx, sr = ov
    xi = np.asarray(x.data[sx], dtype=np.float32)
    ri = np.asarray(ref.data[sr], dtype=np.float32)
    m = (np.asarray(x.weight[sx]) > 0) & (np.asarray(ref.weight[sr]) > 0)
    m &= np.isfinite(luminance(xi)) & np.isfinite(luminance(ri))
    if m.shape[0] < 64 or m.shape[1] < 64 or m.sum() < MIN_COMMON_PIXELS:
        return None
    return xi, ri, m


def _sum_noise(lum: np.ndarray, both: np.ndarray) -> float:
    """Per-pixel σ of a luminance over ``both`` (1.4826·MAD of a regular subsample)."""
    v = lum.ravel()[sky_sample_index(both)]
    v = v[np.isfinite(v)]
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else float("nan")


def star_fluxes(
    xi: np.ndarray,
    ri: np.ndarray,
    both: np.ndarray,
    radius: float,
    min_snr: float = 30.0,
    positions: tuple[np.ndarray, np.ndarray] | None = None,
    radius_ref: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Aperture fluxes (n, C) in x and ref of stars both show (SNR ≥ min_snr on their sum).

    ``radius_ref``: the aperture in ref when it differs from x's (apertures scaled to each
    image's FWHM enclose the same fraction of a star's light); annuli scale with each.

    Stars are selected on the sum of both luminances, so noise in neither image biases the
    selection (selecting on one image alone favours its upward fluctuations and biases the
    flux ratio by ~1 %). They are detected on that sum, or taken from ``positions`` (x, y in
    the pixels of ``xi``/``ri``). Sums in a circle of ``radius`` px minus the annulus
    background (1.5–2.5 radii); every aperture lies wholly inside ``both``. Empty arrays when
    no star qualifies.
    """
    nch = xi.shape[-1]
    empty = np.zeros((0, nch)), np.zeros((0, nch))
    lum_r = np.where(both, luminance(ri) + luminance(xi), np.nan).astype(np.float32)
    if positions is None:
        objs, _, rms = detect_stars(lum_r, 5.0)
        if objs is None or len(objs) == 0:
            return empty
        objs = objs[(objs["flag"] == 0) & (objs["npix"] < 400)]
        x, y = objs["x"], objs["y"]
    else:
        x, y = (np.asarray(v, dtype=np.float64) for v in positions)
        inside = (x >= radius) & (y >= radius)
        inside &= (x < both.shape[1] - radius) & (y < both.shape[0] - radius)
        x, y = x[inside], y[inside]
        rms = _sum_noise(lum_r, both)
    r_ref = radius if radius_ref is None else radius_ref
    # whole aperture and annulus inside the common area (sep refuses an all-masked annulus)
    r_out = int(np.ceil(2.5 * max(radius, r_ref)))
    inner = cv2.erode(both.view(np.uint8), np.ones((2 * r_out + 1, 2 * r_out + 1), np.uint8))
    ix = np.clip(np.round(x).astype(int), 0, both.shape[1] - 1)
    iy = np.clip(np.round(y).astype(int), 0, both.shape[0] - 1)
    x, y = x[inner[iy, ix] > 0], y[inner[iy, ix] > 0]
    if len(x) == 0 or not np.isfinite(rms):
        return empty
    holes = ~both
    ann = (1.5 * radius, 2.5 * radius)
    lum = np.ascontiguousarray(np.nan_to_num(lum_r, nan=0.0), dtype=np.float32)
    f, e, flag = sep.sum_circle(lum, x, y, radius, err=rms, mask=holes, bkgann=ann)
    keep = (flag == 0) & (f > 0) & (f / np.maximum(e, 1e-9) >= min_snr)
    if not keep.any():
        return empty
    x, y = x[keep], y[keep]
    out_x, out_r = [], []
    for c in range(nch):
        xc = np.ascontiguousarray(np.where(both, xi[..., c], 0.0), dtype=np.float32)
        rc = np.ascontiguousarray(np.where(both, ri[..., c], 0.0), dtype=np.float32)
        fx, _, flag_x = sep.sum_circle(xc, x, y, radius, mask=holes, bkgann=ann)
        ann_r = (1.5 * r_ref, 2.5 * r_ref)
        fr, _, flag_r = sep.sum_circle(rc, x, y, r_ref, mask=holes, bkgann=ann_r)
        out_x.append(np.where((flag_x == 0) & (flag_r == 0), fx, np.nan))
        out_r.append(fr)
    fx, fr = np.stack(out_x, axis=-1), np.stack(out_r, axis=-1)
    good = np.isfinite(fx).all(axis=1) & (fx.sum(axis=1) > 0) & (fr.sum(axis=1) > 0)
    return fx[good], fr[good]


def flux_ratio(f_ref: np.ndarray, f_x: np.ndarray) -> float:
    """Σ f_ref / Σ f_x over the stars whose own ratio is not a 3σ outlier (in log ratio).

    Summing fluxes weights bright stars most (their ratio is the most precise: ~0.3 % at
    SNR 300 against ~3 % at SNR 30); the clipping drops blends, variables and saturated cores.
    """
    log_ratio = np.log(f_ref / f_x)
    med = np.median(log_ratio)
    s = 1.4826 * np.median(np.abs(log_ratio - med))
    keep = np.abs(log_ratio - med) <= 3 * max(s, 1e-3)
    return float(f_ref[keep].sum() / f_x[keep].sum())


def photometric_fit(
    x: Patch,
    ref: Patch,
    x_stars: np.ndarray | None = None,
    ref_stars: np.ndarray | None = None,
) -> PhotometricFit | None:
    """Grey scale from common stars + per-channel sky offset; None without enough stars.

    The stars are matched through the two images' canvas catalogues (``x_stars`` /
    ``ref_stars``: a frame's own catalogue moved onto the grid, or one made once for a
    reference used many times; made from the patch when not given). Where the two images'
    seeing agrees (median FWHM within ``SAME_SEEING``) the scale is the clipped Σ-ratio of
    aperture sums of APERTURE_FWHMS × the larger FWHM (the same fraction of light in both,
    the lowest noise); where it does not, the catalogue's Moffat-fit totals, which do not
    depend on seeing (``star_photometry``). ``how`` says which.
    """
    area = common_area(x, ref)
    if area is None:
        return None
    xi, ri, both = area
    x_stars = patch_stars(x) if x_stars is None else x_stars
    ref_stars = patch_stars(ref) if ref_stars is None else ref_stars
    sx, sr = matched_stars(x_stars, ref_stars)
    if len(sx) < MIN_STARS:
        return None
    fwhm_x, fwhm_r = median_fwhm(x_stars), median_fwhm(ref_stars)
    scale, n, how = catalogue_ratio(sr, sx), len(sx), "catalogue fluxes"
    if np.isfinite(fwhm_x + fwhm_r) and abs(np.log(fwhm_x / fwhm_r)) <= SAME_SEEING:
        oy, ox = max(x.y0, ref.y0), max(x.x0, ref.x0)  # canvas origin of the common area
        radius = APERTURE_FWHMS * max(fwhm_x, fwhm_r)
        fx, fr = star_fluxes(xi, ri, both, radius, positions=(sr["x"] - ox, sr["y"] - oy))
        if fx.shape[0] >= MIN_STARS:
            scale, n = flux_ratio(fr.sum(axis=1), fx.sum(axis=1)), int(fx.shape[0])
            how = f"apertures of {radius:.1f} px"
    nch = xi.shape[-1]
    idx = sky_sample_index(both)
    xf, rf = xi.reshape(-1, nch), ri.reshape(-1, nch)
    sky_x = [clipped_median(xf[idx, c]) for c in range(nch)]
    sky_r = [clipped_median(rf[idx, c]) for c in range(nch)]
    offset = [sr_ - scale * sx_ for sx_, sr_ in zip(sky_x, sky_r, strict=True)]
    return PhotometricFit(scale, offset, n, sky_x, sky_r, how)
