"""Numba kernel of the cross-convolved aperture sums (``crossphot``): one pass per star.

Each star's weights come from a radial table sampled every ``step`` px and interpolated
linearly at each pixel's exact distance from the star's centre; the negative (sky) part is
rescaled per star so the weights sum to exactly 0 on its pixels. No stamp array is built.
Sums run in a fixed order in float64, without fast-math: the same bits on every CPU.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def weighted_sums(data, valid, y0, x0, iy, ix, fy, fx, step, table, m, w2, ok):
    """Per star k: m[k, c] = Σ w·data[..., c] over the pixels where its weight w ≠ 0,
    w2[k] = Σ w², ok[k] = every such pixel valid (``valid`` > 0, finite in every channel).

    ``data`` (h, w, C) float32 with canvas origin (y0, x0); star k's centre is canvas pixel
    (iy[k] + fy[k], ix[k] + fx[k]); ``table[i]`` is the weight at radius i·step px.
    """
    nt = table.size
    reach = int((nt - 1) * step)
    nch = data.shape[2]
    sp = np.zeros(nch)
    sn = np.zeros(nch)
    for k in range(iy.size):
        sp[:] = 0.0
        sn[:] = 0.0
        wp = wn = qp = qn = 0.0
        good = True
        for dy in range(-reach, reach + 1):
            yy = iy[k] + dy - y0
            ry = dy - fy[k]
            for dx in range(-reach, reach + 1):
                rx = dx - fx[k]
                t = math.sqrt(ry * ry + rx * rx) / step
                i = int(t)
                if i >= nt - 1:
                    continue
                w = table[i] + (t - i) * (table[i + 1] - table[i])
                if w == 0.0:
                    continue
                xx = ix[k] + dx - x0
                if valid[yy, xx] <= 0.0:
                    good = False
                if w > 0.0:
                    wp += w
                    qp += w * w
                    for c in range(nch):
                        sp[c] += w * data[yy, xx, c]
                else:
                    wn += w
                    qn += w * w
                    for c in range(nch):
                        sn[c] += w * data[yy, xx, c]
        f = -wp / wn if wn < 0.0 else 1.0
        for c in range(nch):
            m[k, c] = sp[c] + f * sn[c]
            if not math.isfinite(m[k, c]):
                good = False
        w2[k] = qp + f * f * qn
        ok[k] = good
