"""The fused chunk kernel of the stacking driver for the default winsorized (or no) rejection
with a weighted mean: gather, reject and combine a range of output rows.

Each call gathers one output row and a block of columns at a time into planar (sample,
channel·column) float64 buffers, read straight from the patches (no stacked copy); the
rejection runs in lockstep over the block (``winsorized_block``), then one SIMD pass
accumulates the weighted mean of the accepted samples. Kappa-sigma, linear-fit clipping and
the median run pixel by pixel in ``pixelwise``, a kernel of its own: a first run compiles
only the path it uses. The result of a pixel depends neither on its block nor on the thread
count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba.typed import List

from supadupstack.stacking.kernels import FAST
from supadupstack.stacking.winsorized_block import ORDERED, winsorized_block

BLOCK_VALUES = 512  # pixel-channels processed together: the (N, block) buffers stay in L2
INF = np.inf


@njit(cache=True)
def rows_list(first):
    """A typed list holding ``first``, made by a cached function: numba compiles the typed
    list's own methods anew in every process (about 0.5 s) when Python calls them."""
    out = List()
    out.append(first)
    return out


@njit(cache=True)
def add_rows(rows, more):
    """rows.append(more), compiled once and cached (see ``rows_list``)."""
    rows.append(more)


@njit(cache=True, fastmath=FAST, error_model="numpy")
def _gather(planes, weights, geo, oy, ox, a, b, r, x0, x1, vals, wgt):
    """Samples of row r, columns [x0, x1) into planar buffers (nx = x1 − x0 columns).

    vals[i, c·nx + x − x0] = a[i, c]·v + b[i, c] (NaN where missing: no data or zero weight),
    wgt[i, x − x0] = the resampling weight (0 outside the patch). Sample i's rows start every
    geo[i, 2] (data) and geo[i, 3] (weights) elements of planes[i] and weights[i]; it has
    geo[i, 0] rows of geo[i, 1] pixels. The copy loops index with unsigned offsets: numba
    then emits no negative-index fix-up, which would stop SIMD.
    """
    nch = a.shape[1]
    nx = x1 - x0
    for i in range(len(planes)):
        pr = r - oy[i]
        lo = x1
        hi = x1
        if 0 <= pr < geo[i, 0]:
            lo = min(max(x0, ox[i]), x1)
            hi = max(min(x1, ox[i] + geo[i, 1]), lo)
        vi, gi = vals[i], wgt[i]
        for x in range(x0, lo):
            gi[x - x0] = 0.0
        for x in range(hi, x1):
            gi[x - x0] = 0.0
        for c in range(nch):
            for x in range(x0, lo):
                vi[c * nx + x - x0] = np.nan
            for x in range(hi, x1):
                vi[c * nx + x - x0] = np.nan
        if hi <= lo:
            continue
        row = planes[i]  # pixels of the patch rows, channels interleaved
        wrow = weights[i]
        src = np.uint64(lo - ox[i])
        dst = np.uint64(lo - x0)
        wsrc = np.uint64(pr * geo[i, 3]) + src
        for k in range(hi - lo):
            gi[dst + np.uint64(k)] = wrow[wsrc + np.uint64(k)]
        start = np.uint64(pr * geo[i, 2])
        if nch == 3:  # constant stride: the compiler de-interleaves with vector shuffles
            _deinterleave3(row, gi, vi, a[i], b[i], start, src, dst, hi - lo, nx)
            continue
        for c in range(nch):
            ac = a[i, c]
            bc = b[i, c]
            uc = np.uint64(c)
            un = np.uint64(nch)
            out = dst + np.uint64(c * nx)
            for k in range(hi - lo):
                uk = np.uint64(k)
                v = row[start + un * (src + uk) + uc]
                ok = (gi[dst + uk] > 0.0) & (v == v)
                vi[out + uk] = ac * v + bc if ok else np.nan


@njit(cache=True, fastmath=FAST, error_model="numpy")
def _deinterleave3(row, gi, vi, a, b, start, src, dst, n, nx):
    """The 3-channel case of ``_gather``: n pixels from row[start + 3·src:] to vi (planar)."""
    a0, a1, a2 = a[0], a[1], a[2]
    b0, b1, b2 = b[0], b[1], b[2]
    o1 = dst + np.uint64(nx)
    o2 = dst + np.uint64(2 * nx)
    three = np.uint64(3)
    for k in range(n):
        uk = np.uint64(k)
        e = start + three * (src + uk)
        v0 = row[e]
        v1 = row[e + np.uint64(1)]
        v2 = row[e + np.uint64(2)]
        g = gi[dst + uk] > 0.0
        vi[dst + uk] = a0 * v0 + b0 if g & (v0 == v0) else np.nan
        vi[o1 + uk] = a1 * v1 + b1 if g & (v1 == v1) else np.nan
        vi[o2 + uk] = a2 * v2 + b2 if g & (v2 == v2) else np.nan


