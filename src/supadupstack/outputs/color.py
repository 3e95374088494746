"""Colour balance of the preview: neutral background, and stars white on average.

Seestar raw colour has a strong green excess (the Bayer matrix has two green pixels and the
IMX462 sensor is most sensitive in green). The FITS stays linear and untouched; only the
preview is balanced, the way a user would with a background neutralisation and a star-based
white balance.
"""

from __future__ import annotations

import numpy as np
import sep

from supadupstack.frames.quality import detect_stars, luminance


def star_white_balance(image: np.ndarray, valid: np.ndarray, min_stars: int = 10) -> np.ndarray:
    """Per-channel factors (C,) that make the flux-weighted mean star colour neutral.

    Stars: detections on the luminance with aperture SNR > 20, unsaturated (peak below 80 %
    of the image maximum); fluxes are aperture sums above a local annulus, per channel.
    Factors are normalised so the green (middle) channel keeps 1.0; ones when too few stars.
    """
    nch = image.shape[-1]
    ones = np.ones(nch)
    if nch < 3 or valid.sum() < 10_000:
        return ones
    lum = np.where(valid, luminance(image), np.nan).astype(np.float32)
    objs, _, rms = detect_stars(lum, 5.0)
    if objs is None or len(objs) < min_stars:
        return ones
    top = float(np.nanmax(lum))
    objs = objs[(objs["flag"] == 0) & (objs["npix"] < 400) & (objs["peak"] < 0.8 * top)]
    if len(objs) < min_stars:
        return ones
    holes = ~valid
    fluxes = []
    for c in range(nch):
        plane = np.ascontiguousarray(np.where(valid, image[..., c], 0.0), dtype=np.float32)
        f, _, flag = sep.sum_circle(plane, objs["x"], objs["y"], 6.0, mask=holes, bkgann=(9, 14))
        fluxes.append(np.where(flag == 0, f, np.nan))
    flux = np.stack(fluxes, axis=-1)
    f_lum = np.nansum(flux, axis=1)
    good = np.isfinite(flux).all(axis=1) & (flux > 0).all(axis=1) & (f_lum > 20 * rms * 6)
    if good.sum() < min_stars:
        return ones
    total = flux[good].sum(axis=0)
    factors = total.mean() / total
    return factors / factors[nch // 2]
