"""Per-star measurement on the full-resolution image: stamp, Moffat fit, moments, flags.

One serial numba loop over all candidates (no Python per-star work). For each candidate:

1. first FWHM guess from a half-maximum walk along the row and column of the peak pixel;
2. a round stamp of radius ~2.5 x that guess (more pixels would mostly add sky noise, fewer
   would lose the wings that pin down beta and with it the total flux);
3. stamp pixels that are NaN or outside the image (flag 1), saturated (flag 2, left out so the
   fit uses the unclipped wings) or closer to another detected star than to this one (flag 8,
   left out: a crude Voronoi deblend) are not fitted;
4. Levenberg-Marquardt fit of B + Moffat with free centre, width and beta (see ``_moffat``);
5. ellipticity from Gaussian-weighted second moments, corrected for the weight.

``common_beta_flux`` then redoes the flux of each star with the frame's beta (one linear pass
over the same stamp).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from supadupstack.catalogue._moffat import NPAR, fit_moffat, shape_amplitude

EDGE, SATURATED, FIT_FAILED, BLENDED = 1, 2, 4, 8
STAMP_FWHM = 2.5  # stamp half-size in units of the first FWHM guess
HALF_MIN, HALF_MAX = 6, 25  # stamp half-size bounds, px (13x13 .. 51x51)
MIN_FWHM = 0.8  # px: a fitted FWHM below this is a hot pixel or cosmic-ray hit, not a star
MAX_WALK = 40  # px: the half-maximum walk gives up beyond this
N_OUT = 7  # x, y, flux, peak, fwhm, ellipticity, snr
SIGMA_PER_FWHM = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@njit(cache=True)
def _half_width(img, y, x, dy, dx, bkg, half):
    """Distance (px) from (y, x) along (dy, dx) to where the profile drops below bkg + half."""
    h, w = img.shape
    prev = img[y, x] - bkg
    for k in range(1, MAX_WALK + 1):
        yy, xx = y + k * dy, x + k * dx
        if not (0 <= yy < h and 0 <= xx < w):
            return k - 1.0
        cur = img[yy, xx] - bkg
        if cur != cur:
            return k - 1.0
        if cur < half:
            return k - 1.0 + (prev - half) / max(prev - cur, 1e-12)
        prev = cur
    return float(MAX_WALK)


@njit(cache=True)
def fwhm_guess(img, y, x, bkg, excess):
    """First FWHM estimate (px) from the half-maximum crossings in the 4 axis directions."""
    half = 0.5 * excess
    s = 0.0
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        s += _half_width(img, y, x, dy, dx, bkg, half)
    return min(max(0.5 * s, 1.0), 2.0 * MAX_WALK)


@njit(cache=True)
def _vertex(img, y, x, dy, dx):
    """Sub-pixel offset (px, within +-0.5) of the parabola through the peak and its two
    neighbours along (dy, dx): a start for the fit's centre ~0.1 px from the truth."""
    h, w = img.shape
    if not (0 < y < h - 1 and 0 < x < w - 1):
        return 0.0
    lo = img[y - dy, x - dx]
    mid = img[y, x]
    hi = img[y + dy, x + dx]
    curv = lo - 2.0 * mid + hi
    if not curv < 0.0:  # NaN neighbour or flat (saturated) top
        return 0.0
    return min(max(0.5 * (lo - hi) / curv, -0.5), 0.5)


@njit(cache=True)
def _neighbours(ny, nx, y, x, h, near, out):
    """Indices into the (y-sorted) neighbour list inside the stamp, minus the star itself.

    Neighbours closer than ``near`` px are the same object (a second peak on a flat or noisy
    top) and are ignored. Returns the count written to ``out``.
    """
    lo = 0
    hi = ny.size
    while lo < hi:  # first neighbour at row >= y - h (binary search)
        mid = (lo + hi) >> 1
        if ny[mid] < y - h:
            lo = mid + 1
        else:
            hi = mid
    m = 0
    for k in range(lo, ny.size):
        if ny[k] > y + h:
            break
        ddx = nx[k] - x
        ddy = ny[k] - y
        d2 = ddx * ddx + ddy * ddy
        if near * near <= d2 <= h * h and m < out.size:
            out[m] = k
            m += 1
    return m


@njit(cache=True)
def _gather(img, y, x, h, sat, ny, nx, idx, m, dxs, dys, vs):
    """Fit pixels within radius h of (y, x): (count, flags, brightest of the 3x3 core, ADU)."""
    hh, ww = img.shape
    n = 0
    flags = 0
    core = -np.inf
    for dy in range(-h, h + 1):
        yy = y + dy
        for dx in range(-h, h + 1):
            xx = x + dx
            d2 = dx * dx + dy * dy
            if d2 > h * h:
                continue
            if not (0 <= yy < hh and 0 <= xx < ww):
                flags |= EDGE
                continue
            v = img[yy, xx]
            if v != v:
                flags |= EDGE
                continue
            if d2 <= 2 and v > core:
                core = v
            if v >= sat:
                flags |= SATURATED
                continue
            mine = True
            for t in range(m):
                ex = nx[idx[t]] - xx
                ey = ny[idx[t]] - yy
                if ex * ex + ey * ey < d2:
                    mine = False
                    break
            if mine:
                dxs[n] = dx
                dys[n] = dy
                vs[n] = v
                n += 1
    if m > 0:
        flags |= BLENDED
    return n, flags, core


