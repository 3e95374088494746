"""The output grid shared by every tool, frame loading, and like-with-like output files.

Every tool resamples onto SDS's own canvas (``canvas_from_frames`` with the run's config, the
grid SDS stacks on before its polish crop). For the truth metrics each peer output is then cut
to the SDS output's box and given SDS's no-data pixels (its ALPHA extension), so all metrics
are measured on the same sky pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from supadupstack.canvas.canvas import canvas_for_frames
from supadupstack.config import Config
from supadupstack.errors import SupaDupError
from supadupstack.frames.model import Frame
from supadupstack.pipeline import frames_with_wcs


def load_frames(frames_dir: Path, cfg: Config) -> list[Frame]:
    """Frames of ``frames_dir`` with their WCS (sidecars), in time order, as SDS reads them."""
    frames, _, _ = frames_with_wcs([str(frames_dir)], cfg)
    return frames


def save_grid(frames: list[Frame], cfg: Config, path: Path) -> tuple[WCS, tuple[int, int]]:
    """Build SDS's canvas for ``frames`` and store it as a header-only FITS file."""
    canvas = canvas_for_frames(frames, cfg.canvas)
    hdr = canvas.wcs.to_header()
    hdr["GRIDW"] = (canvas.width, "grid width, pixels")
    hdr["GRIDH"] = (canvas.height, "grid height, pixels")
    fits.PrimaryHDU(header=hdr).writeto(path, overwrite=True)
    return canvas.wcs, canvas.shape


def load_grid(path: Path) -> tuple[WCS, tuple[int, int]]:
    """(celestial WCS, (H, W)) of a grid file written by ``save_grid``."""
    hdr = fits.getheader(path)
    return WCS(hdr).celestial, (int(hdr["GRIDH"]), int(hdr["GRIDW"]))


def write_output(path: Path, image: np.ndarray, coverage: np.ndarray, wcs: WCS) -> Path:
    """Write a (3, H, W) float32 image (NaN = no data) + COVERAGE extension with ``wcs``."""
    hdr = wcs.to_header()
    hdus = [
        fits.PrimaryHDU(np.asarray(image, np.float32), header=hdr),
        fits.ImageHDU(np.asarray(coverage, np.float32), header=hdr, name="COVERAGE"),
    ]
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def resample(image: np.ndarray, wcs_in: WCS, wcs: WCS, shape: tuple[int, int]) -> np.ndarray:
    """(C, H, W) float32 image resampled bilinearly (``reproject_interp``, order 1) onto the
    grid ``wcs``/``shape``; NaN where no input pixel lands."""
    from reproject import reproject_interp

    planes = []
    for plane in image:
        arr, foot = reproject_interp((plane, wcs_in), wcs, shape, order="bilinear")
        arr[foot <= 0] = np.nan
        planes.append(arr.astype(np.float32))
    return np.stack(planes)


def crop_offset(grid_wcs: WCS, sub_wcs: WCS) -> tuple[int, int]:
    """(y0, x0) of pixel (0, 0) of ``sub_wcs`` on ``grid_wcs``; the two must share a grid."""
    ra, dec = sub_wcs.all_pix2world([0.0, 100.0], [0.0, 100.0], 0)
    x, y = grid_wcs.all_world2pix(ra, dec, 0)
    x0, y0 = round(float(x[0])), round(float(y[0]))
    if max(abs(x[0] - x0), abs(y[0] - y0), abs(x[1] - x0 - 100), abs(y[1] - y0 - 100)) > 0.01:
        raise SupaDupError("the SDS output is not an integer crop of the benchmark grid")
    return y0, x0


def like_sds(
    peer_fits: Path, sds_fits: Path, out: Path, coverage: np.ndarray | None = None
) -> Path:
    """Cut a full-grid peer output to the SDS output's box and valid pixels (ALPHA > 0; its
    no-data pixels are 0.0 or NaN by ``output.nodata``): the same sky pixels.

    ``coverage`` (frames per grid pixel) replaces the file's COVERAGE when given.
    """
    with fits.open(sds_fits) as h:
        sds_alpha = np.asarray(h["ALPHA"].data)
        sds_wcs = WCS(h[0].header).celestial
    with fits.open(peer_fits) as h:
        img = np.asarray(h[0].data, np.float32)
        cov = np.asarray(h["COVERAGE"].data, np.float32) if coverage is None else coverage
        wcs = WCS(h[0].header).celestial
    y0, x0 = crop_offset(wcs, sds_wcs)
    hh, ww = sds_alpha.shape
    if y0 < 0 or x0 < 0 or y0 + hh > img.shape[1] or x0 + ww > img.shape[2]:
        raise SupaDupError("the SDS output box lies outside the benchmark grid")
    img = img[:, y0 : y0 + hh, x0 : x0 + ww].copy()
    cov = cov[y0 : y0 + hh, x0 : x0 + ww].copy()
    dead = sds_alpha == 0
    img[:, dead] = np.nan
    cov[dead] = 0.0
    return write_output(out, img, cov, sds_wcs)


def footprint_coverage(frames: list[Frame], wcs: WCS, shape: tuple[int, int]) -> np.ndarray:
    """Frames per grid pixel from the frames' sky footprints (polygons filled with OpenCV).

    SWarp's weight map is a sum of inverse background variances, not a count, so the count
    the truth metrics need (ideal noise = σ₁/√N) is rebuilt from the footprints.
    """
    import cv2

    from supadupstack.canvas.canvas import frame_footprint

    cov = np.zeros(shape, np.float32)
    one = np.zeros(shape, np.uint8)
    for f in frames:
        radec = frame_footprint(f.wcs, f.width, f.height)
        x, y = wcs.all_world2pix(radec[:, 0], radec[:, 1], 0)
        pts = np.round(np.column_stack([x, y]) * 16).astype(np.int32)
        one[:] = 0
        cv2.fillPoly(one, [pts], 1, lineType=cv2.LINE_8, shift=4)
        cov += one
    return cov
