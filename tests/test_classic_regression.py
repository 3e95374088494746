"""Regression guard of classic mode (DESIGN §2): its output on a fixed dataset is pinned.

A fixed small ``mosaic-2x2`` set (3 frames per panel, seed 5, generated here: the simulator is
deterministic) is run through classic mode and its fingerprint compared with
``tests/data/classic_reference.json``. Any change that alters classic output fails here until
the reference is deliberately regenerated with ``tests/data/make_classic_reference.py`` (and
a reason in the commit message).

Tolerances. Measured on this case (Intel AVX-512; "AVX2" = numpy, OpenBLAS, numba and OpenCV
held to their AVX2 code paths by environment variables, as on an AMD EPYC without AVX-512):
BLAS/numba threads 1 vs 2 and in-process vs -j 2: identical bytes; AVX2 vs AVX-512: gains
7e-12 relative, block means 4e-8 ADU. The pipeline's hard thresholds (SNR cuts, clip masks)
amplify a perturbation once it flips one of them: a 1e-5 px change of every resampling map
(the float32 rounding of the former BLAS map) moved gains by 6.6e-5, offsets by 0.23 ADU,
block means by 0.21 ADU, percentiles by 1.1e-4, sums by 8e-5 and 5 of 6.5 M finite pixels.
The tolerances cover that whole perturbation; real changes move more (feather 64 → 16 px:
block means 0.37–0.55 ADU, though 64 → 48 px stays inside since the tiles lost their sky
gradients; kappa_high 3 → 2.5: gains 1e-3, offsets 1 ADU):
- shape: exact; valid-pixel (ALPHA > 0) count: relative 2e-5;
- WCS: CRVAL 1e-9 deg, CRPIX 1e-6 px, CD 1e-9;
- per-channel percentiles (1, 10, 50, 90, 99): relative 3e-4; per-channel sums: 2.5e-4;
- 32×32 block means (per channel): absolute 0.25 ADU;
- harmonisation gains: relative 2e-4; offsets: absolute 0.3 ADU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    "finite_rel": 2e-5,
    "percentile_rel": 3e-4,
    "sum_rel": 2.5e-4,
    "block_abs": 0.25,
    "gain_rel": 2e-4,
    "offset_abs": 0.3,
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


def _blocks(plane: np.ndarray, valid: np.ndarray) -> list[list[float | None]]:
    """GRID×GRID block means of the valid pixels (None for a block without any)."""
    rows = np.array_split(np.arange(plane.shape[0]), GRID)
    cols = np.array_split(np.arange(plane.shape[1]), GRID)
    out = []
    for r in rows:
        line = []
        for c in cols:
            box = (slice(r[0], r[-1] + 1), slice(c[0], c[-1] + 1))
            v = plane[box][valid[box]]
            line.append(float(v.astype(np.float64).mean()) if v.size else None)
        out.append(line)
    return out


def fingerprint(report: dict) -> dict:
    """The pinned facts of a classic run: image statistics, block means, WCS, gains.

    Valid pixels are those with ALPHA > 0 (no-data pixels are written 0.0 or NaN by
    ``output.nodata``); ``finite`` is their count, named when no data was NaN in the file.
    """
    with fits.open(report["output"]["fits"]) as h:
        data = np.asarray(h[0].data, dtype=np.float32)
        wcs = WCS(h[0].header).celestial
        valid = np.asarray(h["ALPHA"].data) > 0
    data = data[None] if data.ndim == 2 else data
    chans = []
    for plane in data:
        v = plane[valid].astype(np.float64)
        chans.append(
            {
                "percentiles": [float(p) for p in np.percentile(v, PERCENTILES)],
                "sum": float(v.sum()),
                "blocks": _blocks(plane, valid),
            }
        )
    return {
        "case": CASE,
        "shape": list(data.shape),
        "finite": int(valid.sum()),
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
    for key in ("case", "shape"):
        if new[key] != ref[key]:
            bad.append(f"{key}: {new[key]} != {ref[key]}")
    if bad:
        return bad
    if not _close(new["finite"], ref["finite"], rel=TOL["finite_rel"]):
        bad.append(f"finite: {new['finite']} != {ref['finite']}")
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
    report = run_case(root, ["classic.feather_px=16"], workdir=root / "out" / "work")
    assert all(t["reused"] for t in report["tiles"])
    diffs = compare(fingerprint(report), ref)
    assert diffs, "a different feather width left the fingerprint unchanged"
    assert any("block means" in d for d in diffs)


def _avx2_environment() -> dict[str, str] | None:
    """Environment variables that hold numpy, OpenBLAS, numba and OpenCV to their AVX2 code
    paths (what an AMD EPYC without AVX-512 runs); None when this CPU has no AVX-512."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    if not __cpu_features__.get("AVX512F"):
        return None
    wide = [t for t in __cpu_dispatch__ if t == "X86_V4" or t.startswith("AVX512")]
    return {
        "NPY_DISABLE_CPU_FEATURES": " ".join(t for t in wide if __cpu_features__.get(t)),
        "OPENBLAS_CORETYPE": "Haswell",
        "NUMBA_CPU_NAME": "haswell",
        "OPENCV_CPU_DISABLE": "AVX512-SKX",
    }


@pytest.mark.slow
def test_other_cpu_kind_stays_within_the_tolerances(tmp_path) -> None:
    """The same case with AVX2 code paths only: the other CPU kind of CI machines."""
    env = _avx2_environment()
    if env is None:
        pytest.skip("this CPU has no AVX-512: the main guard test already runs the AVX2 paths")
    script = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from test_classic_regression import fingerprint, run_case;"
        "Path(sys.argv[2]).write_text(json.dumps(fingerprint(run_case(Path(sys.argv[3])))))"
    )
    out = tmp_path / "fingerprint.json"
    cmd = [sys.executable, "-c", script, str(Path(__file__).parent), str(out), str(tmp_path)]
    res = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    diffs = compare(json.loads(out.read_text()), json.loads(REFERENCE.read_text()))
    assert not diffs, "\n".join(diffs[:20])