@njit(cache=True)
def _ellipticity(dxs, dys, vs, n, theta, fwhm):
    """1 - b/a from second moments weighted by a circular Gaussian of the star's FWHM.

    The weight keeps sky noise far from the star out of the moments; for a Gaussian star the
    weighted moment matrix is (M^-1 + I / s^2)^-1, which is inverted here to recover M.
    """
    s2 = (fwhm * SIGMA_PER_FWHM) ** 2
    sw = sxx = syy = sxy = 0.0
    for k in range(n):
        ddx = dxs[k] - theta[1]
        ddy = dys[k] - theta[2]
        wgt = (vs[k] - theta[5]) * math.exp(-0.5 * (ddx * ddx + ddy * ddy) / s2)
        sw += wgt
        sxx += wgt * ddx * ddx
        syy += wgt * ddy * ddy
        sxy += wgt * ddx * ddy
    if not sw > 0.0:
        return np.nan
    a, c, b = sxx / sw, syy / sw, sxy / sw
    det = a * c - b * b
    if det > 0.0:  # M = (Mw^-1 - I/s^2)^-1, kept only if still positive definite
        ia, ic, ib = c / det - 1.0 / s2, a / det - 1.0 / s2, -b / det
        d2 = ia * ic - ib * ib
        if ia > 0.0 and d2 > 0.0:
            a, c, b = ic / d2, ia / d2, -ib / d2
    root = math.sqrt(max((a - c) ** 2 + 4.0 * b * b, 0.0))
    big = 0.5 * (a + c + root)
    small = 0.5 * (a + c - root)
    if not big > 0.0:
        return np.nan
    return 1.0 - math.sqrt(max(small, 0.0) / big)


@njit(cache=True)
def _fallback(out, dxs, dys, vs, n, y, x, b0, sig):
    """Centroid and aperture sum when the fit fails (flag 4): coarse, but keeps the star."""
    sw = sx = sy = total = 0.0
    for k in range(n):
        e = vs[k] - b0
        total += e
        if e > 0.0 and abs(dxs[k]) <= 1.0 and abs(dys[k]) <= 1.0:
            sw += e
            sx += e * dxs[k]
            sy += e * dys[k]
    out[0] = x + (sx / sw if sw > 0.0 else 0.0)
    out[1] = y + (sy / sw if sw > 0.0 else 0.0)
    out[2] = total
    out[4] = np.nan
    out[5] = np.nan
    out[6] = total / (sig * math.sqrt(max(n, 1)))


@njit(cache=True)
def _fill(out, theta, y, x, sig):
    """Catalogue values (x, y, flux, fwhm, snr) from the fitted parameters."""
    w = math.exp(theta[3])
    p = theta[4]
    ratio = math.expm1(p * math.log(2.0)) / p if p > 0.0 else math.log(2.0)
    out[0] = x + theta[1]
    out[1] = y + theta[2]
    out[2] = theta[0] * math.pi * w / (1.0 - p)
    out[4] = 2.0 * math.sqrt(w * ratio)
    nea = math.pi * w * (2.0 - p) / ((1.0 - p) * (1.0 - p))
    out[6] = out[2] / (sig * math.sqrt(nea))


@njit(cache=True)
def _stamp(img, y, x, b0, exc, sat, ny, nx, idx, dxs, dys, vs):
    """Guess the FWHM, size the stamp and gather it: (n, flags, core, half-size, guess).

    Deterministic in its inputs, so the flux pass rebuilds exactly the stamp of the fit.
    """
    guess = fwhm_guess(img, y, x, b0, exc)
    h = min(max(int(math.ceil(STAMP_FWHM * guess)), HALF_MIN), HALF_MAX)
    m = _neighbours(ny, nx, y, x, h, max(2.0, 0.6 * guess), idx)
    n, fl, core = _gather(img, y, x, h, sat, ny, nx, idx, m, dxs, dys, vs)
    return n, fl, core, h, guess


@njit(cache=True)
def _start(theta, img, y, x, b0, exc, guess):
    """Fit start: peak excess, parabola vertex, width from the guess at beta = 3, sky b0."""
    p0 = 1.0 / 3.0
    theta[0] = max(exc, 1e-3)
    theta[1] = _vertex(img, y, x, 0, 1)
    theta[2] = _vertex(img, y, x, 1, 0)
    theta[3] = math.log((0.5 * guess) ** 2 * p0 / math.expm1(p0 * math.log(2.0)))
    theta[4] = p0
    theta[5] = b0


