"""Sky-gradient removal against the simulator's truth: prints one table row per run.

    .venv/bin/python benchmarks/gradients.py [--frames 12] [--seed 0] [--work DIR]

Simulates the ``gradients`` night (a light dome of 4–12 % of the sky per frame, turning and
changing strength, under a large galaxy) and the ``nebula`` field (nebulosity over most of the
frame, same dome), runs SDS on each with ``calibration.gradient_removal`` = auto (default) and
off, and prints the truth metrics: background flatness (P95 − P5 of 64-px block means of
output − fitted truth, over the per-pixel background σ; noise floor ~0.1), the galaxy's flux
(aperture with local annulus, and whole) and the nebula's flux over the truth, each divided
by the stars' ratio (star-scaled truth: 1.000 = kept).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from supadupstack import pipeline  # noqa: E402
from supadupstack.config import Config, apply_overrides  # noqa: E402
from supadupstack.simulate import simulate_dataset  # noqa: E402
from supadupstack.simulate.metrics import evaluate  # noqa: E402


def _row(preset: str, mode: str, res: dict, seconds: float) -> str:
    stars = res["star_flux_ratio_median"]

    def scaled(key: str) -> str:
        value = res.get(key)
        return "–" if value is None or value != value else f"{value / stars:.4f}"

    return (
        f"| {preset} | {mode} | {res['flatness']:.3f} | {scaled('extended_flux_ratio')} | "
        f"{scaled('galaxy_total_flux_ratio')} | {scaled('nebula_flux_ratio')} | {stars:.4f} | "
        f"{seconds:.1f} |"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12, help="frames per session (2 sessions)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="keep datasets and outputs here")
    ap.add_argument("-j", "--workers", type=int, default=2)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sds_gradients_"))
    print(
        "| set | gradient_removal | flatness | galaxy (annulus) | galaxy (whole) | nebula | "
        "stars | run s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for preset in ("gradients", "nebula"):
        sim = work / preset / "sim"
        manifest = sim / "truth" / "manifest.json"
        if not manifest.exists():
            simulate_dataset(sim, preset, n_frames=args.frames, seed=args.seed, sidecars=True)
        for mode in ("auto", "off"):
            out = work / preset / f"out_{mode}"
            cfg = apply_overrides(
                Config(),
                [f'calibration.gradient_removal="{mode}"', f"execution.workers={args.workers}"],
            )
            t0 = time.monotonic()
            pipeline.run([str(sim / "frames")], out, cfg)
            seconds = time.monotonic() - t0
            res = evaluate(out / "supadupstack.fits", manifest.parent)
            print(_row(preset, mode, res, seconds), flush=True)
    print(f"\n(datasets and outputs in {work})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
