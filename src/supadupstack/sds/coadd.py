"""Global co-add of renormalised mega-tiles (DESIGN §4.4).

The mega-tiles are already on the canvas: they are placed at their offsets (no resampling)
and combined with weights = coverage / σ² (σ: the tile's single-frame noise after renorm, so
sessions with a brighter, noisier sky count less), with winsorized rejection where at least
``reject_min_tiles`` tiles overlap. No background matching happens here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from supadupstack.canvas.canvas import Canvas
from supadupstack.canvas.resample import Patch
from supadupstack.config import Config
from supadupstack.sds.renorm import TileGain
from supadupstack.stacking.engine import stack_patches


def global_coadd(
    tiles: list[Patch],
    gains: list[TileGain],
    noises: list[list[float]],
    canvas: Canvas,
    cfg: Config,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(mosaic (H, W, C) float32 NaN = no data, coverage (H, W) float32, facts)."""
    h, w = canvas.shape
    stack_cfg = dataclasses.replace(
        cfg.stacking,
        normalization="none",
        weighting="noise",
        rejection="winsorized_sigma" if len(tiles) >= cfg.sds.reject_min_tiles else "none",
        combine="mean",
    )
    a = np.array([g.gain for g in gains], dtype=np.float64)
    b = np.array([g.offset for g in gains], dtype=np.float64)
    sigma = np.array(noises, dtype=np.float64)  # the engine scales it by |gain|
    patch, facts = stack_patches(
        tiles, stack_cfg, reference=0, noise=list(sigma), box=(0, 0, h, w), coefficients=(a, b)
    )
    return patch.data, patch.weight, facts