@njit(cache=True, fastmath=ORDERED, error_model="numpy")
def _mean_block(vals, wgt, wn, nx, lo_p, hi_p, acc, kept):
    """Weighted mean sums of the samples inside [lo_p, hi_p] (NaN never is) of every
    pixel-channel: acc[0] = Σ w, acc[1] = Σ w·v, acc[2] = Σ resampling weight; kept = their
    count. Two samples per pass (half the loads and stores of the sums), added in order."""
    nsamp, nch = wn.shape
    npix = nx * nch
    sw, swv, cover = acc[0], acc[1], acc[2]
    for p in range(npix):
        sw[p] = 0.0
        swv[p] = 0.0
        cover[p] = 0.0
        kept[p] = 0
    for j in range(0, nsamp, 2):
        j1 = min(j + 1, nsamp - 1)  # an odd last sample pairs with itself, counted once
        last = j1 == j
        v0row, v1row, g0row, g1row = vals[j], vals[j1], wgt[j], wgt[j1]
        for c in range(nch):
            w0 = wn[j, c]
            w1 = wn[j1, c]
            base = np.uint64(c * nx)
            for x in range(nx):
                p = base + np.uint64(x)
                lo = lo_p[p]
                hi = hi_p[p]
                v0 = v0row[p]
                v1 = v1row[p]
                g0 = g0row[x]
                g1 = g1row[x]
                t0 = g0 * w0
                t1 = g1 * w1
                ok0 = (v0 >= lo) & (v0 <= hi)  # False for NaN (missing)
                ok1 = (v1 >= lo) & (v1 <= hi) & (not last)
                sw[p] = (sw[p] + (t0 if ok0 else 0.0)) + (t1 if ok1 else 0.0)
                swv[p] = (swv[p] + (t0 * v0 if ok0 else 0.0)) + (t1 * v1 if ok1 else 0.0)
                cover[p] = (cover[p] + (g0 if ok0 else 0.0)) + (g1 if ok1 else 0.0)
                kept[p] += (1 if ok0 else 0) + (1 if ok1 else 0)


@njit(cache=True, fastmath=FAST, error_model="numpy")
def _count(vals, npix, cnt):
    """cnt[p] = samples present (not NaN) in column p of vals."""
    for p in range(npix):
        cnt[p] = 0
    for j in range(vals.shape[0]):
        vj = vals[j]
        for p in range(npix):
            cnt[p] += 0 if math.isnan(vj[p]) else 1


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def stack_rows(
    planes, weights, geo, oy, ox, a, b, wn, pairs, winsorize, kl, kh, max_iter, rows, out, cov,
    nrej,
):  # fmt: skip
    """Winsorized (or no) rejection and weighted mean of output rows rows[0]..rows[1] − 1.

    ``planes`` / ``weights``: typed lists of the N samples' rows, 1-D float32 with the
    channels of a pixel side by side (NaN = missing) and the resampling weights (0 =
    missing), laid out as ``geo`` says (``_gather``); pixel [0, 0] of sample i is output
    pixel (oy[i], ox[i]) (offsets may be negative or out of range: only the overlap is read).
    a, b, wn (N, C): scale, offset and noise weight of each sample. ``pairs``: the sorting
    network of N values (``sorting_pairs``); kl, kh: κ of each side. Writes out (R, W, C)
    (NaN where nothing is accepted), cov (R, W) = sum of accepted resampling weights averaged
    over channels, nrej (R, 2) rejected and total sample counts. No GIL: the caller runs
    disjoint row ranges on threads, each row in one call, so the bytes never depend on them.
    """
    _, ncol, nch = out.shape
    nsamp = len(planes)
    cols = max(1, BLOCK_VALUES // nch)
    npx = cols * nch
    vals = np.empty((nsamp, npx))
    wgt = np.empty((nsamp, cols), dtype=np.float32)
    srt = np.empty((nsamp, npx))
    dev = np.empty((nsamp, npx))
    cnt = np.empty(npx, dtype=np.int64)
    m = np.zeros(npx)
    s = np.zeros(npx)
    st = np.empty((6, npx))
    ist = np.empty((3, npx), dtype=np.int64)
    cur = np.empty(npx, dtype=np.bool_)
    bounds = np.empty((2, npx))
    acc = np.empty((3, npx))
    kept = np.empty(npx, dtype=np.int64)
    lo_p, hi_p = bounds[0], bounds[1]
    for r in range(rows[0], rows[1]):
        rejected = 0
        total = 0
        for x0 in range(0, ncol, cols):
            x1 = min(ncol, x0 + cols)
            nx = x1 - x0
            npix = nx * nch
            _gather(planes, weights, geo, oy, ox, a, b, r, x0, x1, vals, wgt)
            _count(vals, npix, cnt)
            if winsorize:
                winsorized_block(vals, cnt, npix, pairs, max_iter, srt, dev, m, s, st, ist, cur)
            for p in range(npix):
                rej = winsorize and s[p] > 0.0
                lo_p[p] = m[p] - kl * s[p] if rej else -INF
                hi_p[p] = m[p] + kh * s[p] if rej else INF
            _mean_block(vals, wgt, wn, nx, lo_p, hi_p, acc, kept)
            for x in range(nx):
                cv = 0.0
                for c in range(nch):
                    p = c * nx + x
                    sw = acc[0, p]
                    out[r, x0 + x, c] = acc[1, p] / sw if kept[p] > 0 and sw > 0 else np.nan
                    cv += acc[2, p]
                    rejected += cnt[p] - kept[p]
                    total += cnt[p]
                cov[r, x0 + x] = cv / nch
        nrej[r, 0] = rejected
        nrej[r, 1] = total
