"""Truth metrics: self-test on noise-free resampled frames, and known distortions of the truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from reproject import reproject_interp

from supadupstack.frames.calibrate import debayer
from supadupstack.simulate import camera, metrics, presets, simulate_dataset
from supadupstack.simulate.sky import render


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return simulate_dataset(tmp_path_factory.mktemp("tiny"), "tiny", seed=11).parent


def _stack(truth: metrics.Truth, planes_of) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the frames' (3, H, W) planes reprojected onto the truth grid, and coverage."""
    shape = truth.signal.shape[1:]
    acc = np.zeros((3, *shape))
    n = np.zeros(shape)
    for f in truth.manifest["frames"]:
        spec = presets.spec_from_dict(f["spec"])
        fw = camera.frame_wcs(spec.ra, spec.dec, spec.up_deg, spec.width, spec.height)
        planes = planes_of(spec, fw)
        for c in range(3):
            arr, foot = reproject_interp((planes[c], fw), truth.wcs, shape_out=shape)
            ok = foot > 0.999
            acc[c][ok] += arr[ok]
            if c == 0:
                n[ok] += 1
    mean = np.where(n > 0, acc / np.maximum(n, 1), np.nan).astype(np.float32)
    return mean, n.astype(np.float32)


def _write(path: Path, image: np.ndarray, wcs, coverage=None) -> Path:
    hdus = [fits.PrimaryHDU(image.astype(np.float32), header=wcs.to_header())]
    if coverage is not None:
        hdus.append(fits.ImageHDU(coverage, name="COVERAGE"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


@pytest.fixture(scope="module")
def noise_free(tiny, tmp_path_factory) -> tuple[Path, metrics.Truth]:
    truth = metrics.load_truth(tiny)

    def planes(spec, fw):
        shape = (spec.height, spec.width)
        return render(fw, shape, truth.stars, truth.galaxy, spec.fwhm_px, spec.psf_beta)

    mean, cov = _stack(truth, planes)
    out = tmp_path_factory.mktemp("nf") / "stack.fits"
    return _write(out, mean, truth.wcs, cov), truth


def test_self_test_noise_free_frames_match_truth(noise_free, tiny):
    path, truth = noise_free
    r = metrics.evaluate(path, tiny)
    for s in r["slope"]:
        assert s == pytest.approx(1.0, abs=0.01)
    assert r["astrometric_rms_px"] < 0.05 and r["n_stars_astrometry"] >= 5
    assert r["star_flux_ratio_median"] == pytest.approx(1.0, abs=0.01)
    assert r["n_stars_flux"] >= 10
    assert r["extended_flux_ratio"] == pytest.approx(1.0, abs=0.02)


def test_metrics_see_scale_offset_and_shift(noise_free, tmp_path):
    path, truth = noise_free
    image, wcs, _ = metrics.load_output(path)
    tg = metrics.truth_on_grid(truth, wcs, image.shape[1:])
    rng = np.random.default_rng(0)
    noisy = 0.8 * tg[1] + 500.0 + rng.normal(0, 2.0, tg[1].shape)
    slope, offset = metrics.linear_fit_vs_truth(noisy, tg[1])
    assert slope == pytest.approx(0.8, abs=0.01) and offset == pytest.approx(500.0, abs=1.0)
    med, mad, n = metrics.star_flux_ratios(noisy, tg[1], wcs, truth.stars, 2.0)
    assert med == pytest.approx(0.8, abs=0.02) and n >= 5
    shifted = wcs.deepcopy()
    shifted.wcs.crpix = [wcs.wcs.crpix[0] + 0.5, wcs.wcs.crpix[1]]
    rms, off = metrics.astrometric_offsets(
        image[1], shifted, truth.stars, 1e-3, galaxy=truth.galaxy
    )
    assert rms == pytest.approx(0.5, abs=0.05)
    assert np.median(off[:, 0]) == pytest.approx(-0.5, abs=0.05)
    sigma = metrics.background_noise(noisy - (slope * tg[1] + offset), tg[1])
    assert sigma == pytest.approx(2.0, rel=0.05)
    assert metrics.noise_vs_ideal(sigma, 2.0 * np.sqrt(4), 4) == pytest.approx(1.0, rel=0.05)


def test_seam_and_trail_metrics():
    rng = np.random.default_rng(5)
    img = rng.normal(0.0, 1.0, (200, 300))
    stepped = img.copy()
    stepped[:, 150:] += 2.0
    b = [metrics.Boundary("x", 150)]
    assert metrics.seam_metric(stepped, b) == pytest.approx(2.0, abs=0.3)
    assert metrics.seam_metric(img, b) < 0.3
    cov = np.ones((200, 300), np.float32)
    cov[:, 150:] = 2.0
    assert metrics.coverage_seam_metric(stepped, cov) == pytest.approx(2.0, abs=0.3)
    assert metrics.coverage_seam_metric(img, cov) < 0.3
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [10.0, 20.0]
    w.wcs.crpix = [150.0, 100.0]
    w.wcs.cd = [[-6.6e-4, 0], [0, 6.6e-4]]
    ends = w.all_pix2world([20.0, 280.0], [10.0, 190.0], 0)
    trail_sky = (ends[0][0], ends[1][0], ends[0][1], ends[1][1])
    yy, xx = np.mgrid[0:200, 0:300]
    dist = np.abs((xx - 20) * 180 - (yy - 10) * 260) / np.hypot(260, 180)
    with_trail = img + 5.0 * np.exp(-0.5 * (dist / 1.2) ** 2)
    assert metrics.trail_residual(with_trail, w, trail_sky) > 2.0
    assert abs(metrics.trail_residual(img, w, trail_sky)) < 0.5


def test_noisy_debayered_stack_recovers_truth(tiny, tmp_path):
    """Raw subs → bilinear debayer → reproject → mean: slope = transparency, offset = sky."""
    truth = metrics.load_truth(tiny)
    root = tiny.parent

    def planes(spec, fw):
        f = next(x for x in truth.manifest["frames"] if x["spec"]["seed"] == spec.seed)
        raw = fits.getdata(root / f["path"]).astype(np.float32)
        return np.moveaxis(debayer(raw, "GRBG"), -1, 0)

    mean, cov = _stack(truth, planes)
    r = metrics.evaluate(_write(tmp_path / "noisy.fits", mean, truth.wcs, cov), tiny)
    trans = np.mean([f["transparency"] for f in truth.manifest["frames"]])
    for c in range(3):
        assert r["slope"][c] == pytest.approx(trans, rel=0.03)
        sky = np.mean([f["sky_total_adu"][c] for f in truth.manifest["frames"]])
        assert r["offset"][c] == pytest.approx(sky, rel=0.02)
        assert 0.3 < r["noise_ratio_vs_ideal"][c] < 1.3
    assert r["star_flux_ratio_median"] == pytest.approx(trans, rel=0.05)
    assert r["astrometric_rms_px"] < 0.3
