"""Benchmark: per-frame cost of the SDS path on real Seestar frames, one core.

For each frame of one batch (default: the first 10 frames of ``../shared/seestar_real/M 94_sub``,
one session) it times, the way ``sds.megatile.build_megatile`` runs them:

- load: ``read_frame`` + ``load_pixels``
- calibrate: hot-pixel repair (``repair_hot_pixels``) and debayer, then ``calibrate_frame`` whole
- quality: ``catalogue_of_image`` (sky/noise, the star catalogue: detection + Moffat fits)
- resample: ``resample_to_canvas`` onto the canvas of all frames of the folder
- photometric fit: ``photometric_fit`` of the frame's patch against the batch reference, with
  both catalogues moved onto the canvas (``stars_on_grid``), as ``stack_frames`` runs it
- gradients: ``remove_relative_gradients`` (each frame's sky gradient against the reference,
  removed where significant) / N, plus ``remove_stack_gradient`` of the stacked batch / N
- stack share: ``stack_patches`` of the batch (run-like: coefficients and noise given) / N

All with numba and OpenCV limited to one thread, so the sum is the core-seconds per frame;
the target is ≤ 0.25 core-seconds per frame (issue 13). Medians over
the frames, best of ``--repeat`` runs each. ``--check`` also prints the per-frame results
(stars, FWHM, photometric scale) so a change can be compared with the previous code.
Needs ../shared/seestar_real. Timings on a shared machine are noisy.
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

from supadupstack.canvas import canvas_from_frames, resample_to_canvas  # noqa: E402
from supadupstack.canvas.resample import Patch  # noqa: E402
from supadupstack.catalogue.stage import catalogue_of_image, detection_settings  # noqa: E402
from supadupstack.config import Config  # noqa: E402
from supadupstack.frames.calibrate import calibrate_frame, debayer, repair_hot_pixels  # noqa: E402
from supadupstack.frames.fits_io import load_pixels, read_frame  # noqa: E402
from supadupstack.stacking.engine import stack_patches  # noqa: E402
from supadupstack.stacking.frameset import (  # noqa: E402
    remove_relative_gradients,
    remove_stack_gradient,
)
from supadupstack.stacking.photometry import DEBAYER_BLUR_VAR, photometric_fit  # noqa: E402
from supadupstack.stacking.star_photometry import stars_on_grid  # noqa: E402

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "seestar_real" / "M 94_sub"


def best_of(fn, repeat: int):
    """(best seconds, last result) of ``repeat`` calls."""
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=10, help="frames of the batch (from the first)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="print per-frame results")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    cv2.setNumThreads(1)
    import numba

    numba.set_num_threads(1)
    cfg = Config()
    paths = sorted(REAL.glob("*.fit"))
    if not paths:
        raise SystemExit(f"no frames in {REAL}")
    wcs_all = [WCS(fits.getheader(p.with_suffix(".wcs")), relax=True) for p in paths]
    frames = [read_frame(p) for p in paths[: args.frames]]
    canvas = canvas_from_frames(
        wcs_all, [(f.height, f.width) for f in [read_frame(p) for p in paths]], cfg.canvas
    )
    print(f"canvas {canvas.shape}; batch of {len(frames)} frames; 1 thread (numba, OpenCV)")
    # warm-up: numba compilation / cache loading
    warm = calibrate_frame(frames[0], load_pixels(frames[0]), cfg.calibration)
    catalogue_of_image(warm, detection_settings(cfg))

    stages = ("load", "hot pixels", "debayer", "calibrate", "quality", "resample", "phot fit")
    t = {s: [] for s in stages}
    patches, qualities, grid_stars = [], [], []
    for f, wcs in zip(frames, wcs_all, strict=False):
        dt, raw = best_of(lambda f=f: load_pixels(read_frame(f.path)), args.repeat)
        t["load"].append(dt)
        pat = f.bayer_pattern or "RGGB"
        kap = cfg.calibration.hot_pixel_kappa
        dt, (cfa, _) = best_of(
            lambda raw=raw, pat=pat, kap=kap: repair_hot_pixels(raw, pat, kap), args.repeat
        )
        t["hot pixels"].append(dt)
        t["debayer"].append(best_of(lambda cfa=cfa, pat=pat: debayer(cfa, pat), args.repeat)[0])
        dt, img = best_of(
            lambda f=f, raw=raw: calibrate_frame(f, raw, cfg.calibration), args.repeat
        )
        t["calibrate"].append(dt)
        dt, cat = best_of(
            lambda img=img: catalogue_of_image(img, detection_settings(cfg)), args.repeat
        )
        t["quality"].append(dt)
        q = cat.quality()
        grid_stars.append(stars_on_grid(cat.stars, wcs, canvas.wcs))
        kern, step = cfg.resample.kernel, cfg.resample.grid_step_px
        dt, patch = best_of(
            lambda img=img, wcs=wcs, kern=kern, step=step: resample_to_canvas(
                img, wcs, canvas, kern, step
            ),
            args.repeat,
        )
        t["resample"].append(dt)
        patches.append(patch)
        qualities.append(q)
    ref = len(patches) // 2
    fits_ = []
    for i, p in enumerate(patches):
        if i == ref:
            fits_.append(None)
            continue
        dt, fit = best_of(
            lambda p=p, i=i: photometric_fit(
                p, patches[ref], grid_stars[i], grid_stars[ref], DEBAYER_BLUR_VAR
            ),
            args.repeat,
        )
        t["phot fit"].append(dt)
        fits_.append(fit)
    n, nch = len(patches), patches[0].data.shape[-1]
    a = np.array([[1.0] * nch if ft is None else list(ft.scale) for ft in fits_])
    b = np.array([[0.0] * nch if ft is None else ft.offset for ft in fits_])
    noises = [np.asarray(q.noise, np.float64) for q in qualities]
    order = cfg.calibration.gradient_order
    copies = [Patch(p.y0, p.x0, p.data.copy(), p.weight) for p in patches]
    t0 = time.perf_counter()
    remove_relative_gradients(copies, ref, a, b, order)
    dt_grad = time.perf_counter() - t0
    stack_patches(patches[:3], cfg.stacking, reference=0, noise=noises[:3])  # warm-up
    dt_stack, stacked = best_of(
        lambda: stack_patches(
            patches, cfg.stacking, reference=ref, noise=noises, coefficients=(a, b)
        ),
        args.repeat,
    )
    t0 = time.perf_counter()
    remove_stack_gradient(stacked[0], order)
    dt_grad += time.perf_counter() - t0
    med = {s: float(np.median(v)) for s, v in t.items()}
    med["gradients"] = dt_grad / n
    med["stack share"] = dt_stack / n
    total = sum(med[s] for s in ("load", "calibrate", "quality", "resample", "phot fit"))
    total += med["gradients"] + med["stack share"]
    for s, v in med.items():
        part = "  (part of calibrate)" if s in ("hot pixels", "debayer") else ""
        print(f"  {s:12s} {v * 1e3:7.1f} ms{part}")
    print(
        f"total {total * 1e3:.0f} ms of one core per frame (target <= 250 ms); "
        f"stack of {n}: {dt_stack:.2f} s"
    )
    if args.check:
        for f, q, ft in zip(frames, qualities, fits_, strict=True):
            scale = "ref" if ft is None else f"{ft.grey:.4f} ({ft.how})"
            print(f"  {f.path.name}: stars {q.n_stars}, FWHM {q.fwhm_px:.3f} px, scale {scale}")


if __name__ == "__main__":
    main()
