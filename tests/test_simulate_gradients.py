"""Presets ``gradients`` and ``nebula`` (issue 14) and the metrics that judge gradient removal:
background flatness and the flux kept in an extended object."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sep
from astropy.io import fits

from supadupstack.simulate import metrics, presets, simulate_dataset
from supadupstack.simulate.flatness import background_flatness, object_flux_ratio
from supadupstack.simulate.nights import gradient_summary


@pytest.fixture(scope="module")
def nebula_set(tmp_path_factory) -> Path:
    """The nebula preset with one frame per session: 2 full-size subs and the truth."""
    return simulate_dataset(tmp_path_factory.mktemp("neb"), "nebula", n_frames=1, seed=2).parent


def test_dome_gradients_lie_in_4_to_12_percent_and_turn():
    specs = presets.preset_specs("gradients")  # default: 2 sessions × 12 frames
    assert len(specs) == 24
    summ = [gradient_summary(spec) for spec, _, _ in specs]
    pp = np.array([s["gradient_pp"] for s in summ])
    direction = np.array([s["gradient_dir_deg"] for s in summ])
    assert pp.min() >= 0.04 and pp.max() <= 0.12
    assert pp.std() > 0.01 and pp.max() - pp.min() > 0.04  # changes with altitude
    assert direction.max() - direction.min() > 90.0  # turns with the field
    assert len({spec.gradient for spec, _, _ in specs}) == 24  # every frame its own
    # the galaxy's halo (> 1 ADU/px) spans a good part of the frame's width
    gal = presets.GRADIENTS_GALAXY
    assert gal.disk_re_arcsec / 2.38 * (1 + np.log(gal.disk_ie_adu) / 1.678) > 0.15 * 1080


def test_nebula_preset_manifest_and_truth(nebula_set):
    manifest = json.loads((nebula_set / "manifest.json").read_text())
    assert manifest["galaxy"] is None and len(manifest["nebula"]["amp_adu"]) > 50
    for f in manifest["frames"]:
        gx, gy = f["spec"]["gradient"]
        assert 0.04 <= f["gradient_pp"] <= 0.12
        assert f["gradient_pp"] == pytest.approx(abs(gx) + abs(gy), abs=1e-5)
    truth = metrics.load_truth(nebula_set)
    neb = truth.nebula.planes(truth.wcs, truth.signal.shape[1:])
    rest = truth.signal - neb  # stars only: the nebula is all in the signal, and only once
    assert rest.min() > -1e-3
    assert np.median(rest[1]) == pytest.approx(0.0, abs=1e-3)
    assert (neb[1] > 2.0).mean() > 0.5  # the nebula fills most of the field
    assert (neb[1] < 0.1).mean() > 0.1  # with dark patches for the background
    assert neb[0].sum() > neb[1].sum()  # its own (reddish) colour


def test_flatness_reads_a_known_ramp_and_its_noise_floor():
    rng = np.random.default_rng(5)
    n, sigma, k = 21, 7.0, 3.0  # one row of n blocks along a ramp of k σ
    h, w = 64, 64 * n
    ramp = np.broadcast_to(k * sigma * np.arange(w) / w, (h, w)).astype(np.float32)
    zero = np.zeros((h, w), np.float32)
    expected = 0.9 * k * (n - 1) / n  # block means step k·σ/n; P95 − P5 = 0.9·(n − 1) steps
    assert background_flatness(ramp, zero, sigma) == pytest.approx(expected, rel=1e-4)
    noisy = ramp + rng.normal(0.0, sigma, (h, w)).astype(np.float32)
    assert background_flatness(noisy, zero, sigma) == pytest.approx(expected, rel=0.03)
    # pure white noise: 3.29 σ/64 = 0.051, within its sampling scatter over 512 blocks
    noise = rng.normal(0.0, sigma, (2048, 1024)).astype(np.float32)
    assert 0.04 < background_flatness(noise, np.zeros_like(noise), sigma) < 0.063
    # signal blocks (truth ≥ 2 ADU) and no-data blocks do not count
    truth = np.zeros_like(noise)
    truth[:512, :512] = 50.0
    noise[:512, :512] += 40.0 * sigma
    noise[1024:1536] = np.nan
    assert background_flatness(noise, truth, sigma) < 0.07


def test_object_flux_ratio_keeps_or_loses_the_nebula(nebula_set):
    truth = metrics.load_truth(nebula_set)
    sig = truth.signal[1]
    neb = truth.nebula.planes(truth.wcs, sig.shape)[1]
    rng = np.random.default_rng(1)
    h, w = sig.shape
    yy, xx = np.mgrid[0:h, 0:w]
    noise = rng.normal(0.0, 10.0, sig.shape).astype(np.float32)
    ramp = (40.0 * xx / w - 25.0 * yy / h + 300.0).astype(np.float32)
    assert object_flux_ratio(sig, sig, neb) == pytest.approx(1.0, abs=0.005)
    # a leftover linear gradient is the flatness metric's business, not this one's
    assert object_flux_ratio(sig + noise + ramp, sig, neb) == pytest.approx(1.0, abs=0.01)
    assert abs(object_flux_ratio(sig - neb + noise + ramp, sig, neb)) < 0.01
    # a background mesh of 256 px takes the large-scale nebula with the sky
    img = (sig + noise + ramp).astype(np.float64)
    flat = img - sep.Background(img, bw=256, bh=256).back()
    assert object_flux_ratio(flat, sig, neb) < 0.5


def test_evaluate_reports_flatness_and_nebula(nebula_set, tmp_path):
    """On a 2×2-binned copy of the truth (a quarter of the pixels to reproject: faster) with
    noise and a ramp of 2 σ along the height."""
    truth = metrics.load_truth(nebula_set)
    c, h, w = truth.signal.shape
    h, w = h // 2 * 2, w // 2 * 2
    binned = truth.signal[:, :h, :w].reshape(c, h // 2, 2, w // 2, 2).sum(axis=(2, 4))
    wcs = truth.wcs.deepcopy()
    wcs.wcs.cdelt = wcs.wcs.cdelt * 2.0  # the truth header has PC + CDELT
    wcs.wcs.crpix = (wcs.wcs.crpix + 0.5) / 2.0  # binned pixel q ↔ pixels 2q, 2q + 1
    rng = np.random.default_rng(3)
    ramp = 40.0 * np.arange(h // 2)[:, None] / (h // 2)
    image = binned + ramp + rng.normal(0.0, 20.0, binned.shape)
    out = tmp_path / "stack.fits"
    fits.PrimaryHDU(image.astype(np.float32), header=wcs.to_header()).writeto(out)
    res = metrics.evaluate(out, nebula_set)
    assert res["nebula_flux_ratio"] == pytest.approx(1.0, abs=0.02)
    assert np.isnan(res["extended_flux_ratio"]) and np.isnan(res["galaxy_total_flux_ratio"])
    assert 1.0 < res["flatness"] < 2.0  # about 0.9 × 2 σ over the background's blocks
