"""The five polish steps (DESIGN §6), in order, each a function ``Mosaic → facts``.

Each step changes the Mosaic in place (through ``crop``/``mask`` only, so shapes stay in
sync) and returns a small dict for the report.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np

from supadupstack.config import PolishConfig
from supadupstack.polish.background import remove_background
from supadupstack.polish.mosaic import Mosaic


def geometric_coverage(coverage: np.ndarray, size: int = 5) -> np.ndarray:
    """Coverage with isolated dips closed (5×5 morphological closing).

    Pixel rejection lowers the coverage of single pixels (a satellite, a cosmic ray); masks
    are about where frames lie, so they are decided on this closed map: no pinholes inside,
    borders unchanged.
    """
    kernel = np.ones((size, size), np.uint8)
    return cv2.morphologyEx(coverage.astype(np.float32), cv2.MORPH_CLOSE, kernel)


def coverage_cut(m: Mosaic, min_keep: float) -> dict:
    """Drop pixels whose (geometric) coverage / max(coverage) is below ``min_keep``."""
    top = float(m.coverage.max()) if m.coverage.size else 0.0
    if top <= 0 or min_keep <= 0:
        return {"step": "coverage_cut", "min_keep": min_keep, "dropped": 0}
    dropped = m.mask(geometric_coverage(m.coverage) / top < min_keep)
    return {"step": "coverage_cut", "min_keep": min_keep, "max_coverage": top, "dropped": dropped}


def _smooth(values: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian smoothing of ``values`` where ``weights`` > 0."""
    num = cv2.GaussianBlur((values * weights).astype(np.float32), (0, 0), sigma)
    den = cv2.GaussianBlur(weights.astype(np.float32), (0, 0), sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-6, num / den, np.nan)


def two_pass_renorm(m: Mosaic, sigma: float, gain_min: float, gain_max: float) -> dict:
    """Even out levels where fewer frames contribute (borders).

    The local background (Gaussian-smoothed luminance, σ in px) is compared with the level of
    the well-covered area (coverage ≥ 90 % of max); the ratio, clipped to
    [gain_min, gain_max], is applied with a weight 1 − smoothed coverage / max, so the
    well-covered area is untouched.
    """
    valid = m.alpha > 0
    if not valid.any():
        return {"step": "two_pass_renorm", "applied": False}
    lum = np.nan_to_num(np.nanmean(m.image, axis=-1), nan=0.0)
    top = float(m.coverage.max())
    level = _smooth(lum, valid.astype(np.float32), sigma)
    core = valid & (m.coverage >= 0.9 * top)
    ref = float(np.nanmedian(level[core])) if core.any() else float(np.nanmedian(level[valid]))
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.clip(ref / level, gain_min, gain_max)
    blend = 1.0 - np.clip(_smooth(m.coverage / top, valid.astype(np.float32), sigma), 0, 1)
    g = np.where(valid, 1.0 + (np.nan_to_num(gain, nan=1.0) - 1.0) * blend, 1.0)
    m.image *= g[..., None].astype(np.float32)
    return {
        "step": "two_pass_renorm",
        "applied": True,
        "gain_min": float(g[valid].min()),
        "gain_max": float(g[valid].max()),
    }


def _block_stats(m: Mosaic, block: int):
    h, w = m.shape
    by, bx = h // block, w // block
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels are expected
        lum = np.nanmean(m.image[: by * block, : bx * block], axis=-1)
    b = lum.reshape(by, block, bx, block).transpose(0, 2, 1, 3).reshape(by, bx, -1)
    valid = np.isfinite(b).mean(axis=-1)
    med = np.full((by, bx), np.nan)
    noise = np.full((by, bx), np.nan)
    ok = valid > 0.5
    if ok.any():
        sel = b[ok]
        mm = np.nanmedian(sel, axis=-1)
        med[ok] = mm
        noise[ok] = 1.4826 * np.nanmedian(np.abs(sel - mm[:, None]), axis=-1)
    return valid, med, noise


