"""The photometric ratio of two master tiles on their overlap, from all the light they share.

Mosaic overlaps are thin strips: a sparse field gives them only a handful of stars bright
enough for aperture photometry (5–7 at SNR ≥ 30 on the simulated 2×2 mosaic, pair scales off
by up to 6 %). This estimator uses every source instead, extended ones included:

1. Luminance (sum of channels) of both tiles on the common pixels.
2. Source mask from the sum of both (smoothed, σ = 2 px, > ``k`` = 5 × its robust σ, grown
   by ``grow_px``): selected on the sum, so neither tile's noise alone decides it. A lower
   threshold lets pure-noise blobs in, and their summed noise is dominated by the noisier
   (brighter-sky) tile: at k = 3 the ratio is biased by +1 % on the simulated mosaic.
3. Background: a plane fitted by plain least squares to the non-source pixels of each tile.
   Least squares is linear, so a tile that is ``T × signal + sky`` gets ``T × plane(signal)
   + plane(sky)``: faint galaxy outskirts left in the background scale with T and cancel in
   the ratio (a clipped mode estimator, e.g. ``sep.Background``, does not: 1–3 % biases).
4. Per source (connected component of the mask, wholly inside the overlap, SNR ≥
   ``min_snr``) the summed flux in each tile; the ratio is Σ f_i / Σ f_j over the sources
   whose own ratio is not a 3σ outlier (``flux_ratio``).

Its relative error (from the background noise over the mask) weights the pair in the global
solution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

MIN_SOURCES = 3


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


@dataclass
class OverlapRatio:
    """``tile_i ≈ ratio · tile_j`` (grey) above the background, from ``n_sources`` sources."""

    ratio: float
    rel_error: float
    n_sources: int


def _robust_sigma(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def _plane_residual(img: np.ndarray, bg: np.ndarray) -> tuple[np.ndarray, float]:
    """img minus its least-squares plane over ``bg`` pixels, and the residual σ there."""
    h, w = img.shape
    ys, xs = np.nonzero(bg)
    a = np.column_stack([np.ones(ys.size), xs / w, ys / h])
    coef, *_ = np.linalg.lstsq(a, img[bg].astype(np.float64), rcond=None)
    yy = (np.arange(h) / h)[:, None]
    xx = (np.arange(w) / w)[None, :]
    out = img - (coef[0] + coef[1] * xx + coef[2] * yy)
    return out, _robust_sigma(out[bg])


def overlap_ratio(
    xi: np.ndarray,
    xj: np.ndarray,
    both: np.ndarray,
    k: float = 5.0,
    grow_px: int = 4,
    min_snr: float = 10.0,
) -> OverlapRatio | None:
    """Grey ratio of tile i to tile j ((h, w, C) images, ``both`` = common valid pixels)."""
    inner = cv2.erode(both.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if inner.sum() < 1000:
        return None
    li = np.where(both, np.nansum(xi, axis=-1), 0.0).astype(np.float64)
    lj = np.where(both, np.nansum(xj, axis=-1), 0.0).astype(np.float64)
    total = li + lj
    level = float(np.median(total[inner]))
    smooth = cv2.GaussianBlur(np.where(both, total - level, 0.0).astype(np.float32), (0, 0), 2.0)
    sigma = _robust_sigma(smooth[inner])
    if not math.isfinite(sigma) or sigma <= 0:
        return None
    src = (smooth > k * sigma).astype(np.uint8)
    size = 2 * grow_px + 1
    src = cv2.dilate(src, np.ones((size, size), np.uint8)) > 0
    bg = inner & ~src
    if bg.sum() < 1000:
        return None
    si, sig_i = _plane_residual(li, bg)
    sj, sig_j = _plane_residual(lj, bg)
    n, labels = cv2.connectedComponents((src & inner).astype(np.uint8))
    if n <= 1:
        return None
    edge = (cv2.dilate((~inner).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0).ravel()
    lab = labels.ravel()
    fi = np.bincount(lab, weights=si.ravel(), minlength=n)[1:]
    fj = np.bincount(lab, weights=sj.ravel(), minlength=n)[1:]
    npix = np.bincount(lab, minlength=n)[1:]
    touches = np.bincount(lab, weights=edge.astype(np.float64), minlength=n)[1:] > 0
    snr = 0.5 * (fi / sig_i + fj / sig_j) / np.sqrt(np.maximum(npix, 1))
    ok = ~touches & (fi > 0) & (fj > 0) & (snr >= min_snr)
    if ok.sum() < MIN_SOURCES:
        return None
    ratio = flux_ratio(fi[ok], fj[ok])
    m = float(npix[ok].sum())
    rel = math.sqrt(m * sig_i**2 / fi[ok].sum() ** 2 + m * sig_j**2 / fj[ok].sum() ** 2)
    return OverlapRatio(float(ratio), float(rel), int(ok.sum()))
