"""Optional final background model (``polish.background``): residual gradients of the mosaic.

Per-frame and per-stack gradients are removed before the co-add (``stacking.gradient``); what
may remain is a gradient common to every frame (the same light dome all night) or a mosaic-
scale pattern. ``poly`` fits a polynomial of ``order`` to the mosaic's object-masked background
blocks; ``spline`` adds to it a smooth surface through the background blocks' residuals
(normalised Gaussian interpolation across the masked blocks, then cubic upsampling), which
follows structure down to ``scale_px``. Both keep the object protection of the gradient fit:
nothing is removed when objects or nebula fill the field or the sky is not smooth. A spline
can still take the faintest halo below the mask threshold: off by default, as DBE would be.
"""

from __future__ import annotations

import cv2
import numpy as np

from supadupstack.polish.mosaic import Mosaic
from supadupstack.stacking.gradient import (
    BLOCK,
    SCALE,
    GradientFit,
    fit_gradient,
    model_image,
    poly_terms,
)


def _residual_surface(fit: GradientFit, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """(h, w, C) smooth surface through the background blocks' residuals from the polynomial,
    filled across object blocks; its σ is ``scale_px`` / 2."""
    xc, yc, med, sky = fit.blocks
    h, w = shape
    by, bx = h // BLOCK, w // BLOCK
    gx = np.round((xc - (BLOCK - 1) / 2) / BLOCK).astype(int)
    gy = np.round((yc - (BLOCK - 1) / 2) / BLOCK).astype(int)
    at_blocks = poly_terms(xc / SCALE, yc / SCALE, fit.order) @ fit.coef.T  # (n, C)
    nch = med.shape[1]
    resid = np.zeros((by, bx, nch), np.float32)
    weight = np.zeros((by, bx), np.float32)
    resid[gy[sky], gx[sky]] = (med[sky] - at_blocks[sky]).astype(np.float32)
    weight[gy[sky], gx[sky]] = 1.0
    sigma = max(scale_px / BLOCK / 2.0, 0.5)
    den = cv2.GaussianBlur(weight, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    out = np.empty((h, w, nch), np.float32)
    for c in range(nch):
        num = cv2.GaussianBlur(resid[..., c] * weight, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        smooth = np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0).astype(np.float32)
        full = cv2.resize(smooth, (bx * BLOCK, by * BLOCK), interpolation=cv2.INTER_CUBIC)
        pad = (0, h - by * BLOCK, 0, w - bx * BLOCK)
        out[..., c] = cv2.copyMakeBorder(full, *pad, cv2.BORDER_REPLICATE)
    return out


def background_model(
    image: np.ndarray, method: str, order: int, scale_px: float
) -> tuple[np.ndarray | None, GradientFit | None]:
    """The background to subtract ((h, w, C), mean 0 over valid pixels) or None, and the fit
    that decided it."""
    fit = fit_gradient(image, (0.0, 0.0), order)
    if fit is None or not fit.removable:
        return None, fit
    model = model_image(fit, image.shape[:2], (0.0, 0.0))
    if method == "spline":
        model += _residual_surface(fit, image.shape[:2], scale_px)
    valid = np.isfinite(image).all(axis=-1)
    model -= np.mean(model[valid], axis=0, dtype=np.float64).astype(np.float32)
    return model, fit


def remove_background(m: Mosaic, method: str, order: int, scale_px: float) -> dict:
    """Subtract the final background model from the mosaic in place (``method`` none, poly or
    spline); returns the report facts."""
    facts: dict = {"step": "background", "method": method}
    if method == "none" or not (m.alpha > 0).any():
        return facts | {"applied": False}
    model, fit = background_model(m.image, method, order, scale_px)
    if fit is not None:
        facts.update(fit.summary())
    if model is None:
        return facts | {"applied": False}
    m.image -= model
    return facts | {"applied": True}
