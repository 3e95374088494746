"""Levenberg-Marquardt fit of a circular Moffat profile with free beta to one star stamp.

Model (ADU, pixel units): m(x, y) = B + A * (1 + p * q)^(-1/p) with q = r^2 / w and
r^2 = (x - x0)^2 + (y - y0)^2. This is a Moffat of beta = 1/p and alpha^2 = w / p written so
that p = 0 is exactly the Gaussian exp(-r^2 / w): one smooth family from Gaussian
(p = 0, beta = inf) to very winged stars (p = 2/3, beta = 1.5), with no upper bound on beta
to clamp against. Parameters theta = [A, x0, y0, ln w, p, B]; ln w keeps the width positive.

- FWHM = 2 * sqrt(w * (2^p - 1) / p)  (-> 2 * sqrt(w ln 2) at p = 0)
- total flux = A * pi * w / (1 - p)     (the integral of the profile over the plane)
- noise-equivalent area = pi * w * (2 - p) / (1 - p)^2  (1 / sum of the squared unit PSF)

Serial, no fast-math: the same stamp always gives the same bits.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

NPAR = 6
P_MAX = 2.0 / 3.0  # beta >= 1.5: the total flux (finite for beta > 1) is ill-set near 1
MAX_ITER = 60
TOL = 1e-3  # convergence: steps in px (centre), relative (A, w) and absolute (p)
LAM_START, LAM_MIN, LAM_MAX = 1e-3, 1e-9, 1e12  # Marquardt damping: start, floor, give up
LN_W_MIN = math.log(0.02)  # FWHM ~0.24 px: anything narrower is a hot pixel, not a star
LN_W_MAX = math.log(4000.0)  # FWHM ~105 px: larger is no star either


@njit(cache=True)
def _accumulate(theta, dx, dy, v, n, jtj, jtr):
    """Sum of squared residuals at theta; fills J^T J (upper triangle) and J^T r.

    Written with scalar accumulators (no inner loops over parameters) because this loop is
    the hot path of the whole detector: ~n x iterations x stars evaluations per frame.
    """
    a, x0, y0, lnw, p, b = theta[0], theta[1], theta[2], theta[3], theta[4], theta[5]
    iw = math.exp(-lnw)
    ip = 1.0 / p if p > 0.0 else 0.0
    ip2 = ip * ip
    h00 = h01 = h02 = h03 = h04 = h05 = 0.0
    h11 = h12 = h13 = h14 = h15 = 0.0
    h22 = h23 = h24 = h25 = 0.0
    h33 = h34 = h35 = h44 = h45 = 0.0
    g0 = g1 = g2 = g3 = g4 = g5 = 0.0
    cost = 0.0
    for k in range(n):
        ddx = dx[k] - x0
        ddy = dy[k] - y0
        q = (ddx * ddx + ddy * ddy) * iw
        z = p * q
        i1z = 1.0 / (1.0 + z)
        if z < 1e-2:  # series of (z/(1+z) - log1p(z)) / p^2: no cancellation near p = 0
            g = q * (1.0 - z * (0.5 - z * (1.0 / 3.0 - z * 0.25)))
            dgdp = -q * q * (0.5 - z * (2.0 / 3.0 - z * (0.75 - z * (0.8 - z * (5.0 / 6.0)))))
        else:  # log(1 + z) costs half of log1p(z) and is exact enough for z >= 0.01
            lz = math.log(1.0 + z)
            g = lz * ip
            dgdp = (z * i1z - lz) * ip2
        f = math.exp(-g)
        af = a * f
        r = v[k] - (b + af)
        t = 2.0 * af * i1z * iw
        j1 = t * ddx
        j2 = t * ddy
        j3 = af * q * i1z
        j4 = -af * dgdp
        h00 += f * f
        h01 += f * j1
        h02 += f * j2
        h03 += f * j3
        h04 += f * j4
        h05 += f
        h11 += j1 * j1
        h12 += j1 * j2
        h13 += j1 * j3
        h14 += j1 * j4
        h15 += j1
        h22 += j2 * j2
        h23 += j2 * j3
        h24 += j2 * j4
        h25 += j2
        h33 += j3 * j3
        h34 += j3 * j4
        h35 += j3
        h44 += j4 * j4
        h45 += j4
        g0 += f * r
        g1 += j1 * r
        g2 += j2 * r
        g3 += j3 * r
        g4 += j4 * r
        g5 += r
        cost += r * r
    jtj[0, 0], jtj[0, 1], jtj[0, 2], jtj[0, 3], jtj[0, 4], jtj[0, 5] = h00, h01, h02, h03, h04, h05
    jtj[1, 1], jtj[1, 2], jtj[1, 3], jtj[1, 4], jtj[1, 5] = h11, h12, h13, h14, h15
    jtj[2, 2], jtj[2, 3], jtj[2, 4], jtj[2, 5] = h22, h23, h24, h25
    jtj[3, 3], jtj[3, 4], jtj[3, 5], jtj[4, 4], jtj[4, 5] = h33, h34, h35, h44, h45
    jtj[5, 5] = float(n)
    jtr[0], jtr[1], jtr[2], jtr[3], jtr[4], jtr[5] = g0, g1, g2, g3, g4, g5
    return cost


@njit(cache=True)
def _hold(m, rhs, i):
    """Take parameter i out of the normal equations (its step becomes 0)."""
    for j in range(rhs.size):
        m[i, j] = 0.0
        m[j, i] = 0.0
    m[i, i] = 1.0
    rhs[i] = 0.0


@njit(cache=True)
def _solve(jtj, jtr, lam, theta, delta):
    """Solve (J^T J + lam * diag) delta = J^T r by Cholesky; False if not positive definite.

    Where p sits on a bound and the gradient pushes it outward, p is held fixed (its row and
    column dropped) so the step is not wasted on a clamped coordinate. Loop bounds come from
    the array size, not the NPAR constant, so LLVM does not unroll the triple loops (that
    would only slow compilation down).
    """
    npar = jtr.size
    m = np.zeros((npar, npar))
    rhs = jtr.copy()
    for i in range(npar):
        for j in range(i, npar):
            m[i, j] = jtj[i, j]
            m[j, i] = jtj[i, j]
        m[i, i] = jtj[i, i] * (1.0 + lam) + 1e-30
    p = theta[4]
    if (p <= 0.0 and jtr[4] < 0.0) or (p >= P_MAX and jtr[4] > 0.0):
        _hold(m, rhs, 4)
    for i in range(npar):  # Cholesky in place: m's lower triangle becomes L
        for j in range(i + 1):
            t = m[i, j]
            for k in range(j):
                t -= m[i, k] * m[j, k]
            if i == j:
                if not t > 0.0:
                    return False
                m[i, i] = math.sqrt(t)
            else:
                m[i, j] = t / m[j, j]
    for i in range(npar):
        t = rhs[i]
        for k in range(i):
            t -= m[i, k] * delta[k]
        delta[i] = t / m[i, i]
    for i in range(npar - 1, -1, -1):
        t = delta[i]
        for k in range(i + 1, npar):
            t -= m[k, i] * delta[k]
        delta[i] = t / m[i, i]
    return True


@njit(cache=True)
def _trial(theta, delta, reach, out):
    """theta + delta with p clamped to [0, P_MAX]; False if the step leaves the valid region."""
    for i in range(NPAR):
        out[i] = theta[i] + delta[i]
    out[4] = min(max(out[4], 0.0), P_MAX)
    if not out[0] > 0.0 or abs(out[1]) > reach or abs(out[2]) > reach:
        return False
    return LN_W_MIN <= out[3] <= LN_W_MAX


@njit(cache=True)
def _converged(theta, delta):
    """Steps below 1e-3 px in the centre, 1e-3 relative in A and w, 1e-3 in p: far below
    the noise of any star worth measuring, and each extra iteration costs a stamp pass."""
    return (
        abs(delta[0]) <= TOL * theta[0]
        and abs(delta[1]) < TOL
        and abs(delta[2]) < TOL
        and abs(delta[3]) < TOL
        and abs(delta[4]) < TOL
    )


@njit(cache=True)
def _copy(src, dst):
    """dst[:] = src for 1-D arrays, as a plain loop (slice assignment compiles slowly)."""
    for i in range(src.size):
        dst[i] = src[i]


@njit(cache=True)
def _propose(jtj, jtr, lam, theta, delta, reach, trial):
    """Next damped step from theta into ``trial``; the damping used, > LAM_MAX if none fits."""
    while lam <= LAM_MAX:
        if _solve(jtj, jtr, lam, theta, delta) and _trial(theta, delta, reach, trial):
            return lam
        lam *= 10.0
    return lam


@njit(cache=True)
def _p_variance(jtj, cost, n, theta):
    """Variance of the fitted p: (J^T J)^-1[4, 4] x residual variance (inf if singular).

    Says whether a star's wing shape is known well enough to differ from the frame's.
    """
    unit = np.zeros(NPAR)
    unit[4] = 1.0
    z = np.empty(NPAR)
    inside = np.empty(NPAR)
    _copy(theta, inside)
    inside[4] = 0.5 * P_MAX  # away from the bounds, so that _solve does not hold p
    if not _solve(jtj, unit, 0.0, inside, z):
        return np.inf
    return max(z[4], 0.0) * cost / max(n - NPAR, 1)


@njit(cache=True)
def fit_moffat(theta, dx, dy, v, n, reach):
    """Fit theta in place to the n stamp pixels (dx, dy, v).

    Returns (iterations used or -1 on failure, variance of p). ``reach`` (px) bounds how
    far the centre may wander from the stamp centre. Marquardt damping with the trial
    point's Jacobian reused on acceptance: one model evaluation per iteration, typically 3-5
    from a half-maximum-walk start. A Gauss-Newton step (small damping) below the tolerance
    is taken without evaluating it: near the minimum the quadratic model is exact, and the
    evaluation would cost as much as a whole iteration. One call site of ``_accumulate``
    keeps the compiled code (and compile time) small.
    """
    if n <= NPAR + 2:
        return -1, np.inf
    jtj = np.empty((NPAR, NPAR))
    jtr = np.empty(NPAR)
    jtj_t = np.empty((NPAR, NPAR))
    jtr_t = np.empty(NPAR)
    delta = np.zeros(NPAR)
    trial = np.empty(NPAR)
    _copy(theta, trial)
    cost = np.inf
    lam = LAM_START
    small = False
    for it in range(MAX_ITER):
        cost_t = _accumulate(trial, dx, dy, v, n, jtj_t, jtr_t)
        if cost_t <= cost:
            _copy(trial, theta)
            if small:
                return it, _p_variance(jtj, cost, n, theta)
            cost = cost_t
            jtj, jtj_t = jtj_t, jtj  # the trial's normal equations become the current ones
            jtr, jtr_t = jtr_t, jtr
            lam = max(lam * 0.1, LAM_MIN) if it > 0 else lam
        elif it == 0:
            return -1, np.inf  # the start itself does not evaluate (NaN)
        else:
            lam *= 10.0
        lam = _propose(jtj, jtr, lam, theta, delta, reach, trial)
        if lam > LAM_MAX:  # no step lowers the cost: at the minimum to rounding
            return it + 1, _p_variance(jtj, cost, n, theta)
        small = _converged(theta, delta)
        if small and lam <= LAM_START:
            _copy(trial, theta)  # a step this small cannot change the cost: skip evaluating it
            return it + 1, _p_variance(jtj, cost, n, theta)
    return -1, np.inf


@njit(cache=True)
def shape_amplitude(dx, dy, v, n, x0, y0, w, p):
    """Least-squares amplitude A of v = B + A * profile(x0, y0, w, p) with B free (ADU).

    With the shape fixed the model is linear in A and B: a 2 x 2 normal system from one pass.
    NaN if the system is singular (e.g. no pixels).
    """
    iw = 1.0 / w
    sff = sf = sfv = sv = 0.0
    for k in range(n):
        ddx = dx[k] - x0
        ddy = dy[k] - y0
        q = (ddx * ddx + ddy * ddy) * iw
        f = math.exp(-math.log1p(p * q) / p) if p > 0.0 else math.exp(-q)
        sff += f * f
        sf += f
        sfv += f * v[k]
        sv += v[k]
    det = sff * n - sf * sf
    if not det > 0.0:
        return np.nan
    return (n * sfv - sf * sv) / det
