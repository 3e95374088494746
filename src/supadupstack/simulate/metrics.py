"""Truth metrics: how close a stacked output is to the simulator's truth.

Inputs are an output image (C, H, W) or (H, W) float32 in ADU with a celestial WCS (no data:
NaN, or 0 in the file's ALPHA extension) and the truth folder written by ``simulate_dataset``.
The truth signal (ADU per pixel per sub-exposure, no sky) is reprojected onto the output grid
with ``reproject`` and scaled by the pixel-area ratio. The functions below work on plain
arrays + WCS so tests and benchmarks can call them directly; ``evaluate`` runs them all on a
FITS file.

Conventions: fluxes in ADU, positions in output pixels (0-based), noise as robust σ
(1.4826·MAD) per pixel; "σ" in the seam, trail and flatness metrics is that per-pixel noise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import sep
from astropy.io import fits
from astropy.wcs import WCS
from reproject import reproject_interp

from supadupstack.errors import SupaDupError
from supadupstack.simulate import camera, presets
from supadupstack.simulate.defects import (  # noqa: F401  (re-exported for callers)
    Boundary,
    coverage_seam_metric,
    seam_metric,
    trail_residual,
)
from supadupstack.simulate.flatness import (  # noqa: F401  (re-exported for callers)
    background_flatness,
    object_flux_ratio,
)
from supadupstack.simulate.nebula import Nebula
from supadupstack.simulate.sky import Galaxy, StarCatalogue, render
from supadupstack.simulate.stats import (  # noqa: F401  (re-exported for callers)
    _block_mean,
    _sep_ready,
    background_noise,
    robust_sigma,
)


@dataclass
class Truth:
    """The truth of a simulated dataset, loaded from ``<out>/truth``."""

    dir: Path
    manifest: dict
    signal: np.ndarray  # (3, H, W) float32
    wcs: WCS
    stars: StarCatalogue
    galaxy: Galaxy | None
    nebula: Nebula | None = None


def load_truth(path: str | Path) -> Truth:
    """Load a truth folder (or its manifest.json)."""
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json" if (p / "manifest.json").exists() else p / "truth/manifest.json"
    if not p.is_file():
        raise SupaDupError(f"no simulator manifest at {path}")
    manifest = json.loads(p.read_text())
    tdir = p.parent
    with fits.open(tdir / manifest["signal"]) as hdul:
        signal = np.asarray(hdul[0].data, dtype=np.float32)
        wcs = WCS(hdul[0].header).celestial
    stars = presets.load_stars(tdir, manifest)
    galaxy, nebula = presets.load_galaxy(manifest), presets.load_nebula(manifest)
    return Truth(tdir, manifest, signal, wcs, stars, galaxy, nebula)


def load_output(path: str | Path) -> tuple[np.ndarray, WCS, np.ndarray | None]:
    """(image (C, H, W) float32, celestial WCS, coverage (H, W) or None) of an output FITS.

    No data is NaN in the image returned: where the file's ``ALPHA`` extension is 0 when it
    has one (supadupstack writes no-data pixels as 0.0 by default), else where it is NaN.
    """
    with fits.open(path) as hdul:
        data = np.array(hdul[0].data, dtype=np.float32)
        wcs = WCS(hdul[0].header).celestial
        cov = None
        if "COVERAGE" in hdul:
            cov = np.asarray(hdul["COVERAGE"].data, dtype=np.float32)
        alpha = np.asarray(hdul["ALPHA"].data) if "ALPHA" in hdul else None
    if data.ndim == 2:
        data = data[None]
    if alpha is not None and alpha.shape == data.shape[1:]:
        data[:, alpha == 0] = np.nan
    if data.ndim != 3 or not wcs.has_celestial:
        raise SupaDupError(f"{path}: expected a (3,H,W) or (H,W) image with a celestial WCS")
    return data, wcs, cov


def pixel_area_arcsec2(wcs: WCS) -> float:
    return float(abs(np.linalg.det(wcs.pixel_scale_matrix))) * 3600.0**2


def truth_on_grid(truth: Truth, wcs: WCS, shape: tuple[int, int], channels: int = 3) -> np.ndarray:
    """Truth signal reprojected onto an output grid (C, H, W), in ADU per output pixel.

    ``channels`` = 1 gives the mean of R, G, B (for mono outputs).
    """
    scale = pixel_area_arcsec2(wcs) / pixel_area_arcsec2(truth.wcs)
    planes = []
    for c in range(3):
        arr, _ = reproject_interp((truth.signal[c], truth.wcs), wcs, shape_out=shape)
        planes.append(np.nan_to_num(arr, nan=0.0).astype(np.float32) * np.float32(scale))
    out = np.stack(planes)
    return out.mean(axis=0, keepdims=True) if channels == 1 else out


def object_on_grid(
    truth: Truth, obj: Galaxy | Nebula, wcs: WCS, shape: tuple[int, int], channels: int = 3
) -> np.ndarray:
    """One extended object alone (the galaxy or the nebula), rendered from the manifest's model
    on an output grid (C, H, W), in ADU per output pixel like ``truth_on_grid``."""
    empty = StarCatalogue(np.zeros(0), np.zeros(0), np.zeros((0, 3)))
    if isinstance(obj, Nebula):
        out = obj.planes(wcs, shape)
    else:
        out = render(wcs, shape, empty, obj, float(truth.manifest.get("truth_fwhm_px", 3.7)))
    return out.mean(axis=0, keepdims=True) if channels == 1 else out


def linear_fit_vs_truth(
    image: np.ndarray, truth: np.ndarray, block: int = 32, clip: float = 5.0
) -> tuple[float, float]:
    """(slope, offset) of image ≈ slope·truth + offset, one channel, on block means.

    Block-averaging (``block``² px, blocks with any NaN dropped) makes the fit nearly
    insensitive to PSF width: light blurred across block borders biases the slope by about
    (blur width / block), < 1 % for a debayered + resampled PSF at 32 px. Outliers (trails, hot
    pixels) are clipped at ``clip`` robust σ over a few iterations.
    """
    a, b = _block_mean(image, block).ravel(), _block_mean(truth, block).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 3:
        raise SupaDupError("too few valid pixels to fit the output against the truth")
    keep = np.ones(a.size, dtype=bool)
    slope, offset = 1.0, 0.0
    for _ in range(5):
        slope, offset = np.polyfit(b[keep], a[keep], 1)
        res = a - (slope * b + offset)
        s = robust_sigma(res[keep])
        new = np.abs(res) <= clip * max(s, 1e-12)
        if np.array_equal(new, keep) or new.sum() < 3:
            break
        keep = new
    return float(slope), float(offset)


def _positions(wcs: WCS, stars: StarCatalogue, shape, margin: float, image=None):
    """Star pixel positions and which lie ``margin`` px inside the frame — and, when the
    ``image`` is given, inside its data (no NaN within ``margin``: mosaics have empty
    notches, and an aperture or annulus there measures nothing)."""
    x, y = wcs.all_world2pix(stars.ra, stars.dec, 0)
    inside = (x > margin) & (x < shape[1] - 1 - margin) & (y > margin) & (y < shape[0] - 1 - margin)
    if image is not None and inside.any():
        k = 2 * int(math.ceil(margin)) + 1
        valid = cv2.erode(np.isfinite(image).astype(np.uint8), np.ones((k, k), np.uint8))
        ix, iy = np.round(x[inside]).astype(int), np.round(y[inside]).astype(int)
        inside[np.nonzero(inside)[0]] = valid[iy, ix] > 0
    return x, y, inside


def star_flux_ratios(
    image: np.ndarray,
    truth: np.ndarray,
    wcs: WCS,
    stars: StarCatalogue,
    noise: float,
    fwhm_px: float = 3.7,
    min_snr: float = 50.0,
) -> tuple[float, float, int]:
    """(median, MAD, count) of output/truth aperture fluxes at the true star positions.

    Aperture radius 2·FWHM with a local annulus (3–5 FWHM) on both images, so aperture
    losses and blends cancel; only stars with SNR > ``min_snr`` in the output and no NaN in
    their aperture count. ``noise`` is the output's per-pixel background σ.
    """
    r, a_in, a_out = 2.0 * fwhm_px, 3.0 * fwhm_px, 5.0 * fwhm_px
    x, y, inside = _positions(wcs, stars, image.shape, a_out + 1, image)
    x, y = x[inside], y[inside]
    if x.size == 0:
        return float("nan"), float("nan"), 0
    img, mask = _sep_ready(image)
    f_out, _, flag = sep.sum_circle(img, x, y, r, mask=mask, bkgann=(a_in, a_out))
    tru, _ = _sep_ready(truth)
    f_tru, _, _ = sep.sum_circle(tru, x, y, r, bkgann=(a_in, a_out))
    snr = f_out / max(noise * math.sqrt(math.pi) * r, 1e-12)
    nan_in_ap = sep.sum_circle(mask.astype(np.float64), x, y, r)[0] > 0
    ok = (snr > min_snr) & (f_tru > 0) & ~nan_in_ap
    if not ok.any():
        return float("nan"), float("nan"), 0
    ratio = f_out[ok] / f_tru[ok]
    med = float(np.median(ratio))
    return med, float(np.median(np.abs(ratio - med))), int(ok.sum())


def _isolated(stars: StarCatalogue, x, y, sel, radius: float, frac: float = 0.01) -> np.ndarray:
    """Stars of ``sel`` with no neighbour brighter than ``frac`` × their flux within radius."""
    g = stars.flux[:, 1]
    keep = np.zeros(sel.size, dtype=bool)
    for k, i in enumerate(sel):
        d2 = (x - x[i]) ** 2 + (y - y[i]) ** 2
        near = (d2 < radius**2) & (g > frac * g[i])
        keep[k] = near.sum() == 1
    return keep


def astrometric_offsets(
    image: np.ndarray,
    wcs: WCS,
    stars: StarCatalogue,
    noise: float,
    fwhm_px: float = 3.7,
    min_snr: float = 50.0,
    galaxy: Galaxy | None = None,
) -> tuple[float, np.ndarray]:
    """(rms px, offsets (N, 2) dx, dy) of windowed centroids vs the true positions.

    Uses isolated stars (no neighbour > 1 % of their flux within 6 FWHM) with SNR > min_snr,
    outside the galaxy (3 disk radii); the sky is removed with a local sep background.
    """
    x, y, inside = _positions(wcs, stars, image.shape, 6 * fwhm_px, image)
    img, mask = _sep_ready(image)
    bkg = sep.Background(img, mask=mask, bw=64, bh=64)
    sub = img - bkg.back()
    sel = np.nonzero(inside)[0]
    if galaxy is not None:
        gx, gy = wcs.all_world2pix([galaxy.ra], [galaxy.dec], 0)
        pix = math.sqrt(pixel_area_arcsec2(wcs))
        far = np.hypot(x[sel] - gx[0], y[sel] - gy[0]) > 3 * galaxy.disk_re_arcsec / pix
        sel = sel[far]
    if sel.size == 0:
        return float("nan"), np.zeros((0, 2))
    r = 2.0 * fwhm_px
    flux, _, _ = sep.sum_circle(sub, x[sel], y[sel], r, mask=mask)
    nan_in_ap = sep.sum_circle(mask.astype(np.float64), x[sel], y[sel], 3 * fwhm_px)[0] > 0
    snr = flux / max(noise * math.sqrt(math.pi) * r, 1e-12)
    sel = sel[(snr > min_snr) & ~nan_in_ap]
    sel = sel[_isolated(stars, x, y, sel, 6 * fwhm_px)]
    if sel.size == 0:
        return float("nan"), np.zeros((0, 2))
    cx, cy, _ = sep.winpos(sub, x[sel], y[sel], fwhm_px / 2.3548, mask=mask)
    off = np.stack([cx - x[sel], cy - y[sel]], axis=1)
    return float(np.sqrt(np.mean(np.sum(off**2, axis=1)))), off


def extended_flux_ratio(image: np.ndarray, truth: np.ndarray, wcs: WCS, galaxy: Galaxy) -> float:
    """Output/truth flux of the galaxy in an ellipse of 2.5 disk radii (annulus 3–4 radii
    subtracted from both), one channel."""
    gx, gy = wcs.all_world2pix([galaxy.ra], [galaxy.dec], 0)
    pix = math.sqrt(pixel_area_arcsec2(wcs))
    a = 2.5 * galaxy.disk_re_arcsec / pix
    # position angle on this grid: direction of north-east from the WCS
    e = wcs.all_world2pix([galaxy.ra + 0.01 / math.cos(math.radians(galaxy.dec))], [galaxy.dec], 0)
    n = wcs.all_world2pix([galaxy.ra], [galaxy.dec + 0.01], 0)
    east = np.array([e[0][0] - gx[0], e[1][0] - gy[0]])
    north = np.array([n[0][0] - gx[0], n[1][0] - gy[0]])
    pa = math.radians(galaxy.pa_deg)
    major = math.sin(pa) * east + math.cos(pa) * north
    theta = math.atan2(major[1], major[0])
    theta = (theta + math.pi / 2) % math.pi - math.pi / 2  # sep wants [-π/2, π/2)
    img, mask = _sep_ready(image)
    tru, _ = _sep_ready(truth)
    args = (gx, gy, np.array([a]), np.array([a * galaxy.axis_ratio]), np.array([theta]))
    f_out, _, _ = sep.sum_ellipse(img, *args, r=1.0, mask=mask, bkgann=(1.2, 1.6))
    f_tru, _, _ = sep.sum_ellipse(tru, *args, r=1.0, bkgann=(1.2, 1.6))
    return float(f_out[0] / f_tru[0]) if f_tru[0] > 0 else float("nan")


def noise_vs_ideal(measured_sigma: float, sigma_single: float, n_frames: float) -> float:
    """Measured background σ of the stack over the ideal σ_single/√N (1.0 = ideal; < 1 happens
    when debayering/resampling smooth the noise, > 1 means noise was added or weights lost)."""
    return float(measured_sigma / (sigma_single / math.sqrt(max(n_frames, 1e-9))))


def _trails(truth: Truth) -> list[tuple]:
    out = []
    for f in truth.manifest["frames"]:
        t = f["spec"].get("trail")
        if t:
            sp = f["spec"]
            fw = camera.frame_wcs(sp["ra"], sp["dec"], sp["up_deg"], sp["width"], sp["height"])
            ra, dec = fw.all_pix2world([t["x0"], t["x1"]], [t["y0"], t["y1"]], 0)
            out.append((float(ra[0]), float(dec[0]), float(ra[1]), float(dec[1])))
    return out


def evaluate(output_fits: str | Path, truth_dir: str | Path, boundaries=None) -> dict:
    """All truth metrics of an output FITS against a simulated truth (dict of plain numbers).

    Per channel: linear fit slope/offset, background σ and its ratio to the ideal
    σ_single/√N (σ_single = median raw-pixel sky noise of the unflagged frames, N = median
    coverage if the file has a COVERAGE extension, else the number of unflagged frames).
    On the G channel (or mono): star flux ratios (SNR > 50), astrometric rms, galaxy flux
    ratio (``extended_flux_ratio``: local annulus; ``galaxy_total_flux_ratio``: whole halo
    over the background plane, NaN without a galaxy), ``nebula_flux_ratio`` (when the truth
    has a nebula), background ``flatness``, trail residuals, seam steps (``boundaries`` or
    coverage edges).
    """
    truth = load_truth(truth_dir)
    image, wcs, cov = load_output(output_fits)
    nc = image.shape[0]
    tgrid = truth_on_grid(truth, wcs, image.shape[1:], channels=nc)
    good = [f for f in truth.manifest["frames"] if not f["flags"]]
    n_frames = float(np.median(cov[cov > 0])) if cov is not None and (cov > 0).any() else len(good)
    sig1 = np.median([f["noise_adu"] for f in good], axis=0) if good else np.full(3, np.nan)
    sig1 = [float(np.mean(sig1))] if nc == 1 else [float(s) for s in sig1]
    res: dict = {
        "channels": nc,
        "n_frames": n_frames,
        "slope": [],
        "offset": [],
        "noise_adu": [],
        "ideal_noise_adu": [],
        "noise_ratio_vs_ideal": [],
    }
    resid = []
    for c in range(nc):
        slope, offset = linear_fit_vs_truth(image[c], tgrid[c])
        r = image[c] - (slope * tgrid[c] + offset)
        resid.append(r)
        sigma = background_noise(r, tgrid[c])
        res["slope"].append(slope)
        res["offset"].append(offset)
        res["noise_adu"].append(sigma)
        res["ideal_noise_adu"].append(sig1[c] / math.sqrt(max(n_frames, 1e-9)))
        res["noise_ratio_vs_ideal"].append(noise_vs_ideal(sigma, sig1[c], n_frames))
    g = 1 if nc == 3 else 0
    noise = max(res["noise_adu"][g], 1e-6)
    fwhm = float(truth.manifest.get("truth_fwhm_px", 3.7))
    # stars are compared in apertures of 2× the broadest seeing of the set (the truth image
    # is rendered at truth_fwhm): a smaller one would read a stack of worse nights faint
    seeing = [f["fwhm_px"] for f in truth.manifest["frames"] if "blurred" not in f["flags"]]
    phot_fwhm = max([fwhm, *seeing])
    med, mad, n = star_flux_ratios(image[g], tgrid[g], wcs, truth.stars, noise, phot_fwhm)
    res.update(star_flux_ratio_median=med, star_flux_ratio_mad=mad, n_stars_flux=n)
    rms, off = astrometric_offsets(image[g], wcs, truth.stars, noise, fwhm, galaxy=truth.galaxy)
    res.update(astrometric_rms_px=rms, n_stars_astrometry=int(len(off)))
    res.update(_extended(truth, image, tgrid, wcs, g))
    res["flatness"] = background_flatness(resid[g], tgrid[g], noise)
    res["trail_residual_sigma"] = [trail_residual(resid[g], wcs, t) for t in _trails(truth)]
    if boundaries:
        res["seam_sigma"] = seam_metric(resid[g], boundaries)
    elif cov is not None:
        res["seam_sigma"] = coverage_seam_metric(resid[g], cov)
    return res


def _extended(truth: Truth, image: np.ndarray, tgrid: np.ndarray, wcs: WCS, g: int) -> dict:
    """Galaxy and nebula flux ratios of channel ``g`` (see ``evaluate``)."""
    out: dict = {"extended_flux_ratio": float("nan"), "galaxy_total_flux_ratio": float("nan")}
    nc, shape = image.shape[0], image.shape[1:]
    if truth.galaxy is not None:
        out["extended_flux_ratio"] = extended_flux_ratio(image[g], tgrid[g], wcs, truth.galaxy)
        gal = object_on_grid(truth, truth.galaxy, wcs, shape, nc)[g]
        out["galaxy_total_flux_ratio"] = object_flux_ratio(image[g], tgrid[g], gal)
    if truth.nebula is not None:
        neb = object_on_grid(truth, truth.nebula, wcs, shape, nc)[g]
        out["nebula_flux_ratio"] = object_flux_ratio(image[g], tgrid[g], neb)
    return out
