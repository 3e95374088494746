"""Benchmark: resample one real 1080×1920×3 Seestar frame onto a canvas, on one core.

Prints, for two frames (one at a small rotation from the canvas, one rotated 70°), the CPU
time of ``resample_to_canvas`` (positions, kernel, crop) with each kernel side by side, best
of ``--repeat`` (numba, OpenCV and BLAS limited to one thread; CPU seconds of this process,
so other jobs on a shared machine disturb the figures less than wall time), and
reproject_interp's time (bilinear, order=1, all 3 channels) on the same frame and canvas, with
its ratio to the default kernel. Targets: default kernel ≤ 70 ms on the small rotation, ≥ 20×
faster than reproject. Needs ../shared/seestar_real.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

from supadupstack.canvas import KERNELS, canvas_from_frames, resample_to_canvas  # noqa: E402
from supadupstack.config import CanvasConfig, ResampleConfig  # noqa: E402
from supadupstack.frames.calibrate import debayer  # noqa: E402
from supadupstack.frames.fits_io import load_pixels, read_frame  # noqa: E402

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "seestar_real" / "M 94_sub"


def best_of(fn, repeat: int) -> float:
    """Smallest CPU time (s) of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
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
    default = ResampleConfig().kernel
    print(f"canvas {canvas.shape} at {canvas.scale_arcsec:.3f} arcsec/px ({len(frames)} frames)")
    print(f"one core, CPU ms, best of {args.repeat}; default kernel: {default}")
    for label, (path, wcs) in (("small rotation (A1)", frames[0]), ("rotated 70° (B)", frames[17])):
        img = debayer(load_pixels(read_frame(path)), "GRBG")
        ms = {}
        for kernel in KERNELS:
            resample_to_canvas(img, wcs, canvas, kernel)  # compile, warm the caches
            ms[kernel] = 1e3 * best_of(
                lambda img=img, wcs=wcs, k=kernel: resample_to_canvas(img, wcs, canvas, k),
                args.repeat,
            )
        from reproject import reproject_interp

        planes = np.moveaxis(img, -1, 0).copy()
        t_rep = 1e3 * best_of(
            lambda planes=planes, wcs=wcs: reproject_interp(
                (planes, wcs), canvas.wcs, shape_out=(3, *canvas.shape), order=1
            ),
            1,
        )
        box = resample_to_canvas(img, wcs, canvas).box
        side = " | ".join(f"{k} {v:.1f}" for k, v in ms.items())
        print(
            f"{label}: patch {box[2]}x{box[3]}; {side}; reproject_interp {t_rep:.0f} "
            f"({t_rep / ms[default]:.0f}x {default})"
        )


if __name__ == "__main__":
    main()
