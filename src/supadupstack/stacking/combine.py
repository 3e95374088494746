"""Combination of accepted samples into one image (DESIGN §3.5).

``stack`` is (N, ...) with NaN = missing; ``accepted`` a bool mask of the same shape (from
``reject``); ``weights`` broadcast against ``stack`` from the left: shape (N,), (N, h, w) or the
full (N, h, w, C). Results are float32; pixels with no accepted sample are NaN.
"""

from __future__ import annotations

import numpy as np


def _broadcast_weights(weights: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape[0] != shape[0]:
        raise ValueError(f"weights have {w.shape[0]} samples, stack has {shape[0]}")
    w = w.reshape(w.shape + (1,) * (len(shape) - w.ndim))
    return np.broadcast_to(w, shape)


def weighted_mean(
    stack: np.ndarray, weights: np.ndarray | None, accepted: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of the accepted finite samples and the sum of their weights.

    Returns (mean, weight_sum), both of shape stack.shape[1:]; mean is NaN where the sum is 0.
    """
    x = np.asarray(stack)
    ok = np.isfinite(x) if accepted is None else (np.asarray(accepted, bool) & np.isfinite(x))
    w = np.ones(x.shape) if weights is None else _broadcast_weights(weights, x.shape)
    w = np.where(ok, w, 0.0)
    num = np.sum(w * np.where(ok, x, 0.0), axis=0)
    den = np.sum(w, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(den > 0, num / den, np.nan)
    return mean.astype(np.float32), den.astype(np.float32)


def median(stack: np.ndarray, accepted: np.ndarray | None = None) -> np.ndarray:
    """Median of the accepted finite samples (NaN where none)."""
    x = np.asarray(stack, dtype=np.float64)
    if accepted is not None:
        x = np.where(np.asarray(accepted, bool), x, np.nan)
    ok = np.isfinite(x).any(axis=0)
    out = np.full(x.shape[1:], np.nan)
    if ok.any():
        out[ok] = np.nanmedian(x[:, ok], axis=0)
    return out.astype(np.float32)
