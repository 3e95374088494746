"""Smoke tests of the peer-benchmark helpers (benchmarks/peers): table, doc, grid, baselines.

The baselines run on the "tiny" preset (6 frames of 384×256, transparency 1), so the plain
mean of the frames must reproduce the truth with slope ≈ 1.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from peers import doc, grid, reproject_baseline, swarp_runner  # noqa: E402
from peers.table import Row, markdown_table, text_table  # noqa: E402

from supadupstack.config import Config  # noqa: E402
from supadupstack.simulate import simulate_dataset  # noqa: E402
from supadupstack.simulate.metrics import (  # noqa: E402
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
    sub = img[:, 5:45, 7:67].copy()
    sub[:, 0, 0] = np.nan
    sds = grid.write_output(tmp_path / "sds.fits", sub, np.ones(sub.shape[1:]), wcs[5:45, 7:67])
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
