"""Numba kernels of per-pixel rejection and combination (DESIGN §3.5).

Every kernel works on the samples of one pixel/channel gathered into a small buffer, so the
same code serves the public ``reject``/``combine`` functions and the fused chunk kernel of the
driver (``lockstep.stack_rows``: normalise → reject → combine in one pass, no intermediate
arrays), which runs the default winsorized + mean case over blocks of pixels at once
(``winsorized_block``, same rule). Rejection methods:

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
