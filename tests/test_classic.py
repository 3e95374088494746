"""Classic mode pieces: grouping, local grids, overlap ratios, the global harmonisation
solution, feathering, and bad input (a group whose frames are all rejected)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from supadupstack import cli
from supadupstack.canvas.canvas import canvas_from_frames
from supadupstack.classic.assembly import feather_weight
from supadupstack.classic.groups import group_frames
from supadupstack.classic.master_tile import local_canvas
from supadupstack.classic.overlap import overlap_ratio
from supadupstack.config import CanvasConfig, ClassicConfig
from supadupstack.frames.model import Frame
from supadupstack.simulate import camera, simulate_dataset
from supadupstack.stacking.gain_solver import PairFit, residuals, solve

W, H = 1080, 1920
S = camera.PIXEL_ARCSEC / 3600.0


def _frame(i: int, dx_px: float, dy_px: float, up: float = -178.6) -> Frame:
    """A Seestar-like frame pointed (dx, dy) frame pixels from a fixed field centre."""
    dec = 41.12 + dy_px * S
    ra = 192.72 + dx_px * S / math.cos(math.radians(dec))
    return Frame(
        path=Path(f"/nowhere/f{i:03d}.fit"),
        width=W,
        height=H,
        kind="bayer",
        wcs=camera.frame_wcs(ra, dec, up, W, H),
        wcs_source="sidecar",
    )


def _mosaic_frames(per_panel: int = 3) -> list[Frame]:
    frames = []
    for k, (px, py) in enumerate([(-1, -1), (1, -1), (-1, 1), (1, 1)]):
        for n in range(per_panel):
            jitter = (7 * n) % 11 - 5
            frames.append(
                _frame(len(frames), px * 410 + jitter, py * 749 - jitter, -178.6 + 0.3 * k)
            )
    return frames


def test_groups_are_panels_in_time_order() -> None:
    frames = _mosaic_frames(3)
    groups = group_frames(frames, ClassicConfig())
    assert [len(g.frames) for g in groups] == [3, 3, 3, 3]
    for g, first in zip(groups, range(0, 12, 3), strict=True):
        assert [f.path.name for f in g.frames] == [f"f{i:03d}.fit" for i in range(first, first + 3)]
    # panels are 820 px (0.54°) apart in RA: the group centres say so
    dra = (groups[1].centre[0] - groups[0].centre[0]) * math.cos(math.radians(groups[0].centre[1]))
    assert dra == pytest.approx(820 * S, abs=3 * S)
    # a threshold above the panel spacing merges them into one pointing
    assert len(group_frames(frames, ClassicConfig(group_distance=1.5))) == 1


def test_large_groups_split_in_time_order() -> None:
    frames = [_frame(i, (i % 3) * 4.0, 0.0) for i in range(7)]
    groups = group_frames(frames, ClassicConfig(max_frames_per_tile=3))
    assert [len(g.frames) for g in groups] == [3, 2, 2]
    assert [f for g in groups for f in g.frames] == frames
    assert {g.pointing for g in groups} == {0}


def test_local_grid_is_pixel_aligned_with_the_canvas() -> None:
    frames = _mosaic_frames(2)
    canvas = canvas_from_frames([f.wcs for f in frames], [(H, W)] * len(frames), CanvasConfig())
    group = group_frames(frames, ClassicConfig())[3]
    local, (y0, x0) = local_canvas(group.frames, canvas, group.centre)
    h, w = local.shape
    assert W <= w < W + 120 and H <= h < H + 120  # frames are rotated by ~2°
    ys, xs = np.mgrid[0:h:97, 0:w:97]
    ra, dec = local.wcs.wcs_pix2world(xs.ravel(), ys.ravel(), 0)
    cx, cy = canvas.wcs.wcs_world2pix(ra, dec, 0)
    # a near-integer shift everywhere: tile → canvas resampling hardly blurs
    assert np.max(np.abs(cx - xs.ravel() - x0)) < 0.15
    assert np.max(np.abs(cy - ys.ravel() - y0)) < 0.15
    # every frame of the group lies inside the local grid
    for f in group.frames:
        fx, fy = local.wcs.wcs_world2pix(*f.wcs.all_pix2world([0, W - 1], [0, H - 1], 0), 0)
        assert fx.min() > 0 and fy.min() > 0 and fx.max() < w - 1 and fy.max() < h - 1


def _blob_field(shape, rng) -> np.ndarray:
    """Noise-free signal: 40 Gaussian stars and one extended exponential galaxy."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 300.0 * np.exp(-np.hypot(xx - w * 0.6, yy - h * 0.4) / 25.0)
    for _ in range(40):
        x, y, f = rng.uniform(10, w - 10), rng.uniform(10, h - 10), rng.uniform(2e3, 5e4)
        img += f / (2 * np.pi * 1.6**2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.6**2))
    return img


