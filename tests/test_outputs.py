"""Outputs: FITS layout, preview orientation and colour balance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from supadupstack.config import OutputConfig
from supadupstack.outputs.color import star_white_balance
from supadupstack.outputs.write import write_fits, write_preview
from supadupstack.polish.mosaic import Mosaic


def _wcs(h: int, w: int) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [10.0, 20.0]
    wcs.wcs.crpix = [w / 2, h / 2]
    wcs.wcs.cdelt = [-2.38 / 3600, 2.38 / 3600]
    return wcs


def _star_field(h=300, w=400, colour=(0.8, 1.0, 0.6), seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float32) + np.array([500.0, 600.0, 450.0], np.float32)
    for _ in range(60):
        y, x, f = rng.uniform(15, h - 15), rng.uniform(15, w - 15), rng.uniform(5e3, 5e4)
        psf = f / (2 * np.pi * 1.6**2) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.6**2))
        img += psf[..., None] * np.array(colour, np.float32)
    return img + rng.normal(0, 3, img.shape).astype(np.float32)


def test_white_balance_makes_stars_neutral() -> None:
    img = _star_field(colour=(0.8, 1.0, 0.6))
    factors = star_white_balance(img, np.ones(img.shape[:2], bool))
    np.testing.assert_allclose(factors, [1 / 0.8, 1.0, 1 / 0.6], rtol=0.03)


def test_fits_layout_and_preview_orientation(tmp_path: Path) -> None:
    h, w = 120, 160
    img = np.full((h, w, 3), 100.0, np.float32)
    img[:10] = 5000.0  # a bright band at FITS row 0 (south for a north-up canvas)
    cov = np.full((h, w), 4.0, np.float32)
    cov[:, :20] = 0  # no data on the left
    m = Mosaic.from_arrays(img, cov, _wcs(h, w))
    write_fits(m, tmp_path / "o.fits", {"NFRAMES": (4, "frames"), "LONGKEYWORD": (1.5, "x")})
    with fits.open(tmp_path / "o.fits") as hdul:
        assert hdul[0].data.shape == (3, h, w) and hdul[0].header["NFRAMES"] == 4
        assert hdul[0].header["LONGKEYWORD"] == 1.5
        assert (hdul[0].data[:, :, :20] == 0).all()  # output.nodata default: zero
        assert (hdul["ALPHA"].data[:, :20] == 0).all() and (hdul["ALPHA"].data[:, 20:] == 255).all()
        assert WCS(hdul[0].header).wcs.crval[0] == 10.0
    write_preview(m, tmp_path / "o.png", OutputConfig(white_balance="none"))
    png = np.asarray(Image.open(tmp_path / "o.png"))
    assert png.shape == (h, w, 4)
    assert (png[:, :20, 3] == 0).all() and (png[:, 20:, 3] == 255).all()
    assert png[-5, 80, :3].min() > 200  # FITS row 0 is drawn at the bottom
    assert png[5, 80, :3].max() < 200


def test_downscaled_preview_has_no_dark_fringe_at_data_edges(tmp_path: Path) -> None:
    """Premultiplied averaging: a block half no-data keeps the data's colour, half alpha."""
    h, w = 400, 400
    rng = np.random.default_rng(3)
    img = (600.0 + rng.normal(0, 3, (h, w, 3))).astype(np.float32)
    cov = np.full((h, w), 4.0, np.float32)
    cov[:, :202] = 0  # the edge falls inside a 4-px preview block
    m = Mosaic.from_arrays(img, cov, _wcs(h, w))
    write_preview(m, tmp_path / "o.png", OutputConfig(white_balance="none", preview_max_side=100))
    png = np.asarray(Image.open(tmp_path / "o.png")).astype(float)
    edge, inside = png[:, 50], png[:, 60]  # the block holding the edge, and one inside
    assert 100 < edge[:, 3].mean() < 155  # half of the block has data
    level = inside[:, :3].mean(axis=0)  # the stretched sky, ~60 of 255 (a fringe: ~30)
    assert np.abs(edge[:, :3].mean(axis=0) - level).max() < 0.15 * level.min()
