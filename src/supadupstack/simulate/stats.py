"""Robust statistics shared by the truth and defect metrics (ADU in, ADU out)."""

from __future__ import annotations

import numpy as np
import sep


def robust_sigma(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _block_mean(a: np.ndarray, block: int) -> np.ndarray:
    h, w = (a.shape[0] // block) * block, (a.shape[1] // block) * block
    return a[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))


def _sep_ready(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = ~np.isfinite(image)
    data = np.where(mask, 0.0, image).astype(np.float64)
    return np.ascontiguousarray(data), mask


def background_noise(residual: np.ndarray, truth: np.ndarray, max_truth: float = 2.0) -> float:
    """Robust per-pixel σ of a residual image over background pixels (truth < max_truth ADU),
    after removing a smooth (64 px) background."""
    img, mask = _sep_ready(residual)
    bkg = sep.Background(img, mask=mask, bw=64, bh=64)
    sub = np.where(mask | (truth >= max_truth), np.nan, img - bkg.back())
    return robust_sigma(sub)