def test_overlap_ratio_recovers_the_transparency_ratio() -> None:
    rng = np.random.default_rng(3)
    shape = (300, 900)
    signal = _blob_field(shape, rng)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] / 900.0
    ti, tj = 1.07, 0.95
    a = ti * signal + 1100 + 30 * xx - 12 * yy
    b = tj * signal + 700 - 20 * xx + 25 * yy
    xi = np.stack([a + rng.normal(0, 25, shape) for _ in range(3)], axis=-1).astype(np.float32)
    xj = np.stack([b + rng.normal(0, 15, shape) for _ in range(3)], axis=-1).astype(np.float32)
    both = np.ones(shape, bool)
    both[:, :40] = False
    res = overlap_ratio(xi, xj, both)
    assert res is not None and res.n_sources >= 10
    assert res.ratio == pytest.approx(ti / tj, rel=0.005)
    assert 0 < res.rel_error < 0.01
    assert overlap_ratio(xi, xj, np.zeros(shape, bool)) is None


def _pair(i: int, j: int, g: list[float], sky: list[float], weight: float = 1e4) -> PairFit:
    # tile k's level is sky[k] + signal / g[k]: g·tile + o agree when o = c − g·sky
    return PairFit(
        i, j, [g[j] / g[i]] * 3, [0.0] * 3, [sky[i]] * 3, [sky[j]] * 3, 9, 5000, "t", weight
    )


def test_global_solution_recovers_gains_and_offsets() -> None:
    g = [1.0, 1.12, 0.93, 1.05]
    sky = [1000.0, 800.0, 1200.0, 900.0]
    pairs = [_pair(0, 1, g, sky), _pair(1, 2, g, sky), _pair(0, 2, g, sky), _pair(2, 3, g, sky)]
    harmony = solve([0, 1, 2, 3], pairs, 0, [1, 1, 1, 1], 3, (0.5, 2.0))
    for k, h in enumerate(harmony):
        assert h.gain[1] == pytest.approx(g[k], rel=1e-9)
        assert h.gain[1] * sky[k] + h.offset[1] == pytest.approx(sky[0], abs=1e-6)
    assert harmony[0].anchor and harmony[0].offset == [0.0, 0.0, 0.0]
    facts = residuals(pairs, harmony)
    assert facts["gain_rms"] < 1e-9 and max(facts["offset_rms_adu"]) < 1e-6


def test_inconsistent_pairs_are_averaged_and_residuals_reported() -> None:
    g = [1.0, 1.1, 1.2]
    sky = [1000.0, 1000.0, 1000.0]
    pairs = [_pair(0, 1, g, sky), _pair(1, 2, g, sky), _pair(0, 2, g, sky)]
    pairs[2].scale = [1.2 * 1.03] * 3  # one pair 3 % off: the loop does not close
    harmony = solve([0, 1, 2], pairs, 0, [1, 1, 1], 3, (0.5, 2.0))
    assert 1.2 < harmony[2].gain[0] < 1.2 * 1.03
    assert residuals(pairs, harmony)["gain_rms"] > 0.005


def test_gains_are_clamped_and_disconnected_tiles_noted() -> None:
    g = [1.0, 1.6, 1.0]
    sky = [1000.0, 900.0, 800.0]
    harmony = solve([0, 1, 2], [_pair(0, 1, g, sky)], 0, [5, 1, 1], 3, (0.5, 1.5))
    assert harmony[1].gain == [1.5] * 3 and harmony[1].clamped
    assert harmony[1].gain[0] * sky[1] + harmony[1].offset[0] == pytest.approx(sky[0])
    assert harmony[2].gain == [1.0] * 3 and "not connected" in harmony[2].notes[0]


