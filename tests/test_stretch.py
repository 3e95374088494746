"""Preview stretch (issue 14, item 4): a dark-grey sky, an unclipped galaxy core, no-data
transparent, monotonic curves, byte-identical output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.wcs import WCS

from supadupstack.config import OutputConfig
from supadupstack.outputs.stretch import data_peak
from supadupstack.outputs.write import preview_rgba, stretch, write_preview
from supadupstack.polish.mosaic import Mosaic

SKY, NOISE, CORE = 600.0, 10.0, 8000.0  # ADU: sky level, its σ, galaxy peak above the sky
H, W, GY, GX = 320, 360, 160, 180  # image size and galaxy centre


def _wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [10.0, 20.0]
    wcs.wcs.crpix = [W / 2, H / 2]
    wcs.wcs.cdelt = [-2.38 / 3600, 2.38 / 3600]
    return wcs


def _galaxy_field(channels: int = 3, stars: bool = True, seed: int = 5) -> np.ndarray:
    """Flat sky + Gaussian noise + an exponential disc with a compact bulge (peak CORE above
    the sky, far above the 99.95th percentile) + a few stars, linear ADU (H, W, C)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r = np.hypot((yy - GY) / 0.7, xx - GX)
    galaxy = 0.25 * CORE * np.exp(-r / 18.0) + 0.75 * CORE * np.exp(-((r / 2.5) ** 2))
    img = SKY + galaxy
    if stars:
        for y, x, peak in [(40, 50, 20000), (260, 300, 12000), (80, 300, 3000), (250, 60, 900)]:
            img = img + peak * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.2**2))
    img = img[..., None] * np.array([1.0, 1.1, 0.9][:channels], np.float32)
    return (img + rng.normal(0, NOISE, img.shape)).astype(np.float32)


def _mosaic(img: np.ndarray) -> Mosaic:
    cov = np.full((H, W), 4.0, np.float32)
    cov[:, :30] = 0  # no data on the left
    img = img.copy()
    img[5:9, 200:204] = np.nan  # a hole inside the data
    return Mosaic.from_arrays(img, cov, _wcs())


def _preview(img: np.ndarray, **cfg) -> np.ndarray:
    """The 8-bit preview as float in image orientation (row 0 = FITS row 0)."""
    cfg.setdefault("white_balance", "none")
    return preview_rgba(_mosaic(img), OutputConfig(**cfg))[::-1].astype(float)


def _sky_median(png: np.ndarray) -> np.ndarray:
    far = np.hypot(*np.mgrid[0:H, 0:W] - np.array([GY, GX])[:, None, None]) > 120
    return np.median(png[far & (png[..., 3] == 255), :3], axis=0) / 255


@pytest.mark.parametrize("method", ["ghs", "asinh", "mtf"])
def test_sky_dark_grey_and_galaxy_core_unclipped(method: str) -> None:
    png = _preview(_galaxy_field(), stretch=method)
    assert np.all((_sky_median(png) > 0.20) & (_sky_median(png) < 0.25)), _sky_median(png)
    core = png[GY - 2 : GY + 3, GX - 2 : GX + 3, :3]
    assert core.max() < 255  # the core keeps its gradient: its brightest pixel is not clipped
    assert core.max() > png[GY, GX + 8, :3].max() > png[GY, GX + 40, :3].max()


def test_default_curve_shows_the_faint_disc() -> None:
    """3.5 σ of disc above the sky is lifted well clear of the sky (the old stretch: ~0.1)."""
    png = _preview(_galaxy_field(stars=False))
    r = 18.0 * np.log(0.25 * CORE / (3.5 * NOISE))  # disc radius where it is 3.5 σ
    boxes = [png[GY - 2 : GY + 3, int(x) - 2 : int(x) + 3, :3] for x in (GX - r, GX + r)]
    ring = np.mean(boxes) / 255
    assert ring - _sky_median(png).mean() > 0.1
    assert png[GY - 1 : GY + 2, GX - 1 : GX + 2, :3].max() < 255  # the core is the peak: unclipped


def test_colour_balanced_sky_is_neutral_per_channel() -> None:
    png = _preview(_galaxy_field(), white_balance="stars")
    sky = _sky_median(png)
    assert np.all((sky > 0.20) & (sky < 0.25)) and np.ptp(sky) < 0.01


def test_no_data_is_zero_and_transparent_and_curve_monotonic() -> None:
    m = _mosaic(_galaxy_field())
    valid = (m.alpha > 0) & np.isfinite(m.image).all(axis=-1)
    out = stretch(m.image, valid, "ghs")
    assert np.isfinite(out).all() and (out[~valid] == 0).all() and out.max() <= 1
    png = preview_rgba(m, OutputConfig(white_balance="none"))[::-1]
    assert (png[~valid] == 0).all() and (png[valid, 3] == 255).all()
    for c in range(3):
        order = np.argsort(m.image[..., c][valid], kind="stable")
        assert (np.diff(out[..., c][valid][order]) >= 0).all()


def test_mono_image() -> None:
    png = _preview(_galaxy_field(channels=1))
    assert png.shape == (H, W, 4)
    assert (png[..., 0] == png[..., 1]).all() and (png[..., 1] == png[..., 2]).all()
    assert 0.20 < _sky_median(png)[0] < 0.25 and png[GY, GX, 0] < 255


def test_a_hot_pixel_does_not_set_the_white_point() -> None:
    img = _galaxy_field(stars=False, channels=1)
    valid = np.ones((H, W), bool)
    clean = data_peak(img[..., 0], valid, SKY)
    img[100, 100] = 1e6  # a one-pixel spike left in the stack
    assert data_peak(img[..., 0], valid, SKY) == clean
    assert _preview(img)[GY, GX, 0] > 240  # the core still reaches near white


def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    m = _mosaic(_galaxy_field())
    write_preview(m, tmp_path / "a.png", OutputConfig())
    write_preview(m, tmp_path / "b.png", OutputConfig())
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
