"""The stars two images share, on one grid: catalogues of patches, frames' catalogues moved
onto the canvas, and their pairing (``photometry`` measures them).

A frame's catalogue (frame pixels) is mapped through its WCS, with each flux times the local
pixel-area ratio (a frame resampled onto finer canvas pixels sums to more ADU) and each FWHM
times its square root; a patch (a frame or a stacked tile already on the grid) is catalogued
on its luminance. Stars pair by mutual nearest neighbour. Units: canvas pixels, ADU of the
luminance (the mean of the channels).
"""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from supadupstack.canvas.resample import Patch
from supadupstack.catalogue.detect import (
    BLENDED,
    EDGE,
    FIT_FAILED,
    SATURATED,
    DetectionSettings,
    detect_stars,
)
from supadupstack.catalogue.stage import detection_luminance
from supadupstack.frames.quality import SATURATION_ADU

MATCH_RADIUS_PX = 1.5  # registration puts common stars within ~0.3 px of each other
MIN_PAIR_SNR = 30.0  # on the two images together (selecting on one biases its fluxes high)
BAD_FLAGS = EDGE | SATURATED | FIT_FAILED | BLENDED
# a frame clips at SATURATION_ADU; in a stack of frames scaled by 0.8-1.2 its clipped cores
# land anywhere from ~0.8 of it, so stacks flag from there (a bright unclipped star lost is
# one star fewer; a clipped one kept biases the scale)
STACK_SATURATION_ADU = 0.8 * SATURATION_ADU


def patch_stars(patch: Patch, saturation_adu: float = STACK_SATURATION_ADU) -> np.ndarray:
    """Star catalogue of a patch's luminance in canvas pixels (STAR_DTYPE, brightest first).

    Stars with a channel at or above ``saturation_adu`` in their core are flagged saturated;
    the default suits stacks, whose clipped cores end wherever each frame's scale put them.
    """
    data = np.asarray(patch.data)
    lum = detection_luminance(data, saturation_adu)
    lum = np.where(np.asarray(patch.weight) > 0, lum, np.nan).astype(np.float32)
    stars = detect_stars(lum, DetectionSettings(saturation_adu=saturation_adu))
    stars["x"] += patch.x0
    stars["y"] += patch.y0
    return stars


def stars_on_grid(stars: np.ndarray, frame_wcs: WCS, grid_wcs: WCS) -> np.ndarray:
    """A frame's catalogue moved onto the canvas: positions through both WCSs, fluxes times
    the canvas pixels per frame pixel at each star (|det| of the local Jacobian), FWHMs
    times its square root (canvas pixels)."""
    out = stars.copy()
    if len(stars) == 0:
        return out
    x, y = np.asarray(stars["x"], np.float64), np.asarray(stars["y"], np.float64)
    px = np.concatenate([x, x + 1.0, x])
    py = np.concatenate([y, y, y + 1.0])
    ra, dec = frame_wcs.all_pix2world(px, py, 0)
    cx, cy = grid_wcs.all_world2pix(ra, dec, 0)
    n = len(stars)
    jxx, jyx = cx[n : 2 * n] - cx[:n], cy[n : 2 * n] - cy[:n]
    jxy, jyy = cx[2 * n :] - cx[:n], cy[2 * n :] - cy[:n]
    out["x"], out["y"] = cx[:n], cy[:n]
    area = np.abs(jxx * jyy - jxy * jyx)
    out["flux"] = stars["flux"] * area
    out["fwhm"] = stars["fwhm"] * np.sqrt(area)
    return out


def matched_stars(
    a: np.ndarray, b: np.ndarray, radius: float = MATCH_RADIUS_PX
) -> tuple[np.ndarray, np.ndarray]:
    """The stars two canvas catalogues share, (from a, from b) in pairs: mutual nearest
    neighbours within ``radius`` px, cleanly fitted in both, SNR ≥ 30 on both together."""
    good_a = a[((a["flags"] & BAD_FLAGS) == 0) & np.isfinite(a["flux"]) & (a["flux"] > 0)]
    good_b = b[((b["flags"] & BAD_FLAGS) == 0) & np.isfinite(b["flux"]) & (b["flux"] > 0)]
    if len(good_a) == 0 or len(good_b) == 0:
        return good_a[:0], good_b[:0]
    xy_a = np.column_stack([good_a["x"], good_a["y"]])
    xy_b = np.column_stack([good_b["x"], good_b["y"]])
    d_ab, j = cKDTree(xy_b).query(xy_a, distance_upper_bound=radius)
    _, i_back = cKDTree(xy_a).query(xy_b, distance_upper_bound=radius)
    hit = np.flatnonzero(np.isfinite(d_ab))
    hit = hit[i_back[j[hit]] == hit]  # mutual: no star takes another's partner
    sa, sb = good_a[hit], good_b[j[hit]]
    snr = np.hypot(sa["snr"].astype(np.float64), sb["snr"].astype(np.float64))
    keep = snr >= MIN_PAIR_SNR
    return sa[keep], sb[keep]
