"""Sharpness, noise honesty and sub-pixel accuracy of each resampling kernel (DESIGN §3.5).

    PYTHONPATH=src python benchmarks/sharpness.py

Prints, for every kernel, the figures that ``tests/test_resample_sharp.py`` bounds for the
default one, measured the same way (the definitions are the functions below):

- sub-pixel accuracy: pixel-integrated Gaussian stars (FWHM 3 px) resampled by known
  sub-pixel translations; centroid error (px) and flux / peak ratios against the same stars
  rendered at the shifted place (``subpixel_errors``);
- on the first real M 94 session (11 frames, astrometry.net sidecars, default stacking):
  the stack's FWHM over the input frames' FWHM of the same stars (``fwhm_ratio``) and the
  noise gain, the ideal stack noise over the measured one, of luminance per pixel, 2×2- and
  4×4-binned (``noise_gains``).

Needs ../shared/seestar_real for the real-frame figures. One core is enough (~1 min).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sep
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage
from scipy.special import erf

from supadupstack.canvas import KERNELS, Canvas, canvas_from_frames, exact_map, resample_to_canvas
from supadupstack.catalogue.detect import DetectionSettings
from supadupstack.catalogue.stage import catalogue_of_image
from supadupstack.catalogue.store import Catalogue
from supadupstack.config import CanvasConfig, StackingConfig
from supadupstack.frames.calibrate import debayer
from supadupstack.frames.fits_io import load_pixels, read_frame
from supadupstack.stacking import stack_patches

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "seestar_real" / "M 94_sub"
FIRST_SESSION = "20250326"  # 11 frames, one unit, ~6 min of field drift
BLOCK = 32  # canvas px: side of the sky blocks where noise is compared
STAR_FWHM = 3.0  # px, rendered stars of the sub-pixel test


# ---------- sub-pixel accuracy (synthetic) ----------


def _tan(shape: tuple[int, int], crpix: tuple[float, float]) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 30.0]
    wcs.wcs.crpix = list(crpix)
    s = 2.4 / 3600
    wcs.wcs.cd = [[-s, 0.0], [0.0, s]]
    wcs.pixel_shape = (shape[1], shape[0])
    return wcs


def shifted_pair(shape: tuple[int, int], dx: float, dy: float) -> tuple[WCS, Canvas]:
    """A frame WCS and a canvas of the same projection whose pixel (x, y) is frame pixel
    (x + dx, y + dy): resampling onto it is an exact translation."""
    cx, cy = shape[1] / 2, shape[0] / 2
    return _tan(shape, (cx, cy)), Canvas(wcs=_tan(shape, (cx - dx, cy - dy)), shape=shape)


def render_stars(xs: np.ndarray, ys: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixel-integrated Gaussian stars of unit flux (FWHM ``STAR_FWHM``) at (xs, ys), float64."""
    s = STAR_FWHM / 2.3548 * np.sqrt(2.0)
    yy, xx = np.arange(shape[0]), np.arange(shape[1])
    img = np.zeros(shape)
    for x, y in zip(xs, ys, strict=True):
        px = 0.5 * (erf((xx + 0.5 - x) / s) - erf((xx - 0.5 - x) / s))
        py = 0.5 * (erf((yy + 0.5 - y) / s) - erf((yy - 0.5 - y) / s))
        img += np.outer(py, px)
    return img


def _moments(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, r: int = 5) -> np.ndarray:
    """(x centroid, y centroid, flux, peak) in a (2r+1)² box around each (x, y)."""
    out = []
    for x, y in zip(xs, ys, strict=True):
        xi, yi = int(round(x)), int(round(y))
        cut = img[yi - r : yi + r + 1, xi - r : xi + r + 1].astype(np.float64)
        gy, gx = np.mgrid[yi - r : yi + r + 1, xi - r : xi + r + 1]
        f = cut.sum()
        out.append((np.sum(cut * gx) / f, np.sum(cut * gy) / f, f, cut.max()))
    return np.array(out)


