"""Winsorized (m, σ) of a block of pixel-channels at once, in SIMD lockstep (DESIGN §3.5).

The samples of a block are a (N, P) float64 buffer, one pixel-channel per column, NaN =
missing. Every step is a loop over the columns that the compiler turns into SIMD code:

- the samples of every column are sorted by a comparator network (missing = +inf, last);
  median and MAD come from the sorted columns;
- the winsorising iterations run on the columns that have not converged yet: when half of
  them have, the others are packed to the front of a work buffer, so a block costs about the
  mean number of iterations of its columns, not the largest (10 at ``max_iter`` = 10: some
  column of every block oscillates until then).

The rule per column is that of ``kernels.winsorized_bounds``; the result of a column depends
neither on its block nor on the thread count. Every kernel uses numpy's error model: a
division has no zero check, which would keep the loop from vectorising.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from supadupstack.stacking.kernels import FAST

INF = np.inf
ORDERED = FAST - {"reassoc"}  # sums of a column stay in sample order whatever the unrolling


def sorting_pairs(n: int) -> np.ndarray:
    """Comparators (k, 2) int64 of Batcher's odd-even merge sort for n values (lower index gets
    the minimum). Built for the next power of two; comparators touching an index ≥ n are
    dropped, which is exact when the missing values are +inf (they are already in place).
    Plain Python: a table of a few hundred pairs, made once per stack."""
    n2 = 1
    while n2 < n:
        n2 *= 2
    out = []
    p = 1
    while p < n2:
        k = p
        while k >= 1:
            for j in range(k % p, n2 - k, 2 * k):
                for i in range(min(k, n2 - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        out.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(out, np.int64).reshape(-1, 2)


@njit(cache=True, fastmath=FAST, error_model="numpy")
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


@njit(cache=True, fastmath=FAST, error_model="numpy")
def _median_col(srt, p, n):
    h = n // 2
    if n % 2 == 1:
        return srt[h, p]
    return 0.5 * (srt[h - 1, p] + srt[h, p])


@njit(cache=True, fastmath=FAST, error_model="numpy")
def _kth_deviation(srt, npix, n, m, k, t):
    """t[p] = the k-th smallest (0-based) |srt[j, p] − m[p]|, j < n, for columns of n sorted
    samples and their median m: the deviations below the median (m − srt[h − 1 − i],
    ascending in i) and above it (srt[h + i] − m) are two sorted runs, and the k-th of their
    merge is min over i of max(A[i − 1], B[k − i]): ~n/2 SIMD steps instead of sorting the
    deviations with the network (same values: m − x is |x − m| exactly for x ≤ m)."""
    h = n // 2
    for p in range(npix):
        t[p] = INF
    for i in range(max(0, k + 1 - (n - h)), min(k + 1, h) + 1):
        j = k - i
        if i == 0:
            rb = srt[h + j]
            for p in range(npix):
                t[p] = min(t[p], rb[p] - m[p])
        elif j < 0:
            ra = srt[h - i]
            for p in range(npix):
                t[p] = min(t[p], m[p] - ra[p])
        else:
            ra = srt[h - i]
            rb = srt[h + j]
            for p in range(npix):
                t[p] = min(t[p], max(m[p] - ra[p], rb[p] - m[p]))


@njit(cache=True, fastmath=FAST, error_model="numpy")
def _start(vals, cnt, npix, pairs, srt, dev, m, s):
    """Sorted samples in srt (missing = +inf, last) and the start m = median, σ = 1.4826·MAD
    (the standard deviation when more than half the samples are equal) of every column;
    σ = 0 for columns of fewer than 3 samples. Returns the largest count. ``dev`` is work
    space: the deviations sorted by the network, or (most blocks: every column holds all the
    samples) two rows for ``_kth_deviation``."""
    nsamp = vals.shape[0]
    nmax = 0
    nmin = nsamp
    for p in range(npix):
        nmax = max(nmax, cnt[p])
        nmin = min(nmin, cnt[p])
    for j in range(nsamp):
        for p in range(npix):
            v = vals[j, p]
            srt[j, p] = v if not math.isnan(v) else INF
    _network(srt, pairs, npix)
    mad = dev[0]
    if nmin == nmax and nmax >= 3:
        n = nmax
        h = n // 2
        for p in range(npix):
            m[p] = srt[h, p] if n % 2 == 1 else 0.5 * (srt[h - 1, p] + srt[h, p])
        _kth_deviation(srt, npix, n, m, h, mad)
        if n % 2 == 0:
            lower = dev[1]
            _kth_deviation(srt, npix, n, m, h - 1, lower)
            for p in range(npix):
                mad[p] = 0.5 * (lower[p] + mad[p])
    else:
        for p in range(npix):
            m[p] = _median_col(srt, p, cnt[p]) if cnt[p] >= 3 else 0.0
        for j in range(nsamp):
            for p in range(npix):
                dev[j, p] = abs(srt[j, p] - m[p]) if j < cnt[p] else INF
        _network(dev, pairs, npix)
        for p in range(npix):  # row 0 is read after: a column only writes its own mad
            mad[p] = _median_col(dev, p, cnt[p]) if cnt[p] >= 3 else 0.0
    for p in range(npix):
        n = cnt[p]
        if n < 3:
            s[p] = 0.0
            continue
        sp = 1.4826 * mad[p]
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
    return nmax


@njit(cache=True, fastmath=ORDERED, error_model="numpy")
def _iterate(buf, width, nmax, st, wc, cur):
    """One winsorising iteration of columns [0, width) of buf (rule: module docstring of
    ``kernels``). ``st`` rows: m, σ, Σd, Σd², 1/n, 1/(n − 1) of each column (n = wc, its
    sample count); updates (m, σ) of the columns still active (cur) and clears cur of those
    that converge. Returns the number still active."""
    wm, ws, s1, s2, rn, rn1 = st[0], st[1], st[2], st[3], st[4], st[5]
    for q in range(width):
        s1[q] = 0.0
        s2[q] = 0.0
    j = 0
    while j + 4 <= nmax:  # four samples per pass: a quarter of the loads and stores of s1, s2
        r0, r1, r2, r3 = buf[j], buf[j + 1], buf[j + 2], buf[j + 3]
        for q in range(width):
            m = wm[q]
            lo = m - 1.5 * ws[q]
            hi = m + 1.5 * ws[q]
            n = wc[q]
            d0 = min(max(r0[q], lo), hi) - m if j < n else 0.0
            d1 = min(max(r1[q], lo), hi) - m if j + 1 < n else 0.0
            d2 = min(max(r2[q], lo), hi) - m if j + 2 < n else 0.0
            d3 = min(max(r3[q], lo), hi) - m if j + 3 < n else 0.0
            s1[q] = (((s1[q] + d0) + d1) + d2) + d3  # in sample order (no reassociation)
            s2[q] = (((s2[q] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3
        j += 4
    while j < nmax:
        row = buf[j]
        for q in range(width):
            lo = wm[q] - 1.5 * ws[q]
            hi = wm[q] + 1.5 * ws[q]
            d = min(max(row[q], lo), hi) - wm[q] if j < wc[q] else 0.0
            s1[q] += d
            s2[q] += d * d
        j += 1
    active = 0
    for q in range(width):  # branch-free (SIMD): inactive columns compute and keep their values
        dm = s1[q] * rn[q]  # reciprocals: a division costs as much as the rest of the update
        var = (s2[q] - wc[q] * dm * dm) * rn1[q]
        s_new = 1.134 * math.sqrt(max(var, 0.0))
        done = abs(s_new - ws[q]) <= 5e-3 * ws[q]  # 0.5 %: the 3σ clip cannot tell finer
        on = cur[q]
        wm[q] = wm[q] + dm if on else wm[q]
        ws[q] = s_new if on else ws[q]
        on = on & (not done) & (s_new > 0.0)
        cur[q] = on
        active += 1 if on else 0
    return active


@njit(cache=True, fastmath=FAST, error_model="numpy")
def _pack(src, dst, width, nmax, idx, st, wc, cur, sel, m, s):
    """Write (m, σ) of the converged columns of [0, width) back (idx: their block column)
    and move the active ones, samples (rows < nmax of src → dst) and state (``st``, wc, idx)
    to the front. Returns their count."""
    na = 0
    for q in range(width):
        if cur[q]:
            sel[na] = q
            na += 1
        else:
            m[idx[q]] = st[0, q]
            s[idx[q]] = st[1, q]
    for j in range(nmax):
        rs = src[j]
        rd = dst[j]
        for k in range(na):
            rd[k] = rs[sel[k]]
    for k in range(na):
        q = sel[k]
        idx[k] = idx[q]
        wc[k] = wc[q]
        cur[k] = True
        for row in (0, 1, 4, 5):
            st[row, k] = st[row, q]
    return na


@njit(cache=True, fastmath=FAST, error_model="numpy")
def winsorized_block(vals, cnt, npix, pairs, max_iter, srt, dev, m, s, st, ist, cur):
    """Winsorized (m, σ) of every column p < npix of vals (N, ·) at once; σ[p] ≤ 0: no rejection.

    Same rule per column as ``kernels.winsorized_bounds``. ``st`` (6, ·) float64 and ``ist``
    (3, ·) int64 are work rows; ``dev`` is reused as the packed sample buffer.
    """
    nmax = _start(vals, cnt, npix, pairs, srt, dev, m, s)
    idx, wc, sel = ist[0], ist[1], ist[2]
    active = 0
    for p in range(npix):
        idx[p] = p
        wc[p] = cnt[p]
        st[0, p] = m[p]
        st[1, p] = s[p]
        st[4, p] = 1.0 / cnt[p]
        st[5, p] = 1.0 / (cnt[p] - 1)
        cur[p] = s[p] > 0.0
        active += 1 if cur[p] else 0
    buf = srt
    width = npix
    for _ in range(max_iter):
        if active == 0:
            break
        if 2 * active <= width:  # half the columns are done: iterate on the others only
            width = _pack(buf, dev, width, nmax, idx, st, wc, cur, sel, m, s)
            buf = dev
        active = _iterate(buf, width, nmax, st, wc, cur)
    for q in range(width):
        m[idx[q]] = st[0, q]
        s[idx[q]] = st[1, q]
    for p in range(npix):
        if s[p] <= 1e-6 * (abs(m[p]) + 1.0):  # samples agree to float precision: keep all
            s[p] = 0.0
