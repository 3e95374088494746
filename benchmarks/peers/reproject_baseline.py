"""The astropy baseline: ``reproject_interp`` (bilinear) + ``reproject_and_coadd`` (mean).

Each frame is read and debayered exactly as supadupstack does it (``calibrate_frame`` with the
run's calibration config), then reprojected onto the shared grid with ``reproject_interp``
(order=1) and co-added by ``reproject_and_coadd(combine_function="mean")`` in its on-the-fly
mode (running sums, so memory stays at a few full-grid arrays). No frame is rejected, no frame
is normalised: the result is the plain mean of the raw frames where they overlap, in ADU per
sub-exposure at the frames' mean transparency and mean sky.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

from supadupstack.config import Config
from supadupstack.frames.calibrate import calibrate_frame
from supadupstack.frames.fits_io import load_pixels
from supadupstack.frames.model import Frame

from .grid import load_frames, load_grid, write_output


class LazyFrames(Sequence):
    """(data (C, H, W) float32, WCS) per frame, calibrated on demand (one frame in memory)."""

    def __init__(self, frames: list[Frame], cfg: Config):
        self.frames = frames
        self.cfg = cfg

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i):  # type: ignore[override]
        f = self.frames[i]
        img = calibrate_frame(f, load_pixels(f), self.cfg.calibration)
        return np.ascontiguousarray(np.moveaxis(img, -1, 0)), f.wcs.celestial


def coadd(
    frames: list[Frame], cfg: Config, wcs: WCS, shape: tuple[int, int], parallel: int | bool
) -> tuple[np.ndarray, np.ndarray]:
    """(mean image (3, H, W) float32 with NaN where no frame, coverage (H, W) frames/pixel)."""
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    image, footprint = reproject_and_coadd(
        LazyFrames(frames, cfg),
        wcs,
        shape_out=(3, *shape),
        reproject_function=reproject_interp,
        combine_function="mean",
        order=1,
        parallel=parallel,
    )
    cov = footprint[1].astype(np.float32)
    image = image.astype(np.float32)
    image[:, cov <= 0] = np.nan
    return image, cov


def run(frames_dir: Path, grid_path: Path, out: Path, cfg: Config, parallel: int | bool) -> Path:
    """Read the frames, co-add them onto the grid of ``grid_path``, write ``out`` FITS."""
    wcs, shape = load_grid(grid_path)
    image, cov = coadd(load_frames(frames_dir, cfg), cfg, wcs, shape, parallel)
    return write_output(out, image, cov, wcs)
