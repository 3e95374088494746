"""Photometric normalisation of one canvas patch to another, from the stars they share.

Used to normalise frames inside a batch, mega-tiles across batches and master tiles across a
mosaic. The scale comes from the stars both show, measured by cross-convolved apertures
(``crossphot``): each image is measured with the other's PSF folded into its weights, so the
ratio does not depend on the seeing of either (a pixel regression is decided by the sky and
confused by seeing; a fixed aperture reads the worse-seeing image faint: 8-16 % at 2×). One
grey scale from the luminance, or one per channel when every channel's scale is known to
``COLOUR_MAX_ERROR`` (differential extinction between nights changes the colour; a noisier
per-channel scale would only add colour noise). The offset then maps the clipped sky median
of one onto the other's over their common pixels. ``how`` names what was used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from supadupstack.canvas.resample import Patch
from supadupstack.frames.quality import luminance
from supadupstack.stacking.crossphot import (
    APERTURE_FWHMS,
    ScaleFit,
    cross_fluxes,
    image_psf,
    ratio_of,
)
from supadupstack.stacking.star_photometry import matched_stars, patch_stars

MIN_COMMON_PIXELS = 2000
# a star detected near the threshold of one image is there because its noise went up in that
# image: its flux ratio is biased; stars used must stand out in each image on its own
MIN_SNR_EACH = 20.0
CHECK_FWHMS = 3.5  # the star check's aperture, in FWHM of the common PSF
# channels get scales of their own when one differs from the grey scale by >= 3σ and >= 1 %
# (a colour change the stars show, e.g. differential extinction between nights), each known
# to 1 %: the channels' own PSFs differ (the demosaic blurs red and blue more than green),
# which leaves ~0.4 % between their scales on grey data
COLOUR_SIGNIFICANCE = 3.0
COLOUR_MIN_CHANGE = 0.01
COLOUR_MAX_ERROR = 0.01
# px²: a bilinear demosaic blurs the luminance's PSF like a Gaussian of this variance; a stack
# of resampled frames adds the resampling kernel's blur and the registration scatter
DEBAYER_BLUR_VAR = 0.4
STACK_BLUR_VAR = DEBAYER_BLUR_VAR + 0.05


@dataclass
class PhotometricFit:
    """``scale[c]·x + offset[c] ≈ ref`` per channel; ``grey``: the luminance scale, ``error``
    its relative 1σ; ``colour``: whether the channels got scales of their own."""

    scale: list[float]
    offset: list[float]
    n_stars: int
    sky_x: list[float]
    sky_ref: list[float]
    grey: float = 1.0
    error: float = float("nan")
    colour: bool = False
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
    v = v[np.isfinite(v)].astype(np.float32)  # selection is exact in float32, and faster
    for _ in range(3):
        if v.size == 0:
            return float("nan")
        med = np.median(v)
        s = 1.4826 * np.median(np.abs(v - med))
        if s == 0:
            break
        v = v[np.abs(v - med) < 3 * s]
    return float(np.median(v)) if v.size else float("nan")


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


def common_star_fluxes(
    x: Patch,
    ref: Patch,
    x_stars: np.ndarray,
    ref_stars: np.ndarray,
    blur_var: float = 0.0,
    aperture_fwhms: float = APERTURE_FWHMS,
):
    """Cross-convolved fluxes (``crossphot.cross_fluxes``) of the stars the two catalogues
    share that stand out in each image on its own; None without a PSF for either image or
    without a common star.

    ``blur_var``: variance (px²) of the blur the images share beyond the optics (demosaic,
    resampling), so that the PSF models describe the optics (``crossphot.image_psf``).
    """
    psf_x, psf_r = image_psf(x_stars, blur_var), image_psf(ref_stars, blur_var)
    if psf_x is None or psf_r is None:
        return None
    sx, sr = matched_stars(x_stars, ref_stars)
    bright = (sx["snr"] >= MIN_SNR_EACH) & (sr["snr"] >= MIN_SNR_EACH)
    sx, sr = sx[bright], sr[bright]
    if len(sx) == 0:  # nothing in common: no fluxes (and no empty-array warnings)
        return None
    xs, ys = 0.5 * (sx["x"] + sr["x"]), 0.5 * (sx["y"] + sr["y"])
    return cross_fluxes(x, ref, xs, ys, psf_x, psf_r, aperture_fwhms)


def _luminance(m_a, m_b, e_a, e_b):
    """Per-channel fluxes and errors (n, C) → luminance (n,): sums, errors in quadrature."""
    return (
        m_a.sum(axis=1),
        m_b.sum(axis=1),
        np.hypot.reduce(e_a, axis=1),
        np.hypot.reduce(e_b, axis=1),
    )


def check_ratio(
    x: Patch, ref: Patch, x_stars: np.ndarray, ref_stars: np.ndarray, blur_var: float = 0.0
) -> tuple[float | None, int]:
    """(luminance flux ratio x / ref of the common stars, their count), measured in apertures
    of CHECK_FWHMS instead of the fit's: where the PSF models are wrong, the ratio depends on
    the aperture, and the check departs from the fit. (None, 0) with too few stars."""
    got = common_star_fluxes(x, ref, x_stars, ref_stars, blur_var, CHECK_FWHMS)
    if got is None or got[0].shape[0] == 0:
        return None, 0
    m_x, m_r, e_x, e_r = got
    fit = ratio_of(*_luminance(m_x, m_r, e_x, e_r))
    return (None, 0) if fit is None else (fit.value, fit.n_stars)


def star_scales(
    x: Patch, ref: Patch, x_stars: np.ndarray, ref_stars: np.ndarray, blur_var: float = 0.0
) -> tuple[ScaleFit | None, list[ScaleFit | None]]:
    """(grey, per-channel) flux ratios ref / x of the stars the two catalogues share, by
    cross-convolved apertures (``crossphot``); (None, [None…]) without enough stars."""
    nch = x.data.shape[-1]
    none: tuple[ScaleFit | None, list[ScaleFit | None]] = (None, [None] * nch)
    got = common_star_fluxes(x, ref, x_stars, ref_stars, blur_var)
    if got is None or got[0].shape[0] == 0:
        return none
    m_x, m_r, e_x, e_r = got
    grey = ratio_of(*_luminance(m_r, m_x, e_r, e_x))
    channels = [ratio_of(m_r[:, c], m_x[:, c], e_r[:, c], e_x[:, c]) for c in range(nch)]
    return grey, channels


@dataclass
class CommonSky:
    """Clipped sky medians per channel of two patches over their common valid pixels, and
    how many pixels those are (counted on the sampling grid, times its cell area)."""

    sky_x: list[float]
    sky_ref: list[float]
    pixels: int


def common_sky(x: Patch, ref: Patch, samples: int = 20_000) -> CommonSky | None:
    """The skies of x and ref over their common valid pixels (``CommonSky``), or None.

    Read on a regular grid of about ``samples`` pixels (every ``step``-th row and column):
    a median of 2e4 sky pixels is known to 0.9 % of the pixel noise, far below what an
    offset between frames can show (and averaged over the frames of a stack)."""
    ov = overlap(x, ref)
    if ov is None:
        return None
    (ya, xa), (yb, xb) = ov
    area = (ya.stop - ya.start) * (xa.stop - xa.start)
    step = max(1, int(np.sqrt(area / samples)))
    sub_x = (slice(ya.start, ya.stop, step), slice(xa.start, xa.stop, step))
    sub_r = (slice(yb.start, yb.stop, step), slice(xb.start, xb.stop, step))
    dx = np.asarray(x.data[sub_x], dtype=np.float32)
    dr = np.asarray(ref.data[sub_r], dtype=np.float32)
    both = (np.asarray(x.weight[sub_x]) > 0) & (np.asarray(ref.weight[sub_r]) > 0)
    both &= np.isfinite(dx).all(axis=-1) & np.isfinite(dr).all(axis=-1)
    if both.sum() * step * step < MIN_COMMON_PIXELS:
        return None
    vx, vr = dx[both], dr[both]
    nch = vx.shape[-1]
    return CommonSky(
        [clipped_median(vx[:, c]) for c in range(nch)],
        [clipped_median(vr[:, c]) for c in range(nch)],
        int(both.sum()) * step * step,
    )


def photometric_fit(
    x: Patch,
    ref: Patch,
    x_stars: np.ndarray | None = None,
    ref_stars: np.ndarray | None = None,
    blur_var: float = 0.0,
) -> PhotometricFit | None:
    """Scale from common stars + per-channel sky offset; None without enough stars or sky.

    ``x_stars`` / ``ref_stars``: the two images' star catalogues on the grid (a frame's own
    catalogue moved onto it, or one made once for a reference used many times; made from
    the patch when not given). Per-channel scales where the stars show a colour change
    (``_colour_change``), the grey (luminance) scale otherwise; ``how`` says which.
    """
    skies = common_sky(x, ref)
    if skies is None:
        return None
    x_stars = patch_stars(x) if x_stars is None else x_stars
    ref_stars = patch_stars(ref) if ref_stars is None else ref_stars
    grey, channels = star_scales(x, ref, x_stars, ref_stars, blur_var)
    if grey is None:
        return None
    colour, note = _colour_change(grey, channels)
    nch = len(channels)
    scale = [c.value for c in channels] if colour else [grey.value] * nch  # type: ignore[union-attr]
    how = f"{grey.n_stars} common stars, {note}"
    sky_x, sky_r = skies.sky_x, skies.sky_ref
    offset = [sr_ - s * sx_ for s, sx_, sr_ in zip(scale, sky_x, sky_r, strict=True)]
    return PhotometricFit(
        scale, offset, grey.n_stars, sky_x, sky_r, grey.value, grey.error, colour, how
    )


def _colour_change(grey: ScaleFit, channels: list[ScaleFit | None]) -> tuple[bool, str]:
    """(per-channel scales?, what the report says): per channel when every channel was
    measured to COLOUR_MAX_ERROR and one differs from the grey scale by COLOUR_SIGNIFICANCE σ
    and COLOUR_MIN_CHANGE; a colour the stars cannot tell from grey would add colour noise."""
    if len(channels) == 1:
        return False, f"grey (± {grey.error:.2%})"
    if any(c is None or c.error > COLOUR_MAX_ERROR for c in channels):
        errors = [c.error if c is not None else float("nan") for c in channels]
        return False, f"grey (± {grey.error:.2%}; per-channel errors {_pct(errors)})"
    change = [abs(np.log(c.value / grey.value)) for c in channels]  # type: ignore[union-attr]
    dev = [d / c.error for d, c in zip(change, channels, strict=True)]  # type: ignore[union-attr]
    values = "/".join(f"{c.value:.4f}" for c in channels)  # type: ignore[union-attr]
    if any(d >= COLOUR_SIGNIFICANCE and x >= COLOUR_MIN_CHANGE for d, x in zip(dev, change)):
        return True, f"per channel {values} (colour change {max(change):.1%}, {max(dev):.1f}σ)"
    return False, f"grey (± {grey.error:.2%}; channels {values} within {max(change):.1%})"


def _pct(values: list[float]) -> str:
    return "/".join(f"{v:.2%}" if np.isfinite(v) else "n/a" for v in values)
