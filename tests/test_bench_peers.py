"""Smoke tests of the peer-benchmark helpers (benchmarks/peers): table, doc, grid, baselines.

The baselines run on the "tiny" preset (6 frames of 384×256, transparency 1), so the plain
mean of the frames must reproduce the truth with slope ≈ 1; Siril's stack, given its reference
frame's WCS, must also land on the truth (colour, ADU scale, astrometry).
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from peers import doc, grid, reproject_baseline, siril_runner, swarp_runner  # noqa: E402
from peers.monitor import scratch_dir  # noqa: E402
from peers.table import Row, markdown_table, text_table  # noqa: E402

from supadupstack.config import Config  # noqa: E402
from supadupstack.errors import SupaDupError  # noqa: E402
from supadupstack.frames.calibrate import calibrate_frame  # noqa: E402
from supadupstack.frames.fits_io import load_pixels  # noqa: E402
from supadupstack.outputs.write import write_fits  # noqa: E402
from supadupstack.polish.mosaic import Mosaic  # noqa: E402
from supadupstack.simulate import simulate_dataset  # noqa: E402
from supadupstack.simulate.metrics import (  # noqa: E402
    evaluate,
    linear_fit_vs_truth,
    load_output,
    load_truth,
    truth_on_grid,
)


def _rows() -> list[Row]:
    m = {
        "slope": [0.9, 0.91, 0.92],
        "star_flux_ratio_mad": 0.0123,
        "noise_ratio_vs_ideal": [0.7, 0.71, 0.72],
        "seam_sigma": 0.5,
        "trail_residual_sigma": [float("nan"), -3.25],
        "astrometric_rms_px": 0.05,
    }
    return [
        Row("sds", 10.0, 40, 800.0, 37, m),
        Row("reproject", 125.0, 40, 1500.0, None, m),
        Row("SWarp", skipped="not installed"),
    ]


def test_tables_show_ratio_per_frame_and_skip_reason():
    rows = _rows()
    txt = text_table(rows, rows[0].wall_s)
    lines = txt.splitlines()
    assert len(lines) == 5
    peer = lines[3].split()
    assert peer[:6] == ["reproject", "125.0", "3.12", "1500", "12.5", "40/40"]
    assert "0.9100" in lines[3] and "0.0123" in lines[3] and "-3.25" in lines[3]
    assert "37/40" in lines[2]
    assert lines[4].split(None, 1) == ["SWarp", "skipped: not installed"]
    md = markdown_table(rows, rows[0].wall_s).splitlines()
    assert len(md) == 5 and md[1].count("---") == len(md[0].split("|")) - 2
    verdicts = doc.fmt_targets(rows, rows[0].wall_s)
    assert verdicts == ["target ≥ 10× faster than reproject: 12.5× — met"]


def test_failed_row_and_scratch_dir(tmp_path):
    row = Row.failed("Siril", "log: Running command: stack\nlog: Script execution failed.\n")
    assert row.skipped == "failed: log: Script execution failed."
    assert Row.failed("x", "").skipped == "failed: no output"
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "old").write_text("stale")
    with scratch_dir(tmp_path / "s") as folder:
        assert list(folder.iterdir()) == []  # a leftover of an earlier run is gone
        (folder / "plane.fits").write_text("x")
    assert not folder.exists()


def test_write_doc_has_table_machine_and_versions(tmp_path):
    rows = _rows()
    mach = {
        "platform": "Linux-x",
        "python": "3.11",
        "cpu": "Test CPU",
        "cores_logical": 2,
        "cores_physical": 2,
        "ram_gib": 24.0,
        "load_1min": 1.5,
    }
    dataset = {"preset": "sds-nights", "frames": 40, "frames_per_session": 16, "seed": 0}
    path = doc.write_doc(
        tmp_path / "b.md", rows, 10.0, dataset, {"reproject": "0.21"}, ["n1"], "MEDIAN", mach
    )
    text = path.read_text()
    assert "Test CPU, 2 logical / 2 physical cores, 24.0 GiB RAM" in text
    assert "reproject 0.21" in text and "- n1" in text and "| reproject | 125.0 |" in text
    assert "COMBINE_TYPE MEDIAN" in text


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    simulate_dataset(out, "tiny", sidecars=True)
    cfg = Config()
    frames = grid.load_frames(out / "frames", cfg)
    grid_path = out / "grid.fits"
    wcs, shape = grid.save_grid(frames, cfg, grid_path)
    return out, cfg, frames, grid_path, wcs, shape


def _slope_vs_truth(path: Path, truth_dir: Path) -> float:
    img, wcs, _ = load_output(path)
    tgrid = truth_on_grid(load_truth(truth_dir), wcs, img.shape[1:])
    return linear_fit_vs_truth(img[1], tgrid[1])[0]


def test_reproject_baseline_matches_truth_and_footprints(tiny):
    out, cfg, frames, grid_path, wcs, shape = tiny
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = reproject_baseline.run(out / "frames", grid_path, out / "rep.fits", cfg, False)
        slope = _slope_vs_truth(path, out / "truth")
    with fits.open(path) as h:
        img, cov = h[0].data, h["COVERAGE"].data
    assert img.shape == (3, *shape)
    assert cov.max() == len(frames) == 6
    assert np.isnan(img[:, cov == 0]).all() and np.isfinite(img[:, cov > 0]).all()
    assert slope == pytest.approx(1.0, abs=0.03)
    fp = grid.footprint_coverage(frames, wcs, shape)
    # the polygons include the frames' outer half pixel, bilinear footprints do not: they
    # differ only along frame edges
    assert (fp >= cov).all() and np.mean(fp == cov) > 0.95


def test_like_sds_cuts_box_and_mask(tiny, tmp_path):
    out, _, _, _, wcs, shape = tiny
    img = np.arange(3 * shape[0] * shape[1], dtype=np.float32).reshape(3, *shape)
    full = grid.write_output(tmp_path / "full.fits", img, np.ones(shape), wcs)
    sub = np.moveaxis(img[:, 5:45, 7:67], 0, -1).copy()
    cov = np.ones(sub.shape[:2], np.float32)
    cov[0, 0] = 0  # no data there: written 0.0 (output.nodata = "zero"), ALPHA 0
    sds = write_fits(Mosaic.from_arrays(sub, cov, wcs[5:45, 7:67]), tmp_path / "sds.fits", {})
    assert grid.crop_offset(wcs, wcs[5:45, 7:67]) == (5, 7)
    cut = grid.like_sds(full, sds, tmp_path / "cut.fits")
    with fits.open(cut) as h:
        data, cov = h[0].data, h["COVERAGE"].data
    assert data.shape == (3, 40, 60)
    assert math.isnan(data[1, 0, 0]) and cov[0, 0] == 0
    np.testing.assert_array_equal(data[:, 1:, 1:], img[:, 6:45, 8:67])


@pytest.mark.skipif(swarp_runner.binary() is None, reason="SWarp is not installed")
def test_swarp_runner_on_tiny(tiny, tmp_path):
    out, cfg, _, grid_path, _, shape = tiny
    facts = swarp_runner.run(
        out / "frames", grid_path, tmp_path / "sw.fits", cfg, "MEDIAN", tmp_path
    )
    assert facts.sip_dropped == 0 and facts.combine == "MEDIAN"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slope = _slope_vs_truth(tmp_path / "sw.fits", out / "truth")
    assert fits.getdata(tmp_path / "sw.fits").shape == (3, *shape)
    assert slope == pytest.approx(1.0, abs=0.03)


def test_siril_script_is_the_documented_one():
    lines = siril_runner.script(0.3, 1).splitlines()
    assert lines == [
        "requires 1.0.0",
        "setfindstar 0.3 0.5",
        "cd in",
        "convert light -debayer -out=../proc",
        "cd ../proc",
        "setref light 1",
        "register light",
        "stack r_light rej w 3 3 -norm=addscale -weighted -out=../stack",
        "close",
    ]
    # the settings page quotes the script's commands: they must not drift apart
    text = doc.SETTINGS["Siril"].format(sigma=0.3)
    for quoted in ("setfindstar 0.3 0.5", "convert light -debayer", "setref light 1"):
        assert quoted in text
    assert "register light" in text and "rej w 3 3 -norm=addscale -weighted" in text


def test_siril_log_times_and_rejection():
    log = "\n".join(
        [
            "log: Running command: convert",
            "log: Running command: register",
            "log: Execution time: 74.31 ms.",
            "log: Running command: stack",
            "log: Pixel rejection in channel #0: 0.223% - 0.403%",
            "log: Execution time: 1 min 05 s.",
        ]
    )
    info = siril_runner.parse_log(log)
    assert info["register_s"] == pytest.approx(0.07431)
    assert info["stack_s"] == pytest.approx(65.0)
    assert "convert_s" not in info
    assert info["rejection"] == ["Pixel rejection in channel #0: 0.223% - 0.403%"]
    assert siril_runner._seconds("1 h 02 min 03 s.") == pytest.approx(3723.0)


def _fake_siril_stack(frame, cfg, path: Path, flip: bool) -> np.ndarray:
    """Frame debayered, as Siril writes a stack: (3, H, W) float32 in ADU/65535."""
    img = np.moveaxis(calibrate_frame(frame, load_pixels(frame), cfg.calibration), -1, 0)
    out = img[:, ::-1] if flip else img
    fits.PrimaryHDU(np.ascontiguousarray(out) / np.float32(65535)).writeto(path)
    return img


@pytest.mark.parametrize("flip", [False, True])
def test_siril_native_wcs_and_flip(tiny, tmp_path, flip):
    out, cfg, frames, _, _, _ = tiny
    img = _fake_siril_stack(frames[2], cfg, tmp_path / "stack.fit", flip)
    facts = siril_runner.SirilFacts("test", 0.3, ref=2, stacked=[1, 2, 3])
    nat, flipped = siril_runner.native(tmp_path / "stack.fit", frames, facts, tmp_path / "n.fits")
    assert flipped is flip
    with fits.open(nat) as h:
        np.testing.assert_allclose(h[0].data, img, rtol=1e-5)
        wcs = WCS(h[0].header).celestial
        cov = h["COVERAGE"].data
    xy = ([0.0, 100.0, 255.0], [0.0, 300.0, 383.0])  # pixel (x, y): rows counted from FITS row 1
    np.testing.assert_allclose(
        wcs.all_pix2world(*xy, 0), frames[2].wcs.all_pix2world(*xy, 0), atol=1e-9
    )
    assert cov.max() == 3 and cov.min() >= 1  # every pixel of the reference is covered
    with pytest.raises(SupaDupError, match="does not match"):
        siril_runner.orient(img, np.random.default_rng(1).normal(size=img.shape[1:]))


def test_siril_links_frames_in_time_order(tiny, tmp_path):
    _, _, frames, _, _, _ = tiny
    paths = siril_runner.link_frames(frames, tmp_path / "in")
    assert [p.name for p in paths] == [f"light_{i:04d}.fit" for i in range(len(frames))]
    assert all(
        p.is_symlink() and p.resolve() == Path(f.path).resolve() for p, f in zip(paths, frames)
    )


@pytest.mark.skipif(
    siril_runner.binary() is None, reason="siril-cli (Debian siril) is not installed"
)
def test_siril_on_tiny_lands_on_truth(tiny, tmp_path):
    out, _, frames, grid_path, _, shape = tiny
    before = sorted(p.name for p in (out / "frames").rglob("*"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exe = siril_runner.binary()
        row, notes, nat = siril_runner.bench(
            exe, frames, grid_path, tmp_path, tmp_path / "logs", "Siril"
        )
    assert row.skipped is None and row.n_used == len(frames) == 6, row.skipped
    assert "rows flipped: no" in notes[0] and not (tmp_path / "siril_tmp").exists()
    assert sorted(p.name for p in (out / "frames").rglob("*")) == before  # dataset untouched
    assert fits.getdata(tmp_path / "siril.fits").shape == (3, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = evaluate(nat, out / "truth")
    sky = json.loads((out / "truth" / "manifest.json").read_text())["frames"][0]["sky_total_adu"]
    # R, G, B in the right planes and in ADU: the offsets are the frames' sky levels
    np.testing.assert_allclose(m["offset"], sky, rtol=0.02)
    assert m["slope"] == pytest.approx([1.0, 1.0, 1.0], abs=0.05)
    assert m["astrometric_rms_px"] < 0.3
