"""Per-frame calibration: hot-pixel repair and debayer (DESIGN §3.1).

Sky gradients are removed later, on the grid, where the stack's reference and object mask
are known (``stacking.gradient``).

All images are float32 in ADU. The calibrated image is (H, W, C): C = 3 (R, G, B) for Bayer and
colour frames, C = 1 for mono. Hot pixels are repaired on the raw CFA, one colour plane at a
time, before debayering, so a hot pixel never bleeds into its neighbours.
"""

from __future__ import annotations

import cv2
import numpy as np

from supadupstack.config import CalibrationConfig
from supadupstack.frames.hotpixels import repair_hot_pixels
from supadupstack.frames.model import Frame

# OpenCV names Bayer codes after the second row; these map the pattern of numpy row 0
# (FITS BAYERPAT convention) to the code that yields RGB. Verified by tests/test_calibrate.py.
_CV_BAYER = {
    "RGGB": ("COLOR_BayerBG2RGB", "COLOR_BayerBG2RGB_EA"),
    "BGGR": ("COLOR_BayerRG2RGB", "COLOR_BayerRG2RGB_EA"),
    "GRBG": ("COLOR_BayerGB2RGB", "COLOR_BayerGB2RGB_EA"),
    "GBRG": ("COLOR_BayerGR2RGB", "COLOR_BayerGR2RGB_EA"),
}
_RB_KERNEL = np.array([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], np.float32)
_G_KERNEL = np.array([[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]], np.float32)


def cfa_masks(pattern: str, shape: tuple[int, int]) -> np.ndarray:
    """Boolean masks (3, H, W) telling which raw pixels are R, G and B."""
    masks = np.zeros((3, *shape), dtype=bool)
    for i, colour in enumerate(pattern.upper()):
        dy, dx = divmod(i, 2)
        masks["RGB".index(colour), dy::2, dx::2] = True
    return masks


def _is_uint16_data(raw: np.ndarray) -> bool:
    if not np.all(np.isfinite(raw)):
        return False
    return bool(raw.min() >= 0 and raw.max() <= 65535 and np.array_equal(raw, np.rint(raw)))


def _debayer_float(raw: np.ndarray, pattern: str) -> np.ndarray:
    """Bilinear debayer by normalised convolution; NaN pixels are treated as missing."""
    valid = np.isfinite(raw)
    data = np.where(valid, raw, 0).astype(np.float32)
    out = np.empty((*raw.shape, 3), dtype=np.float32)
    for c, mask in enumerate(cfa_masks(pattern, raw.shape)):
        m = (mask & valid).astype(np.float32)
        k = _G_KERNEL if c == 1 else _RB_KERNEL
        num = cv2.filter2D(data * m, -1, k, borderType=cv2.BORDER_REFLECT_101)
        den = cv2.filter2D(m, -1, k, borderType=cv2.BORDER_REFLECT_101)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[..., c] = np.where(den > 1e-6, num / den, np.nan)
    return out


def debayer(raw: np.ndarray, pattern: str, method: str = "bilinear") -> np.ndarray:
    """Raw CFA (H, W) → RGB (H, W, 3) float32, for any of RGGB, BGGR, GRBG, GBRG.

    Integer data in 0..65535 goes through OpenCV (bilinear or edge-aware); other data (floats,
    NaN holes) through an exact bilinear normalised convolution.
    """
    pattern = pattern.upper()
    if pattern not in _CV_BAYER:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; allowed: {', '.join(_CV_BAYER)}")
    if not _is_uint16_data(raw):
        return _debayer_float(raw, pattern)
    code = _CV_BAYER[pattern][1 if method == "edge_aware" else 0]
    rgb = cv2.cvtColor(raw.astype(np.uint16), getattr(cv2, code))
    return rgb.astype(np.float32)


def calibrate_frame(frame: Frame, raw: np.ndarray, cfg: CalibrationConfig) -> np.ndarray:
    """Raw pixels (from ``load_pixels``) → calibrated float32 image (H, W, C) in ADU."""
    if frame.kind == "rgb":
        planes = []
        for plane in raw:
            planes.append(
                repair_hot_pixels(plane, None, cfg.hot_pixel_kappa)[0] if cfg.hot_pixels else plane
            )
        image = np.stack(planes, axis=-1).astype(np.float32)
    elif frame.kind == "bayer":
        cfa = (
            repair_hot_pixels(raw, frame.bayer_pattern, cfg.hot_pixel_kappa)[0]
            if cfg.hot_pixels
            else raw
        )
        image = debayer(cfa, frame.bayer_pattern or "RGGB", cfg.debayer)
    else:
        plane = repair_hot_pixels(raw, None, cfg.hot_pixel_kappa)[0] if cfg.hot_pixels else raw
        image = plane.astype(np.float32)[..., None]
    return np.ascontiguousarray(image, dtype=np.float32)
