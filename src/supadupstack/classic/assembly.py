"""Classic mode, step 4 (DESIGN §5.4): harmonised master tiles → one mosaic on the canvas.

Each tile (its usable pixels only) is harmonised (gain · tile + offset), resampled onto the
global canvas together with its coverage and its feather map (one remap, so all three stay
aligned), and accumulated. The weight of a tile at a canvas pixel, per channel, is

    feather × coverage / σ²

with feather = min(1, d / feather_px), d the distance in tile pixels to the nearest pixel the
tile does not cover (so the weight falls linearly to 0 at the tile's edge and any remaining
level difference between tiles is spread over ``feather_px`` instead of showing as a step),
coverage the tile's frames per pixel and σ its single-frame noise after harmonisation. One
tile is in memory at a time besides the canvas-sized accumulators.
"""

from __future__ import annotations

import cv2
import numpy as np

from supadupstack.canvas.canvas import Canvas
from supadupstack.canvas.resample import DEFAULT_KERNEL, resample_to_canvas
from supadupstack.classic.master_tile import MasterTile, usable_tile
from supadupstack.stacking.gain_solver import TileHarmony


def feather_weight(valid: np.ndarray, feather_px: int) -> np.ndarray:
    """float32 (h, w): distance to the nearest uncovered pixel / feather_px, clipped to [0, 1].

    Pixels outside the array count as uncovered. ``feather_px`` = 0 gives a flat weight.
    """
    if feather_px <= 0:
        return valid.astype(np.float32)
    padded = np.pad(valid.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    return np.clip(dist / float(feather_px), 0.0, 1.0).astype(np.float32)


def assemble(
    tiles: list[MasterTile],
    harmony: list[TileHarmony],
    canvas: Canvas,
    feather_px: int,
    keep_fraction: float,
    kernel: str = DEFAULT_KERNEL,
    grid_step: int = 32,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(mosaic (H, W, C) float32 NaN = no data, coverage (H, W) float32, facts)."""
    h, w = canvas.shape
    num = den = None
    coverage = np.zeros((h, w), np.float32)
    boxes = []
    # σ of every tile after harmonisation, relative to their median (float32-friendly weights)
    sig = np.array(
        [np.asarray(t.noise, np.float64) * np.abs(hm.gain) for t, hm in zip(tiles, harmony)]
    )
    sig = np.where(np.isfinite(sig) & (sig > 0), sig, np.nan)
    ref = np.nanmedian(sig, axis=0) if np.isfinite(sig).any() else np.ones(sig.shape[1])
    rel_w = np.nan_to_num((np.where(np.isfinite(ref), ref, 1.0) / sig) ** 2, nan=1.0)
    for k, (tile, hm) in enumerate(zip(tiles, harmony, strict=True)):
        data, cov, wcs = usable_tile(tile.path, keep_fraction)
        nch = data.shape[-1]
        if num is None:
            num = np.zeros((h, w, nch), np.float32)
            den = np.zeros((h, w, nch), np.float32)
        gain = np.asarray(hm.gain, np.float32)
        valid = cov > 0
        stack = np.empty(data.shape[:2] + (nch + 2,), np.float32)
        stack[..., :nch] = data * gain + np.asarray(hm.offset, np.float32)
        stack[..., nch] = np.where(valid, cov, np.nan)
        stack[..., nch + 1] = feather_weight(valid, feather_px)
        del data
        patch = resample_to_canvas(stack, wcs, canvas, kernel, grid_step)
        if patch is None:
            boxes.append(None)
            continue
        y0, x0, ph, pw = patch.box
        sl = (slice(y0, y0 + ph), slice(x0, x0 + pw))
        ok = patch.weight > 0
        pcov = np.where(ok, patch.data[..., nch], 0.0).astype(np.float32)
        inv_var = rel_w[k].astype(np.float32)
        base = np.where(ok, patch.data[..., nch + 1] * pcov, 0.0).astype(np.float32)
        vals = np.where(ok[..., None], patch.data[..., :nch], 0.0)
        for c in range(nch):
            wc = base * inv_var[c]
            num[sl + (c,)] += wc * vals[..., c]
            den[sl + (c,)] += wc
        coverage[sl] += pcov
        boxes.append(list(patch.box))
    if num is None:
        raise ValueError("assemble needs at least one tile")
    with np.errstate(invalid="ignore", divide="ignore"):
        image = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan).astype(np.float32)
    image[~(den > 0).all(axis=-1)] = np.nan
    facts = {"feather_px": feather_px, "keep_fraction": keep_fraction, "tile_boxes": boxes}
    return image, coverage, facts
