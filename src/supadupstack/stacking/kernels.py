"""Numba kernels of per-pixel rejection and combination (DESIGN §3.5).

Every kernel works on the samples of one pixel/channel gathered into a small buffer, so the
same code serves the public ``reject``/``combine`` functions and the fused chunk kernel of the
driver (normalise → reject → combine in one pass, no intermediate arrays). Rejection methods:

- winsorized sigma: start at m = median, σ = 1.4826·MAD; iterate (≤ ``max_iter``)
  winsorising at m ± 1.5σ and re-estimating m = mean, σ = 1.134·std of the winsorised values
  (1.134 undoes the variance lost by winsorising a Gaussian at 1.5σ, as in Siril) until σ
  changes by < 0.5 %; then reject once outside [m − κ_low σ, m + κ_high σ].
  Winsorising at κσ itself (κ = 3) would let one outlier inflate σ without bound for N ≤ 9,
  and re-clipping the already clipped set would shrink σ and reject good samples.
- kappa sigma and linear fit clip: calibrated for small N, each sample judged against the
  others with Student-t thresholds (``stacking.student_clip``).

Fewer than 3 samples are never clipped. NaN samples are missing (never accepted).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from supadupstack.order_stats import select_kth
from supadupstack.stacking.student_clip import kappa_clip, linear_clip

# fast-math without nnan/ninf: NaN marks missing samples, so NaN checks must survive
FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}

WINSORIZED, KAPPA, LINEAR, NONE = 0, 1, 2, 3
MEAN, MEDIAN = 0, 1
REJECTION_CODES = {"winsorized_sigma": WINSORIZED, "kappa_sigma": KAPPA, "linear_fit_clip": LINEAR}
REJECTION_CODES["none"] = NONE
COMBINE_CODES = {"mean": MEAN, "median": MEDIAN}


@njit(cache=True, fastmath=FAST)
def _median_select(a, n):
    """Median of a[:n] (n ≥ 1) by selection; reorders a[:n]."""
    h = n // 2
    upper = select_kth(a, n, h)
    if n % 2 == 1:
        return upper
    lower = a[0]  # a[:h] now holds the h smallest values: the lower middle is their maximum
    for i in range(1, h):
        if a[i] > lower:
            lower = a[i]
    return 0.5 * (lower + upper)


@njit(cache=True, fastmath=FAST)
def winsorized_bounds(vals, n, max_iter, buf):
    """(m, σ) of the winsorized estimate of vals[:n] (n ≥ 3); σ ≤ 0 means "reject nothing".

    Start m = median, σ = 1.4826·MAD (both by selection in ``buf``, O(n)), iterate as the
    module docstring says. Each iteration is one pass: sums of the winsorised deviations from
    the current m, which are bounded by 1.5σ, so the one-pass variance does not cancel.
    """
    for i in range(n):
        buf[i] = vals[i]
    m = _median_select(buf, n)
    for i in range(n):
        buf[i] = abs(vals[i] - m)
    s = 1.4826 * _median_select(buf, n)
    if s <= 0.0:  # more than half the samples equal: fall back to the standard deviation
        acc = 0.0
        for i in range(n):
            acc += vals[i]
        mean = acc / n
        acc2 = 0.0
        for i in range(n):
            acc2 += (vals[i] - mean) * (vals[i] - mean)
        s = math.sqrt(acc2 / n)
        if s <= 0.0:
            return m, 0.0
    for _ in range(max_iter):
        lo = m - 1.5 * s
        hi = m + 1.5 * s
        s1 = 0.0
        s2 = 0.0
        for i in range(n):
            d = min(max(vals[i], lo), hi) - m
            s1 += d
            s2 += d * d
        dm = s1 / n
        var = (s2 - n * dm * dm) / (n - 1)
        s_new = 1.134 * math.sqrt(var) if var > 0.0 else 0.0
        done = abs(s_new - s) <= 5e-3 * s  # 0.5 %: the 3σ clip cannot tell finer
        m = m + dm
        s = s_new
        if done or s <= 0.0:
            break
    if s <= 1e-6 * (abs(m) + 1.0):  # the samples agree to float precision: nothing to reject
        return m, 0.0
    return m, s


@njit(cache=True, fastmath=FAST)
def _winsorized(vals, keep, n, kl, kh, max_iter, buf):
    """Winsorized sigma clipping of vals[:n] (all kept on entry); clears keep of rejects."""
    m, s = winsorized_bounds(vals, n, max_iter, buf)
    if s <= 0.0:
        return
    lo = m - kl * s
    hi = m + kh * s
    for i in range(n):
        if vals[i] < lo or vals[i] > hi:
            keep[i] = False


@njit(cache=True, fastmath=FAST)
def reject_samples(vals, keep, n, method, lim, max_iter, buf, scores):
    """Dispatch one pixel's rejection; keep[:n] must be True on entry.

    ``lim``: the (2, N + 1) table of ``student_clip.limits``; ``scores``: a per-thread
    (N + 1) buffer for the normal scores of linear-fit clipping (scores[0] = 0 when new).
    """
    if n < 3 or method == NONE:
        return
    if method == WINSORIZED:
        _winsorized(vals, keep, n, lim[0, 0], lim[1, 0], max_iter, buf)
    elif method == KAPPA:
        kappa_clip(vals, keep, n, lim, max_iter, buf)
    else:
        linear_clip(vals, keep, n, lim, max_iter, buf, scores)


@njit(cache=True, parallel=True, fastmath=FAST)
def reject_columns(stack, method, lim, max_iter):
    """Accepted mask (N, P) of an (N, P) float32 stack, one pixel/channel per column."""
    nsamp, ncol = stack.shape
    accepted = np.zeros((nsamp, ncol), dtype=np.bool_)
    nblock = (ncol + 4095) // 4096
    for blk in prange(nblock):
        vals = np.empty(nsamp, dtype=np.float64)
        keep = np.empty(nsamp, dtype=np.bool_)
        idx = np.empty(nsamp, dtype=np.int64)
        buf = np.empty(nsamp, dtype=np.float64)
        scores = np.zeros(nsamp + 1)
        for p in range(blk * 4096, min(ncol, (blk + 1) * 4096)):
            n = 0
            for i in range(nsamp):
                v = stack[i, p]
                if not math.isnan(v):
                    vals[n] = v
                    idx[n] = i
                    keep[n] = True
                    n += 1
            reject_samples(vals, keep, n, method, lim, max_iter, buf, scores)
            for j in range(n):
                accepted[idx[j], p] = keep[j]
    return accepted


BLOCK_VALUES = 512  # pixel-channels processed together: the (N, block) buffers stay in L2
INF = np.inf


@njit(cache=True)
def sorting_pairs(n):
    """Comparators (k, 2) of Batcher's odd-even merge sort for n values (lower index gets the
    minimum). Built for the next power of two; comparators touching an index ≥ n are dropped,
    which is exact when the missing values are +inf (they are already in place)."""
    n2 = 1
    while n2 < n:
        n2 *= 2
    out = np.empty((max(n2 * 64, 16), 2), np.int64)
    q = 0
    p = 1
    while p < n2:
        k = p
        while k >= 1:
            for j in range(k % p, n2 - k, 2 * k):
                for i in range(min(k, n2 - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        if q == out.shape[0]:
                            grown = np.empty((2 * q, 2), np.int64)
                            grown[:q] = out
                            out = grown
                        out[q, 0] = i + j
                        out[q, 1] = i + j + k
                        q += 1
            k //= 2
        p *= 2
    return out[:q].copy()


@njit(cache=True, fastmath=FAST)
def _network(a, pairs, npix):
    """Sort every column of a[:, :npix] with the comparator network (SIMD across columns)."""
    for q in range(pairs.shape[0]):
        ra = a[pairs[q, 0]]
        rb = a[pairs[q, 1]]
        for p in range(npix):
            x = ra[p]
            y = rb[p]
            ra[p] = min(x, y)
            rb[p] = max(x, y)


@njit(cache=True, fastmath=FAST)
def _median_col(srt, p, n):
    h = n // 2
    if n % 2 == 1:
        return srt[h, p]
    return 0.5 * (srt[h - 1, p] + srt[h, p])


@njit(cache=True, fastmath=FAST)
def winsorized_block(vals, cnt, npix, pairs, max_iter, srt, dev, m, s, s1, s2):
    """Winsorized (m, σ) of every column p < npix of vals (N, ·) at once; σ[p] ≤ 0: no rejection.

    Same rule as ``winsorized_bounds`` (module docstring), computed in lockstep across the
    columns so every step is a SIMD loop: columns are sorted by a sorting network (missing =
    NaN, sorted last as +inf; cnt[p] valid values), median and MAD come from the sorted
    columns, and the iterations run until every column has converged (a converged column
    keeps its values: the extra passes only cost time).
    """
    nsamp = vals.shape[0]
    nmax = 0
    for p in range(npix):
        nmax = max(nmax, cnt[p])
    for j in range(nsamp):
        for p in range(npix):
            v = vals[j, p]
            srt[j, p] = v if not math.isnan(v) else INF
    _network(srt, pairs, npix)
    for p in range(npix):
        m[p] = _median_col(srt, p, cnt[p]) if cnt[p] >= 3 else 0.0
    for j in range(nsamp):
        for p in range(npix):
            dev[j, p] = abs(srt[j, p] - m[p]) if j < cnt[p] else INF
    _network(dev, pairs, npix)
    active = 0
    for p in range(npix):
        n = cnt[p]
        if n < 3:
            s[p] = 0.0
            continue
        sp = 1.4826 * _median_col(dev, p, n)
        if sp <= 0.0:  # more than half the samples equal: the standard deviation instead
            acc = 0.0
            for j in range(n):
                acc += srt[j, p]
            mean = acc / n
            acc2 = 0.0
            for j in range(n):
                acc2 += (srt[j, p] - mean) * (srt[j, p] - mean)
            sp = math.sqrt(acc2 / n)
        s[p] = sp
        if sp > 0.0:
            active += 1
    cur = np.empty(npix, np.bool_)
    for p in range(npix):
        cur[p] = s[p] > 0.0
    for _ in range(max_iter):
        if active == 0:
            break
        for p in range(npix):
            s1[p] = 0.0
            s2[p] = 0.0
        for j in range(nmax):
            row = srt[j]
            for p in range(npix):
                lo = m[p] - 1.5 * s[p]
                hi = m[p] + 1.5 * s[p]
                d = min(max(row[p], lo), hi) - m[p]
                d = d if j < cnt[p] else 0.0
                s1[p] += d
                s2[p] += d * d
        active = 0
        for p in range(npix):
            if not cur[p]:
                continue
            n = cnt[p]
            dm = s1[p] / n
            var = (s2[p] - n * dm * dm) / (n - 1)
            s_new = 1.134 * math.sqrt(var) if var > 0.0 else 0.0
            done = abs(s_new - s[p]) <= 5e-3 * s[p]  # 0.5 %: the 3σ clip cannot tell finer
            m[p] += dm
            s[p] = s_new
            if done or s_new <= 0.0:
                cur[p] = False
            else:
                active += 1
    for p in range(npix):
        if s[p] <= 1e-6 * (abs(m[p]) + 1.0):  # samples agree to float precision: keep all
            s[p] = 0.0


@njit(cache=True, fastmath=FAST)
def _combine_pixel(vals, wts, wr, n, method, lim, max_iter, combine, keep, buf, scores):
    """Reject and combine one pixel/channel's samples; returns (value, Σ wr kept, kept)."""
    for j in range(n):
        keep[j] = True
    reject_samples(vals, keep, n, method, lim, max_iter, buf, scores)
    k = 0
    sw = 0.0
    swv = 0.0
    cover = 0.0
    for j in range(n):
        if keep[j]:
            buf[k] = vals[j]
            k += 1
            sw += wts[j]
            swv += wts[j] * vals[j]
            cover += wr[j]
    if k == 0:
        return np.nan, cover, k
    if combine == MEDIAN:
        return _median_select(buf, k), cover, k
    if sw > 0.0:
        return swv / sw, cover, k
    return np.nan, cover, k


