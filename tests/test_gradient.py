"""Sky-gradient measurement and removal (stacking/gradient.py) against synthetic truth.

Truth here is written independently of the module: a linear sky ramp of known slope, an
exponential galaxy whose halo covers most of the field at the stack's depth, a nebula made of
many broad Gaussians filling the field, Gaussian noise.
"""

from __future__ import annotations

import numpy as np
import pytest

from supadupstack.canvas.resample import Patch
from supadupstack.stacking.frameset import remove_relative_gradients, remove_stack_gradient
from supadupstack.stacking.gradient import GradientFit, fit_gradient, model_image

H, W = 540, 960
SKY = 1000.0


def _grid():
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    return yy, xx


def _ramp(frac_x: float, frac_y: float) -> np.ndarray:
    """A linear sky change of frac × SKY across the width / height, mean 0 over the image."""
    yy, xx = _grid()
    return SKY * (frac_x * (xx - (W - 1) / 2) / W + frac_y * (yy - (H - 1) / 2) / H)


def _galaxy(peak: float = 400.0, scale: float = 90.0, cx: float = 430, cy: float = 250):
    yy, xx = _grid()
    return peak * np.exp(-np.hypot(xx - cx, (yy - cy) / 0.7) / scale)


def _nebula(rng: np.random.Generator) -> np.ndarray:
    yy, xx = _grid()
    out = np.zeros((H, W))
    for _ in range(40):
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        s, a = rng.uniform(20, 250), rng.uniform(20, 150)
        out += a * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    return out


def _rgb(plane: np.ndarray, rng: np.random.Generator, noise: float = 5.0) -> np.ndarray:
    img = plane[..., None] * np.array([0.9, 1.0, 0.8]) + rng.normal(0, noise, (H, W, 3))
    return img.astype(np.float32)


def _block_means(img: np.ndarray, block: int = 60) -> np.ndarray:
    h, w = (img.shape[0] // block) * block, (img.shape[1] // block) * block
    return img[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))


def test_ramp_under_a_large_galaxy_is_removed_and_the_galaxy_kept() -> None:
    rng = np.random.default_rng(1)
    gal = _galaxy()
    truth = SKY + gal
    img = _rgb(truth + _ramp(0.08, -0.05), rng)
    patch = Patch(0, 0, img.copy(), np.ones((H, W), np.float32))
    fit = remove_stack_gradient(patch, order=1)
    assert fit["removed"], fit
    assert fit["sky_fraction"] < 0.5  # the halo was masked, not fitted
    resid = patch.data[..., 1] - truth
    # leftover gradient: block means of the residual vary by far less than the 8 % ramp (80 ADU)
    assert np.ptp(_block_means(resid)) < 2.0
    # galaxy flux in a 300 px box above the sky (the level is free: one offset for the
    # image, its residual median) kept to 0.5 %
    box = (slice(100, 400), slice(280, 580))
    level = float(np.median(resid))
    flux_out = float((patch.data[..., 1][box] - SKY - level).sum())
    assert flux_out == pytest.approx(float(gal[box].sum()), rel=0.005)


def test_field_filled_by_nebula_is_left_alone() -> None:
    rng = np.random.default_rng(2)
    img = _rgb(SKY + _nebula(rng) + _ramp(0.06, 0.04), rng)
    fit = fit_gradient(img, (0.0, 0.0), order=1)
    assert fit is not None and not fit.removable
    assert fit.note.startswith("not measurable")


def test_flat_noise_is_not_significant() -> None:
    rng = np.random.default_rng(3)
    fit = fit_gradient(_rgb(np.full((H, W), SKY), rng), (0.0, 0.0), order=1)
    assert fit is not None and not fit.removable and fit.significance < 5
    assert "not significant" in fit.note


def test_relative_gradient_is_removed_from_the_frame_not_the_reference() -> None:
    """Two frames of one galaxy on a canvas, offset by (17, 23) px; the second has a 10 %
    ramp and half the transparency. After normalisation (a = 2) and relative removal the
    frame matches the reference everywhere, galaxy included."""
    rng = np.random.default_rng(4)
    gal = _galaxy()
    ref_img = _rgb(SKY + gal, rng)
    frame_img = _rgb((SKY + gal + _ramp(0.10, 0.06)) / 2.0, rng, noise=2.5)
    ref = Patch(0, 0, ref_img, np.ones((H, W), np.float32))
    frame = Patch(17, 23, frame_img[:-17, :-23].copy(), np.ones((H - 17, W - 23), np.float32))
    frame.data[:] = frame_img[17:, 23:]  # the frame's pixel (0, 0) is canvas (17, 23)
    a, b = np.array([[1.0] * 3, [2.0] * 3]), np.zeros((2, 3))
    notes = remove_relative_gradients([ref, frame], 0, a, b, order=1)
    assert notes[0] is None and notes[1]["removed"]
    assert notes[1]["percent_of_sky"] == pytest.approx(100 * (0.10 + 0.06), rel=0.1)
    diff = 2.0 * frame.data[..., 1] - ref_img[17:, 23:, 1]
    assert np.ptp(_block_means(diff)) < 3.0


def test_model_image_matches_the_polynomial_at_canvas_positions() -> None:
    coef = np.array([[0.0, 3.0, -1.5, 2.0, 0.5, 1.0]])  # order 2: 1, y, y², x, xy, x²
    fit = GradientFit(2, coef, np.zeros(1), np.ones(1), 0, 1, 1, True, "")
    out = model_image(fit, (40, 50), origin=(100.0, 200.0))
    x, y = (100.0 + 7) / 1024, (200.0 + 11) / 1024
    want = 3 * y - 1.5 * y * y + 2 * x + 0.5 * x * y + x * x
    assert out[11, 7, 0] == pytest.approx(want, rel=1e-5)


def _mosaic(image: np.ndarray):
    from astropy.wcs import WCS

    from supadupstack.polish.mosaic import Mosaic

    return Mosaic.from_arrays(image, np.ones(image.shape[:2], np.float32), WCS(naxis=2))


@pytest.mark.parametrize("method", ["poly", "spline"])
def test_final_background_flattens_a_curved_sky_and_keeps_the_galaxy(method: str) -> None:
    from supadupstack.polish.background import remove_background

    rng = np.random.default_rng(5)
    yy, xx = _grid()
    curve = 60.0 * ((xx - W / 2) / W) ** 2 + 40.0 * ((yy - H / 2) / H) * ((xx - W / 3) / W)
    gal = _galaxy(peak=300.0, scale=35.0)  # a galaxy small against the mosaic
    m = _mosaic(_rgb(SKY + gal + curve, rng))
    facts = remove_background(m, method, order=2, scale_px=512)
    assert facts["applied"], facts
    resid = m.image[..., 1] - (SKY + gal)
    resid -= np.median(resid)
    before = curve - np.median(curve)
    assert np.ptp(_block_means(resid)) < 0.2 * np.ptp(_block_means(before))
    box = (slice(100, 400), slice(280, 580))
    assert float(resid[box].sum()) == pytest.approx(0.0, abs=0.01 * float(gal[box].sum()))


def test_final_background_leaves_a_nebula_and_none_does_nothing() -> None:
    from supadupstack.polish.background import remove_background

    rng = np.random.default_rng(6)
    img = _rgb(SKY + _nebula(rng) + _ramp(0.05, 0.02), rng)
    m = _mosaic(img.copy())
    assert not remove_background(m, "spline", order=2, scale_px=512)["applied"]
    assert np.array_equal(m.image, img)
    assert not remove_background(m, "none", order=2, scale_px=512)["applied"]
