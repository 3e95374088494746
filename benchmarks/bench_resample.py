"""Benchmark: resample one real 1080×1920×3 Seestar frame onto a canvas, on one core.

Prints our time (bilinear and Lanczos, best of ``--repeat``; OpenCV and BLAS limited to one
thread) and reproject_interp's time (bilinear, order=1, all 3 channels) on the same frame and
canvas in the same run, and their ratio (targets: ≤ 60 ms, ≥ 20× faster). Needs
../shared/seestar_real. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

from supadupstack.canvas import canvas_from_frames, resample_to_canvas  # noqa: E402
from supadupstack.config import CanvasConfig  # noqa: E402
from supadupstack.frames.calibrate import debayer  # noqa: E402
from supadupstack.frames.fits_io import load_pixels, read_frame  # noqa: E402

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "seestar_real" / "M 94_sub"


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    cv2.setNumThreads(1)
    paths = sorted(REAL.glob("*.fit"))
    frames = [(p, WCS(fits.getheader(p.with_suffix(".wcs")), relax=True)) for p in paths]
    canvas = canvas_from_frames(
        [w for _, w in frames], [(1920, 1080)] * len(frames), CanvasConfig()
    )
    print(f"canvas {canvas.shape} at {canvas.scale_arcsec:.3f} arcsec/px ({len(frames)} frames)")
    for label, (path, wcs) in (("unrotated (A1)", frames[0]), ("rotated 70 deg (B)", frames[17])):
        img = debayer(load_pixels(read_frame(path)), "GRBG")
        resample_to_canvas(img, wcs, canvas)
        t_bil = best_of(lambda img=img, wcs=wcs: resample_to_canvas(img, wcs, canvas), args.repeat)
        t_lz = best_of(
            lambda img=img, wcs=wcs: resample_to_canvas(img, wcs, canvas, "lanczos"), args.repeat
        )
        from reproject import reproject_interp

        planes = np.moveaxis(img, -1, 0).copy()
        t_rep = best_of(
            lambda planes=planes, wcs=wcs: reproject_interp(
                (planes, wcs), canvas.wcs, shape_out=(3, *canvas.shape), order=1
            ),
            1,
        )
        box = resample_to_canvas(img, wcs, canvas).box
        print(
            f"{label}: patch {box[2]}x{box[3]}; ours bilinear {t_bil * 1e3:.1f} ms, "
            f"lanczos {t_lz * 1e3:.1f} ms; reproject_interp {t_rep * 1e3:.0f} ms; "
            f"ratio {t_rep / t_bil:.0f}x"
        )


if __name__ == "__main__":
    main()
