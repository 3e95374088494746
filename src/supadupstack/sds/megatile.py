"""Batch → mega-tile (DESIGN §4.2): frames resampled directly onto the canvas and co-added.

One call handles one batch and is independent of the others (run in parallel). The mega-tile
is stored in the work directory as a FITS patch (data (C, h, w) + COVERAGE extension, its
canvas offset in Y0/X0 and a WCS valid for the patch), so it can be inspected and reused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from supadupstack.canvas.canvas import Canvas
from supadupstack.canvas.resample import Patch, resample_to_canvas
from supadupstack.config import Config
from supadupstack.errors import FrameError
from supadupstack.frames.calibrate import calibrate_frame
from supadupstack.frames.fits_io import load_pixels
from supadupstack.frames.model import Frame
from supadupstack.frames.quality import FrameQuality, gate_reasons, measure_quality
from supadupstack.outputs.atomic import write_atomic
from supadupstack.stacking.engine import stack_patches
from supadupstack.stacking.normalize import fit_linear_info
from supadupstack.stacking.photometry import common_area, photometric_fit, reference_stars


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
    rejected_pixel_fraction: float = 0.0
    seconds: float = 0.0
    reused: bool = False


def _reference(qualities: list[FrameQuality]) -> int:
    """Best frame: smallest FWHM·noise score, ties broken towards the middle of the batch."""
    fwhm = np.array([q.fwhm_px if np.isfinite(q.fwhm_px) else np.inf for q in qualities])
    noise = np.array([float(np.mean(q.noise)) for q in qualities])
    med_f = np.median(fwhm[np.isfinite(fwhm)]) if np.isfinite(fwhm).any() else 1.0
    score = fwhm / med_f + noise / max(float(np.median(noise)), 1e-9)
    mid = (len(qualities) - 1) / 2
    order = sorted(range(len(qualities)), key=lambda i: (round(score[i], 3), abs(i - mid)))
    return order[0]


def load_and_gate(frames: list[Frame], cfg: Config):
    """Calibrate and measure each frame; returns (images, qualities, kept frames, rejected)."""
    images, qualities, kept, rejected = [], [], [], {}
    for f in frames:
        try:
            img = calibrate_frame(f, load_pixels(f), cfg.calibration)
        except FrameError as exc:
            rejected[str(f.path)] = str(exc)
            continue
        images.append(img)
        qualities.append(measure_quality(img, cfg.quality.detect_sigma))
        kept.append(f)
    reasons = gate_reasons(qualities, cfg.quality)
    keep = [i for i, r in enumerate(reasons) if r is None]
    for i, r in enumerate(reasons):
        if r is not None:
            rejected[str(kept[i].path)] = r
    return (
        [images[i] for i in keep],
        [qualities[i] for i in keep],
        [kept[i] for i in keep],
        rejected,
    )


def save_patch(patch: Patch, canvas: Canvas, path: Path, cards: dict) -> Path:
    """Write a canvas patch as FITS: (C, h, w) float32 + COVERAGE; Y0/X0 = canvas offset."""
    wcs = canvas.wcs.deepcopy()
    wcs.wcs.crpix = [wcs.wcs.crpix[0] - patch.x0, wcs.wcs.crpix[1] - patch.y0]
    hdr = wcs.to_header()
    hdr["Y0"] = (patch.y0, "canvas row of data[0, 0] (0-based)")
    hdr["X0"] = (patch.x0, "canvas column of data[0, 0] (0-based)")
    for key, value in cards.items():
        hdr[key] = value
    primary = fits.PrimaryHDU(np.moveaxis(patch.data, -1, 0).astype(np.float32), header=hdr)
    cov = fits.ImageHDU(patch.weight.astype(np.float32), name="COVERAGE")
    return write_atomic(path, lambda p: fits.HDUList([primary, cov]).writeto(p))


def load_patch(path: Path, memmap: bool = True) -> Patch:
    """Read a patch written by ``save_patch`` (data as an (h, w, C) view)."""
    with fits.open(path, memmap=memmap) as hdul:
        data = hdul[0].data
        cov = hdul["COVERAGE"].data
        y0, x0 = int(hdul[0].header["Y0"]), int(hdul[0].header["X0"])
        if not memmap:
            data, cov = np.array(data), np.array(cov)
    return Patch(y0=y0, x0=x0, data=np.moveaxis(data, 0, -1), weight=cov)


def normalise_to_reference(
    patches: list[Patch], ref: int, cfg: Config
) -> tuple[np.ndarray | None, np.ndarray | None, list[float | None]]:
    """Per-frame (scale, offset) to the batch reference, and relative transparencies.

    With ``stacking.normalization = "linear_fit"`` the scale comes from the stars each frame
    shares with the reference (photometric, grey) and the offset matches the sky; frames with
    too few common stars get the engine's pixel fit. Other normalisations are left to the
    engine (returns None coefficients). The transparency is 1/scale (None when not measured).
    """
    n, nch = len(patches), patches[ref].data.shape[-1]
    a, b = np.ones((n, nch)), np.zeros((n, nch))
    transparency: list[float | None] = [None] * n
    transparency[ref] = 1.0
    stars = reference_stars(patches[ref])
    for i, p in enumerate(patches):
        if i == ref:
            continue
        fit = photometric_fit(p, patches[ref], stars=stars)
        if fit is not None:
            a[i], b[i] = fit.scale, fit.offset
            transparency[i] = 1.0 / fit.scale if fit.scale > 0 else None
            continue
        area = common_area(p, patches[ref])
        if area is not None:
            ai, bi, _ = fit_linear_info(*area)
            a[i], b[i] = ai, bi
    if cfg.stacking.normalization != "linear_fit":
        return None, None, transparency
    return a, b, transparency


def build_megatile(
    index: int, frames: list[Frame], canvas: Canvas, cfg: Config, tile_dir: Path, key: str = ""
) -> MegaTile:
    """Load, calibrate, gate, resample onto the canvas, normalise, reject and co-add a batch."""
    t0 = time.monotonic()
    path = Path(tile_dir) / f"megatile_{index:03d}.fits"
    images, qualities, kept, rejected = load_and_gate(frames, cfg)
    patches, used = [], []
    for img, q, f in zip(images, qualities, kept, strict=True):
        kernel, step = cfg.resample.kernel, cfg.resample.grid_step_px
        patch = resample_to_canvas(img, f.wcs, canvas, kernel, step)
        if patch is None:
            rejected[str(f.path)] = "does not overlap the canvas"
            continue
        patches.append(patch)
        used.append((f, q))
    del images
    if not patches:
        return MegaTile(index, "", (0, 0, 0, 0), [], rejected, seconds=time.monotonic() - t0)
    ref = _reference([q for _, q in used])
    a, b, transparency = normalise_to_reference(patches, ref, cfg)
    keep = [i for i, t in enumerate(transparency) if t is None or t >= cfg.quality.min_transparency]
    for i, t in enumerate(transparency):
        if i not in keep:
            rejected[str(used[i][0].path)] = (
                f"transparency {t:.2f} of the batch reference < {cfg.quality.min_transparency:g}"
                " (clouds?)"
            )
    ref = keep.index(ref)
    patches, used = [patches[i] for i in keep], [used[i] for i in keep]
    coefficients = None if a is None else (a[keep], b[keep])
    noises = [np.asarray(q.noise, dtype=np.float64) for _, q in used]
    stacked, facts = stack_patches(
        patches, cfg.stacking, reference=ref, noise=noises, coefficients=coefficients
    )
    del patches
    scale = np.asarray(facts["scale"], dtype=np.float64)
    noise = [float(v) for v in np.nanmedian(np.array(noises) * np.abs(scale), axis=0)]
    cards = {"TILEIDX": index, "NFRAMES": len(used), "PLANKEY": key[:68]}
    save_patch(stacked, canvas, path, cards)
    return MegaTile(
        index=index,
        path=str(path),
        box=stacked.box,
        frames_used=[str(f.path) for f, _ in used],
        rejected=rejected,
        reference_frame=str(used[ref][0].path),
        coverage_sum=float(stacked.weight.sum()),
        noise=noise,
        transparency=[transparency[i] for i in keep],
        rejected_pixel_fraction=float(facts["rejected_fraction"]),
        seconds=time.monotonic() - t0,
    )
