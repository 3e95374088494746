"""Numba kernels of the detection stage: 2x2 binning, smoothing, coarse background, peaks.

Everything here runs on the 2x2-binned image (a quarter of the pixels) or on a coarse grid of
blocks, which is what keeps detection at a few milliseconds per Seestar frame. All kernels are
serial (no ``parallel=True``) and use no fast-math, so their output is bit-identical on every
call and thread count. NaN marks no-data pixels throughout.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from supadupstack.order_stats import select_kth

MAD_TO_SIGMA = 1.4826  # 1 / Phi^-1(3/4): sigma of a Gaussian from its median absolute deviation
MIN_BLOCK_SAMPLES = 16  # fewer finite samples than this: the block has no background estimate


@njit(cache=True)
def bin2(img):
    """(H, W) float32 -> (H // 2, W // 2) float32 mean of the finite pixels of each 2x2 cell.

    Binning halves the work of every later pass and averages noise down by ~2 while a star of
    FWHM >= 2 px still spans >= 1 binned pixel. A cell with no finite pixel is NaN.
    """
    hb, wb = img.shape[0] // 2, img.shape[1] // 2
    out = np.empty((hb, wb), np.float32)
    for i in range(hb):
        r0 = img[2 * i]
        r1 = img[2 * i + 1]
        for j in range(wb):
            a, b, c, d = r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]
            s = a + b + c + d
            if s == s:
                out[i, j] = 0.25 * s
                continue
            t = 0.0
            n = 0
            for v in (a, b, c, d):
                if v == v:
                    t += v
                    n += 1
            out[i, j] = t / n if n > 0 else np.nan
    return out


@njit(cache=True)
def smooth121(b):
    """[1 2 1] x [1 2 1] / 16 smoothing with NaN-aware renormalisation (float32 in and out).

    A small matched filter: it raises the peak-to-noise ratio of a binned star by ~2 and
    flattens single-pixel noise so that local maxima are stars, not noise spikes. Missing
    neighbours are left out and the kernel weight renormalised, so no-data edges do not make
    false dips or peaks.
    """
    h, w = b.shape
    hs = np.empty((h, w), np.float32)
    hw = np.empty((h, w), np.float32)
    for i in range(h):
        for j in range(w):
            s = 0.0
            k = 0.0
            for dj in range(-1, 2):
                jj = j + dj
                if 0 <= jj < w:
                    v = b[i, jj]
                    if v == v:
                        c = 2.0 if dj == 0 else 1.0
                        s += c * v
                        k += c
            hs[i, j] = s
            hw[i, j] = k
    out = np.empty((h, w), np.float32)
    for i in range(h):
        for j in range(w):
            s = 2.0 * hs[i, j]
            k = 2.0 * hw[i, j]
            if i > 0:
                s += hs[i - 1, j]
                k += hw[i - 1, j]
            if i < h - 1:
                s += hs[i + 1, j]
                k += hw[i + 1, j]
            out[i, j] = s / k if k > 0 else np.nan
    return out


@njit(cache=True)
def _median(a, n):
    """Median of a[:n] (upper median for even n: the bias is far below the noise)."""
    return select_kth(a, n, n // 2)


@njit(cache=True)
def background(smooth, img, block, step):
    """Block medians of ``smooth`` and global noise of ``smooth`` and ``img``.

    ``smooth`` is the binned image, ``img`` the full-resolution one (blocks twice as large).
    Each block x block cell of ``smooth`` is sampled every ``step`` pixels; its median is the
    sky level there (NaN if fewer than MIN_BLOCK_SAMPLES finite samples). The noise of each
    image is 1.4826 x the median absolute deviation of its samples from their block median,
    pooled over the frame: sparse samples keep this at ~1 ms (medians of few samples are
    cheap, branchy selection of many is not), and subtracting block medians first keeps a sky
    gradient out of the noise. Returns (median grid, sigma of smooth, sigma of img).
    """
    h, w = smooth.shape
    ny = (h + block - 1) // block
    nx = (w + block - 1) // block
    per = ((block + step - 1) // step) ** 2
    med = np.full((ny, nx), np.nan)
    buf = np.empty(per)
    dev_s = np.empty(ny * nx * per)
    dev_f = np.empty(ny * nx * per)
    ns = 0
    nf = 0
    for by in range(ny):
        for bx in range(nx):
            n = 0
            for y in range(by * block, min((by + 1) * block, h), step):
                for x in range(bx * block, min((bx + 1) * block, w), step):
                    v = smooth[y, x]
                    if v == v:
                        buf[n] = v
                        n += 1
            if n < MIN_BLOCK_SAMPLES:
                continue
            m = _median(buf, n)
            med[by, bx] = m
            for t in range(n):
                dev_s[ns] = abs(buf[t] - m)
                ns += 1
            for y in range(2 * by * block + 1, min(2 * (by + 1) * block, img.shape[0]), 2 * step):
                for x in range(
                    2 * bx * block + 1, min(2 * (bx + 1) * block, img.shape[1]), 2 * step
                ):
                    v = img[y, x]
                    if v == v:
                        dev_f[nf] = abs(v - m)
                        nf += 1
    sig_s = MAD_TO_SIGMA * _median(dev_s, ns) if ns > 0 else np.nan
    sig_f = MAD_TO_SIGMA * _median(dev_f, nf) if nf > 0 else np.nan
    return med, sig_s, sig_f


@njit(cache=True)
def median3_fill(grid):
    """3x3 median filter of a block grid, then NaN blocks set to the median of the others.

    The filter removes blocks lifted by a bright star or a galaxy core (as sep's fw=fh=3) and
    keeps a linear sky gradient unchanged. Returns NaN everywhere if no block is finite.
    """
    ny, nx = grid.shape
    out = np.full((ny, nx), np.nan)
    buf = np.empty(9)
    for i in range(ny):
        for j in range(nx):
            n = 0
            for ii in range(max(i - 1, 0), min(i + 2, ny)):
                for jj in range(max(j - 1, 0), min(j + 2, nx)):
                    v = grid[ii, jj]
                    if v == v:
                        buf[n] = v
                        n += 1
            if n > 0:
                out[i, j] = _median(buf, n)
    flat = out.ravel().copy()
    n = 0
    for v in out.ravel():
        if v == v:
            flat[n] = v
            n += 1
    fill = _median(flat, n) if n > 0 else np.nan
    for i in range(ny):
        for j in range(nx):
            if out[i, j] != out[i, j]:
                out[i, j] = fill
    return out


@njit(cache=True)
def interp(grid, y, x, block):
    """Bilinear value of a block grid at pixel (y, x) of the image the grid was made from.

    Block centres sit at (k + 0.5) * block - 0.5; beyond the outer centres the value is held.
    """
    ny, nx = grid.shape
    fy = min(max((y + 0.5) / block - 0.5, 0.0), ny - 1.0)
    fx = min(max((x + 0.5) / block - 0.5, 0.0), nx - 1.0)
    iy = min(int(fy), ny - 2) if ny > 1 else 0
    ix = min(int(fx), nx - 2) if nx > 1 else 0
    ty = fy - iy
    tx = fx - ix
    iy1 = min(iy + 1, ny - 1)
    ix1 = min(ix + 1, nx - 1)
    top = grid[iy, ix] * (1.0 - tx) + grid[iy, ix1] * tx
    bot = grid[iy1, ix] * (1.0 - tx) + grid[iy1, ix1] * tx
    return top * (1.0 - ty) + bot * ty


@njit(cache=True)
def _block_floor(bkg, thr_add):
    """Lowest threshold bkg + thr_add that bilinear interpolation can give in each block.

    A pixel of block (i, j) is interpolated from grid nodes i-1..i+1, j-1..j+1, so the minimum
    over those nodes bounds its threshold from below: one comparison rejects almost every
    pixel before any interpolation.
    """
    ny, nx = bkg.shape
    floor = np.empty((ny, nx))
    for i in range(ny):
        for j in range(nx):
            m = np.inf
            for ii in range(max(i - 1, 0), min(i + 2, ny)):
                for jj in range(max(j - 1, 0), min(j + 2, nx)):
                    m = min(m, bkg[ii, jj])
            floor[i, j] = m + thr_add
    return floor


@njit(cache=True)
def find_peaks(s, bkg, thr_add, block):
    """Local maxima of the smoothed binned image ``s`` above the interpolated bkg + thr_add.

    Returns (rows, cols, excess above background) in raster order. Ties between equal
    neighbours (flat saturated tops) go to the first pixel in raster order, so a plateau gives
    one peak. The 1-pixel border is skipped (those stars would be truncated anyway).
    """
    h, w = s.shape
    floor = _block_floor(bkg, thr_add)
    cap = max(h * w // 4, 1)
    rows = np.empty(cap, np.int32)
    cols = np.empty(cap, np.int32)
    exc = np.empty(cap)
    n = 0
    for i in range(1, h - 1):
        frow = floor[i // block]
        for j in range(1, w - 1):
            v = s[i, j]
            if not v > frow[j // block]:
                continue
            # strictly above earlier neighbours, not below later ones (NaN neighbours pass)
            if s[i, j - 1] >= v or s[i, j + 1] > v:
                continue
            if s[i - 1, j - 1] >= v or s[i - 1, j] >= v or s[i - 1, j + 1] >= v:
                continue
            if s[i + 1, j - 1] > v or s[i + 1, j] > v or s[i + 1, j + 1] > v:
                continue
            b = interp(bkg, i, j, block)  # only for the few local maxima: interp is costly
            if not v > b + thr_add:
                continue
            if n < cap:
                rows[n] = i
                cols[n] = j
                exc[n] = v - b
                n += 1
    return rows[:n], cols[:n], exc[:n]


@njit(cache=True)
def full_res_peaks(img, rows, cols, bkg, block, min_ratio):
    """Brightest full-resolution pixel of each binned peak, and whether it is a lone hot pixel.

    The brightest pixel is searched in the 4x4 full-resolution pixels around the 2x2 cell.
    Sharpness test: a real star (FWHM >= 2 px) puts >= ~30 % of its peak into its 4 direct
    neighbours, a hot pixel or cosmic-ray hit ~0 %; candidates whose neighbour mean is below
    ``min_ratio`` x the peak excess are hot. Returns (yc, xc, excess, hot).
    """
    h, w = img.shape
    n = rows.size
    yc = np.empty(n, np.int32)
    xc = np.empty(n, np.int32)
    exc = np.empty(n)
    hot = np.zeros(n, np.bool_)
    for k in range(n):
        best = -np.inf
        by = 2 * rows[k]
        bx = 2 * cols[k]
        for y in range(max(by - 1, 0), min(by + 3, h)):
            for x in range(max(bx - 1, 0), min(bx + 3, w)):
                v = img[y, x]
                if v > best:
                    best = v
                    yc[k] = y
                    xc[k] = x
        y, x = yc[k], xc[k]
        b = interp(bkg, (y - 0.5) / 2.0, (x - 0.5) / 2.0, block)
        exc[k] = best - b
        s = 0.0
        m = 0
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            if 0 <= y + dy < h and 0 <= x + dx < w:
                v = img[y + dy, x + dx]
                if v == v:
                    s += v - b
                    m += 1
        hot[k] = m > 0 and s / m < min_ratio * exc[k]
    return yc, xc, exc, hot