@dataclass
class Subpixel:
    centroid_rms: float  # px
    centroid_max: float  # px
    flux_rms: float  # relative
    peak_mean: float  # resampled peak / true peak
    peak_min: float


def subpixel_errors(kernel: str, n_shifts: int = 24, seed: int = 1) -> Subpixel:
    """Stars on a 140×140 frame, resampled by ``n_shifts`` random translations in (-1, 1)²,
    measured against the same stars rendered where the translation puts them."""
    rng = np.random.default_rng(seed)
    shape = (140, 140)
    g = np.arange(20, 121, 20.0)
    xs = np.repeat(g, len(g)) + rng.uniform(0, 1, len(g) ** 2)
    ys = np.tile(g, len(g)) + rng.uniform(0, 1, len(g) ** 2)
    frame = np.repeat(render_stars(xs, ys, shape)[..., None] * 1e4, 3, axis=2)
    errs = []
    for dx, dy in rng.uniform(-1, 1, (n_shifts, 2)):
        wcs, canvas = shifted_pair(shape, dx, dy)
        patch = resample_to_canvas(frame.astype(np.float32), wcs, canvas, kernel)
        out = np.full(shape, np.nan)
        out[patch.y0 : patch.y0 + patch.shape[0], patch.x0 : patch.x0 + patch.shape[1]] = (
            patch.data[..., 1]
        )
        got = _moments(out, xs - dx, ys - dy)
        want = _moments(render_stars(xs - dx, ys - dy, shape) * 1e4, xs - dx, ys - dy)
        errs.append(np.column_stack([got[:, :2] - want[:, :2], got[:, 2:] / want[:, 2:]]))
    e = np.concatenate(errs)
    d = np.hypot(e[:, 0], e[:, 1])
    return Subpixel(
        float(np.sqrt(np.mean(e[:, :2] ** 2))),
        float(d.max()),
        float(np.sqrt(np.mean((e[:, 2] - 1) ** 2))),
        float(e[:, 3].mean()),
        float(e[:, 3].min()),
    )


# ---------- real frames: one session stacked with its sidecars ----------


@dataclass
class Session:
    images: list[np.ndarray]  # debayered (H, W, 3) float32
    wcs: list[WCS]  # from the .wcs sidecars
    catalogues: list[Catalogue]
    canvas: Canvas


def load_session(folder: Path = REAL, session: str = FIRST_SESSION) -> Session:
    """The frames of one session (name contains ``session``), debayered, with their WCS."""
    paths = sorted(p for p in folder.glob("*.fit") if session in p.name)
    images = [debayer(load_pixels(read_frame(p)), "GRBG") for p in paths]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = [WCS(fits.getheader(p.with_suffix(".wcs")), relax=True) for p in paths]
    cats = [catalogue_of_image(img, DetectionSettings()) for img in images]
    shapes = [img.shape[:2] for img in images]
    return Session(images, wcs, cats, canvas_from_frames(wcs, shapes, CanvasConfig()))


@dataclass
class Stack:
    data: np.ndarray  # (h, w, 3) float32, the stacked patch's data
    y0: int
    x0: int
    full: np.ndarray  # (h, w) bool: covered by every frame
    facts: dict  # stack_patches' facts (scale, weights, …)


def stack_session(s: Session, kernel: str) -> Stack:
    """Resample every frame with ``kernel`` and stack with the default StackingConfig."""
    patches = [resample_to_canvas(i, w, s.canvas, kernel) for i, w in zip(s.images, s.wcs)]
    stacked, facts = stack_patches(patches, StackingConfig(), noise=[c.noise for c in s.catalogues])
    count = np.zeros(stacked.shape, np.int32)
    for p in patches:
        y, x = p.y0 - stacked.y0, p.x0 - stacked.x0
        count[y : y + p.shape[0], x : x + p.shape[1]] += p.weight > 0
    return Stack(stacked.data, stacked.y0, stacked.x0, count == len(patches), facts)


def _good(stars: np.ndarray) -> np.ndarray:
    """The stars ``median_fwhm`` trusts: unflagged, SNR ≥ 10, round, fitted."""
    keep = (stars["flags"] == 0) & (stars["snr"] >= 10) & (stars["ellipticity"] < 0.5)
    return stars[keep & np.isfinite(stars["fwhm"])]


