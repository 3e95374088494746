"""Low-order sky gradients: measured on masked block medians, removed only when significant.

A light-pollution dome or the Moon adds a smooth sky gradient of a few % of the sky to each
frame; its direction and strength change through the night (the field turns on an alt-az
mount, the altitude changes). Two measurements share this module:

* **relative** (``frame − reference`` after normalisation): the object is in both and
  cancels, so only the gradient difference remains; fitted with two-sided clipping (star
  residuals of unequal seeing go both ways).
* **absolute** (a stack): the sky is fitted where there is no object. Object blocks are
  found against the *noise* of a block median (measured from two interleaved half-samples of
  each block, so sky structure does not inflate it): a block more than ``kappa`` noise above
  the model is object, and its neighbours too (halos). When objects cover most of the field,
  or what is left is not smooth within its noise (a field filled by nebula), the gradient
  is not measurable and is left in place: a nebula is never fitted away.

Images are (h, w, C) float32 in ADU, NaN = no data; coordinates are the canvas pixel
positions of the image's pixel (0, 0) plus the pixel index, so planes of patches of one
canvas agree. Models keep the mean level: only the gradient is removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BLOCK = 32  # px: block of the median grid (a star is a few px; a gradient spans the frame)
STRIDE = 4  # px: samples taken every STRIDE rows/columns (64 per block: its median to 1/6 σ)
SCALE = 1024.0  # px: coordinate unit of the polynomial (keeps the fit well conditioned)
MIN_BLOCKS = 12  # background blocks below which nothing is fitted
MIN_SKY_FRACTION = 0.05  # background / valid blocks below which objects fill the field
MIN_QUADRANTS = 3  # field quadrants that must hold background blocks (no extrapolation)
MAX_ROUGHNESS = 3.0  # background scatter / block noise above which the sky is not smooth


@dataclass
class GradientFit:
    """A fitted sky model and whether it may be removed.

    ``coef`` (C, n_terms) polynomial per channel in canvas units (``SCALE`` px); an absolute
    fit's constant term makes the model's mean over the valid blocks 0 (only the slope goes);
    ``amplitude`` (C,) ADU peak to peak over the background blocks; ``sky`` (C,) the level
    the amplitude is quoted against; ``significance`` the luminance gradient terms over their
    standard errors (the χ distance from no gradient, in σ);
    ``sky_fraction`` background blocks / valid blocks; ``roughness`` background scatter / block
    noise (≈ 1 for a smooth sky); ``removable`` and ``note`` say what to do and why.
    """

    order: int
    coef: np.ndarray
    amplitude: np.ndarray
    sky: np.ndarray
    significance: float
    sky_fraction: float
    roughness: float
    removable: bool
    note: str
    blocks: tuple | None = None  # (x, y, medians (n, C), background mask) of the fit's blocks

    def percent_of_sky(self) -> float:
        """Largest channel amplitude in % of that channel's sky level."""
        with np.errstate(divide="ignore", invalid="ignore"):
            pct = 100.0 * self.amplitude / np.abs(self.sky)
        return float(np.nanmax(pct)) if np.isfinite(pct).any() else float("nan")

    def summary(self) -> dict:
        return {
            "removed": self.removable,
            "amplitude_adu": [round(float(v), 3) for v in self.amplitude],
            "percent_of_sky": round(self.percent_of_sky(), 3),
            "significance": round(float(self.significance), 1),
            "sky_fraction": round(float(self.sky_fraction), 3),
            "roughness": round(float(self.roughness), 2),
            "note": self.note,
        }


def poly_terms(x: np.ndarray, y: np.ndarray, order: int) -> np.ndarray:
    """Design matrix (n, n_terms) of the 2-D polynomial of ``order``: 1, y, y², …, x, xy, …"""
    return np.stack([x**i * y**j for i in range(order + 1) for j in range(order + 1 - i)], -1)


def block_medians(
    image: np.ndarray, origin: tuple[float, float], block: int = BLOCK, sampled: bool = False
):
    """Per-block medians (n, C), the noise of the luminance (channel mean) of a block median,
    and block centres (x, y) in canvas pixels, for blocks whose samples are all finite.

    Samples are every ``STRIDE``-th row and column (``sampled``: ``image`` is already that
    grid, its pixel (i, j) at canvas ``origin`` + (j, i)·STRIDE). The noise comes from two
    interleaved half-samples (even and odd sample rows): their medians see the same sky and
    object, so half their difference is the noise of the full median, whatever the
    structure."""
    sub = image if sampled else image[::STRIDE, ::STRIDE]
    k = block // STRIDE
    h, w, nch = sub.shape
    by, bx = h // k, w // k
    if by < 1 or bx < 1:
        return np.zeros((0, nch)), float("nan"), np.zeros(0), np.zeros(0)
    cells = sub[: by * k, : bx * k].reshape(by, k, bx, k, nch).transpose(0, 2, 1, 3, 4)
    cells = cells.reshape(by * bx, k, k, nch)
    ok = np.isfinite(cells).all(axis=(1, 2, 3))
    cells = cells[ok]
    n = len(cells)
    med = np.median(cells.reshape(n, -1, nch), axis=1).astype(np.float64)
    half_a = np.median(cells[:, 0::2].reshape(n, -1, nch), axis=1).mean(axis=1)
    half_b = np.median(cells[:, 1::2].reshape(n, -1, nch), axis=1).mean(axis=1)
    diff = (half_a - half_b).astype(np.float64)
    noise = 1.4826 * float(np.median(np.abs(diff - np.median(diff)))) / 2.0 if n else np.nan
    yy, xx = np.divmod(np.flatnonzero(ok), bx)
    centre = (block - STRIDE) / 2.0  # mean position of a block's samples
    return med, noise, origin[0] + xx * block + centre, origin[1] + yy * block + centre


