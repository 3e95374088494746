"""Regression guard of classic mode (DESIGN §2): its output on a fixed dataset is pinned.

A fixed small ``mosaic-2x2`` set (3 frames per panel, seed 5, generated here: the simulator is
deterministic) is run through classic mode and its fingerprint compared with
``tests/data/classic_reference.json``. Any change that alters classic output fails here until
the reference is deliberately regenerated with ``tests/data/make_classic_reference.py`` (and
a reason in the commit message).

Tolerances (float32 summation order may differ across machines and BLAS/SIMD paths, giving
~1e-6 relative noise per pixel; anything real moves the numbers by far more):
- shape, finite-pixel count: exact; WCS: CRVAL 1e-9 deg, CRPIX 1e-6 px, CD relative 1e-9;
- per-channel percentiles (1, 10, 50, 90, 99): relative 1e-4;
- per-channel sums: relative 1e-5;
- 32×32 block means (per channel): absolute 0.02 ADU (2e-5 of the ~1000 ADU level, ~1e-3 of
  the per-pixel σ);
- harmonisation gains: relative 1e-5; offsets: absolute 0.02 ADU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from supadupstack import pipeline
from supadupstack.config import Config, apply_overrides
from supadupstack.simulate import simulate_dataset

REFERENCE = Path(__file__).parent / "data" / "classic_reference.json"
CASE = {"preset": "mosaic-2x2", "n_frames": 3, "seed": 5}
SETTINGS = ['mode="classic"', "execution.workers=2", "output.png=false"]
PERCENTILES = (1, 10, 50, 90, 99)
GRID = 32
TOL = {
    "percentile_rel": 1e-4,
    "sum_rel": 1e-5,
    "block_abs": 0.02,
    "gain_rel": 1e-5,
    "offset_abs": 0.02,
    "crval_abs": 1e-9,
    "crpix_abs": 1e-6,
    "cd_rel": 1e-9,
}


def run_case(root: Path, extra: list[str] | None = None, workdir: Path | None = None) -> dict:
    """Simulate the fixed set under ``root`` (once) and run classic; returns the report."""
    frames = root / "sim" / "frames"
    if not frames.exists():
        simulate_dataset(root / "sim", CASE["preset"], CASE["n_frames"], CASE["seed"], True)
    settings = SETTINGS + (extra or [])
    if workdir is not None:
        settings.append(f'execution.workdir="{workdir}"')
    cfg = apply_overrides(Config(), settings)
    out = root / ("out" if not extra else "out_" + "_".join(e.split("=")[0] for e in extra))
    return pipeline.run([str(frames)], out, cfg)


def _blocks(plane: np.ndarray) -> list[list[float | None]]:
    rows = np.array_split(np.arange(plane.shape[0]), GRID)
    cols = np.array_split(np.arange(plane.shape[1]), GRID)
    out = []
    for r in rows:
        line = []
        for c in cols:
            v = plane[r[0] : r[-1] + 1, c[0] : c[-1] + 1]
            v = v[np.isfinite(v)]
            line.append(float(v.astype(np.float64).mean()) if v.size else None)
        out.append(line)
    return out


def fingerprint(report: dict) -> dict:
    """The pinned facts of a classic run: image statistics, block means, WCS, gains."""
    with fits.open(report["output"]["fits"]) as h:
        data = np.asarray(h[0].data, dtype=np.float32)
        wcs = WCS(h[0].header).celestial
    data = data[None] if data.ndim == 2 else data
    chans = []
    for plane in data:
        v = plane[np.isfinite(plane)].astype(np.float64)
        chans.append(
            {
                "percentiles": [float(p) for p in np.percentile(v, PERCENTILES)],
                "sum": float(v.sum()),
                "blocks": _blocks(plane),
            }
        )
    return {
        "case": CASE,
        "shape": list(data.shape),
        "finite": int(np.isfinite(data).all(axis=0).sum()),
        "wcs": {
            "crval": [float(v) for v in wcs.wcs.crval],
            "crpix": [float(v) for v in wcs.wcs.crpix],
            "cd": [[float(v) for v in row] for row in wcs.pixel_scale_matrix],
        },
        "channels": chans,
        "tiles": [
            {"index": t["index"], "gain": t["gain"], "offset": t["offset"]} for t in report["tiles"]
        ],
    }


def _close(a: float, b: float, rel: float = 0.0, abs_: float = 0.0) -> bool:
    return abs(a - b) <= max(abs_, rel * abs(b))


def compare(new: dict, ref: dict) -> list[str]:
    """Every difference beyond the tolerances, one line each (empty: identical enough)."""
    bad: list[str] = []
    for key in ("case", "shape", "finite"):
        if new[key] != ref[key]:
            bad.append(f"{key}: {new[key]} != {ref[key]}")
    if bad:
        return bad
    for key, tol in (("crval", TOL["crval_abs"]), ("crpix", TOL["crpix_abs"])):
        for a, b in zip(new["wcs"][key], ref["wcs"][key], strict=True):
            if not _close(a, b, abs_=tol):
                bad.append(f"wcs {key}: {a!r} != {b!r}")
    cd_new = np.array(new["wcs"]["cd"])
    cd_ref = np.array(ref["wcs"]["cd"])
    if np.max(np.abs(cd_new - cd_ref)) > TOL["cd_rel"] * np.max(np.abs(cd_ref)):
        bad.append(f"wcs cd: {cd_new.tolist()} != {cd_ref.tolist()}")
    for c, (cn, cr) in enumerate(zip(new["channels"], ref["channels"], strict=True)):
        for p, a, b in zip(PERCENTILES, cn["percentiles"], cr["percentiles"], strict=True):
            if not _close(a, b, rel=TOL["percentile_rel"]):
                bad.append(f"channel {c} percentile {p}: {a:.6g} != {b:.6g}")
        if not _close(cn["sum"], cr["sum"], rel=TOL["sum_rel"]):
            bad.append(f"channel {c} sum: {cn['sum']:.9g} != {cr['sum']:.9g}")
        worst = 0.0
        for rn, rr in zip(cn["blocks"], cr["blocks"], strict=True):
            for a, b in zip(rn, rr, strict=True):
                if (a is None) != (b is None):
                    worst = np.inf
                elif a is not None:
                    worst = max(worst, abs(a - b))
        if worst > TOL["block_abs"]:
            bad.append(f"channel {c} block means differ by up to {worst:.4g} ADU")
    for tn, tr in zip(new["tiles"], ref["tiles"], strict=True):
        for a, b in zip(tn["gain"], tr["gain"], strict=True):
            if not _close(a, b, rel=TOL["gain_rel"]):
                bad.append(f"tile {tn['index']} gain {a:.7g} != {b:.7g}")
        for a, b in zip(tn["offset"], tr["offset"], strict=True):
            if not _close(a, b, abs_=TOL["offset_abs"]):
                bad.append(f"tile {tn['index']} offset {a:.5f} != {b:.5f}")
    if len(new["tiles"]) != len(ref["tiles"]):
        bad.append(f"{len(new['tiles'])} tiles != {len(ref['tiles'])}")
    return bad


@pytest.fixture(scope="module")
def pinned_run(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("classic_guard")
    return root, run_case(root)


@pytest.mark.slow
def test_classic_output_matches_pinned_reference(pinned_run) -> None:
    _, report = pinned_run
    ref = json.loads(REFERENCE.read_text())
    diffs = compare(fingerprint(report), ref)
    assert not diffs, (
        "classic output changed; if intended, regenerate with "
        "tests/data/make_classic_reference.py and give the reason in the commit message:\n"
        + "\n".join(diffs[:20])
    )


@pytest.mark.slow
def test_guard_bites_on_a_config_change(pinned_run) -> None:
    root, _ = pinned_run
    ref = json.loads(REFERENCE.read_text())
    # same master tiles (reused from the work directory), only the feather width differs
    report = run_case(root, ["classic.feather_px=48"], workdir=root / "out" / "work")
    assert all(t["reused"] for t in report["tiles"])
    diffs = compare(fingerprint(report), ref)
    assert diffs, "a different feather width left the fingerprint unchanged"
    assert any("block means" in d for d in diffs)
