"""Defect metrics of a stacked output: seams, coverage steps, satellite trails (flatness and
extended-object flux: ``flatness.py``).

Each works on a residual image (output − fitted truth) or an output plane, in ADU, and gives
its result in units of the per-pixel background σ (robust, 1.4826·MAD), so a figure reads the
same at any depth: 1 σ is the noise of one output pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS

from supadupstack.simulate.stats import background_noise, robust_sigma


@dataclass
class Boundary:
    """A straight seam: ``axis`` "x" → the column ``pos`` (rows start:stop); "y" → the row."""

    axis: str
    pos: int
    start: int = 0
    stop: int | None = None


def seam_metric(image: np.ndarray, boundaries: list[Boundary], width: int = 8) -> float:
    """Largest level step across the given straight boundaries, in units of per-pixel σ.

    For each boundary the medians of ``width``-px bands on both sides are compared; σ is the
    robust scatter of the bands around their medians.
    """
    worst = 0.0
    for b in boundaries:
        img = image if b.axis == "x" else image.T
        stop = img.shape[0] if b.stop is None else b.stop
        left = img[b.start : stop, max(b.pos - width, 0) : b.pos]
        right = img[b.start : stop, b.pos : b.pos + width]
        sig = robust_sigma(
            np.concatenate(
                [(left - np.nanmedian(left)).ravel(), (right - np.nanmedian(right)).ravel()]
            )
        )
        step = abs(float(np.nanmedian(left) - np.nanmedian(right)))
        worst = max(worst, step / max(sig, 1e-12))
    return worst


def coverage_seam_metric(
    residual: np.ndarray, coverage: np.ndarray, jump: float = 0.2, width: int = 6
) -> float:
    """Level step across coverage edges (where coverage changes by > ``jump`` between
    neighbours), in σ: median over edge pixels of (mean of ``width`` px on the high side −
    mean on the low side) of the residual (output − fitted truth), divided by per-pixel σ."""
    diffs = []
    for axis in (0, 1):
        c0 = np.moveaxis(coverage, axis, 0)
        r0 = np.moveaxis(residual, axis, 0)
        lo, hi = c0[:-1], c0[1:]
        edge = (
            (np.abs(hi - lo) > jump * np.maximum(np.maximum(hi, lo), 1e-12)) & (lo > 0) & (hi > 0)
        )
        idx = np.argwhere(edge[width - 1 : c0.shape[0] - width])
        if idx.size == 0:
            continue
        i = idx[:, 0] + width - 1
        j = tuple(idx[:, k] for k in range(1, idx.shape[1]))
        before = np.nanmean([r0[(i - k, *j)] for k in range(width)], axis=0)
        after = np.nanmean([r0[(i + 1 + k, *j)] for k in range(width)], axis=0)
        sign = np.where(hi[(i, *j)] > lo[(i, *j)], 1.0, -1.0)
        diffs.append(sign * (after - before))
    if not diffs:
        return 0.0
    d = np.concatenate(diffs)
    return abs(float(np.nanmedian(d))) / max(
        background_noise(residual, np.zeros_like(residual)), 1e-12
    )


def trail_residual(
    residual: np.ndarray, wcs: WCS, trail_sky: tuple, half_width: float = 2.5
) -> float:
    """Mean residual (output − fitted truth) along a satellite trail minus that of side bands
    (5–12 px away), in units of per-pixel σ; ~0 means the trail was rejected.

    ``trail_sky`` = (ra0, dec0, ra1, dec1) of the trail's ends.
    """
    (x0, x1), (y0, y1) = wcs.all_world2pix(list(trail_sky[0::2]), list(trail_sky[1::2]), 0)
    h, w = residual.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = x1 - x0, y1 - y0
    length = math.hypot(dx, dy)
    dist = np.abs((xx - x0) * dy - (yy - y0) * dx) / length
    along = ((xx - x0) * dx + (yy - y0) * dy) / length
    seg = (along > 0) & (along < length) & np.isfinite(residual)
    band = seg & (dist < half_width)
    side = seg & (dist > 5) & (dist < 12)
    if band.sum() < 10 or side.sum() < 10:
        return float("nan")
    sig = robust_sigma(residual[side])
    return float((np.median(residual[band]) - np.median(residual[side])) / max(sig, 1e-12))
