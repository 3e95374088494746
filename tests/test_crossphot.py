"""Cross-convolved aperture photometry (``stacking.crossphot``): PSF models, weights, ratios.

The fields are rendered by the simulator (an oracle that does not import the pipeline's
photometry), blurred by known Gaussians (a demosaic-like blur), with Gaussian noise.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from sky_grids import tan_grid
from supadupstack.canvas.resample import Patch
from supadupstack.catalogue.detect import detect_stars
from supadupstack.simulate.sky import make_catalogue, render
from supadupstack.stacking.crossphot import (
    Psf,
    aperture_for,
    cross_fluxes,
    image_psf,
    ratio_of,
    weight_table,
)

N = 700


@pytest.fixture(scope="module")
def field():
    return make_catalogue(np.random.default_rng(3), 150.0, 30.0, 0.3, 800.0)


def _image(field, fwhm: float, beta: float, blur: float, scale: float = 1.0, seed: int = 1):
    img = render(tan_grid(N, N), (N, N), field, None, fwhm, beta, scale, None)[1]
    if blur > 0:
        img = gaussian_filter(img, blur)
    noise = np.random.default_rng(seed).normal(0.0, 3.0, img.shape)
    return (img + 100.0 + noise).astype(np.float32)


@pytest.mark.parametrize("fwhm", [3.2, 4.8, 6.4])
@pytest.mark.parametrize("beta", [2.5, 4.0])
def test_image_psf_undoes_a_known_blur(field, fwhm, beta) -> None:
    """The catalogue fits the blurred core (beta 3.9 for an optical 3.0 at 3.2 px): the PSF
    model must be the optics', recovered from the blur variance."""
    psf = image_psf(detect_stars(_image(field, fwhm, beta, 0.65)), 0.65**2)
    assert psf.fwhm == pytest.approx(fwhm, rel=0.06)
    assert psf.beta == pytest.approx(beta, abs=0.3 if fwhm < 4 else 0.2)
    raw = detect_stars(_image(field, fwhm, beta, 0.65))
    if fwhm < 4:  # the bite: without the correction the sharp stars' beta reads far too high
        assert image_psf(raw, 0.0).beta > beta + 0.35


def test_a_flat_sky_and_a_linear_gradient_read_zero() -> None:
    """The weights have no net sum and are symmetric: 1000 ADU of sky with a 10 % gradient
    across the field adds nothing to a star's flux (1 % of the sky left in the weights
    would read ~10 ADU × ~1000 px)."""
    yy, xx = np.mgrid[0:N, 0:N].astype(np.float32)
    sky = 1000.0 + 0.1 * 1000.0 * (0.6 * xx + 0.8 * yy) / N
    psf_x, psf_r = Psf(3.2, 3.0), Psf(6.4, 2.5)
    xs, ys = np.array([350.3, 200.8, 480.5]), np.array([350.6, 300.1, 410.9])
    m_x, m_r, e_x, _ = cross_fluxes(_patch(sky), _patch(sky * 1.3), xs, ys, psf_x, psf_r)
    assert m_x.shape == (3, 1)
    assert np.abs(m_x).max() < 0.05 and np.abs(m_r).max() < 0.05
    assert e_x.min() > 0
    r, u = weight_table(psf_r, aperture_for(psf_x, psf_r))
    assert 0.9 < u[0] < 1.0 and u.min() < 0 and r[-1] > 30  # u(0): the PSF's light in the aperture


def _patch(img: np.ndarray) -> Patch:
    return Patch(0, 0, img[..., None], np.ones(img.shape, np.float32))


def test_cross_fluxes_read_transparency_not_seeing(field) -> None:
    """Same stars, 2× seeing, transparency 0.8: the ratio of the cross-convolved fluxes is
    0.8 whatever the seeing, to 0.5 %."""
    sharp = _image(field, 3.2, 3.0, 0.0, 1.0, seed=1)
    broad = _image(field, 6.4, 3.0, 0.0, 0.8, seed=2)
    s_sharp, s_broad = detect_stars(sharp), detect_stars(broad)
    bright = s_sharp[(s_sharp["snr"] > 30) & (s_sharp["flags"] == 0)]
    m_x, m_r, e_x, e_r = cross_fluxes(
        _patch(broad),
        _patch(sharp),
        bright["x"],
        bright["y"],
        image_psf(s_broad),
        image_psf(s_sharp),
    )
    fit = ratio_of(m_r[:, 0], m_x[:, 0], e_r[:, 0], e_x[:, 0])
    assert fit.n_stars >= 30
    assert 0.0005 < fit.error < 0.003
    assert fit.value == pytest.approx(1 / 0.8, rel=0.005)


def test_ratio_of_clips_a_star_spoiled_in_one_image() -> None:
    """A bright star with a hot pixel in its aperture in one image is an outlier: clipped,
    not averaged in; the error follows the stars' scatter."""
    rng = np.random.default_rng(4)
    m_x = np.geomspace(1e4, 1e6, 40)
    e = 0.01 * m_x
    m_r = 1.25 * m_x * (1 + rng.normal(0, 0.01, m_x.size))
    m_r[-1] *= 1.2  # the brightest star, 20 % high
    fit = ratio_of(m_r, m_x, e, e)
    assert fit.n_stars == 39
    assert fit.value == pytest.approx(1.25, rel=0.006)
    assert 0.001 < fit.error < 0.006
    assert ratio_of(m_r[:4], m_x[:4], e[:4], e[:4]) is None


def test_noise_beside_stars_at_a_data_edge_is_unknown_not_a_warning(field) -> None:
    """Where every block beside the stars is no data (stars at the edge of a thin overlap, as
    in a real NGC 7023 run), the aperture noise is unknown: NaN, silently; the old code
    averaged an empty array (a numpy warning, then NaN errors in the flux ratios)."""
    import warnings

    from supadupstack.stacking.crossphot import _pixel_noise

    img = _image(field, 3.2, 3.0, 0.0)
    stars = detect_stars(img)
    psf = image_psf(stars)
    ap = aperture_for(psf, psf)
    iy = np.array([200, 300, 400])
    ix = np.array([250, 350, 450])
    holed = np.full_like(img, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        noise = _pixel_noise(_patch(holed), iy, ix, ap)
    assert noise.shape == (1,) and np.isnan(noise).all()
    assert np.isfinite(_pixel_noise(_patch(img), iy, ix, ap)).all()
