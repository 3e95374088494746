"""SDS end to end on simulated nights (against truth) and on the real M 94 frames."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from supadupstack import pipeline
from supadupstack.catalogue.detect import DetectionSettings
from supadupstack.catalogue.stage import measure_quality
from supadupstack.config import Config, apply_overrides
from supadupstack.frames.calibrate import calibrate_frame
from supadupstack.frames.fits_io import load_pixels, read_frame
from supadupstack.simulate import metrics as M
from supadupstack.simulate import simulate_dataset
from supadupstack.stacking.normalize import robust_noise


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> tuple[Path, Path, dict]:
    """sds-nights, 6 frames per session (all four bad kinds), run through SDS."""
    root = tmp_path_factory.mktemp("sds")
    manifest = simulate_dataset(root / "sim", "sds-nights", n_frames=6, seed=2, sidecars=True)
    out = root / "out"
    cfg = apply_overrides(Config(), ["execution.workers=2"])
    report = pipeline.run([str(root / "sim" / "frames")], out, cfg)
    return manifest.parent, out, report


def test_sds_simulated_truth_metrics(nights) -> None:
    truth_dir, out, report = nights
    res = M.evaluate(out / "supadupstack.fits", truth_dir)
    assert res["astrometric_rms_px"] < 0.15  # night 3 at 2× seeing: centroids scale with FWHM
    assert res["star_flux_ratio_mad"] <= 0.03
    # the output is in the reference tile's photometric scale (its transparency): the galaxy
    # must keep its flux relative to the stars
    assert abs(res["extended_flux_ratio"] / res["star_flux_ratio_median"] - 1) < 0.03
    assert max(res["trail_residual_sigma"]) < 3.0
    assert max(res["noise_ratio_vs_ideal"]) <= 1.15
    rejected = {Path(r["path"]).name: r["reason"] for r in report["frames_rejected"]}
    manifest = json.loads((truth_dir / "manifest.json").read_text())
    bad = {Path(f["path"]).name: f["flags"] for f in manifest["frames"] if f["flags"]}
    for name, flags in bad.items():
        if flags != ["trail"]:  # a trail is a pixel-rejection matter, not a frame one
            assert name in rejected, (name, flags)
    assert len(rejected) == 3
    assert any("transparency" in r for r in rejected.values())
    assert any("FWHM" in r for r in rejected.values())
    assert any("black" in r for r in rejected.values())


def _tile_scales(truth_dir: Path, out: Path) -> dict[int, float]:
    """Each mega-tile's true photometric scale: the mean over its frames of the frame's true
    transparency times the scale the batch gave it (1 / its measured transparency), from the
    JSON beside the tile. A renormalised tile must match the reference tile's scale."""
    manifest = json.loads((truth_dir / "manifest.json").read_text())
    true_t = {Path(f["path"]).name: f["transparency"] for f in manifest["frames"]}
    scales = {}
    for side in (out / "work" / "megatiles").glob("*.json"):
        tile = json.loads(side.read_text())
        used = tile["frames_used"]
        used = ast.literal_eval(used) if isinstance(used, str) else used
        vals = [true_t[Path(p).name] / t for p, t in zip(used, tile["transparency"], strict=True)]
        scales[tile["index"]] = float(np.mean(vals))
    return scales


def test_sds_gains_and_star_check_against_truth(nights) -> None:
    """Three nights at 1× / 1.5× / 2× seeing, 6 frames each (two mega-tiles a night).

    Gains come from cross-convolved apertures of the 18-54 stars the mega-tiles share; their
    quoted errors are 0.3-1.3 % (few stars, 6-frame tiles). Measured on seeds 2-5 (this test:
    seed 2), error of the two non-reference gains: 0.03-0.77 %, and the star check (larger
    apertures, independent weights) 0.998-1.012; before the cross-convolved photometry the
    gains were off by up to 3.5 %. Hence 1.5 % and 0.015 (0.5 % is tested on deeper tiles in
    ``test_renorm.py``).
    """
    truth_dir, out, report = nights
    scales = _tile_scales(truth_dir, out)
    ref = next(t for t in report["tiles"] if t["reference"])
    for t in report["tiles"]:
        true_gain = scales[ref["index"]] / scales[t["index"]]
        assert t["gain"][1] == pytest.approx(true_gain, rel=0.015), t["index"]
        assert t["star_ratio"] == pytest.approx(1.0, abs=0.015)