def test_a_tile_linked_only_without_a_gain_fit_takes_its_sky_from_the_chain() -> None:
    """Three tiles in a row: 0–1 fitted, 1–2 without any gain fit (gain 1 assumed). Tile 2
    must still get the offset that puts its sky on the anchor's, and must not drag tile 1
    (formerly tile 2 was pinned at offset 0 and tile 1 ended 100 ADU from the anchor)."""
    g = [1.0, 1.0, 1.0]
    sky = [1000.0, 1100.0, 1300.0]
    pairs = [_pair(0, 1, g, sky), _pair(1, 2, g, sky, weight=0.0)]
    pairs[1].how = "no fit: gain 1"
    harmony = solve([0, 1, 2], pairs, 0, [1, 1, 1], 3, (0.5, 2.0))
    for k in (1, 2):
        level = harmony[k].gain[0] * sky[k] + harmony[k].offset[0]
        assert level == pytest.approx(sky[0], abs=0.01), k
    assert "gain fixed at 1" in harmony[2].notes[0]
    assert not harmony[1].notes


def test_feather_weight_tapers_to_the_tile_edge() -> None:
    valid = np.zeros((200, 300), bool)
    valid[20:180, 30:270] = True
    wgt = feather_weight(valid, 64)
    assert wgt[100, 150] == 1.0 and (wgt[~valid] == 0).all()
    assert wgt[20, 150] == pytest.approx(1 / 64, abs=1e-3)
    assert wgt[52, 150] == pytest.approx(33 / 64, abs=2e-2)
    assert (feather_weight(valid, 0) == valid).all()


@pytest.fixture(scope="module")
def tiny_with_dead_pointing(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny 5-frame pointing plus 3 constant (dead) frames one panel over (0.14°, 20 %
    overlap: one target on the sky, two classic groups)."""
    root = tmp_path_factory.mktemp("classic_bad")
    simulate_dataset(root / "sim", "tiny", n_frames=5, seed=1, sidecars=True)
    good = sorted((root / "sim" / "frames").rglob("*.fit"))
    dead = root / "sim" / "frames" / "dead"
    dead.mkdir()
    for k, src in enumerate(good[:3]):
        with fits.open(src) as h:
            hdr = h[0].header.copy()
            data = np.full(h[0].data.shape, 500, np.uint16)
        hdr["DATE-OBS"] = f"2025-03-28T01:0{k}:00.000"
        fits.PrimaryHDU(data, hdr).writeto(dead / f"dead_{k}.fit")
        side = fits.Header.fromfile(src.with_suffix(".wcs"))
        side["CRVAL1"] = side["CRVAL1"] + 0.14 / math.cos(math.radians(side["CRVAL2"]))
        side.tofile(dead / f"dead_{k}.wcs")
    return root / "sim" / "frames", dead


def test_group_with_all_frames_rejected_is_a_reported_skip(
    tiny_with_dead_pointing, tmp_path, capsys
) -> None:
    frames, _ = tiny_with_dead_pointing
    argv = ["run", str(frames), "-o", str(tmp_path), "--mode", "classic", "-j", "1", "-q"]
    assert cli.main([*argv, "--set", "output.png=false"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("classic: 5 frames in 1 master tiles, 3 rejected")
    assert "skipped: group 1 (3 frames): all 3 frames rejected" in printed
    assert "(anchor)" in printed and "harmonisation: 0 overlapping pairs" in printed
    report = json.loads((tmp_path / "supadupstack.report.json").read_text())
    assert len(report["tiles"]) == 1 and len(report["frames_used"]) == 5
    (skip,) = report["skipped_groups"]
    assert skip["frames"] == 3 and "constant" in skip["reason"]
    assert report["output"]["valid_fraction"] > 0.5
    plots = report["plots"]  # classic draws its groups as the plan, and the summary
    assert plots == {"plan": str(tmp_path / "groups.png"), "summary": str(tmp_path / "summary.png")}
    assert all(Path(p).exists() for p in plots.values()) and report["plot_errors"] == {}
    assert f"summary: {tmp_path / 'summary.png'}" in printed


def test_only_dead_frames_give_one_line_error(tiny_with_dead_pointing, tmp_path, capsys) -> None:
    _, dead = tiny_with_dead_pointing
    code = cli.main(["run", str(dead), "-o", str(tmp_path / "o"), "--mode", "classic", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("supadupstack: error:") and "rejected" in err[0]
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
