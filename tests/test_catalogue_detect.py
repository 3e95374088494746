"""Star catalogue (catalogue.detect): FWHM, centroids, flux, completeness, flags, speed.

Stars are rendered here, independently of the project's simulator: the continuous profile
(Gaussian or Moffat, normalised to unit total flux) sampled at pixel centres, as the
simulator draws them, over a stamp wide enough (20 FWHM) that the truncated wings hold
< 0.01 % of the flux. Truth: centre, total flux, FWHM.
"""

from __future__ import annotations

import numpy as np
import pytest

from supadupstack.catalogue import (
    BLENDED,
    EDGE,
    SATURATED,
    STAR_DTYPE,
    DetectionSettings,
    background_noise,
    detect_stars,
    median_fwhm,
)

SKY, NOISE = 1000.0, 30.0
GAUSS = None  # profile "beta" for a Gaussian


def profile(r2: np.ndarray, fwhm: float, beta: float | None) -> np.ndarray:
    """Unit-flux PSF at squared radius r2 (px^2)."""
    if beta is None:
        s2 = (fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))) ** 2
        return np.exp(-0.5 * r2 / s2) / (2.0 * np.pi * s2)
    a2 = (fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))) ** 2
    return (beta - 1.0) / (np.pi * a2) * (1.0 + r2 / a2) ** (-beta)


def peak_to_flux(peak: float, fwhm: float, beta: float | None) -> float:
    """Total flux of a star whose profile peaks at ``peak`` ADU."""
    return peak / float(profile(np.zeros(1), fwhm, beta)[0])


def render(shape, stars, beta, sky=SKY, noise=NOISE, seed=0, axis_ratio=1.0) -> np.ndarray:
    """float32 image: sky + stars (rows of x, y, flux, fwhm) + Gaussian noise (ADU)."""
    img = np.full(shape, sky, dtype=np.float64)
    for x, y, flux, fwhm in stars:
        half = int(np.ceil(20 * fwhm))
        y0, y1 = max(int(y) - half, 0), min(int(y) + half + 1, shape[0])
        x0, x1 = max(int(x) - half, 0), min(int(x) + half + 1, shape[1])
        yy, xx = np.mgrid[y0:y1, x0:x1]
        r2 = (xx - x) ** 2 / axis_ratio + (yy - y) ** 2 * axis_ratio  # area-preserving
        img[y0:y1, x0:x1] += flux * profile(r2, fwhm, beta)
    rng = np.random.default_rng(seed)
    return (img + rng.normal(0.0, noise, shape)).astype(np.float32)


