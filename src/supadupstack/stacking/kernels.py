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
- kappa sigma: m = median, σ = std of the kept samples, reject outside m ± κσ, repeat.
- linear fit clip: fit a line to the sorted kept values against rank, σ = mean absolute
  residual, reject samples outside line ± κσ, repeat.

Fewer than 3 samples are never clipped. NaN samples are missing (never accepted).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# fast-math without nnan/ninf: NaN marks missing samples, so NaN checks must survive
FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}

WINSORIZED, KAPPA, LINEAR, NONE = 0, 1, 2, 3
MEAN, MEDIAN = 0, 1
REJECTION_CODES = {"winsorized_sigma": WINSORIZED, "kappa_sigma": KAPPA, "linear_fit_clip": LINEAR}
REJECTION_CODES["none"] = NONE
COMBINE_CODES = {"mean": MEAN, "median": MEDIAN}


@njit(cache=True, inline="always", fastmath=FAST)
def _sort(a, n):
    """Insertion sort of a[:n] in place (n is small: the number of frames)."""
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@njit(cache=True, inline="always", fastmath=FAST)
def _median_sorted(a, n):
    h = n // 2
    if n % 2 == 1:
        return a[h]
    return 0.5 * (a[h - 1] + a[h])


@njit(cache=True, fastmath=FAST)
def _mad_sorted(a, n, m):
    """Median absolute deviation from m of the sorted a[:n], in O(n) by merging both sides."""
    k = 0
    while k < n and a[k] < m:
        k += 1
    i = k - 1  # left side, deviations grow as i decreases
    j = k  # right side, deviations grow as j increases
    lo_rank = (n - 1) // 2
    hi_rank = n // 2
    d_lo = 0.0
    d = 0.0
    for r in range(hi_rank + 1):
        if i >= 0 and (j >= n or m - a[i] <= a[j] - m):
            d = m - a[i]
            i -= 1
        else:
            d = a[j] - m
            j += 1
        if r == lo_rank:
            d_lo = d
    return 0.5 * (d_lo + d)


@njit(cache=True, fastmath=FAST)
def _kept_sorted(vals, keep, n, buf):
    """Copy kept vals into buf, sort; returns the count."""
    k = 0
    for i in range(n):
        if keep[i]:
            buf[k] = vals[i]
            k += 1
    _sort(buf, k)
    return k


@njit(cache=True, fastmath=FAST)
def _winsorized(vals, keep, n, kl, kh, max_iter, buf):
    """Winsorized sigma clipping of vals[:n]; clears keep[i] of rejected samples."""
    k = _kept_sorted(vals, keep, n, buf)
    if k < 3:
        return
    m = _median_sorted(buf, k)
    s = 1.4826 * _mad_sorted(buf, k, m)
    if s <= 0.0:  # more than half the samples equal: fall back to the standard deviation
        acc = 0.0
        acc2 = 0.0
        for i in range(k):
            acc += buf[i]
            acc2 += buf[i] * buf[i]
        var = acc2 / k - (acc / k) ** 2
        s = math.sqrt(var) if var > 0 else 0.0
        if s <= 0.0:
            return
    for _ in range(max_iter):
        lo = m - 1.5 * s
        hi = m + 1.5 * s
        acc = 0.0
        for i in range(k):
            v = buf[i]
            acc += lo if v < lo else (hi if v > hi else v)
        m_new = acc / k
        acc2 = 0.0  # two-pass variance: no cancellation when the samples nearly agree
        for i in range(k):
            v = buf[i]
            v = lo if v < lo else (hi if v > hi else v)
            acc2 += (v - m_new) * (v - m_new)
        s_new = 1.134 * math.sqrt(acc2 / (k - 1))
        done = abs(s_new - s) <= 5e-3 * s  # 0.5 %: the 3σ clip cannot tell finer
        m = m_new
        s = s_new
        if done or s <= 0.0:
            break
    if s <= 1e-6 * (abs(m) + 1.0):  # the samples agree to float precision: nothing to reject
        return
    lo = m - kl * s
    hi = m + kh * s
    for i in range(n):
        if keep[i] and (vals[i] < lo or vals[i] > hi):
            keep[i] = False


@njit(cache=True, fastmath=FAST)
def _kappa(vals, keep, n, kl, kh, max_iter, buf):
    """Iterative kappa-sigma clipping around the median with the standard deviation."""
    for _ in range(max_iter):
        k = _kept_sorted(vals, keep, n, buf)
        if k < 3:
            return
        m = _median_sorted(buf, k)
        acc = 0.0
        for i in range(k):
            acc += buf[i]
        mean = acc / k
        acc2 = 0.0
        for i in range(k):
            acc2 += (buf[i] - mean) ** 2
        s = math.sqrt(acc2 / (k - 1))
        if s <= 0.0:
            return
        changed = False
        for i in range(n):
            if keep[i] and (vals[i] < m - kl * s or vals[i] > m + kh * s):
                keep[i] = False
                changed = True
        if not changed:
            return


