"""The final products of a run, shared by both modes: FITS, previews, and their summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

from supadupstack import __version__
from supadupstack.canvas.canvas import pixel_scale_arcsec
from supadupstack.catalogue.detect import DetectionSettings
from supadupstack.catalogue.stage import measure_quality
from supadupstack.config import OutputConfig
from supadupstack.frames.model import Frame
from supadupstack.outputs.cards import observation_cards
from supadupstack.outputs.tiles import TileTable
from supadupstack.outputs.write import write_fits, write_preview
from supadupstack.polish.mosaic import Mosaic
from supadupstack.stacking.normalize import robust_noise


def run_cards(
    mode: str, used: list[str], frames: list[Frame], wcs: WCS | None = None
) -> dict[str, tuple]:
    """FITS cards every run writes: mode, frames used, version, the standard observation
    cards (``outputs.cards``: dates, EXPTIME, TOTALEXP, OBJECT, optics; ``wcs`` is the
    output grid, for PIXSCALE and FOCALLEN) and where the WCSs of the frames used came from.
    Per-tile gains go to the ``TILES`` table, not to cards."""
    by_path = {str(f.path): f for f in frames}
    frames_used = [by_path[p] for p in used if p in by_path]
    cards = {
        "SDSMODE": (mode, "supadupstack mode"),
        "NFRAMES": (len(used), "frames co-added"),
        "SWVERS": (__version__, "supadupstack version"),
    }
    scale = pixel_scale_arcsec(wcs) if wcs is not None else None
    cards.update(observation_cards(frames_used, scale))
    cards.update(astrometry_cards(frames_used))
    return cards


def astrometry_cards(used: list[Frame]) -> dict[str, tuple]:
    """How the frames used got their WCS: solved, registered to an anchor, or refined (a
    given WCS re-fitted by stars), and the median rms of the star fits [px]."""
    count = {src: sum(1 for f in used if f.wcs_source == src) for src in SOURCES}
    rms = [f.wcs_rms_px for f in used if f.wcs_rms_px is not None]
    cards = {
        "NSOLVED": (count["solved"], "frames used, WCS plate-solved"),
        "NREGIST": (count["registered"], "frames used, registered to an anchor"),
        "NREFINED": (count["refined"], "frames used, given WCS re-fitted by stars"),
    }
    if rms:
        cards["REGRMS"] = (round(float(np.median(rms)), 4), "[px] median rms of star fits")
    return cards


SOURCES = ("solved", "registered", "refined")


def total_exposure(used: list[str], frames: list[Frame]) -> float:
    """Sum of the exposure times (s) of the frames used (paths), for the report; unknown
    exposures count 0 (the FITS leaves TOTALEXP out instead)."""
    exposure_s = {str(f.path): f.exposure_s for f in frames}
    return float(sum(exposure_s.get(p) or 0.0 for p in used))


def save_products(
    mosaic: Mosaic,
    out_dir: Path,
    cfg: OutputConfig,
    cards: dict[str, tuple],
    tiles: TileTable | None = None,
    after_fits: Callable[[], None] | None = None,
) -> tuple[Path, Path | None]:
    """Write ``<name>.fits`` (with the ``TILES`` table) then the PNG (and JPG on request);
    returns (fits, png or None).

    ``after_fits`` runs between the FITS and the previews (a crash point for resume tests).
    """
    fits_path = write_fits(mosaic, out_dir / f"{cfg.name}.fits", cards, cfg.nodata, tiles)
    if after_fits is not None:
        after_fits()
    png_path = write_preview(mosaic, out_dir / f"{cfg.name}.png", cfg) if cfg.png else None
    if cfg.jpg:
        write_preview(mosaic, out_dir / f"{cfg.name}.jpg", cfg)
    return fits_path, png_path


def output_summary(
    mosaic: Mosaic, fits_path: Path, png_path: Path | None, exposure_s: float
) -> dict:
    """The report's ``output`` block: paths, shape, coverage, final noise (ADU) and FWHM (px).

    The noise is the spread of the pixel values (``robust_noise``): in a deep stack the
    curvature of faint sources is no longer small against the noise, so the frames'
    neighbour-difference estimator would read the sky of a final image high."""
    final = measure_quality(mosaic.image, DetectionSettings()) if mosaic.alpha.any() else None
    return {
        "fits": str(fits_path),
        "png": str(png_path) if png_path else None,
        "shape": list(mosaic.shape),
        "coverage_max": float(mosaic.coverage.max()) if mosaic.coverage.size else 0.0,
        "valid_fraction": float((mosaic.alpha > 0).mean()) if mosaic.alpha.size else 0.0,
        "noise": [float(v) for v in robust_noise(mosaic.image)] if final else None,
        "fwhm_px": final.fwhm_px if final else None,
        "total_exposure_s": exposure_s,
    }
