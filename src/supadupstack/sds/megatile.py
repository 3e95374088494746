"""Batch → mega-tile (DESIGN §4.2): frames resampled directly onto the canvas and co-added.

One call handles one batch and is independent of the others (run in parallel). The mega-tile
is stored in the work directory as a FITS patch (data (C, h, w) + COVERAGE extension and a WCS
valid for the patch), so it can be inspected and reused. Its place on a canvas comes from its
WCS: canvas and tile share the projection, so the offset is the difference of their (whole)
CRPIX, and a tile made on an earlier, smaller canvas lands where it belongs on a grown one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from supadupstack.canvas.canvas import Canvas
from supadupstack.canvas.resample import Patch
from supadupstack.catalogue.detect import STAR_DTYPE
from supadupstack.config import Config
from supadupstack.frames.model import Frame
from supadupstack.outputs.atomic import write_atomic
from supadupstack.stacking.frameset import stack_frames
from supadupstack.stacking.star_photometry import patch_stars


@dataclass
class MegaTile:
    """Where a batch's co-add lives and what went into it."""

    index: int
    path: str
    box: tuple[int, int, int, int]
    frames_used: list[str]
    rejected: dict[str, str] = field(default_factory=dict)
    reference_frame: str | None = None
    coverage_sum: float = 0.0
    noise: list[float] = field(default_factory=list)
    transparency: list[float | None] = field(default_factory=list)
    normalisation: list[str] = field(default_factory=list)
    gradients: list[dict | None] = field(default_factory=list)  # per frame, vs the reference
    gradient: dict | None = None  # the stack's own sky gradient
    rejected_pixel_fraction: float = 0.0
    exposure_s: float | None = None  # median sub-exposure of the frames used
    seconds: float = 0.0
    reused: bool = False


def save_patch(patch: Patch, canvas: Canvas, path: Path, cards: dict) -> Path:
    """Write a canvas patch as FITS: (C, h, w) float32 + COVERAGE, with the patch's WCS."""
    wcs = canvas.wcs.deepcopy()
    wcs.wcs.crpix = [wcs.wcs.crpix[0] - patch.x0, wcs.wcs.crpix[1] - patch.y0]
    hdr = wcs.to_header()
    for key, value in cards.items():
        hdr[key] = value
    primary = fits.PrimaryHDU(np.moveaxis(patch.data, -1, 0).astype(np.float32), header=hdr)
    cov = fits.ImageHDU(patch.weight.astype(np.float32), name="COVERAGE")
    return write_atomic(path, lambda p: fits.HDUList([primary, cov]).writeto(p))


def patch_offset(header: fits.Header, canvas: Canvas) -> tuple[int, int]:
    """(y0, x0): the canvas pixel of a saved patch's data[0, 0] (same projection: whole px)."""
    x0 = canvas.wcs.wcs.crpix[0] - float(header["CRPIX1"])
    y0 = canvas.wcs.wcs.crpix[1] - float(header["CRPIX2"])
    return int(round(y0)), int(round(x0))


def load_patch(path: Path, canvas: Canvas) -> Patch:
    """Read a patch written by ``save_patch`` into memory (data (h, w, C) float32)."""
    with fits.open(path, memmap=False) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float32)
        cov = np.asarray(hdul["COVERAGE"].data, dtype=np.float32)
        y0, x0 = patch_offset(hdul[0].header, canvas)
    return Patch(y0=y0, x0=x0, data=np.moveaxis(data, 0, -1), weight=cov)


class RowsOnDisk:
    """Array-like rows of a patch FITS extension, read from disk only when sliced.

    ``a[r0:r1]`` opens the file, reads those rows (``section``: no memory map, nothing else
    read) and closes it, returning native float32 — (rows, w, C) for the image, (rows, w) for
    the coverage. The global co-add slices every tile this way, so its memory depends on the
    chunk size, not on the number of tiles; and no file stays open.
    """

    def __init__(self, path: Path, ext: int | str, shape: tuple[int, ...], channels_first: bool):
        self.path, self.ext, self.channels_first = Path(path), ext, channels_first
        self.shape = shape
        self.ndim = len(shape)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, rows: slice) -> np.ndarray:
        with fits.open(self.path, memmap=False) as hdul:
            section = hdul[self.ext].section
            part = section[:, rows, :] if self.channels_first else section[rows, :]
        part = np.asarray(part, dtype=np.float32)
        return np.ascontiguousarray(np.moveaxis(part, 0, -1) if self.channels_first else part)


def patch_on_disk(path: Path, canvas: Canvas) -> Patch:
    """A Patch whose data and coverage stay on disk until rows are sliced (``RowsOnDisk``)."""
    header = fits.getheader(path)
    nch, h, w = int(header["NAXIS3"]), int(header["NAXIS2"]), int(header["NAXIS1"])
    data = RowsOnDisk(path, 0, (h, w, nch), channels_first=True)
    weight = RowsOnDisk(path, "COVERAGE", (h, w), channels_first=False)
    y0, x0 = patch_offset(header, canvas)
    return Patch(y0=y0, x0=x0, data=data, weight=weight)


def stars_path(tile_path: Path) -> Path:
    """Where a tile's star catalogue (canvas pixels) is kept: beside its FITS."""
    return Path(tile_path).with_suffix(".stars.npy")


def save_tile_stars(tile_path: Path, stars: np.ndarray) -> None:
    """Keep the tile's catalogue, made in its batch job (in parallel), for the renorm."""

    def write(p: Path) -> None:
        with open(p, "wb") as fh:  # np.save given a path would append ".npy" to the temp name
            np.save(fh, stars, allow_pickle=False)

    write_atomic(stars_path(tile_path), write)


def tile_stars(tile_path: Path, patch: Patch) -> np.ndarray:
    """The tile's catalogue from beside its FITS, or made from the patch when that file is
    missing or unreadable (a tile of an earlier version, a damaged work folder)."""
    try:
        stars = np.load(stars_path(tile_path), allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return patch_stars(patch)
    return stars if stars.dtype == STAR_DTYPE and stars.ndim == 1 else patch_stars(patch)


def build_megatile(
    index: int, frames: list[Frame], canvas: Canvas, cfg: Config, path: Path, key: str
) -> MegaTile:
    """Load, calibrate, gate, resample onto the canvas, normalise, reject and co-add a batch;
    the tile is written to ``path`` with its key (``TILEKEY``)."""
    t0 = time.monotonic()
    fs = stack_frames(frames, canvas, cfg, unit="batch")
    if fs.patch is None:
        return MegaTile(index, "", (0, 0, 0, 0), [], fs.rejected, seconds=time.monotonic() - t0)
    cards = {"TILEIDX": index, "NFRAMES": len(fs.used), "TILEKEY": key}
    save_patch(fs.patch, canvas, path, cards)
    save_tile_stars(path, patch_stars(fs.patch))
    return MegaTile(
        index=index,
        path=str(path),
        box=fs.patch.box,
        frames_used=[str(f.path) for f, _ in fs.used],
        rejected=fs.rejected,
        reference_frame=fs.reference_frame,
        coverage_sum=float(fs.patch.weight.sum()),
        noise=fs.noise,
        transparency=fs.transparency,
        normalisation=fs.normalisation,
        gradients=fs.gradients,
        gradient=fs.gradient,
        rejected_pixel_fraction=fs.rejected_pixel_fraction,
        exposure_s=fs.exposure_s,
        seconds=time.monotonic() - t0,
    )