@njit(cache=True, fastmath=FAST)
def _gather(planes, weights, oy, ox, a, b, wn, r, x0, x1, vals, wts, wr, cnt):
    """Samples of row r, columns [x0, x1) into (N, (x - x0)·C + c) buffers; NaN / 0 = missing."""
    nch = a.shape[1]
    npix = (x1 - x0) * nch
    for p in range(npix):
        cnt[p] = 0
    for i in range(len(planes)):
        pl = planes[i]
        pr = r - oy[i]
        lo = x1
        hi = x1
        if 0 <= pr < pl.shape[0]:
            lo = min(max(x0, ox[i]), x1)
            hi = max(min(x1, ox[i] + pl.shape[1]), lo)
        vi, ti, ri = vals[i], wts[i], wr[i]
        for p in range((lo - x0) * nch):
            vi[p] = np.nan
            ti[p] = 0.0
            ri[p] = 0.0
        for p in range((hi - x0) * nch, npix):
            vi[p] = np.nan
            ti[p] = 0.0
            ri[p] = 0.0
        if hi <= lo:
            continue
        wt = weights[i]
        oxi = ox[i]
        for c in range(nch):  # one channel at a time: branch-free, vectorisable loops
            ac = a[i, c]
            bc = b[i, c]
            wc = wn[i, c]
            for x in range(lo, hi):
                w = wt[pr, x - oxi]
                v = pl[pr, x - oxi, c]
                ok = (w > 0.0) & (v == v)
                p = (x - x0) * nch + c
                vi[p] = ac * v + bc if ok else np.nan
                ti[p] = w * wc if ok else 0.0
                ri[p] = w if ok else 0.0
                cnt[p] += 1 if ok else 0


