"""Per-pixel outlier rejection on a stack of aligned samples (DESIGN §3.5).

Input: ``stack`` of shape (N, ...) (samples along axis 0, e.g. (N, h, w, C)), NaN = missing.
Output: a bool array of the same shape, True where a sample is accepted (never for NaN).
Pixels with fewer than 3 samples are not clipped. The algorithms are described in
``stacking.kernels``; they run as numba kernels in float64 arithmetic.
"""

from __future__ import annotations

import numpy as np

from supadupstack.stacking import kernels
from supadupstack.stacking.student_clip import limits


def _as_stack(stack: np.ndarray) -> np.ndarray:
    arr = np.asarray(stack)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise ValueError("stack must have at least one sample along axis 0")
    return arr


def reject(
    stack: np.ndarray,
    method: str = "winsorized_sigma",
    kappa_low: float = 3.0,
    kappa_high: float = 3.0,
    max_iter: int = 10,
) -> np.ndarray:
    """Accepted-sample mask of ``stack`` for the named method (see module docstring)."""
    if method not in kernels.REJECTION_CODES:
        allowed = ", ".join(kernels.REJECTION_CODES)
        raise ValueError(f"unknown rejection {method!r}; allowed: {allowed}")
    arr = _as_stack(stack)
    flat = np.ascontiguousarray(arr.reshape(arr.shape[0], -1))
    code = kernels.REJECTION_CODES[method]
    lim = limits(float(kappa_low), float(kappa_high), arr.shape[0])
    acc = kernels.reject_columns(flat, code, lim, int(max_iter))
    return acc.reshape(arr.shape)


def winsorized_sigma(
    stack: np.ndarray, kappa_low: float = 3.0, kappa_high: float = 3.0, max_iter: int = 10
) -> np.ndarray:
    """Winsorized sigma clipping (median/MAD start, winsorise at 1.5σ, reject at κσ)."""
    return reject(stack, "winsorized_sigma", kappa_low, kappa_high, max_iter)


def kappa_sigma(
    stack: np.ndarray, kappa_low: float = 3.0, kappa_high: float = 3.0, max_iter: int = 10
) -> np.ndarray:
    """Kappa-sigma clipping by deleted residuals with Student-t limits (any N ≥ 3)."""
    return reject(stack, "kappa_sigma", kappa_low, kappa_high, max_iter)


def linear_fit_clip(
    stack: np.ndarray, kappa_low: float = 3.0, kappa_high: float = 3.0, max_iter: int = 10
) -> np.ndarray:
    """Linear-fit clipping: sorted values against normal scores, extremes tested (N ≥ 3)."""
    return reject(stack, "linear_fit_clip", kappa_low, kappa_high, max_iter)


def no_rejection(stack: np.ndarray) -> np.ndarray:
    """Every finite sample accepted."""
    return np.isfinite(_as_stack(stack))
