"""Large-scale background metrics: how flat the background is, and how much of an extended
object (nebula, galaxy halo) the output kept above the background around it.

Both work on block means, so they measure what gradient removal changes (scales of tens to
thousands of pixels), not the pixel noise. Inputs in ADU on one output grid (NaN = no data):
the output plane, the truth on that grid (``metrics.truth_on_grid``), and for the flux ratio
the object's own truth map (the nebula or the galaxy alone).
"""

from __future__ import annotations

import numpy as np

from supadupstack.simulate.stats import robust_sigma

MIN_BLOCKS = 10


def _block_sums(a: np.ndarray, ok: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(sum of ``a`` over the ``ok`` pixels, count of ``ok`` pixels) per ``block``² block."""
    h, w = (a.shape[0] // block) * block, (a.shape[1] // block) * block
    v = np.where(ok, a, 0.0)[:h, :w].astype(np.float64)
    n = ok[:h, :w].astype(np.float64)
    shape = (h // block, block, w // block, block)
    return v.reshape(shape).sum(axis=(1, 3)), n.reshape(shape).sum(axis=(1, 3))


def background_flatness(
    residual: np.ndarray,
    truth: np.ndarray,
    noise: float,
    block: int = 64,
    max_truth: float = 2.0,
    min_fill: float = 0.75,
) -> float:
    """(P95 − P5) of the background's ``block``-px block means, over the per-pixel noise.

    ``residual``: output − fitted truth (slope·truth + offset from ``linear_fit_vs_truth``),
    ADU, so the signal is gone and what stays is noise plus any large-scale error (leftover
    gradient, over-subtracted halo, seams). ``noise``: per-pixel robust σ of the background
    [ADU], as ``background_noise`` gives (it removes a 64-px smooth background first, so a
    gradient does not inflate it). A pixel counts when finite and its truth is below
    ``max_truth`` ADU (sky only: star cores, the galaxy and the nebula are left out, where an
    error of the fitted scale would show); a block counts when at least ``min_fill`` of its
    pixels count, and its mean is taken over them. Units: per-pixel σ, so 1.0 means the
    background's large-scale spread equals the noise of one pixel. Floor on pure noise: 3.29
    σ_block / σ, i.e. 3.29 / ``block`` = 0.051 for white noise; about 0.095 on supadupstack's
    debayered, resampled stacks (their noise is correlated over a few pixels), whatever the
    depth. A large-scale error of fixed ADU reads larger on a deeper stack (σ falls as 1/√N).
    A ramp rising k σ across the image reads about 0.9·k (the block means spread uniformly
    over k σ); exactly 0.9·k·(n − 1)/n over one row of n blocks. NaN with fewer than 10 blocks.
    """
    ok = np.isfinite(residual) & (truth < max_truth)
    sums, counts = _block_sums(residual, ok, block)
    use = counts >= min_fill * block * block
    if use.sum() < MIN_BLOCKS:
        return float("nan")
    means = sums[use] / counts[use]
    p5, p95 = np.percentile(means, [5.0, 95.0])
    return float((p95 - p5) / max(noise, 1e-12))


def _fit_plane(x: np.ndarray, y: np.ndarray, v: np.ndarray, clip: float = 5.0) -> np.ndarray:
    """Coefficients (c0, cx, cy) of v ≈ c0 + cx·x + cy·y, clipped at ``clip`` robust σ."""
    a = np.stack([np.ones_like(x), x, y], axis=1)
    keep = np.ones(v.size, dtype=bool)
    coef = np.zeros(3)
    for _ in range(5):
        coef, *_ = np.linalg.lstsq(a[keep], v[keep], rcond=None)
        res = v - a @ coef
        s = robust_sigma(res[keep])
        new = np.abs(res) <= clip * max(s, 1e-12)
        if np.array_equal(new, keep) or new.sum() < 3:
            break
        keep = new
    return coef


def object_flux_ratio(
    image: np.ndarray,
    truth: np.ndarray,
    object_truth: np.ndarray,
    block: int = 32,
    object_level: float = 0.5,
    free_level: float = 0.1,
    other_level: float = 0.25,
) -> float:
    """Flux of an extended object in the output above the surrounding background, over its
    true flux (1.0 = all kept; ≪ 1 when a background model flattened it away).

    On ``block``-px block means (blocks with any NaN dropped): the background is a plane fitted
    (5σ-clipped) to the blocks free of the object (``object_truth`` < ``free_level`` ADU) and of
    anything else (``truth − object_truth`` < ``other_level``: no star); the ratio is Σ(output
    − plane) / Σ object truth over the object's blocks (≥ ``object_level`` ADU, no star). The
    plane absorbs any linear gradient the output kept, so this reads the object alone (the
    flatness metric reads the gradient); a background model pulled by the object (halo or
    large-scale nebula subtracted with the sky) lowers it. Raw ratio, like the galaxy's
    ``extended_flux_ratio``: divide by the star flux ratio for the star-scaled one. NaN with
    fewer than 10 blocks of either kind.
    """
    h, w = (image.shape[0] // block) * block, (image.shape[1] // block) * block
    shape = (h // block, block, w // block, block)

    def means(a: np.ndarray) -> np.ndarray:
        return a[:h, :w].astype(np.float64).reshape(shape).mean(axis=(1, 3))

    img, obj = means(image), means(object_truth)
    other = means(truth) - obj
    ok = np.isfinite(img) & (other < other_level)
    free, held = ok & (obj < free_level), ok & (obj >= object_level)
    if free.sum() < MIN_BLOCKS or held.sum() < MIN_BLOCKS:
        return float("nan")
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]].astype(np.float64)
    coef = _fit_plane(xx[free], yy[free], img[free])
    plane = coef[0] + coef[1] * xx + coef[2] * yy
    return float(np.sum(img[held] - plane[held]) / np.sum(obj[held]))