def quality_crop(m: Mosaic, block: int = 32, bad_fraction: float = 0.5) -> dict:
    """Crop borders made of unstable blocks: mostly empty, far too dark/bright, or noisy.

    A block is bad when < 50 % of it is valid, its noise exceeds 2× the median block noise,
    or its median departs from the median block level by more than 10× the typical scatter
    of block medians on the dark side (dark edges). Edge rows/columns of blocks that are more
    than ``bad_fraction`` bad are trimmed, from the outside in.
    """
    h, w = m.shape
    if h < 4 * block or w < 4 * block:
        return {"step": "quality_crop", "box": None}
    valid, med, noise = _block_stats(m, block)
    good_med = med[np.isfinite(med)]
    if good_med.size < 4:
        return {"step": "quality_crop", "box": None}
    level = float(np.median(good_med))
    spread = 1.4826 * float(np.median(np.abs(good_med - level))) + 1e-6
    typical_noise = float(np.nanmedian(noise))
    with np.errstate(invalid="ignore"):
        bad = (valid <= 0.5) | (noise > 2 * typical_noise) | (med < level - 10 * spread)
    bad = bad & (valid > 0)  # empty blocks are the autocrop's business
    r0, r1, c0, c1 = 0, bad.shape[0], 0, bad.shape[1]
    changed = True
    while changed and r1 - r0 > 2 and c1 - c0 > 2:
        changed = False
        for side in ("top", "bottom", "left", "right"):
            line = {
                "top": bad[r0, c0:c1],
                "bottom": bad[r1 - 1, c0:c1],
                "left": bad[r0:r1, c0],
                "right": bad[r0:r1, c1 - 1],
            }[side]
            occupied = {
                "top": valid[r0, c0:c1],
                "bottom": valid[r1 - 1, c0:c1],
                "left": valid[r0:r1, c0],
                "right": valid[r0:r1, c1 - 1],
            }[side] > 0
            if occupied.any() and line[occupied].mean() > bad_fraction:
                r0, r1, c0, c1 = (
                    r0 + (side == "top"),
                    r1 - (side == "bottom"),
                    c0 + (side == "left"),
                    c1 - (side == "right"),
                )
                changed = True
    if (r0, r1, c0, c1) == (0, bad.shape[0], 0, bad.shape[1]):
        return {"step": "quality_crop", "box": None}
    y0, x0 = r0 * block, c0 * block
    y1 = h if r1 == bad.shape[0] else r1 * block
    x1 = w if c1 == bad.shape[1] else c1 * block
    m.crop(y0, y1, x0, x1, step="quality_crop")
    return {"step": "quality_crop", "box": [y0, y1, x0, x1]}


def altaz_cleanup(m: Mosaic, keep_fraction: float, open_px: int = 15, feather_px: int = 16) -> dict:
    """Mask the rotated-corner artefacts of alt-az data.

    Keep coverage ≥ ``keep_fraction`` × max, open the mask morphologically (removes thin
    slivers left by field rotation), and feather alpha by distance to the mask edge.
    """
    top = float(m.coverage.max()) if m.coverage.size else 0.0
    if top <= 0:
        return {"step": "altaz_cleanup", "masked": 0}
    keep = (geometric_coverage(m.coverage) >= keep_fraction * top).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (open_px, open_px))
    keep = cv2.morphologyEx(keep, cv2.MORPH_OPEN, kernel)
    masked = m.mask(keep == 0)
    dist = cv2.distanceTransform(keep, cv2.DIST_L2, 5)
    feather = np.clip(dist / max(feather_px, 1), 0, 1)
    m.alpha = np.minimum(m.alpha, np.round(255 * feather)).astype(np.uint8)
    return {"step": "altaz_cleanup", "keep_fraction": keep_fraction, "masked": masked}


def autocrop(m: Mosaic, margin: int = 0) -> dict:
    """Crop to the bounding box of valid data (+ margin); the WCS reference pixel follows."""
    box = m.valid_box()
    if box is None:
        return {"step": "autocrop", "box": None}
    y0, y1, x0, x1 = box
    y0, x0 = max(0, y0 - margin), max(0, x0 - margin)
    y1, x1 = min(m.shape[0], y1 + margin), min(m.shape[1], x1 + margin)
    if (y0, y1, x0, x1) != (0, m.shape[0], 0, m.shape[1]):
        m.crop(y0, y1, x0, x1, step="autocrop")
    return {"step": "autocrop", "box": [y0, y1, x0, x1]}


def polish(m: Mosaic, cfg: PolishConfig, min_keep: float, altaz: bool) -> list[dict]:
    """Run the five steps in the order of DESIGN §6, then the optional final background
    model (``polish.background``); returns their facts."""
    facts = [coverage_cut(m, min_keep)]
    if cfg.two_pass_renorm:
        facts.append(
            two_pass_renorm(m, cfg.two_pass_sigma_px, cfg.two_pass_gain_min, cfg.two_pass_gain_max)
        )
    if cfg.quality_crop:
        facts.append(quality_crop(m))
    if cfg.altaz_cleanup and altaz:
        facts.append(altaz_cleanup(m, cfg.altaz_keep_fraction))
    if cfg.autocrop:
        facts.append(autocrop(m, cfg.autocrop_margin_px))
    if cfg.background != "none":
        facts.append(
            remove_background(m, cfg.background, cfg.background_order, cfg.background_scale_px)
        )
    return facts