@njit(cache=True)
def measure(img, yc, xc, exc, b0, sig, sat, ny, nx):
    """Measure every candidate k at peak pixel (yc[k], xc[k]) with a free-beta fit.

    ``exc``/``b0``/``sig``: peak excess, background and per-pixel noise (ADU) at the peak;
    ``ny``/``nx``: all detected star peaks sorted by row (for deblending). Returns
    (values (K, N_OUT), flags (K,) uint16, keep (K,) bool, fitted theta and the standard
    error of p (K, NPAR + 1), NaN rows where the fit failed).
    """
    k_all = yc.size
    res = np.full((k_all, N_OUT), np.nan)
    par = np.full((k_all, NPAR + 1), np.nan)
    flags = np.zeros(k_all, np.uint16)
    keep = np.ones(k_all, np.bool_)
    side = 2 * HALF_MAX + 1
    dxs = np.empty(side * side)
    dys = np.empty(side * side)
    vs = np.empty(side * side)
    idx = np.empty(64, np.int64)
    theta = np.empty(NPAR)
    for k in range(k_all):
        y, x = yc[k], xc[k]
        n, fl, core, h, guess = _stamp(img, y, x, b0[k], exc[k], sat, ny, nx, idx, dxs, dys, vs)
        _start(theta, img, y, x, b0[k], exc[k], guess)
        iters, var_p = fit_moffat(theta, dxs, dys, vs, n, 0.5 * h)
        ok = iters >= 0
        if ok:
            _fill(res[k], theta, y, x, sig[k])
            ok = res[k, 2] > 0.0 and res[k, 4] <= 2.0 * h
            keep[k] = not res[k, 4] < MIN_FWHM
        if ok:
            res[k, 5] = _ellipticity(dxs, dys, vs, n, theta, res[k, 4])
            res[k, 3] = core - theta[5]
            for i in range(NPAR):
                par[k, i] = theta[i]
            par[k, NPAR] = math.sqrt(var_p)
        else:
            fl |= FIT_FAILED
            _fallback(res[k], dxs, dys, vs, n, y, x, b0[k], sig[k])
            res[k, 3] = core - b0[k]
        flags[k] = fl
    return res, flags, keep, par


@njit(cache=True)
def common_beta_flux(img, yc, xc, exc, b0, sig, sat, ny, nx, par, fwhm, p, use):
    """Total flux and SNR of the stars ``use`` marks, with the frame's beta (p = 1 / beta).

    The star keeps its own centre and FWHM; only the wing shape is the frame's. With the
    shape fixed, amplitude and sky are linear: one pass over the stamp, no iteration. Free
    per-star beta leaves the far-wing flux (~5-10 % of the total at beta = 2.5) uncertain:
    this cuts the flux scatter of faint stars 2-3 fold and removes their bias. Others: NaN.
    """
    k_all = yc.size
    flux = np.full(k_all, np.nan)
    snr = np.full(k_all, np.nan)
    side = 2 * HALF_MAX + 1
    dxs = np.empty(side * side)
    dys = np.empty(side * side)
    vs = np.empty(side * side)
    idx = np.empty(64, np.int64)
    ratio = math.expm1(p * math.log(2.0)) / p if p > 0.0 else math.log(2.0)
    for k in range(k_all):
        if not use[k]:
            continue
        y, x = yc[k], xc[k]
        n = _stamp(img, y, x, b0[k], exc[k], sat, ny, nx, idx, dxs, dys, vs)[0]
        w = (0.5 * fwhm[k]) ** 2 / ratio
        amp = shape_amplitude(dxs, dys, vs, n, par[k, 1], par[k, 2], w, p)
        flux[k] = amp * math.pi * w / (1.0 - p)
        snr[k] = flux[k] / (sig[k] * math.sqrt(math.pi * w * (2.0 - p) / (1.0 - p) ** 2))
    return flux, snr


@njit(cache=True)
def unique(x, y, fwhm, order):
    """Keep-mask dropping a star whose centre lies within half a FWHM (>= 1 px) of a star
    earlier in ``order`` (brightest first): two peaks on one star converge to one centre."""
    keep = np.ones(x.size, np.bool_)
    kept = np.empty(x.size, np.int64)
    m = 0
    for i in order:
        fi = fwhm[i] if fwhm[i] == fwhm[i] else 2.0
        for t in range(m):
            j = kept[t]
            fj = fwhm[j] if fwhm[j] == fwhm[j] else 2.0
            r = max(1.0, 0.5 * max(fi, fj))
            if (x[i] - x[j]) ** 2 + (y[i] - y[j]) ** 2 < r * r:
                keep[i] = False
                break
        if keep[i]:
            kept[m] = i
            m += 1
    return keep
