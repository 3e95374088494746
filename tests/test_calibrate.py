"""Debayer and hot-pixel repair against synthetic truth (gradients: tests/test_gradient.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from supadupstack.frames.calibrate import (
    cfa_masks,
    debayer,
    repair_hot_pixels,
)
from supadupstack.frames.fits_io import load_pixels, read_frame

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")


def _smooth_planes(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Three smooth (linear-ramp) planes with distinct levels: exact for bilinear debayer."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for base in (1200.0, 3000.0, 600.0):
        gy, gx = rng.uniform(-4, 4, size=2)
        planes.append(base + gy * yy + gx * xx)
    return np.stack(planes, axis=-1)


def _mosaic(planes: np.ndarray, pattern: str) -> np.ndarray:
    raw = np.zeros(planes.shape[:2])
    for c, mask in enumerate(cfa_masks(pattern, raw.shape)):
        raw[mask] = planes[..., c][mask]
    return raw


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("integer", [True, False])
def test_debayer_recovers_planes(pattern: str, integer: bool) -> None:
    rng = np.random.default_rng(hash(pattern) % 2**32)
    planes = _smooth_planes(64, 96, rng)
    if integer:
        planes = np.rint(planes)
    raw = _mosaic(planes, pattern).astype(np.float32)
    if not integer:
        raw += 0.25  # forces the float path
        planes = planes + 0.25
    rgb = debayer(raw, pattern)
    assert rgb.shape == (64, 96, 3) and rgb.dtype == np.float32
    inner = (slice(2, -2), slice(2, -2))
    for c in range(3):
        err = np.abs(rgb[inner][..., c] - planes[inner][..., c])
        # integer path rounds the interpolated value to the nearest ADU
        assert err.max() <= (1.0 if integer else 1e-3), (pattern, c, err.max())


def test_debayer_wrong_pattern_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown Bayer pattern"):
        debayer(np.zeros((8, 8), np.float32), "RGBX")


def _star_field(rng, h=256, w=256, fwhm=3.7):
    yy, xx = np.mgrid[0:h, 0:w]
    sigma = fwhm / 2.3548
    truth = np.full((h, w), 800.0)
    stars = []
    for _ in range(25):
        y, x = rng.uniform(20, h - 20), rng.uniform(20, w - 20)
        flux = rng.uniform(3e3, 2e5)
        truth += (
            flux
            / (2 * np.pi * sigma**2)
            * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
        )
        stars.append((y, x, flux))
    return truth, stars


def _aperture_flux(img, y, x, r=9.0, sky=800.0):
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    m = (yy - y) ** 2 + (xx - x) ** 2 <= r * r
    return float((img[m] - sky).sum())


def test_hot_pixel_repair_removes_hot_pixels_and_keeps_star_flux() -> None:
    rng = np.random.default_rng(7)
    truth, stars = _star_field(rng)
    noisy = truth + rng.normal(0, 20, truth.shape)
    hot = noisy.copy()
    far = [(y, x) for y, x in zip(*np.nonzero(np.ones_like(truth, bool)), strict=True)]
    picks = rng.choice(len(far), 400, replace=False)
    injected = []
    for i in picks:
        y, x = far[i]
        if min((y - sy) ** 2 + (x - sx) ** 2 for sy, sx, _ in stars) < 15**2:
            continue
        hot[y, x] += rng.uniform(500, 20000)
        injected.append((y, x))
        if len(injected) == 60:
            break
    fixed, n = repair_hot_pixels(hot.astype(np.float32), "GRBG", kappa=3.0)
    assert n >= len(injected)
    for y, x in injected:
        assert abs(fixed[y, x] - truth[y, x]) < 5 * 20, (y, x, fixed[y, x], truth[y, x])
    for y, x, _ in stars:
        before = _aperture_flux(noisy, y, x)
        after = _aperture_flux(fixed, y, x)
        assert after >= 0.99 * before, (y, x, before, after)


def test_hot_pixel_repair_on_mono_plane() -> None:
    rng = np.random.default_rng(3)
    img = rng.normal(500, 10, (80, 80)).astype(np.float32)
    img[40, 40] = 9000
    fixed, n = repair_hot_pixels(img, None)
    assert n >= 1 and abs(fixed[40, 40] - 500) < 50


def _reference_repair(raw: np.ndarray, pattern: str | None, kappa: float = 3.0):
    """The numpy implementation the fused kernel replaced (same rule, whole-frame arrays)."""
    out = raw.astype(np.float32, copy=True)
    z, med = np.zeros_like(out), np.zeros_like(out)
    step = 2 if pattern else 1
    for dy in range(step):
        for dx in range(step):
            plane = out[dy::step, dx::step]
            finite = np.isfinite(plane)
            fill = float(np.nanmedian(plane)) if finite.any() else 0.0
            work = np.where(finite, plane, fill).astype(np.float32)
            m = cv2.medianBlur(work, 5)
            excess = work - m
            sample = excess[::2, ::2]
            mad = float(np.median(np.abs(sample - np.median(sample))))
            zp = excess / max(1.4826 * mad, 1e-6)
            zp[~finite] = 0.0
            z[dy::step, dx::step], med[dy::step, dx::step] = zp, m
    pad = np.pad(z, 1, mode="reflect")
    h, w = z.shape
    shifted = [pad[1 + a : 1 + a + h, 1 + b : 1 + b + w] for a in (-1, 0, 1) for b in (-1, 0, 1)]
    neighbours = np.sort(np.stack([s for i, s in enumerate(shifted) if i != 4]), axis=0)[-2]
    hot = (z > kappa) & (neighbours < np.maximum(0.3 * z, 2.0)) & np.isfinite(out)
    out[hot] = med[hot]
    return out, int(hot.sum())


@pytest.mark.parametrize(
    ("pattern", "shape"), [("GRBG", (96, 130)), ("RGGB", (75, 61)), (None, (64, 90))]
)
def test_hot_pixel_repair_equals_the_reference(pattern: str | None, shape) -> None:
    """Same pixels, same values as the whole-frame numpy rule, odd sizes and NaN included."""
    rng = np.random.default_rng(11)
    truth, _ = _star_field(rng, *shape)
    raw = np.rint(truth + rng.normal(0, 20, truth.shape)).astype(np.float32)
    ys, xs = rng.integers(0, shape[0], 80), rng.integers(0, shape[1], 80)
    raw[ys, xs] += rng.uniform(100, 20000, 80).astype(np.float32)
    raw[ys[:5], xs[:5] // 2] = np.nan
    raw[0, 3], raw[-1, -2] = 30000.0, np.inf  # edge pixels: reflected neighbours
    for kappa in (3.0, 2.7):
        fixed, n = repair_hot_pixels(raw, pattern, kappa)
        expected, n_ref = _reference_repair(raw, pattern, kappa)
        assert n == n_ref > 0
        assert np.array_equal(fixed, expected, equal_nan=True)


def test_hot_pixel_repair_equals_the_reference_on_real_frames(m94_frames) -> None:
    for path in m94_frames[:2]:
        frame = read_frame(path)
        raw = load_pixels(frame)
        fixed, n = repair_hot_pixels(raw, frame.bayer_pattern)
        expected, n_ref = _reference_repair(raw, frame.bayer_pattern)
        assert n == n_ref and np.array_equal(fixed, expected)