def test_sds_outputs_and_log(nights) -> None:
    _, out, report = nights
    with fits.open(out / "supadupstack.fits") as h:
        assert h[0].data.shape[0] == 3 and h[0].header["BITPIX"] == -32
        assert h["COVERAGE"].data.shape == h[0].data.shape[1:]
        assert h["ALPHA"].data.dtype == np.uint8
        assert h[0].header["NBATCH"] == len(report["tiles"]) == 3
        assert h[0].header["NFRAMES"] == len(report["frames_used"])
        assert h[0].header["NCOMBINE"] == len(report["frames_used"])
        assert h[0].header["TOTALEXP"] == report["output"]["total_exposure_s"]
        assert np.isfinite(h[0].data).all()  # output.nodata = "zero"
        tiles = h["TILES"].data
        assert list(tiles["TILE"]) == [t["index"] for t in report["tiles"]]
        np.testing.assert_allclose(tiles["GAIN"], [t["gain"] for t in report["tiles"]])
        assert list(tiles["REFERENCE"]) == [t["reference"] for t in report["tiles"]]
    log = (out / "supadupstack.log").read_text()
    assert "batch 1/3" in log and "gain" in log and "SDS done" in log
    assert (out / "plan.json").exists() and (out / "plan.png").exists()
    assert report["plots"] == {"plan": str(out / "plan.png"), "summary": str(out / "summary.png")}
    assert report["plot_errors"] == {} and (out / "summary.png").exists()
    assert "plan plot written" in log and "summary plot written" in log
    png = np.asarray(Image.open(out / "supadupstack.png"))
    assert png.shape[2] == 4 and png[..., 3].max() == 255


def test_edited_plan_changes_the_run(nights, tmp_path: Path) -> None:
    truth_dir, out, _ = nights
    plan = json.loads((out / "plan.json").read_text())
    moved = plan["batches"][0].pop()  # last frame of batch 0 goes to batch 1
    plan["batches"][1].insert(0, moved)
    edited = tmp_path / "plan.json"
    edited.write_text(json.dumps(plan))
    cfg = apply_overrides(Config(), ["execution.workers=2", "output.png=false"])
    report = pipeline.run([str(truth_dir.parent / "frames")], tmp_path / "o", cfg, edited)
    assert [b["frames"] for b in report["batches"]] == plan["batches"]
    tile1 = report["tiles"][1]
    used_or_rejected = tile1["frames"] + sum(
        1 for r in report["frames_rejected"] if r["path"] in plan["batches"][1]
    )
    assert used_or_rejected == len(plan["batches"][1])


@pytest.mark.slow
def test_sds_real_m94(m94_frames: list[Path], tmp_path: Path) -> None:
    cfg = apply_overrides(Config(), ["execution.workers=2"])
    report = pipeline.run([str(m94_frames[0].parent)], tmp_path, cfg)
    assert len(report["tiles"]) >= 2 and len(report["frames_used"]) == 23
    for ext in ("fits", "png", "report.json", "log"):
        assert (tmp_path / f"supadupstack.{ext}").stat().st_size > 0
    singles, single_noise = [], []
    for p in m94_frames[::4]:
        f = read_frame(p)
        image = calibrate_frame(f, load_pixels(f), Config().calibration)
        singles.append(measure_quality(image, DetectionSettings()))
        single_noise.append(robust_noise(image))  # the estimator of the report's final noise
    single_fwhm = float(np.median([q.fwhm_px for q in singles]))
    # single-frame noise in the reference tile's units (sessions have different gains)
    gains = {Path(fr).parent: 1.0 for fr in report["frames_used"]}
    assert gains
    out = report["output"]
    assert out["fwhm_px"] <= 1.15 * single_fwhm
    ref_tile = next(t for t in report["tiles"] if t["reference"])
    ref_noise = np.median(
        [
            np.mean(noise)
            for noise, p in zip(single_noise, m94_frames[::4], strict=True)
            if str(p) in [s for t in report["batches"] for s in t["frames"]][: ref_tile["frames"]]
        ]
        or [np.mean(single_noise[0])]
    )
    assert ref_noise / np.mean(out["noise"]) >= 0.8 * np.sqrt(len(report["frames_used"]))
    png = np.asarray(Image.open(tmp_path / "supadupstack.png")).astype(int)
    alpha, rgb = png[..., 3], png[..., :3]
    inside = alpha == 255
    assert inside.mean() > 0.8
    assert (rgb[inside].min(axis=1) >= 250).mean() < 0.005  # no white-out
    med = np.median(rgb[inside], axis=0)
    assert (med > 10).all() and (med < 120).all()  # a dark sky, not black, not washed out
    # no NaN speckles: every transparent pixel is connected to the border (no holes inside)
    from scipy import ndimage

    holes = ndimage.binary_fill_holes(inside) & ~inside
    assert holes.sum() == 0
    for corner in (alpha[0, 0], alpha[0, -1], alpha[-1, 0], alpha[-1, -1]):
        assert corner in (0, 255)