def fwhm_ratio(s: Session, st: Stack) -> tuple[float, int]:
    """(median over stars of FWHM in the stack / FWHM of the same star in the frames, stars).

    Stars of the stack's catalogue (Moffat FWHM, ``_good``), each matched within 1 px (through
    the frames' WCS) to the good stars of every frame; the input FWHM of a star is the mean of
    its frames' FWHMs weighted by the stack's frame weights, over stars found in at least half
    of the frames. Matching the same stars matters: the deep stack measures fainter stars
    than the frames do, and their median FWHM alone reads ~5 % higher whatever the kernel.
    """
    core = np.where(st.full[..., None], st.data, np.nan)
    stars = _good(catalogue_of_image(core, DetectionSettings()).stars)
    weights = np.asarray(st.facts["weights"]).mean(axis=1)
    fin = np.full((len(stars), len(s.images)), np.nan)
    for k, (wcs, cat) in enumerate(zip(s.wcs, s.catalogues, strict=True)):
        fx, fy = exact_map(wcs, s.canvas, stars["y"] + st.y0, stars["x"] + st.x0)
        good = _good(cat.stars)
        d = np.hypot(fx[:, None] - good["x"][None], fy[:, None] - good["y"][None])
        near = d.argmin(axis=1)
        hit = d[np.arange(len(stars)), near] < 1.0
        fin[hit, k] = good["fwhm"][near[hit]]
    seen = np.isfinite(fin)
    use = seen.sum(axis=1) >= len(s.images) / 2
    w = np.where(seen[use], weights[None], 0.0)
    f_in = np.nansum(fin[use] * w, axis=1) / w.sum(axis=1)
    return float(np.median(stars["fwhm"][use] / f_in)), int(use.sum())


