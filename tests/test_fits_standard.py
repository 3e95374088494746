"""The final FITS as other tools read it: standard header, TILES table, WCS on every image
extension, the no-data convention, and Siril 1.0 loading it with finite statistics."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from supadupstack.frames.model import Frame
from supadupstack.outputs.products import run_cards
from supadupstack.outputs.tiles import TileTable
from supadupstack.outputs.write import write_fits
from supadupstack.polish.mosaic import Mosaic

SCALE = 2.5  # arcsec/px of the test grid
H, W = 60, 80


def _wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [83.8, -5.4]
    wcs.wcs.crpix = [W / 2, H / 2]
    wcs.wcs.cdelt = [-SCALE / 3600, SCALE / 3600]
    return wcs


def _mosaic(seed: int = 3) -> Mosaic:
    """Sky ~500 ADU with noise, no data in the 15 left columns and a corner."""
    rng = np.random.default_rng(seed)
    img = (500.0 + rng.normal(0, 5, (H, W, 3))).astype(np.float32)
    img *= np.array([1.0, 1.2, 0.8], np.float32)
    cov = np.full((H, W), 6.0, np.float32)
    cov[:, :15] = 0
    cov[-10:, -10:] = 0
    return Mosaic.from_arrays(img, cov, _wcs())


def _frame(i: int, start: str, exp: float | None, obj: str, unit: str, filt: str | None) -> Frame:
    t = Time(start, format="isot", scale="utc")
    return Frame(
        path=Path(f"/data/f{i}.fit"),
        width=1080,
        height=1920,
        kind="bayer",
        exposure_s=exp,
        date_obs=t.isot,
        mjd_obs=float(t.mjd),
        filter_name=filt,
        instrument="Seestar S50",
        telescope=unit,
        object_name=obj,
        focal_mm=250.0,
        pixel_um=2.9,
    )


FRAMES = [
    _frame(0, "2024-03-01T20:00:10.000", 10.0, "M 42", "S50_A", "IRCUT"),
    _frame(1, "2024-03-01T20:00:00.000", 10.0, "M 42", "S50_A", "IRCUT"),
    _frame(2, "2024-03-01T21:30:00.000", 20.0, "M 42", "S50_B", "LP"),
    _frame(3, "2024-03-01T21:00:00.000", 10.0, "Orion", "S50_B", "IRCUT"),
    _frame(4, "2024-03-02T01:00:00.000", 10.0, "Other", "S50_C", None),  # not used
]
USED = [str(f.path) for f in FRAMES[:4]]


def _table() -> TileTable:
    table = TileTable()
    table.add("TILE", [0, 1], "tile index")
    table.add("GAIN", [[1.0, 1.0, 1.0], [0.97, 0.98, 0.99]], "gain")
    table.add("OFFSET", [[0.0, 0.0, 0.0], [1.5, -2.0, 0.25]], "offset", "ADU")
    table.add("NFRAMES", [3, 1], "frames")
    table.add("REFERENCE", [True, False], "reference")
    table.add("STAR_RATIO", [1.0, None], "star check")
    return table


def _written(tmp_path: Path, nodata: str = "zero") -> Path:
    m = _mosaic()
    cards = run_cards("sds", USED, FRAMES, m.wcs)
    return write_fits(m, tmp_path / "o.fits", cards, nodata, _table())


def test_standard_header_from_frame_facts(tmp_path: Path) -> None:
    with fits.open(_written(tmp_path)) as h:
        hdr = h[0].header
    assert hdr["DATE-OBS"] == "2024-03-01T20:00:00.000"  # earliest start, not the first listed
    assert hdr["DATE-END"] == "2024-03-01T21:30:20.000"  # last start + its 20 s
    assert hdr["MJD-OBS"] == pytest.approx(Time("2024-03-01T20:00:00").mjd, abs=1e-8)
    assert hdr["EXPTIME"] == 10.0  # median sub-exposure of the frames used
    assert hdr["TOTALEXP"] == hdr["LIVETIME"] == 50.0
    assert hdr["NCOMBINE"] == hdr["STACKCNT"] == hdr["NFRAMES"] == 4
    assert hdr["OBJECT"] == "M 42"
    assert any("M 42 (3), Orion (1)" in str(c) for c in hdr["HISTORY"])
    assert hdr["TELESCOP"] == "S50_A, S50_B" and hdr["INSTRUME"] == "Seestar S50"
    assert hdr["FILTER"] == "IRCUT, LP"
    assert hdr["PIXSCALE"] == pytest.approx(SCALE, rel=1e-6)
    assert hdr["XPIXSZ"] == hdr["YPIXSZ"] == 2.9
    assert hdr["FOCALLEN"] == pytest.approx(2.9 * 206.264806 / SCALE, abs=1e-3)
    assert hdr["BUNIT"] == "ADU" and hdr["CREATOR"].startswith("supadupstack")
    assert "EXPTOTAL" not in hdr and not any(k.startswith("GAIN") for k in hdr)


def test_keys_the_frames_lack_are_left_out() -> None:
    bare = [Frame(path=Path("/d/a.fit"), width=10, height=10, kind="mono")]
    cards = run_cards("classic", ["/d/a.fit"], bare, None)
    for key in ("DATE-OBS", "DATE-END", "EXPTIME", "TOTALEXP", "OBJECT", "FILTER", "FOCALLEN"):
        assert key not in cards
    assert cards["NCOMBINE"][0] == 1
    partial = [_frame(0, "2024-03-01T20:00:00", 10.0, "X", "U", "F")]
    partial.append(_frame(1, "2024-03-01T20:01:00", None, "X", "U", "F"))
    cards = run_cards("sds", [str(f.path) for f in partial], partial, _wcs())
    assert cards["EXPTIME"][0] == 10.0 and "TOTALEXP" not in cards and "DATE-END" not in cards


def test_every_extension_round_trips(tmp_path: Path) -> None:
    m = _mosaic()
    with fits.open(_written(tmp_path)) as h:
        assert [x.name for x in h] == ["PRIMARY", "COVERAGE", "ALPHA", "TILES"]
        for name in ("PRIMARY", "COVERAGE", "ALPHA"):
            wcs = WCS(h[name].header).celestial
            assert wcs.has_celestial, name
            np.testing.assert_allclose(wcs.wcs.crval, m.wcs.wcs.crval, rtol=0, atol=1e-12)
            np.testing.assert_allclose(wcs.wcs.crpix, m.wcs.wcs.crpix, rtol=0, atol=1e-12)
            np.testing.assert_allclose(wcs.pixel_scale_matrix, m.wcs.pixel_scale_matrix)
            assert list(wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"], name
        np.testing.assert_array_equal(h["COVERAGE"].data, m.coverage)
        np.testing.assert_array_equal(h["ALPHA"].data, m.alpha)
        t = h["TILES"].data
        assert list(t["TILE"]) == [0, 1] and list(t["NFRAMES"]) == [3, 1]
        np.testing.assert_array_equal(t["GAIN"], [[1.0, 1.0, 1.0], [0.97, 0.98, 0.99]])
        np.testing.assert_array_equal(t["OFFSET"], [[0.0, 0.0, 0.0], [1.5, -2.0, 0.25]])
        assert list(t["REFERENCE"]) == [True, False]
        assert t["STAR_RATIO"][0] == 1.0 and math.isnan(t["STAR_RATIO"][1])
        assert h["TILES"].columns["OFFSET"].unit == "ADU"


@pytest.mark.parametrize("nodata", ["zero", "nan"])
def test_nodata_convention(tmp_path: Path, nodata: str) -> None:
    m = _mosaic()
    with fits.open(_written(tmp_path, nodata)) as h:
        data, alpha = h[0].data, h["ALPHA"].data
        assert h[0].header["NODATA"] == nodata
    empty = alpha == 0
    assert empty.sum() == 15 * H + 10 * 10  # the 15 left columns + the 10x10 corner
    np.testing.assert_array_equal(data[:, ~empty], np.moveaxis(m.image, -1, 0)[:, ~empty])
    if nodata == "zero":
        assert np.isfinite(data).all() and (data[:, empty] == 0).all()
        assert (data[:, ~empty] != 0).all()
    else:
        assert np.isnan(data[:, empty]).all() and np.isfinite(data[:, ~empty]).all()
    assert np.isnan(m.image[empty]).all()  # the in-memory mosaic keeps NaN


def _siril_stats(exe: str, fits_path: Path, work: Path) -> dict[str, list[float]]:
    """Siril's ``stat`` of ``fits_path``: {layer name: [mean, median, sigma]} from its stdout."""
    shutil.copyfile(fits_path, work / "img.fits")
    (work / "cfg").mkdir()
    (work / "run.ssf").write_text("requires 1.0.0\nload img.fits\nstat\nclose\n")
    env = dict(os.environ, XDG_CONFIG_HOME=str(work / "cfg"))
    cmd = [exe, "-d", str(work), "-s", str(work / "run.ssf")]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    text = run.stdout + run.stderr
    assert run.returncode == 0, text[-2000:]
    num = r"(-?[\d.]+(?:e[+-]?\d+)?|-?nan|-?inf)"
    found = re.findall(
        rf"(\w+) layer: Mean: {num}, Median: {num}, Sigma: {num}", text, flags=re.IGNORECASE
    )
    assert found, f"no statistics in Siril's output:\n{text[-2000:]}"
    return {layer: [float(v) for v in vals] for layer, *vals in found}


def test_siril_loads_it_with_finite_statistics(tmp_path: Path) -> None:
    exe = shutil.which("siril-cli")
    if exe is None:
        pytest.skip("siril-cli is not installed (Debian package siril)")
    stats = _siril_stats(exe, _written(tmp_path), tmp_path)
    assert len(stats) == 3, stats
    for layer, (mean, median, sigma) in stats.items():
        assert all(math.isfinite(v) for v in (mean, median, sigma)), (layer, stats)
        # Siril leaves zero pixels out of its statistics: the spread is the sky noise (1 %),
        # not the 0-vs-sky step of the no-data region (~40 % of the mean). Scale-free, since
        # Siril may rescale float data.
        assert mean > 0 and 0 < sigma < 0.03 * mean, (layer, stats)
