"""What registering by stars costs and gives: `run` on real Seestar subs with their sidecars
given against the same run with the sidecars hidden (anchors plate-solved, the rest
registered), in one benchmark run.

Prints, per case, the median wall time of whole `supadupstack run` processes (each with an
empty star-catalogue cache and a fresh output folder, the two cases alternated), the ratio
hidden / given, the number of plate solves, the registration milliseconds per frame, and the
sharpness of the stack: output FWHM over the median input FWHM (both from the same star
catalogue measure). A third case, sidecars given with ``astrometry.refine=false``, shows what
re-fitting the given WCSs changes.

    python benchmarks/bench_register.py [FRAMES_DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "seestar_real" / "M 94_sub"


def _run(frames: Path, out: Path, cache: Path, extra: list[str]) -> tuple[float, dict]:
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    env = {"XDG_CACHE_HOME": str(cache), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "supadupstack", "run", str(frames), "-o", str(out), "-q", *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"run failed: {res.stderr.strip()}")
    return wall, json.loads((out / "supadupstack.report.json").read_text())


def _input_fwhm(frames: Path) -> float:
    """Median catalogue FWHM (px) of the frames, the measure the output FWHM uses too."""
    from supadupstack.catalogue.stage import make_catalogues
    from supadupstack.config import Config
    from supadupstack.frames.fits_io import read_frames

    cfg = Config()
    cfg.execution.workers = 1
    with tempfile.TemporaryDirectory() as cache:
        cfg.execution.cache_dir = cache
        found, _ = read_frames(sorted(frames.glob("*.fit")))
        found, _, _ = make_catalogues(found, cfg)
    return float(np.median([f.quality.fwhm_px for f in found]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("frames", nargs="?", default=str(DEFAULT), help="folder of frames + .wcs")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    src = Path(args.frames)
    with tempfile.TemporaryDirectory(prefix="bench-register-") as tmp:
        tmp = Path(tmp)
        given, hidden = tmp / "given", tmp / "hidden"
        given.mkdir()
        hidden.mkdir()
        for p in sorted(src.glob("*.fit")):
            shutil.copy(p, given / p.name)
            shutil.copy(p, hidden / p.name)
            if p.with_suffix(".wcs").is_file():
                shutil.copy(p.with_suffix(".wcs"), given / p.with_suffix(".wcs").name)
        n = len(list(given.glob("*.fit")))
        print(f"{n} frames from {src}")
        _run(given, tmp / "warm", tmp / "cache", [])  # numba caches compiled, files in page cache
        cases = {"given": (given, []), "hidden": (hidden, []), "given, refine off": (given, [])}
        cases["given, refine off"] = (given, ["--set", "astrometry.refine=false"])
        walls: dict[str, list[float]] = {k: [] for k in cases}
        reports: dict[str, dict] = {}
        for _ in range(args.repeats):
            for name, (frames, extra) in cases.items():
                for side in hidden.glob("*.wcs"):
                    side.unlink()  # every hidden run starts without any sidecar
                wall, reports[name] = _run(frames, tmp / "out", tmp / "cache", extra)
                walls[name].append(wall)
        fwhm_in = _input_fwhm(given)
        print(f"median input FWHM {fwhm_in:.3f} px (catalogue measure)")
        print(f"{'case':<18} {'wall s':>7} {'solves':>6} {'reg ms/frame':>12} {'FWHM out/in':>11}")
        for name, rep in reports.items():
            astro = rep["astrometry"]
            ms = astro.get("register_ms_per_frame")
            print(
                f"{name:<18} {statistics.median(walls[name]):7.2f} {astro['solved']:>6d} "
                f"{(f'{ms:.1f}' if ms else '-'):>12} {rep['output']['fwhm_px'] / fwhm_in:11.4f}"
            )
        ratio = statistics.median(walls["hidden"]) / statistics.median(walls["given"])
        pairs = [h / g for h, g in zip(walls["hidden"], walls["given"], strict=True)]
        print(f"hidden / given: {ratio:.3f} (pairs {', '.join(f'{p:.3f}' for p in pairs)})")
        seconds = reports["hidden"]["astrometry"]["seconds"]
        print(f"hidden run stages (s): {json.dumps(seconds)}")


if __name__ == "__main__":
    main()
