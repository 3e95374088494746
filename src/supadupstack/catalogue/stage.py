"""The star-catalogue stage: every frame's catalogue, made once (in parallel) or read back.

A frame's catalogue comes from its calibrated luminance (the same calibration the stacking
uses), so the quality gates, registration and the final FWHM all read one measure. Jobs run
on the configured backend (``execution.run_jobs``); each writes its own cache file.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from supadupstack.catalogue.detect import DetectionSettings, detect_stars
from supadupstack.catalogue.store import (
    Catalogue,
    cache_folder,
    catalogue_key,
    catalogue_path,
    load_catalogue,
    save_catalogue,
)
from supadupstack.config import CalibrationConfig, Config
from supadupstack.errors import FrameError, SupaDupError
from supadupstack.execution import executor
from supadupstack.execution.workdir import file_digests
from supadupstack.frames.calibrate import calibrate_frame
from supadupstack.frames.fits_io import load_pixels
from supadupstack.frames.model import Frame, Skip
from supadupstack.frames.quality import SATURATION_ADU, FrameQuality, luminance, sky_and_noise

log = logging.getLogger(__name__)


def detection_settings(cfg: Config) -> DetectionSettings:
    return DetectionSettings(sigma=cfg.quality.detect_sigma, saturation_adu=SATURATION_ADU)


def detection_luminance(image: np.ndarray, saturation_adu: float) -> np.ndarray:
    """The luminance stars are detected on, with every pixel where any channel reaches
    ``saturation_adu`` raised to that level: a star whose green sites clip but whose
    interpolated red and blue do not would otherwise look unsaturated in the mean of the
    channels, and its flux read several per cent low (it is flagged and fitted on its wings)."""
    lum = luminance(image)
    if image.ndim == 3 and image.shape[-1] > 1:
        top = image[..., 0].copy()
        for c in range(1, image.shape[-1]):  # plane by plane: a reduction over a short last
            np.maximum(top, image[..., c], out=top)  # axis is ten times slower
        clipped = top >= np.float32(saturation_adu)
        if clipped.any():
            lum = np.where(clipped, np.float32(saturation_adu), lum)
    return lum


def catalogue_of_image(image: np.ndarray, settings: DetectionSettings) -> Catalogue:
    """Stars and sky facts of a calibrated (H, W, C) image (ADU)."""
    lum = detection_luminance(image, settings.saturation_adu)
    sky, noise = sky_and_noise(image)
    frac = float(np.isfinite(lum).mean()) if lum.size else 0.0
    empty = frac == 0 or max(noise) == 0 or not np.isfinite(max(noise))
    stars = detect_stars(lum, settings) if not empty else detect_stars(lum[:0, :0], settings)
    return Catalogue(stars=stars, sky=sky, noise=noise, finite_fraction=frac)


def measure_quality(image: np.ndarray, settings: DetectionSettings) -> FrameQuality:
    """Quality facts of a calibrated image (used for stacked products; frames read theirs
    from their catalogue)."""
    return catalogue_of_image(image, settings).quality()


def _catalogue_job(args) -> tuple[Catalogue | str, bool, str | None]:
    """(catalogue or the reason the frame is unusable, read from the cache?, cache problem)."""
    frame, calibration, settings, path, key = args
    problem = None
    if path is not None:
        cat, why = load_catalogue(Path(path), key)
        if cat is not None:
            return cat, True, None
        problem = f"cached star catalogue {why}; detected again" if why else None
    try:
        image = calibrate_frame(frame, load_pixels(frame), calibration)
    except FrameError as exc:
        return str(exc), False, problem
    cat = catalogue_of_image(image, settings)
    if path is not None:
        try:
            save_catalogue(Path(path), key, cat)
        except SupaDupError as exc:  # a full or read-only cache costs speed, not the run
            problem = f"star catalogue not cached: {exc}"
    return cat, False, problem


@dataclasses.dataclass
class CatalogueStats:
    made: int = 0
    cached: int = 0
    folder: str | None = None


def _keys(frames: list[Frame], calibration: CalibrationConfig, settings, folder: Path | None):
    if folder is None:
        return [None] * len(frames), [None] * len(frames)
    digests = file_digests([f.path for f in frames], folder)
    params = {"calibration": dataclasses.asdict(calibration), **dataclasses.asdict(settings)}
    keys = [catalogue_key(digests[str(f.path)], params) for f in frames]
    return keys, [str(catalogue_path(folder, k)) for k in keys]


def _usable_folder(cfg: Config) -> Path | None:
    folder = cache_folder(cfg.execution.cache_dir)
    try:
        (folder / "catalogues").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("star catalogues are not cached: %s: %s", folder, exc.strerror or exc)
        return None
    return folder


def make_catalogues(
    frames: list[Frame], cfg: Config, progress=None
) -> tuple[list[Frame], list[Skip], CatalogueStats]:
    """Give every frame its catalogue (``frame.catalogue``) and quality (``frame.quality``).

    Returns (frames with a catalogue, frames skipped with the reason their pixels could not
    be read or calibrated, counts). Catalogues are read from the cache when present.
    """
    settings = detection_settings(cfg)
    folder = _usable_folder(cfg)
    keys, paths = _keys(frames, cfg.calibration, settings, folder)
    jobs = [(f, cfg.calibration, settings, p, k) for f, p, k in zip(frames, paths, keys)]
    results: list = [None] * len(jobs)
    for done, (i, res) in enumerate(executor.run_jobs(_catalogue_job, jobs, cfg.execution), 1):
        results[i] = res
        if progress:
            progress(done, len(jobs), frames[i].name)
    stats = CatalogueStats(folder=str(folder) if folder else None)
    kept, skips = [], []
    for frame, res in zip(frames, results, strict=True):
        if isinstance(res, executor.JobFailed):
            skips.append(Skip(frame.path, f"star detection failed: {res.reason}"))
            continue
        cat, cached, problem = res
        if problem:
            log.warning("%s: %s", frame.path, problem)
        if isinstance(cat, str):
            skips.append(Skip(frame.path, cat))
            continue
        stats.cached += int(cached)
        stats.made += int(not cached)
        frame.catalogue, frame.quality = cat, cat.quality()
        kept.append(frame)
    return kept, skips, stats
