"""Canvas: footprints, union, RA wrap, cos(dec), scale, orientation, padding."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from supadupstack.canvas import CanvasError, build_canvas, canvas_from_frames, frame_footprint
from supadupstack.config import CanvasConfig


def _frame_wcs(ra, dec, scale_arcsec=2.4, rot_deg=0.0, w=1080, h=1920) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(w + 1) / 2, (h + 1) / 2]
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    wcs.wcs.cd = scale_arcsec / 3600 * np.array([[-c, s], [s, c]])
    wcs.wcs.set()
    return wcs


def _inside(canvas, radec, pad):
    x, y = canvas.wcs.wcs_world2pix(radec[:, 0], radec[:, 1], 0)
    h, w = canvas.shape
    assert x.min() >= pad - 0.5 - 1e-6 and y.min() >= pad - 0.5 - 1e-6
    assert x.max() <= w - 0.5 - pad + 1.0 + 1e-6 and y.max() <= h - 0.5 - pad + 1.0 + 1e-6
    return x, y


def test_footprint_follows_the_frame_edges():
    wcs = _frame_wcs(150.0, 20.0)
    fp = frame_footprint(wcs, 1080, 1920, n_edge=8)
    assert fp.shape == (32, 2)
    corner = wcs.all_pix2world([[-0.5, -0.5]], 0)[0]
    assert np.allclose(fp[0], corner)
    x, y = wcs.all_world2pix(fp[:, 0], fp[:, 1], 0)
    on_edge = np.isclose(x, -0.5) | np.isclose(x, 1079.5) | np.isclose(y, -0.5)
    assert np.all(on_edge | np.isclose(y, 1919.5))


def test_north_up_union_with_padding_and_median_scale():
    wcss = [_frame_wcs(150.0, 20.0), _frame_wcs(150.3, 20.1, 2.5), _frame_wcs(149.9, 19.8, 2.3)]
    cfg = CanvasConfig(padding_px=5)
    canvas = canvas_from_frames(wcss, [(1920, 1080)] * 3, cfg)
    assert canvas.scale_arcsec == pytest.approx(2.4, rel=1e-6)
    for w in wcss:
        _inside(canvas, frame_footprint(w, 1080, 1920), 5)
    # north up, east left: +y goes to higher dec, +x to lower RA
    cy, cx = canvas.height / 2, canvas.width / 2
    (ra0, d0), (ra1, d1), (ra2, d2) = canvas.wcs.wcs_pix2world(
        [[cx, cy], [cx, cy + 10], [cx + 10, cy]], 0
    )
    assert d1 > d0 and abs(ra1 - ra0) < 1e-9 + abs(d1 - d0) * 0.05
    assert ra2 < ra0
    # all frames together: the union spans from RA 149.9 - half frame to 150.3 + half frame
    fixed = build_canvas(
        [frame_footprint(wcss[0], 1080, 1920)],
        [9.0],
        CanvasConfig(pixel_scale_arcsec=4.8, padding_px=0),
    )
    assert fixed.scale_arcsec == pytest.approx(4.8)
    assert abs(fixed.width - 540) <= 2 and abs(fixed.height - 960) <= 2


def test_ra_wrap_and_high_declination():
    wcss = [_frame_wcs(359.9, 10.0), _frame_wcs(0.1, 10.0)]
    canvas = canvas_from_frames(wcss, [(1920, 1080)] * 2, CanvasConfig(padding_px=0))
    sep_px = 0.2 * 3600 * np.cos(np.radians(10)) / 2.4
    assert canvas.width == pytest.approx(1080 + sep_px, abs=3)
    polar = [_frame_wcs(0.0, 89.7), _frame_wcs(180.0, 89.7)]  # 0.6 deg apart through the pole
    for orient in ("north_up", "min_area"):
        cfg = CanvasConfig(padding_px=0, orientation=orient)
        canvas = canvas_from_frames(polar, [(1920, 1080)] * 2, cfg)
        for w in polar:
            _inside(canvas, frame_footprint(w, 1080, 1920), 0)
    # both frames lie along one great circle through the pole: 1920 + 900 px long, 1080 wide
    assert sorted(canvas.shape) == pytest.approx([1080, 1920 + 0.6 * 3600 / 2.4], abs=3)


def test_min_area_rotation_fits_a_rotated_frame():
    wcs = _frame_wcs(80.0, -30.0, rot_deg=35.0)
    fp = [frame_footprint(wcs, 1080, 1920)]
    north = build_canvas(fp, [2.4], CanvasConfig(padding_px=0))
    rot = build_canvas(fp, [2.4], CanvasConfig(orientation="min_area", padding_px=0))
    assert rot.shape[0] * rot.shape[1] < 0.6 * north.shape[0] * north.shape[1]
    assert sorted(rot.shape) == pytest.approx([1080, 1920], abs=3)
    _inside(rot, fp[0], 0)


def test_errors_are_user_facing():
    with pytest.raises(CanvasError, match="no frame footprints"):
        build_canvas([], [], CanvasConfig())
    far = [
        frame_footprint(_frame_wcs(0, 0), 1080, 1920),
        frame_footprint(_frame_wcs(180, 0), 1080, 1920),
    ]
    with pytest.raises(CanvasError):
        build_canvas(far, [2.4, 2.4], CanvasConfig())
