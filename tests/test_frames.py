"""Frame discovery and header reading: real Seestar subs, generic FITS, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from supadupstack.errors import FrameError
from supadupstack.frames.fits_io import load_pixels, read_frame, scan_inputs


def _write(path: Path, data, **cards) -> Path:
    hdu = fits.PrimaryHDU(data)
    for k, v in cards.items():
        hdu.header[k] = v
    hdu.writeto(path)
    return path


def test_scan_recurses_and_skips_thumbnails_and_stacks(tmp_path: Path) -> None:
    d = tmp_path / "night one" / "sub dir"
    d.mkdir(parents=True)
    img = np.zeros((32, 32), np.uint16)
    _write(d / "Light 1.fit", img)
    _write(tmp_path / "night one" / "Light 2.FITS", img)
    _write(d / "Stacked_12_M 94.fit", img)
    (d / "Light 1_thn.jpg").write_bytes(b"jpg")
    (d / "notes.txt").write_text("x")
    found, skips = scan_inputs([tmp_path])
    assert sorted(p.name for p in found) == ["Light 1.fit", "Light 2.FITS"]
    assert any("stacked product" in s.reason for s in skips)
    found2, _ = scan_inputs([tmp_path], include_stacked=True)
    assert len(found2) == 3


def test_real_seestar_header(m94_frames: list[Path]) -> None:
    f = read_frame(m94_frames[0])
    assert (f.width, f.height, f.kind, f.bayer_pattern) == (1080, 1920, "bayer", "GRBG")
    assert f.exposure_s == 10.0 and f.focal_mm == 250 and f.eq_mode is False
    assert f.date_obs.startswith("2025-03-27T01:20:32")
    assert abs(f.nominal_scale_arcsec - 2.39) < 0.01
    # JNow header RA/DEC precessed to J2000: RA decreases by ~0.3 deg over 25 years here
    assert f.ra_header == pytest.approx(193.04166)
    assert -0.35 < f.ra_hint - f.ra_header < -0.2
    raw = load_pixels(f)
    assert raw.shape == (1920, 1080) and raw.dtype == np.float32
    assert 800 < float(np.median(raw)) < 1000  # README: median 903 ADU (BZERO applied)


def test_generic_mono_and_colour(tmp_path: Path) -> None:
    mono = _write(tmp_path / "m.fits", np.ones((40, 50), np.float32))
    rgb = _write(
        tmp_path / "c.fits", np.ones((3, 40, 50), np.float32), EQUINOX=2000.0, RA=10.0, DEC=20.0
    )
    fm, fc = read_frame(mono), read_frame(rgb)
    assert (fm.kind, fm.width, fm.height) == ("mono", 50, 40)
    assert (fc.kind, fc.width, fc.height) == ("rgb", 50, 40)
    assert (fc.ra_hint, fc.dec_hint) == (10.0, 20.0)  # J2000 header: not precessed
    assert load_pixels(fc).shape == (3, 40, 50)


def test_image_in_extension(tmp_path: Path) -> None:
    p = tmp_path / "ext.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((30, 40), np.float32))]).writeto(p)
    f = read_frame(p)
    assert f.hdu_index == 1 and (f.width, f.height) == (40, 30)


@pytest.mark.parametrize(
    ("maker", "message"),
    [
        (lambda p: p.write_text("this is not a FITS file\n" * 20), "not a readable FITS file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: fits.PrimaryHDU().writeto(p), "no 2-D or 3-D image data"),
        (
            lambda p: fits.PrimaryHDU(np.zeros((4, 4, 40, 40), np.float32)).writeto(p),
            "no 2-D or 3-D",
        ),
    ],
)
def test_bad_files_give_one_line_reasons(tmp_path: Path, maker, message: str) -> None:
    p = tmp_path / "bad.fit"
    maker(p)
    with pytest.raises(FrameError) as exc:
        read_frame(p)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_truncated_fits(tmp_path: Path, m94_frames: list[Path]) -> None:
    p = tmp_path / "trunc.fit"
    p.write_bytes(m94_frames[0].read_bytes()[:1_000_000])
    with pytest.raises(FrameError, match="truncated FITS"):
        read_frame(p)
