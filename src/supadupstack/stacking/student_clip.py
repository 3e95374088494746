"""Calibrated kappa-sigma and linear-fit clipping: the same false-rejection rate at every N.

Plain κσ clipping around the mean or median with the standard deviation cannot reject a
+1000σ outlier at N ≤ 8: the outlier is part of σ (at N samples its deviation is at most
(N − 1)/√N σ). Both methods here judge each candidate against the *other* samples and use
the exact small-sample law of that comparison, so a user's κ means the same at N = 3 and at
N = 1,000: a clean Gaussian sample is rejected with the probability it lies beyond κσ
(0.27 % for κ = 3 on both sides), and a gross outlier is rejected at every N ≥ 3.

- kappa sigma: the studentised deleted residual t_i = (x_i − mean₋ᵢ) / (s₋ᵢ·√(1 + 1/(k−1))),
  mean and standard deviation of the k − 1 others, follows Student's t with k − 2 degrees of
  freedom for Gaussian samples. Reject every sample whose t_i passes the t quantile of the
  one-sided tail 1 − Φ(κ); repeat on the kept samples.
- linear fit clip: the kept samples, sorted, are fitted against their normal scores (Blom,
  (j + 0.625)/(m + 0.25)) — a straight line for Gaussian data whose intercept is the location
  and whose slope is σ, used as the others' standard deviation times their normal-plot
  correlation (fitting against the rank, as the classic method does, bends at the tails and
  rejects ~4.5 % of clean samples at N = 20). The lowest and the highest sample are
  each tested against the line fitted to the others, with the same t thresholds; at most two
  samples go per iteration.

The thresholds depend only on κ and the count k: ``limits`` tabulates them once per stack
(a (2, N + 1) float64 array: row 0 low side, row 1 high side; column 0 holds κ itself for
the winsorized method, columns k ≥ 3 the t quantiles). σ never drops below the samples'
float precision (1e-6 of their level), so identical samples reject nothing.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy import stats

from supadupstack.order_stats import insertion_sort

# fast-math without nnan/ninf: NaN marks missing samples, so NaN checks must survive
FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


def limits(kappa_low: float, kappa_high: float, n: int) -> np.ndarray:
    """(2, n + 1) table: [:, 0] = κ, [:, k] = t_{k−2} quantile of Φ(κ) for k ≥ 3 (see doc)."""
    out = np.full((2, max(n, 2) + 1), np.inf)
    out[:, 0] = (kappa_low, kappa_high)
    if n >= 3:
        dof = np.arange(3, n + 1) - 2.0
        for row, kappa in enumerate((kappa_low, kappa_high)):
            out[row, 3:] = stats.t.ppf(stats.norm.cdf(kappa), dof)
    return out


@njit(cache=True, fastmath=FAST)
def _ndtri(p):
    """Inverse of the standard normal CDF (Acklam's rational approximation, rel. err 1e-9)."""
    if p < 0.02425 or p > 0.97575:
        q = math.sqrt(-2.0 * math.log(min(p, 1.0 - p)))
        z = (
            ((((-7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838)
              * q - 2.549732539343734) * q + 4.374664141464968) * q + 2.938163982698783
        ) / ((((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996)
              * q + 3.754408661907416) * q + 1.0)  # fmt: skip
        return z if p < 0.5 else -z
    q = p - 0.5
    r = q * q
    num = (
        (
            ((-3.969683028665376e01 * r + 2.209460984245205e02) * r - 2.759285104469687e02) * r
            + 1.383577518672690e02
        )
        * r
        - 3.066479806614716e01
    ) * r + 2.506628277459239
    den = (((((-5.447609879822406e01 * r + 1.615858368580409e02) * r - 1.556989798598866e02)
             * r + 6.680131188771972e01) * r - 1.328068155288572e01) * r + 1.0)  # fmt: skip
    return num * q / den


@njit(cache=True, fastmath=FAST)
def _scores(m, scores):
    """Blom normal scores of an m-sample in scores[1:m + 1]; scores[0] caches m (per thread)."""
    if scores[0] == m:
        return
    for j in range(m):
        scores[j + 1] = _ndtri((j + 0.625) / (m + 0.25))
    scores[0] = m


@njit(cache=True, fastmath=FAST)
def _kept(vals, keep, n, buf):
    """Copy the kept vals[:n] into buf; returns their count."""
    k = 0
    for i in range(n):
        if keep[i]:
            buf[k] = vals[i]
            k += 1
    return k


@njit(cache=True, fastmath=FAST)
def kappa_clip(vals, keep, n, lim, max_iter, buf):
    """Deleted-residual κσ clipping of vals[:n] (all kept on entry); clears keep of rejects."""
    for _ in range(max_iter):
        k = _kept(vals, keep, n, buf)
        if k < 3:
            return
        c = buf[0]  # a kept sample as origin: the sums then do not cancel
        s1 = 0.0
        s2 = 0.0
        for i in range(k):
            d = buf[i] - c
            s1 += d
            s2 += d * d
        t_lo, t_hi = lim[0, k], lim[1, k]
        inflate = 1.0 + 1.0 / (k - 1)
        floor = (1e-6 * (abs(c) + 1.0)) ** 2  # float precision of the samples
        changed = False
        for i in range(n):
            if not keep[i]:
                continue
            d = vals[i] - c
            m = (s1 - d) / (k - 1)
            var = (s2 - d * d - (k - 1) * m * m) / (k - 2)
            t = (d - m) / math.sqrt(max(var, floor) * inflate)
            if t > t_hi or t < -t_lo:
                keep[i] = False
                changed = True
        if not changed:
            return


@njit(cache=True, fastmath=FAST)
def _line_gap(buf, start, m, x, scores):
    """(x − a) / (σ·√(1 + 1/m)) for the line a + b·z through buf[start:start + m] vs scores."""
    sy = 0.0
    szy = 0.0
    szz = 0.0
    for j in range(m):
        z = scores[j + 1]
        y = buf[start + j]
        sy += y
        szy += z * y
        szz += z * z
    # slope b = Σzy/Σz² (Σz = 0: Blom scores are symmetric), put on the scale of a standard
    # deviation: b·√(Σz²/(m − 1)) is the others' std times their normal-plot correlation,
    # equal to it for m = 2, so the t limits hold from k = 3 on
    sigma = szy / math.sqrt(szz * (m - 1))
    sigma = max(sigma, 1e-6 * (abs(sy / m) + 1.0))
    return (x - sy / m) / (sigma * math.sqrt(1.0 + 1.0 / m))


@njit(cache=True, fastmath=FAST)
def _drop_value(vals, keep, n, v):
    for i in range(n):
        if keep[i] and vals[i] == v:
            keep[i] = False
            return


@njit(cache=True, fastmath=FAST)
def linear_clip(vals, keep, n, lim, max_iter, buf, scores):
    """Normal-score line clipping of vals[:n] (all kept on entry); clears keep of rejects."""
    for _ in range(max_iter):
        k = _kept(vals, keep, n, buf)
        if k < 3:
            return
        insertion_sort(buf, k)
        _scores(k - 1, scores)
        high = _line_gap(buf, 0, k - 1, buf[k - 1], scores) > lim[1, k]
        low = _line_gap(buf, 1, k - 1, buf[0], scores) < -lim[0, k]
        if high:
            _drop_value(vals, keep, n, buf[k - 1])
        if low:
            _drop_value(vals, keep, n, buf[0])
        if not (high or low):
            return
