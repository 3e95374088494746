"""The fused chunk kernel for kappa-sigma and linear-fit clipping and for the median.

These judge each pixel's samples one at a time (``kernels._combine_pixel``), so there is no
lockstep over a block; the gather is the one of ``lockstep``. A kernel of its own so that a
run with the default winsorized + mean stacking never compiles these methods.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from supadupstack.stacking.kernels import FAST, _combine_pixel
from supadupstack.stacking.lockstep import BLOCK_VALUES, _gather


@njit(cache=True, fastmath=FAST, error_model="numpy")
def _pixel(vals, wgt, wn, nx, p, method, lim, max_iter, combine, work, keep, scores):
    """Reject and combine pixel-channel p of the gathered block; returns (value, Σ accepted
    resampling weight, samples, kept)."""
    col, cw, cr, buf = work[0], work[1], work[2], work[3]
    x = p % nx
    c = p // nx
    n = 0
    for j in range(vals.shape[0]):
        v = vals[j, p]
        if not math.isnan(v):
            col[n] = v
            cw[n] = wgt[j, x] * wn[j, c]
            cr[n] = wgt[j, x]
            n += 1
    val, cov, k = _combine_pixel(col, cw, cr, n, method, lim, max_iter, combine, keep, buf, scores)
    return val, cov, n, k


@njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def stack_rows(
    planes, weights, geo, oy, ox, a, b, wn, method, lim, max_iter, combine, rows, out, cov, nrej
):
    """Reject (``method``) and combine (``combine``) output rows rows[0]..rows[1] − 1.

    Arguments and outputs as ``lockstep.stack_rows``; ``lim``: the rejection thresholds
    (``student_clip.limits``).
    """
    _, ncol, nch = out.shape
    nsamp = len(planes)
    cols = max(1, BLOCK_VALUES // nch)
    vals = np.empty((nsamp, cols * nch))
    wgt = np.empty((nsamp, cols), dtype=np.float32)
    work = np.empty((4, nsamp))
    keep = np.empty(nsamp, dtype=np.bool_)
    scores = np.zeros(nsamp + 1)
    for r in range(rows[0], rows[1]):
        rejected = 0
        total = 0
        for x0 in range(0, ncol, cols):
            x1 = min(ncol, x0 + cols)
            nx = x1 - x0
            _gather(planes, weights, geo, oy, ox, a, b, r, x0, x1, vals, wgt)
            for x in range(nx):
                cv = 0.0
                for c in range(nch):
                    val, cw, n, k = _pixel(
                        vals, wgt, wn, nx, c * nx + x, method, lim, max_iter, combine, work, keep,
                        scores,
                    )  # fmt: skip
                    out[r, x0 + x, c] = val
                    cv += cw
                    rejected += n - k
                    total += n
                cov[r, x0 + x] = cv / nch
        nrej[r, 0] = rejected
        nrej[r, 1] = total