def grid_stars(rng, nx, ny, step, fwhms, flux_of):
    """Stars on a grid (random sub-pixel offsets), FWHM cycling through ``fwhms``."""
    out = []
    for k in range(nx * ny):
        fwhm = fwhms[k % len(fwhms)]
        x = step * (k % nx + 1) + rng.uniform(-0.5, 0.5)
        y = step * (k // nx + 1) + rng.uniform(-0.5, 0.5)
        out.append((x, y, flux_of(fwhm), fwhm))
    return np.array(out)


def match(found: np.ndarray, truth: np.ndarray, radius: float = 2.0):
    """(found rows, truth indices) of the found stars within ``radius`` px of a true star."""
    if len(found) == 0:
        return found, np.zeros(0, int)
    d = np.hypot(found["x"][:, None] - truth[:, 0], found["y"][:, None] - truth[:, 1])
    near = d.min(axis=1) < radius
    return found[near], d.argmin(axis=1)[near]


FWHMS = (2.0, 3.0, 4.0, 5.5, 7.0)


@pytest.fixture(scope="module", params=[GAUSS, 2.5, 3.0, 4.0], ids=lambda b: f"beta={b}")
def field(request):
    """30 isolated stars of each profile, FWHM 2-7 px, peak 2000 ADU on 1000 +- 30 ADU."""
    beta = request.param
    rng = np.random.default_rng(17)
    truth = grid_stars(rng, 6, 5, 60, FWHMS, lambda f: peak_to_flux(2000.0, f, beta))
    return beta, truth, detect_stars(render((360, 420), truth, beta, seed=3))


def test_fwhm_is_the_true_fwhm(field):
    beta, truth, stars = field
    found, idx = match(stars, truth)
    assert len(found) == len(truth)
    ratio = found["fwhm"] / truth[idx, 3]
    for fwhm in FWHMS:
        r = ratio[truth[idx, 3] == fwhm]
        assert abs(np.median(r) - 1) < 0.02, (beta, fwhm, r)
    # per star the FWHM is noise-limited: ~2 % rms at SNR 100 (FWHM 2), ~1 % at SNR 200
    assert np.all(np.abs(ratio - 1) < 0.08), (beta, ratio)
    assert np.all(np.abs(ratio[found["snr"] >= 150] - 1) < 0.05), (beta, ratio)
    assert abs(median_fwhm(found[truth[idx, 3] == 4.0]) / 4.0 - 1) < 0.02
    # peak: the brightest pixel above the sky, <= 2000 ADU (off-centre sampling) + noise
    wide = truth[idx, 3] >= 4.0
    assert 0.9 < np.median(found["peak"][wide]) / 2000.0 < 1.03


def test_centroids_unbiased_and_precise(field):
    _, truth, stars = field
    found, idx = match(stars, truth)
    good = found["snr"] > 50
    dx = found["x"][good] - truth[idx[good], 0]
    dy = found["y"][good] - truth[idx[good], 1]
    assert good.sum() >= 25
    assert np.sqrt(np.mean(dx**2 + dy**2) / 2) <= 0.05
    assert abs(dx.mean()) < 0.015 and abs(dy.mean()) < 0.015


@pytest.mark.parametrize("beta", [GAUSS, 2.5, 3.0, 4.0])
def test_flux_is_total_and_seeing_independent(beta):
    """Same 20 stars (peak 10^4-4x10^4 ADU at FWHM 3, SNR 400-1600) seen at FWHM 3 and 6."""
    rng = np.random.default_rng(5)
    flux = peak_to_flux(1e4, 3.0, beta) * rng.uniform(1.0, 4.0, 20)
    pos = grid_stars(rng, 5, 4, 70, (3.0,), lambda f: 0.0)[:, :2]
    results = []
    for fwhm in (3.0, 6.0):
        truth = np.column_stack([pos, flux, np.full(20, fwhm)])
        found, idx = match(detect_stars(render((350, 420), truth, beta, seed=int(fwhm))), truth)
        assert len(found) == 20
        ratio = found["flux"] / truth[idx, 2]
        assert np.all(np.abs(ratio - 1) < 0.02), (beta, fwhm, ratio)
        assert abs(np.median(ratio) - 1) < 0.01
        results.append(found["flux"][np.argsort(idx)])
    assert np.all(np.abs(results[1] / results[0] - 1) < 0.02)


def test_flux_at_moderate_snr_has_no_bias():
    """Peak 600 ADU (SNR ~50): each star is noisy, but the median is right (frame beta)."""
    rng = np.random.default_rng(8)
    truth = grid_stars(rng, 8, 6, 45, (3.5,), lambda f: peak_to_flux(600.0, f, 2.5))
    found, idx = match(detect_stars(render((310, 400), truth, 2.5, seed=9)), truth)
    assert len(found) == len(truth)
    assert abs(np.median(found["flux"] / truth[idx, 2]) - 1) < 0.03
    assert 35 < np.median(found["snr"]) < 75


def completeness_field(n=300, seed=4):
    """1080x1920, n Moffat stars, 10 % sky gradient, Poisson + read noise, 40 hot pixels."""
    rng = np.random.default_rng(seed)
    h, w = 1080, 1920
    sky = 1000.0 * (1.0 + 0.1 * np.arange(w) / w)[None, :] * np.ones((h, 1))
    truth = np.column_stack(
        [
            rng.uniform(10, w - 10, n),
            rng.uniform(10, h - 10, n),
            10 ** rng.uniform(2.8, 5.5, n),
            np.full(n, 3.7),
        ]
    )
    img = render((h, w), truth, 3.0, sky=0.0, noise=0.0).astype(np.float64) + sky
    img = rng.poisson(img) + rng.normal(0.0, 10.0, (h, w))
    hot = np.column_stack([rng.integers(5, w - 5, 40), rng.integers(5, h - 5, 40)])
    img[hot[:, 1], hot[:, 0]] += 5000.0
    # truth SNR as the detector defines it: flux / (pixel noise x sqrt(noise-equivalent area))
    a2 = (3.7 / (2.0 * np.sqrt(2.0 ** (1.0 / 3.0) - 1.0))) ** 2
    nea = np.pi * a2 * (2 * 3.0 - 1) / (3.0 - 1) ** 2
    snr = truth[:, 2] / (np.sqrt(1050.0 + 100.0) * np.sqrt(nea))
    return img.astype(np.float32), truth, snr, hot


@pytest.fixture(scope="module")
def busy():
    img, truth, snr, hot = completeness_field()
    return img, truth, snr, hot, detect_stars(img)


def test_detection_complete_and_no_hot_pixels(busy):
    img, truth, snr, hot, stars = busy
    found, idx = match(stars, truth, radius=1.5)
    bright = snr >= 20
    assert np.isin(np.nonzero(bright)[0], idx).mean() >= 0.95
    # no catalogue entry on a hot pixel that is not also on a star
    d_hot = np.hypot(stars["x"][:, None] - hot[:, 0], stars["y"][:, None] - hot[:, 1]).min(1)
    d_star = np.hypot(stars["x"][:, None] - truth[:, 0], stars["y"][:, None] - truth[:, 1])
    assert not np.any((d_hot < 1.5) & (d_star.min(1) > 3.0))
    assert abs(background_noise(img) - np.sqrt(1050.0 + 100.0)) < 2.0


def test_sorted_deterministic_and_bounded(busy):
    img, _, _, _, stars = busy
    assert stars.dtype == STAR_DTYPE
    assert np.all(np.diff(stars["flux"]) <= 0)
    again = detect_stars(img)
    assert again.tobytes() == stars.tobytes()
    top = detect_stars(img, DetectionSettings(max_stars=25))
    assert len(top) == 25  # the same brightest stars (the frame's beta comes from fewer)
    np.testing.assert_array_equal(top["x"], stars["x"][:25])
    np.testing.assert_allclose(top["flux"], stars["flux"][:25], rtol=0.01)


def test_nan_edges_and_empty_images():
    truth = np.array([[60.0, 60.0, 3e4, 3.0], [150.0, 100.0, 3e4, 3.0], [3.0, 120.0, 3e4, 3.0]])
    img = render((200, 220), truth, 3.0, seed=2)
    img[:, 153:] = np.nan  # no data from column 153 on: cuts the second star
    stars = detect_stars(img)
    found, idx = match(stars, truth)
    flags = dict(zip(idx.tolist(), found["flags"].tolist()))
    assert flags[0] == 0
    assert flags[1] & EDGE and flags[2] & EDGE
    assert len(detect_stars(np.full((100, 100), np.nan, np.float32))) == 0
    assert len(detect_stars(np.full((100, 100), 1000.0, np.float32))) == 0
    assert len(detect_stars(np.zeros((0, 0), np.float32))) == 0
    assert np.isnan(median_fwhm(np.zeros(0, STAR_DTYPE)))


def test_saturated_star_fits_its_wings():
    truth = np.array([[100.3, 90.6, peak_to_flux(2e5, 4.0, 3.0), 4.0]])
    img = np.minimum(render((180, 200), truth, 3.0, seed=6), 60000.0)
    (star,) = detect_stars(img)
    assert star["flags"] & SATURATED
    assert abs(star["fwhm"] / 4.0 - 1) < 0.05
    assert np.hypot(star["x"] - 100.3, star["y"] - 90.6) < 0.1
    assert abs(star["flux"] / truth[0, 2] - 1) < 0.05


def test_close_pair_is_flagged_blended():
    truth = np.array([[80.0, 80.0, 4e4, 3.0], [87.5, 80.4, 2e4, 3.0], [160.0, 150.0, 4e4, 3.0]])
    found, idx = match(detect_stars(render((220, 240), truth, 3.0, seed=7)), truth)
    flags = dict(zip(idx.tolist(), found["flags"].tolist()))
    assert set(flags) == {0, 1, 2}
    assert flags[0] & BLENDED and flags[1] & BLENDED and not flags[2] & BLENDED


def test_ellipticity_from_moments():
    rng = np.random.default_rng(12)
    truth = grid_stars(rng, 4, 3, 50, (4.0,), lambda f: peak_to_flux(3000.0, f, GAUSS))
    round_ = detect_stars(render((200, 250), truth, GAUSS, seed=1))
    long_ = detect_stars(render((200, 250), truth, GAUSS, seed=1, axis_ratio=0.7))  # b/a 0.7
    assert len(round_) == len(long_) == len(truth)
    assert np.median(round_["ellipticity"]) < 0.04
    assert abs(np.median(long_["ellipticity"]) - 0.3) < 0.04


def test_median_fwhm_uses_only_good_stars():
    stars = np.zeros(6, STAR_DTYPE)
    stars["fwhm"] = [3.0, 3.2, 3.4, 9.0, 9.0, 9.0]
    stars["snr"] = [50, 50, 50, 5, 50, 50]  # too faint
    stars["ellipticity"] = [0.1, 0.1, 0.1, 0.1, 0.6, 0.1]  # trailed
    stars["flags"] = [0, 0, 0, 0, 0, SATURATED]
    assert median_fwhm(stars) == pytest.approx(3.2)
    stars["flags"] = BLENDED
    assert np.isnan(median_fwhm(stars))