@njit(cache=True, parallel=True, fastmath=FAST)
def stack_rows(planes, weights, oy, ox, a, b, wn, method, lim, max_iter, combine, out, cov, nrej):
    """Fused chunk kernel: normalise, reject and combine every pixel of a row chunk.

    ``planes`` / ``weights``: typed lists of the N samples' rows, (h_i, w_i, C) float32
    (NaN = missing) and (h_i, w_i) float32 resampling weights (0 = missing); element [0, 0]
    of sample i is output pixel (oy[i], ox[i]) (offsets may be negative or out of range: only
    the overlap is read). a, b, wn (N, C): scale, offset and noise weight of each sample.
    ``lim``: rejection thresholds (``student_clip.limits``). Writes out (R, W, C) (NaN
    where nothing is accepted), cov (R, W) = sum of accepted
    resampling weights averaged over channels, nrej (R, 2) rejected and total sample counts.

    Samples are read straight from the inputs (no stacked copy): each thread gathers one row
    and a block of columns into (sample, pixel-channel) buffers. Winsorized (or no) rejection
    with a mean runs in lockstep over the block (``winsorized_block``); the other methods
    and the median pixel by pixel.
    """
    nrow, ncol, nch = out.shape
    nsamp = len(planes)
    cols = max(1, BLOCK_VALUES // nch)
    nblk = (ncol + cols - 1) // cols
    pairs = sorting_pairs(nsamp)
    lockstep = combine == MEAN and method != KAPPA and method != LINEAR
    ntask = min(nrow, 64)
    for task in prange(ntask):
        npx = cols * nch
        vals = np.empty((nsamp, npx), dtype=np.float64)
        wts = np.empty((nsamp, npx), dtype=np.float64)
        wr = np.empty((nsamp, npx), dtype=np.float64)
        srt = np.empty((nsamp, npx), dtype=np.float64)
        dev = np.empty((nsamp, npx), dtype=np.float64)
        cnt = np.empty(npx, dtype=np.int64)
        m = np.zeros(npx)
        s = np.zeros(npx)
        s1 = np.empty(npx)
        s2 = np.empty(npx)
        sw = np.empty(npx)
        swv = np.empty(npx)
        cover = np.empty(npx)
        kept = np.empty(npx, dtype=np.int64)
        lo_p = np.empty(npx)
        hi_p = np.empty(npx)
        col = np.empty(nsamp)
        cw = np.empty(nsamp)
        cr = np.empty(nsamp)
        keep = np.empty(nsamp, dtype=np.bool_)
        buf = np.empty(nsamp)
        scores = np.zeros(nsamp + 1)
        kl, kh = lim[0, 0], lim[1, 0]
        for r in range(task * nrow // ntask, (task + 1) * nrow // ntask):
            rejected = 0
            total = 0
            for blk in range(nblk):
                x0 = blk * cols
                x1 = min(ncol, x0 + cols)
                npix = (x1 - x0) * nch
                _gather(planes, weights, oy, ox, a, b, wn, r, x0, x1, vals, wts, wr, cnt)
                if lockstep:
                    if method == WINSORIZED:
                        winsorized_block(vals, cnt, npix, pairs, max_iter, srt, dev, m, s, s1, s2)
                    for p in range(npix):
                        sw[p] = 0.0
                        swv[p] = 0.0
                        cover[p] = 0.0
                        kept[p] = 0
                        rej = method == WINSORIZED and s[p] > 0.0
                        lo_p[p] = m[p] - kl * s[p] if rej else -INF
                        hi_p[p] = m[p] + kh * s[p] if rej else INF
                    for j in range(nsamp):
                        vj, tj, rj = vals[j], wts[j], wr[j]
                        for p in range(npix):
                            v = vj[p]
                            ok = (v >= lo_p[p]) & (v <= hi_p[p])  # False for NaN (missing)
                            sw[p] += tj[p] if ok else 0.0
                            swv[p] += tj[p] * v if ok else 0.0
                            cover[p] += rj[p] if ok else 0.0
                            kept[p] += 1 if ok else 0
                    for x in range(x0, x1):
                        cv = 0.0
                        for c in range(nch):
                            p = (x - x0) * nch + c
                            out[r, x, c] = swv[p] / sw[p] if kept[p] > 0 and sw[p] > 0 else np.nan
                            cv += cover[p]
                            rejected += cnt[p] - kept[p]
                            total += cnt[p]
                        cov[r, x] = cv / nch
                    continue
                for x in range(x0, x1):
                    cv = 0.0
                    for c in range(nch):
                        p = (x - x0) * nch + c
                        n = 0
                        for j in range(nsamp):
                            v = vals[j, p]
                            if not math.isnan(v):
                                col[n] = v
                                cw[n] = wts[j, p]
                                cr[n] = wr[j, p]
                                n += 1
                        val, cwt, k = _combine_pixel(
                            col, cw, cr, n, method, lim, max_iter, combine, keep, buf, scores
                        )
                        out[r, x, c] = val
                        cv += cwt
                        rejected += n - k
                        total += n
                    cov[r, x] = cv / nch
            nrej[r, 0] = rejected
            nrej[r, 1] = total