def _grow(mask: np.ndarray, xc: np.ndarray, yc: np.ndarray, block: int) -> np.ndarray:
    """Blocks within one block (8-neighbourhood) of a masked block, for the halos."""
    if not mask.any():
        return mask
    gx = np.round((xc - xc.min()) / block).astype(int)
    gy = np.round((yc - yc.min()) / block).astype(int)
    grid = np.zeros((gy.max() + 1, gx.max() + 1), np.uint8)
    grid[gy[mask], gx[mask]] = 1
    grown = cv2.dilate(grid, np.ones((3, 3), np.uint8))
    return grown[gy, gx].astype(bool)


def _solve(a: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares (coef (n_terms, ...), covariance scale (AᵀA)⁻¹ (n_terms, n_terms))."""
    inv = np.linalg.pinv(a.T @ a)
    return inv @ (a.T @ y), inv


def fit_gradient(
    image: np.ndarray,
    origin: tuple[float, float],
    order: int = 1,
    relative: bool = False,
    kappa: float = 3.0,
    min_significance: float = 5.0,
    block: int = BLOCK,
    sky_level: np.ndarray | None = None,
    sampled: bool = False,
) -> GradientFit | None:
    """Fit the sky gradient of ``image`` (see the module doc); None if too few blocks.

    ``sky_level`` (C,): the sky level the amplitude is quoted against (default: the background
    median of ``image``; a relative fit passes the reference's). ``sampled``: ``image`` holds
    only every ``STRIDE``-th row and column (see ``block_medians``)."""
    med, noise, xc, yc = block_medians(image, origin, block, sampled)
    nch = image.shape[-1]
    if len(med) < MIN_BLOCKS:
        return None
    a = poly_terms(xc / SCALE, yc / SCALE, order)
    lum, sigma = med.mean(axis=1), max(float(noise), 1e-12)
    sky = _iterate_sky(a, lum, sigma, xc, yc, block, kappa, relative)
    n_sky = int(sky.sum())
    sky_fraction = n_sky / len(med)
    if n_sky < MIN_BLOCKS:
        return _unmeasurable(order, nch, med, sky_fraction, "objects fill the field")
    coef, inv = _solve(a[sky], med[sky])
    resid = lum[sky] - a[sky] @ coef.mean(axis=1)
    roughness = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) / sigma
    model = a[sky] @ coef  # (n, C) at the background blocks' centres
    amplitude = model.max(axis=0) - model.min(axis=0)
    c1 = coef[1:].mean(axis=1)  # the luminance gradient terms and their covariance
    cov = sigma**2 * inv[1:, 1:]
    significance = float(np.sqrt(max(c1 @ np.linalg.pinv(cov) @ c1, 0.0)))
    spread = _quadrants(xc, yc, sky)
    note, removable = _verdict(
        relative, sky_fraction, spread, roughness, significance, min_significance
    )
    level = np.median(med[sky], 0) if sky_level is None else np.asarray(sky_level, np.float64)
    if not relative:  # keep the image's mean level (over all valid blocks): only the slope goes
        coef[0] -= (a @ coef).mean(axis=0)
    return GradientFit(
        order, coef.T.copy(), amplitude, level, significance,
        sky_fraction, roughness, removable, note, (xc, yc, med, sky),
    )  # fmt: skip


def _quadrants(xc: np.ndarray, yc: np.ndarray, sky: np.ndarray) -> int:
    """How many quadrants of the field (about the centre of the valid blocks) hold at least
    two background blocks: a model fitted on one side would be extrapolated over the rest."""
    east, north = xc[sky] >= np.median(xc), yc[sky] >= np.median(yc)
    counts = [np.sum((east == e) & (north == n)) for e in (False, True) for n in (False, True)]
    return int(sum(c >= 2 for c in counts))


def _verdict(relative, sky_fraction, quadrants, roughness, significance, min_significance):
    """(note, removable): objects or nebula in the way, not significant, or removed."""
    cover = f"objects cover {100 * (1 - sky_fraction):.0f} % of the field"
    if not relative and (sky_fraction < MIN_SKY_FRACTION or quadrants < MIN_QUADRANTS):
        return f"not measurable: {cover}", False
    if not relative and roughness > MAX_ROUGHNESS:
        return f"not measurable: the sky is not smooth ({roughness:.1f}x its noise)", False
    if significance < min_significance:
        return f"not significant ({significance:.1f} sigma)", False
    return f"removed ({significance:.0f} sigma)", True


def _iterate_sky(a, lum, sigma, xc, yc, block, kappa, relative) -> np.ndarray:
    """Background blocks: start from all, then drop blocks more than κ block-noise above the
    model (and their neighbours) — or beyond ±κ robust residual scatter when ``relative``."""
    sky = np.ones(len(lum), bool)
    for _ in range(8):
        coef, _ = _solve(a[sky], lum[sky])
        r = lum - a @ coef
        if relative:
            s = 1.4826 * float(np.median(np.abs(r[sky] - np.median(r[sky])))) + 1e-12
            new = np.abs(r) <= kappa * max(s, sigma)
        else:
            new = ~_grow(r > kappa * sigma, xc, yc, block)
        if np.array_equal(new, sky) or new.sum() < MIN_BLOCKS:
            return new if new.sum() >= MIN_BLOCKS else sky & new
        sky = new
    return sky


def _unmeasurable(order, nch, med, frac, why) -> GradientFit:
    n_terms = (order + 1) * (order + 2) // 2
    return GradientFit(
        order, np.zeros((nch, n_terms)), np.zeros(nch), np.median(med, 0),
        0.0, frac, float("nan"), False, f"not measurable: {why}",
    )  # fmt: skip


def _axis_terms(fit: GradientFit, origin, shape, step: int, scale) -> tuple:
    """Per power i of x: the column factor (h, C) = Σ_j c_ij y^j / scale and x^i (w,), on
    pixels ``step`` apart from ``origin``: Σ_i col_i ⊗ x^i is the model there."""
    h, w = shape
    x = (origin[0] + step * np.arange(w, dtype=np.float64)) / SCALE
    y = (origin[1] + step * np.arange(h, dtype=np.float64)) / SCALE
    powers = [(i, j) for i in range(fit.order + 1) for j in range(fit.order + 1 - i)]
    coef = fit.coef / np.asarray(scale, np.float64).reshape(-1, 1)
    cols = []
    for i in range(fit.order + 1):
        col = np.zeros((h, coef.shape[0]))
        for t, (ii, j) in enumerate(powers):
            if ii == i:
                col += y[:, None] ** j * coef[:, t][None, :]
        cols.append((col.astype(np.float32), (x**i).astype(np.float32)))
    return tuple(cols)


def model_image(fit: GradientFit, shape: tuple[int, int], origin: tuple[float, float], scale=1.0):
    """The model (h, w, C) float32 (divided by ``scale`` per channel) over an image whose
    pixel (0, 0) is canvas ``origin`` (x, y), evaluated exactly: Σ_i (Σ_j c_ij y^j) ⊗ x^i."""
    out = np.zeros((*shape, fit.coef.shape[0]), np.float32)
    for col, xp in _axis_terms(fit, origin, shape, 1, scale):
        out += col[:, None, :] * xp[None, :, None]
    return out


def remove_model(
    image: np.ndarray,
    fit: GradientFit,
    origin: tuple[float, float],
    scale=1.0,
    keep_mean: bool = False,
) -> np.ndarray:
    """Subtract the model (divided by ``scale`` per channel) from ``image`` in place;
    ``keep_mean``: less its mean over the image's valid pixels (taken on the sample grid,
    every ``STRIDE`` px), so the level stays. A term that varies along x only (all of a
    plane's) is subtracted as a broadcast row: no full-size temporary."""
    terms = list(_axis_terms(fit, origin, image.shape[:2], 1, scale))
    if keep_mean:
        col0, ones = terms[0]
        terms[0] = (col0 - _mean_on_samples(image, fit, origin, scale), ones)
    image -= terms[0][0][:, None, :]  # x⁰: a column broadcast along the rows
    for col, xp in terms[1:]:
        if (col == col[:1]).all():
            image -= (xp[:, None] * col[0][None, :])[None]
        else:
            image -= col[:, None, :] * xp[None, :, None]
    return image


def _mean_on_samples(image: np.ndarray, fit: GradientFit, origin, scale) -> np.ndarray:
    """(C,) float32 mean of the model over the valid pixels of the STRIDE sample grid."""
    sub = image[::STRIDE, ::STRIDE]
    valid = np.isfinite(sub).all(axis=-1)
    if not valid.any():
        return np.zeros(sub.shape[-1], np.float32)
    grad = np.zeros(sub.shape, np.float32)
    for col, xp in _axis_terms(fit, origin, sub.shape[:2], STRIDE, scale):
        grad += col[:, None, :] * xp[None, :, None]
    return np.mean(grad[valid], axis=0, dtype=np.float64).astype(np.float32)