@njit(cache=True, fastmath=FAST)
def _linear(vals, keep, n, kl, kh, max_iter, buf):
    """Linear-fit clipping: line through sorted kept values vs rank, sigma = mean |residual|."""
    for _ in range(max_iter):
        k = _kept_sorted(vals, keep, n, buf)
        if k < 3:
            return
        sx = 0.0
        sy = 0.0
        sxx = 0.0
        sxy = 0.0
        for i in range(k):
            sx += i
            sy += buf[i]
            sxx += i * i
            sxy += i * buf[i]
        den = k * sxx - sx * sx
        b = (k * sxy - sx * sy) / den
        a = (sy - b * sx) / k
        s = 0.0
        for i in range(k):
            s += abs(buf[i] - (a + b * i))
        s /= k
        if s <= 0.0:
            return
        # rank of each kept sample = its position in the sorted list
        changed = False
        for i in range(n):
            if not keep[i]:
                continue
            v = vals[i]
            lo_r = 0
            hi_r = k
            while lo_r < hi_r:  # first position with buf >= v
                mid = (lo_r + hi_r) // 2
                if buf[mid] < v:
                    lo_r = mid + 1
                else:
                    hi_r = mid
            fit = a + b * lo_r
            if v < fit - kl * s or v > fit + kh * s:
                keep[i] = False
                changed = True
        if not changed:
            return


@njit(cache=True, fastmath=FAST)
def reject_samples(vals, keep, n, method, kl, kh, max_iter, buf):
    """Dispatch one pixel's rejection; keep[:n] must be True on entry."""
    if n < 3 or method == NONE:
        return
    if method == WINSORIZED:
        _winsorized(vals, keep, n, kl, kh, max_iter, buf)
    elif method == KAPPA:
        _kappa(vals, keep, n, kl, kh, max_iter, buf)
    else:
        _linear(vals, keep, n, kl, kh, max_iter, buf)


@njit(cache=True, parallel=True, fastmath=FAST)
def reject_columns(stack, method, kl, kh, max_iter):
    """Accepted mask (N, P) of an (N, P) float32 stack, one pixel/channel per column."""
    nsamp, ncol = stack.shape
    accepted = np.zeros((nsamp, ncol), dtype=np.bool_)
    nblock = (ncol + 4095) // 4096
    for blk in prange(nblock):
        vals = np.empty(nsamp, dtype=np.float64)
        keep = np.empty(nsamp, dtype=np.bool_)
        idx = np.empty(nsamp, dtype=np.int64)
        buf = np.empty(nsamp, dtype=np.float64)
        for p in range(blk * 4096, min(ncol, (blk + 1) * 4096)):
            n = 0
            for i in range(nsamp):
                v = stack[i, p]
                if not math.isnan(v):
                    vals[n] = v
                    idx[n] = i
                    keep[n] = True
                    n += 1
            reject_samples(vals, keep, n, method, kl, kh, max_iter, buf)
            for j in range(n):
                accepted[idx[j], p] = keep[j]
    return accepted


@njit(cache=True, parallel=True, fastmath=FAST)
def stack_rows(data, wres, a, b, wn, method, kl, kh, max_iter, combine, out, cov, nrej):
    """Fused chunk kernel: normalise, reject and combine every pixel of a row chunk.

    data (N, R, W, C) float32 raw patch values (NaN = missing); wres (N, R, W) resampling
    weights (0 = missing); a, b, wn (N, C): scale, offset and noise weight of each sample.
    Writes out (R, W, C) (NaN where nothing is accepted), cov (R, W) = sum of accepted
    resampling weights averaged over channels, nrej (R, 2) rejected and total sample counts.
    """
    nsamp, nrow, ncol, nch = data.shape
    for r in prange(nrow):
        vals = np.empty(nsamp, dtype=np.float64)
        wts = np.empty(nsamp, dtype=np.float64)
        wr = np.empty(nsamp, dtype=np.float64)
        keep = np.empty(nsamp, dtype=np.bool_)
        buf = np.empty(nsamp, dtype=np.float64)
        rejected = 0
        total = 0
        for x in range(ncol):
            cover = 0.0
            for c in range(nch):
                n = 0
                for i in range(nsamp):
                    w = wres[i, r, x]
                    v = data[i, r, x, c]
                    if w > 0.0 and not math.isnan(v):
                        vals[n] = a[i, c] * v + b[i, c]
                        wts[n] = w * wn[i, c]
                        wr[n] = w
                        keep[n] = True
                        n += 1
                reject_samples(vals, keep, n, method, kl, kh, max_iter, buf)
                k = 0
                sw = 0.0
                swv = 0.0
                for j in range(n):
                    if keep[j]:
                        buf[k] = vals[j]
                        k += 1
                        sw += wts[j]
                        swv += wts[j] * vals[j]
                        cover += wr[j]
                rejected += n - k
                total += n
                if k == 0:
                    out[r, x, c] = np.nan
                elif combine == MEDIAN:
                    _sort(buf, k)
                    out[r, x, c] = _median_sorted(buf, k)
                elif sw > 0.0:
                    out[r, x, c] = swv / sw
                else:
                    out[r, x, c] = np.nan
            cov[r, x] = cover / nch
        nrej[r, 0] = rejected
        nrej[r, 1] = total
