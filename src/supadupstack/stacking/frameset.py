"""Stack a set of frames onto one grid: the step SDS batches and classic groups share.

load + calibrate + measure + resample onto the grid (frame by frame) → quality gates → choose
the reference frame → photometric normalisation (grey scale from the catalogue fluxes of the
stars shared with the reference, sky offset) → transparency gate → rejection and combination
(``stack_patches``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from supadupstack.canvas.canvas import Canvas
from supadupstack.canvas.resample import Patch, resample_to_canvas
from supadupstack.catalogue.stage import catalogue_of_image, detection_settings
from supadupstack.config import Config
from supadupstack.errors import FrameError
from supadupstack.frames.calibrate import calibrate_frame
from supadupstack.frames.fits_io import load_pixels
from supadupstack.frames.model import Frame
from supadupstack.frames.quality import FrameQuality, gate_reasons
from supadupstack.stacking.engine import stack_patches
from supadupstack.stacking.gain_solver import expected_gains
from supadupstack.stacking.gradient import STRIDE, fit_gradient, remove_model
from supadupstack.stacking.normalize import fit_linear_info
from supadupstack.stacking.photometry import (
    DEBAYER_BLUR_VAR,
    common_area,
    overlap,
    photometric_fit,
)
from supadupstack.stacking.star_photometry import stars_on_grid


@dataclass
class FrameStack:
    """The stacked patch of a frame set and what went into it (patch None: nothing usable)."""

    patch: Patch | None
    used: list[tuple[Frame, FrameQuality]] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    reference: int = 0
    transparency: list[float | None] = field(default_factory=list)
    normalisation: list[str] = field(default_factory=list)  # how each used frame was scaled
    noise: list[float] = field(default_factory=list)
    rejected_pixel_fraction: float = 0.0
    gradients: list[dict | None] = field(default_factory=list)  # per used frame, vs reference
    gradient: dict | None = None  # the stack's own sky gradient

    @property
    def exposure_s(self) -> float | None:
        """Median sub-exposure [s] of the frames used (None: none known)."""
        known = [f.exposure_s for f, _ in self.used if f.exposure_s]
        return float(np.median(known)) if known else None

    @property
    def reference_frame(self) -> str | None:
        return str(self.used[self.reference][0].path) if self.used else None


def resample_and_gate(frames: list[Frame], grid: Canvas, cfg: Config, unit: str = "batch"):
    """Per frame, streamed: load, calibrate, resample onto ``grid``, then drop the calibrated
    image (only the patch is kept, so a batch never holds all its full frames); then the
    quality gates over the set, from each frame's catalogue (made here only for a frame that
    came without one). Returns (patches, [(frame, quality)], rejected, star catalogues on the
    grid)."""
    patches, used, grid_stars, rejected = [], [], [], {}
    for f in frames:
        try:
            img = calibrate_frame(f, load_pixels(f), cfg.calibration)
        except FrameError as exc:
            rejected[str(f.path)] = str(exc)
            continue
        cat = f.catalogue
        if cat is None:
            cat = catalogue_of_image(img, detection_settings(cfg))
        q = f.quality if f.quality is not None else cat.quality()
        patch = resample_to_canvas(img, f.wcs, grid, cfg.resample.kernel, cfg.resample.grid_step_px)
        del img
        patches.append(patch)
        used.append((f, q))
        grid_stars.append(stars_on_grid(cat.stars, f.wcs, grid.wcs))
    reasons = gate_reasons([q for _, q in used], cfg.quality) if used else []
    kept_patches, kept, kept_stars = [], [], []
    for patch, (f, q), stars, why in zip(patches, used, grid_stars, reasons, strict=True):
        if why is not None:
            rejected[str(f.path)] = why
        elif patch is None:
            rejected[str(f.path)] = f"does not overlap its {unit}'s grid"
        else:
            kept_patches.append(patch)
            kept.append((f, q))
            kept_stars.append(stars)
    return kept_patches, kept, rejected, kept_stars


def choose_reference(qualities: list[FrameQuality]) -> int:
    """Best frame: smallest FWHM/median + noise/median, ties broken towards the middle."""
    fwhm = np.array([q.fwhm_px if np.isfinite(q.fwhm_px) else np.inf for q in qualities])
    noise = np.array([float(np.mean(q.noise)) for q in qualities])
    med_f = float(np.median(fwhm[np.isfinite(fwhm)])) if np.isfinite(fwhm).any() else 1.0
    score = fwhm / med_f + noise / max(float(np.median(noise)), 1e-9)
    mid = (len(qualities) - 1) / 2
    return sorted(range(len(qualities)), key=lambda i: (round(score[i], 3), abs(i - mid)))[0]


def frame_coefficients(
    patches: list[Patch],
    ref: int,
    stars: list[np.ndarray],
    exposures: list[float | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[float | None], list[str]]:
    """Per-frame (scale, offset) (N, C) onto the reference, transparencies (1/scale) and how
    each frame was normalised.

    Scale from the stars each frame shares with the reference (``stars``: each frame's
    catalogue on the grid; cross-convolved apertures, seeing-invariant, per channel where the
    stars show a colour change) + sky offset; a pixel regression when stars are too few
    (transparency then unknown: None); identity when the frames share too little. Every
    fallback is named in the returned notes. ``exposures`` [s]: a frame's transparency is its
    star flux per second against the reference's (a 10 s frame beside 20 s ones is not a
    cloud).
    """
    n, nch = len(patches), patches[ref].data.shape[-1]
    a, b = np.ones((n, nch)), np.zeros((n, nch))
    per_s = expected_gains(exposures or [None] * n, ref)
    transparency: list[float | None] = [None] * n
    transparency[ref] = 1.0
    how = ["reference"] * n
    for i, p in enumerate(patches):
        if i == ref:
            continue
        fit = photometric_fit(p, patches[ref], stars[i], stars[ref], DEBAYER_BLUR_VAR)
        if fit is not None:
            a[i], b[i] = fit.scale, fit.offset
            transparency[i] = per_s[i] / fit.grey if fit.grey > 0 else None
            how[i] = fit.how
            continue
        area = common_area(p, patches[ref])
        if area is None:
            how[i] = "not normalised: too little overlap with the reference"
            continue
        a[i], b[i], ok = fit_linear_info(*area)
        how[i] = (
            "too few common stars: pixel regression"
            if ok.all()
            else "too few common stars, too little signal: sky offset only"
        )
    return a, b, transparency, how


def remove_relative_gradients(
    patches: list[Patch], ref: int, a: np.ndarray, b: np.ndarray, order: int
) -> list[dict | None]:
    """Fit each frame's gradient against the reference (after its normalisation a·x + b) and
    remove it from the frame's patch where significant, so rejection compares like with like
    and every frame carries the reference's sky; the object is in both and cancels. Returns
    each frame's fit summary (None: the reference, or too little overlap)."""
    out: list[dict | None] = []
    step = STRIDE  # the fit reads every STRIDE-th pixel: only those are made
    for i, p in enumerate(patches):
        ov = overlap(p, patches[ref]) if i != ref else None
        if ov is None:
            out.append(None)
            continue
        (sy, sx), (ry, rx) = ov
        xi = p.data[sy, sx][::step, ::step]
        ri = patches[ref].data[ry, rx][::step, ::step]
        valid = (p.weight[sy, sx][::step, ::step] > 0) & (
            patches[ref].weight[ry, rx][::step, ::step] > 0
        )
        scale, offset = a[i].astype(np.float32), b[i].astype(np.float32)
        diff = np.where(valid[..., None], xi * scale + offset - ri, np.float32(np.nan))
        origin = (float(p.x0 + sx.start), float(p.y0 + sy.start))
        sky = np.nanmedian(ri[valid][::8], axis=0) if valid.any() else None
        fit = fit_gradient(diff, origin, order, relative=True, sky_level=sky, sampled=True)
        if fit is not None and fit.removable:
            remove_model(p.data, fit, (float(p.x0), float(p.y0)), scale=a[i])
        out.append(fit.summary() if fit is not None else None)
    return out


