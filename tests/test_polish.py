"""Polish steps on synthetic mosaics: coverage cut, autocrop WCS, alt-az mask, quality crop."""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS

from supadupstack.polish.mosaic import Mosaic
from supadupstack.polish.steps import altaz_cleanup, autocrop, coverage_cut, quality_crop


def _wcs(h: int, w: int) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [192.75, 41.12]
    wcs.wcs.crpix = [w / 2 + 0.5, h / 2 + 0.5]
    wcs.wcs.cdelt = [-2.38 / 3600, 2.38 / 3600]
    wcs.pixel_shape = (w, h)
    return wcs


def _mosaic(
    coverage: np.ndarray, level: float = 100.0, noise: float = 1.0, seed: int = 0
) -> Mosaic:
    rng = np.random.default_rng(seed)
    h, w = coverage.shape
    img = (level + rng.normal(0, noise, (h, w, 3))).astype(np.float32)
    return Mosaic.from_arrays(img, coverage.astype(np.float32), _wcs(h, w))


def test_coverage_cut_threshold() -> None:
    cov = np.tile(np.linspace(0, 10, 101, dtype=np.float32), (20, 1))  # 0.0 .. 10.0 by 0.1
    m = _mosaic(cov)
    facts = coverage_cut(m, 0.4)
    kept = m.alpha[0] > 0
    # coverage / max >= 0.4  <=>  coverage >= 4.0  <=>  column index >= 40
    assert kept.tolist() == [i >= 40 for i in range(101)]
    assert np.isnan(m.image[:, :40]).all() and np.isfinite(m.image[:, 40:]).all()
    assert (m.coverage[:, :40] == 0).all()
    assert facts["dropped"] == 20 * 39  # column 0 had coverage 0 already


def test_autocrop_keeps_sky_positions() -> None:
    cov = np.zeros((200, 300), np.float32)
    cov[37:171, 52:260] = 5
    m = _mosaic(cov)
    star_pix = (123.25, 97.75)  # (x, y) inside the valid box
    ra, dec = m.wcs.pixel_to_world_values(*star_pix)
    autocrop(m, margin=0)
    assert m.shape == (171 - 37, 260 - 52)
    x, y = m.wcs.world_to_pixel_values(ra, dec)
    assert abs(x - (star_pix[0] - 52)) < 0.01 and abs(y - (star_pix[1] - 37)) < 0.01
    assert (m.alpha > 0).all()
    assert m.coverage.shape == m.alpha.shape == m.image.shape[:2]


def test_altaz_cleanup_masks_rotated_corners() -> None:
    h, w = 300, 300
    yy, xx = np.mgrid[0:h, 0:w]
    cov = np.zeros((h, w), np.float32)
    # two square fields, the second rotated by 40 deg around the centre
    for ang in (0.0, np.deg2rad(40)):
        u = (xx - 150) * np.cos(ang) + (yy - 150) * np.sin(ang)
        v = -(xx - 150) * np.sin(ang) + (yy - 150) * np.cos(ang)
        cov += ((np.abs(u) < 100) & (np.abs(v) < 100)).astype(np.float32) * 10
    m = _mosaic(cov)
    altaz_cleanup(m, keep_fraction=0.75)
    assert m.alpha[150, 150] == 255
    # a corner only the first field covers (coverage 10 of 20) is masked
    assert cov[55, 55] == 10 and m.alpha[55, 55] == 0 and np.isnan(m.image[55, 55]).all()
    # alpha is feathered: it ramps up from the mask edge over ~16 px
    row = m.alpha[150, :]
    inside = np.nonzero(row)[0]
    assert 0 < row[inside[0]] < 255 and row[inside[0] + 20] == 255


def test_quality_crop_trims_bad_borders() -> None:
    cov = np.full((320, 384), 10, np.float32)
    m = _mosaic(cov, noise=1.0)
    rng = np.random.default_rng(1)
    m.image[:, :64] = 100 + rng.normal(0, 8, (320, 64, 3))  # noisy left border (few frames)
    m.image[-32:, :] = 40.0  # dark bottom border
    facts = quality_crop(m)
    assert facts["box"] == [0, 288, 64, 384]
    assert m.shape == (288, 320)


def test_two_pass_renorm_evens_low_coverage_borders() -> None:
    h, w = 200, 300
    cov = np.full((h, w), 20, np.float32)
    cov[:, :60] = 5  # a border where few frames contribute
    m = _mosaic(cov, level=100.0, noise=0.5)
    m.image[:, :60] *= 0.9  # ... and whose level came out 10 % low
    from supadupstack.polish.steps import two_pass_renorm

    facts = two_pass_renorm(m, sigma=10.0, gain_min=0.85, gain_max=1.18)
    assert facts["applied"] and facts["gain_max"] > 1.05
    border = float(np.median(m.image[:, 5:40, 1]))
    core = float(np.median(m.image[:, 150:, 1]))
    assert abs(border / core - 1) < 0.04  # was 10 % low
    assert abs(core - 100.0) < 0.5  # the well-covered area is untouched