def _binned(lum: np.ndarray, k: int) -> np.ndarray:
    """k×k block means of the last two axes (their sizes multiples of k)."""
    *lead, h, w = lum.shape
    return lum.reshape(*lead, h // k, k, w // k, k).mean(axis=(-3, -1))


def _block_sigma(blocks: np.ndarray) -> np.ndarray:
    """Noise of each (n, b, b) block: rms about a fitted plane, clipped at 4σ (3 passes)."""
    n, b, _ = blocks.shape
    gy, gx = np.mgrid[0:b, 0:b]
    a = np.column_stack([np.ones(b * b), gy.ravel(), gx.ravel()])
    v = blocks.reshape(n, -1)
    r = v - (v @ np.linalg.pinv(a).T) @ a.T
    keep = np.ones_like(r, bool)
    for _ in range(3):
        sig = np.sqrt((r**2 * keep).sum(axis=1) / keep.sum(axis=1))
        keep = np.abs(r) < 4 * sig[:, None]
    return np.sqrt((r**2 * keep).sum(axis=1) / keep.sum(axis=1))


def _sky_blocks(st: Stack) -> np.ndarray:
    """(n, 2) canvas (y, x) corners of BLOCK² sky blocks: covered by every frame 8 px inside
    the common edge, and 4 px clear of every source detected at 3σ in the stack."""
    lum = st.data.astype(np.float64).mean(axis=2)
    full = ndimage.binary_erosion(st.full, iterations=8)
    img = np.ascontiguousarray(np.where(full, lum, np.nanmedian(lum[full])))
    bkg = sep.Background(img, mask=~full)
    _, seg = sep.extract(
        img - bkg.back(), 3.0, err=bkg.globalrms, mask=~full, segmentation_map=True, minarea=5
    )
    busy = ndimage.binary_dilation(seg > 0, iterations=4) | ~full
    h, w = busy.shape
    corners = [
        (y, x)
        for y in range(0, h - BLOCK + 1, BLOCK)
        for x in range(0, w - BLOCK + 1, BLOCK)
        if not busy[y : y + BLOCK, x : x + BLOCK].any()
    ]
    return np.array(corners, dtype=np.int64).reshape(-1, 2)


def noise_gains(s: Session, st: Stack, bins: tuple[int, ...] = (1, 2, 4)) -> dict[int, float]:
    """Noise gain of luminance for each bin size: median over sky blocks of ideal / measured.

    Measured: the noise (``_block_sigma``) of the stack's luminance (mean of its channels),
    k×k-binned, in each BLOCK² sky block. Ideal: what the stack's own weighted mean would give
    if it added the frames' independent noise exactly: the stack is Σ_i Σ_c α_ic x_ic + const
    with α_ic = W_ic a_ic / (C Σ_j W_jc) (W: weights, a: normalisation scales, from its
    facts), so its ideal noise is sqrt(Σ_i σ_i²) with σ_i the noise of Σ_c α_ic x_ic in frame
    i, measured the same way on the same sky: the block's centre mapped into the raw frame
    (not resampled), the block cut there at an even offset, so that every 2×2 bin is one
    Bayer cell. Gain > 1: the stack looks less noisy than its frames allow (the kernel
    smoothed the noise); < 1: it is noisier (rejection, misregistration, pattern noise).
    """
    corners = _sky_blocks(st)
    lum = st.data.astype(np.float64).mean(axis=2)
    stack_blocks = np.stack([lum[y : y + BLOCK, x : x + BLOCK] for y, x in corners])
    cy = corners[:, 0] + st.y0 + (BLOCK - 1) / 2
    cx = corners[:, 1] + st.x0 + (BLOCK - 1) / 2
    scale, weight = np.asarray(st.facts["scale"]), np.asarray(st.facts["weights"])
    alpha = weight * scale / (weight.shape[1] * weight.sum(axis=0))
    ideal_var = {k: np.zeros(len(corners)) for k in bins}
    inside = np.ones(len(corners), bool)
    for i, (img, wcs) in enumerate(zip(s.images, s.wcs, strict=True)):
        y_i = (img.astype(np.float64) * alpha[i]).sum(axis=2)
        fx, fy = exact_map(wcs, s.canvas, cy, cx)
        x0 = (np.round(fx - (BLOCK - 1) / 2).astype(int) // 2) * 2
        y0 = (np.round(fy - (BLOCK - 1) / 2).astype(int) // 2) * 2
        xs = np.clip(x0, 0, img.shape[1] - BLOCK)
        ys = np.clip(y0, 0, img.shape[0] - BLOCK)
        inside &= (xs == x0) & (ys == y0)
        cut = np.stack([y_i[b : b + BLOCK, a : a + BLOCK] for a, b in zip(xs, ys, strict=True)])
        for k in bins:
            ideal_var[k] += _block_sigma(_binned(cut, k)) ** 2
    gains = {}
    for k in bins:
        measured = _block_sigma(_binned(stack_blocks, k))
        gains[k] = float(np.median(np.sqrt(ideal_var[k][inside]) / measured[inside]))
    return gains


def main() -> None:
    print("sub-pixel accuracy (FWHM 3 px stars, 24 random translations):")
    for kernel in KERNELS:
        e = subpixel_errors(kernel)
        print(
            f"  {kernel:9s} centroid rms {e.centroid_rms:.4f} px, max {e.centroid_max:.4f}; "
            f"flux rms {e.flux_rms:.1e}; peak x{e.peak_mean:.3f} (min x{e.peak_min:.3f})"
        )
    if not REAL.is_dir():
        print(f"{REAL} is absent: no real-frame figures")
        return
    s = load_session()
    print(f"M 94 session {FIRST_SESSION}: {len(s.images)} frames, sidecar WCS, default stacking")
    for kernel in KERNELS:
        st = stack_session(s, kernel)
        ratio, n = fwhm_ratio(s, st)
        g = noise_gains(s, st)
        print(
            f"  {kernel:9s} FWHM stack/input {ratio:.4f} ({n} stars); noise gain of luminance "
            f"per pixel {g[1]:.3f}, 2x2 {g[2]:.3f}, 4x4 {g[4]:.3f}"
        )


if __name__ == "__main__":
    main()