def frame_gradients(gradients: list, n_frames: int) -> list:
    """The frames' gradient fits as stored with a tile, or None each (removal off, or a tile
    of an earlier version that kept none)."""
    return gradients if len(gradients) == n_frames else [None] * n_frames


def gradient_note(gradients: list, gradient: dict | None) -> str:
    """One log phrase on what the gradient removal did for a stack ("" when it was off)."""
    if gradient is None and not any(gradients):
        return ""
    removed = sum(1 for g in gradients if g and g["removed"])
    own = "none" if gradient is None else gradient["note"]
    if gradient and gradient["removed"]:
        own = f"{gradient['percent_of_sky']:.2f} % of the sky removed"
    return f"; gradients: {removed}/{len(gradients)} frames vs reference, stack's own: {own}"


def remove_stack_gradient(patch: Patch, order: int) -> dict | None:
    """Fit the stack's own sky gradient on its object-masked background and remove it where
    measurable and significant (``gradient.fit_gradient``); returns the fit's summary."""
    fit = fit_gradient(patch.data, (float(patch.x0), float(patch.y0)), order)
    if fit is None:
        return None
    if fit.removable:
        remove_model(patch.data, fit, (float(patch.x0), float(patch.y0)), keep_mean=True)
    return fit.summary()


def stack_frames(frames: list[Frame], grid: Canvas, cfg: Config, unit: str = "batch") -> FrameStack:
    """Gate, resample onto ``grid``, normalise to the best frame, reject and combine.

    With ``stacking.normalization = "linear_fit"`` the photometric coefficients are used;
    other normalisations are left to the engine. Frames whose stars are fainter than
    ``quality.min_transparency`` of the reference are rejected ("clouds?"). ``unit`` names the
    set in rejection reasons ("batch", "tile").
    """
    patches, used, rejected, stars = resample_and_gate(frames, grid, cfg, unit)
    if not patches:
        return FrameStack(None, rejected=rejected)
    ref = choose_reference([q for _, q in used])
    exposures = [f.exposure_s for f, _ in used]
    a, b, transparency, how = frame_coefficients(patches, ref, stars, exposures)
    min_t = cfg.quality.min_transparency
    keep = [i for i, t in enumerate(transparency) if t is None or t >= min_t]
    for i in sorted(set(range(len(patches))) - set(keep)):
        rejected[str(used[i][0].path)] = (
            f"transparency {transparency[i]:.2f} of the {unit} reference < {min_t:g} (clouds?)"
        )
    ref = keep.index(ref)
    patches, used = [patches[i] for i in keep], [used[i] for i in keep]
    a, b = a[keep], b[keep]
    auto = cfg.calibration.gradient_removal == "auto"
    order = cfg.calibration.gradient_order
    gradients = remove_relative_gradients(patches, ref, a, b, order) if auto else []
    coefficients = (a, b) if cfg.stacking.normalization == "linear_fit" else None
    noises = [np.asarray(q.noise, dtype=np.float64) for _, q in used]
    stacked, facts = stack_patches(
        patches, cfg.stacking, reference=ref, noise=noises, coefficients=coefficients
    )
    gradient = remove_stack_gradient(stacked, order) if auto else None
    scale = np.abs(np.asarray(facts["scale"], dtype=np.float64))
    return FrameStack(
        patch=stacked,
        used=used,
        rejected=rejected,
        reference=ref,
        transparency=[transparency[i] for i in keep],
        normalisation=[how[i] for i in keep],
        noise=[float(v) for v in np.nanmedian(np.array(noises) * scale, axis=0)],
        rejected_pixel_fraction=float(facts["rejected_fraction"]),
        gradients=gradients,
        gradient=gradient,
    )
