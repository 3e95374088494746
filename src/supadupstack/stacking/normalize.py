"""Normalisation of a sample to a reference over their common valid pixels (DESIGN §3.5).

``linear_fit`` finds a, b per channel with a·x + b ≈ ref. A plain least-squares fit of ref on
x is biased low by the noise in x (regression dilution: a few % on sky-dominated frames), so
both images are first averaged in ``block``×``block`` cells (noise down by ~block, extended
signal kept), the noise of each binned image is measured from neighbour differences, and the
line is fitted by Deming regression (errors in both variables, known noise ratio) with
iterative κσ clipping of the residuals (stars with different seeing, satellites, hot pixels).
When the binned data has too little signal beyond its noise to fix a scale, the fit falls back
to the offset-only ``background`` normalisation (reported by ``fit_linear_info``).

``background``: a = 1, b = sky_ref − sky_x with sky = median over the common pixels.
Inputs are (h, w, C) or (h, w) arrays of the same shape, NaN = missing; ``mask`` (h, w) bool
restricts the pixels used. Results are float64 arrays of shape (C,).
"""

from __future__ import annotations

import numpy as np

MAX_POINTS = 50_000
MAD_POINTS = 10_000  # residuals used for the clipping σ (a regular subsample)


def _as3(a: np.ndarray) -> np.ndarray:
    return a[..., None] if a.ndim == 2 else a


def _binned(img: np.ndarray, mask: np.ndarray | None, block: int, row_step: int) -> np.ndarray:
    """Block means (h//block/row_step, w//block, C) float64 of every row_step-th block row;
    NaN where any pixel is NaN or masked. Only the selected rows are read."""
    h, w, c = img.shape
    hb, wb = h // block, w // block
    rows = img[: hb * block].reshape(hb, block, w, c)[::row_step, :, : wb * block]
    out = rows.sum(axis=1, dtype=np.float64)
    out = out.reshape(out.shape[0], wb, block, c).sum(axis=2) / (block * block)
    if mask is not None:
        m = mask[: hb * block].reshape(hb, block, w)[::row_step, :, : wb * block]
        m = m.all(axis=1).reshape(m.shape[0], wb, block).all(axis=2)
        out[~m] = np.nan
    return out


def _noise_binned(b2d: np.ndarray) -> np.ndarray:
    """Per-channel noise of a binned image from horizontal neighbour differences (robust)."""
    d = b2d[:, 1:] - b2d[:, :-1]
    d = d.reshape(-1, d.shape[-1])
    d = d[np.isfinite(d).all(axis=1)]
    if len(d) < 10:
        return np.full(b2d.shape[-1], np.nan)
    return 1.4826 * np.median(np.abs(d - np.median(d, axis=0)), axis=0) / np.sqrt(2.0)


def _deming(x: np.ndarray, y: np.ndarray, sx: float, sy: float) -> tuple[float, float]:
    mx, my = x.mean(), y.mean()
    dx, dy = x - mx, y - my
    sxx, syy, sxy = np.mean(dx * dx), np.mean(dy * dy), np.mean(dx * dy)
    if sxy <= 0:
        return np.nan, np.nan
    delta = (sy * sy) / max(sx * sx, 1e-30)
    t = syy - delta * sxx
    a = (t + np.sqrt(t * t + 4 * delta * sxy * sxy)) / (2 * sxy)
    return float(a), float(my - a * mx)


def _fit_channel(
    x: np.ndarray, y: np.ndarray, sx: float, sy: float, kappa: float, max_iter: int
) -> tuple[float, float, bool]:
    """(a, b, ok) of y ≈ a·x + b with clipped Deming regression; ok False → use offset."""
    if len(x) < 20 or not (np.isfinite(sx) and np.isfinite(sy)) or sx <= 0 or sy <= 0:
        return 1.0, float(np.median(y) - np.median(x)) if len(x) else 0.0, False
    keep = np.ones(len(x), bool)
    a, b = 1.0, float(np.median(y) - np.median(x))
    for _ in range(max_iter):
        a_new, b_new = _deming(x[keep], y[keep], sx, sy)
        if not np.isfinite(a_new):
            break
        a, b = a_new, b_new
        r = y - (a * x + b)
        rk = r[keep]
        rk = rk[:: max(1, rk.size // MAD_POINTS)]  # the clip width needs σ to ~1 %, not 0.1 %
        s = 1.4826 * np.median(np.abs(rk - np.median(rk)))
        new_keep = np.abs(r) <= kappa * max(s, 1e-12)
        if np.array_equal(new_keep, keep) or new_keep.sum() < 20:
            break
        keep = new_keep
    xs = x[keep]
    signal_var = np.var(xs) - sx * sx
    ok = np.isfinite(a) and a > 0 and signal_var > 9 * sx * sx
    if not ok:
        return 1.0, float(np.median(y) - np.median(x)), False
    return a, b, True


def fit_linear_info(
    x: np.ndarray,
    ref: np.ndarray,
    mask: np.ndarray | None = None,
    block: int = 4,
    kappa: float = 3.0,
    max_iter: int = 10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like ``fit_linear`` plus a (C,) bool array: True where a scale was fitted, False where
    the fit fell back to an offset (too little signal)."""
    x3 = _as3(x)
    n_blocks = (x3.shape[0] // block) * (x3.shape[1] // block)
    row_step = max(1, int(np.ceil(n_blocks / MAX_POINTS)))
    xb = _binned(x3, mask, block, row_step)
    rb = _binned(_as3(ref), mask, block, row_step)
    sx, sy = _noise_binned(xb), _noise_binned(rb)
    nch = xb.shape[-1]
    xf, rf = xb.reshape(-1, nch), rb.reshape(-1, nch)
    good = np.isfinite(xf).all(axis=1) & np.isfinite(rf).all(axis=1)
    xf, rf = xf[good], rf[good]
    a, b, ok = np.ones(nch), np.zeros(nch), np.zeros(nch, bool)
    for c in range(nch):
        a[c], b[c], ok[c] = _fit_channel(xf[:, c], rf[:, c], sx[c], sy[c], kappa, max_iter)
    return a, b, ok


def fit_linear(
    x: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, block: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Scale a and offset b per channel (float64 (C,)) with a·x + b ≈ ref (see module doc)."""
    a, b, _ = fit_linear_info(x, ref, mask, block)
    return a, b


def fit_background(
    x: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, step: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Offset-only normalisation: a = 1, b = median(ref) − median(x) over common pixels."""
    x3, r3 = _as3(x)[::step, ::step], _as3(ref)[::step, ::step]
    nch = x3.shape[-1]
    good = np.isfinite(x3).all(axis=-1) & np.isfinite(r3).all(axis=-1)
    if mask is not None:
        good &= mask[::step, ::step]
    if not good.any():
        return np.ones(nch), np.zeros(nch)
    b = np.median(r3[good], axis=0) - np.median(x3[good], axis=0)
    return np.ones(nch), b.astype(np.float64)


def robust_noise(image: np.ndarray, step: int = 6) -> np.ndarray:
    """Per-channel noise (ADU) of an (h, w, C) image: 1.4826·MAD of a strided subsample."""
    sub = _as3(image)[::step, ::step]
    nch = sub.shape[-1]
    flat = sub.reshape(-1, nch)
    flat = flat[np.isfinite(flat).all(axis=1)]
    if len(flat) == 0:
        return np.full(nch, np.nan)
    med = np.median(flat, axis=0)
    return 1.4826 * np.median(np.abs(flat - med), axis=0)
