"""Speed and sanity of the star detector (``supadupstack.catalogue.detect_stars``).

Prints milliseconds per call (median of --repeat calls after a warm-up that also compiles the
numba kernels) on a synthetic 1080 x 1920 luminance with ~300 Moffat stars, Poisson + read
noise and a 10 % sky gradient, or on a FITS file given with --fits. When the real Seestar
frames exist (../shared/seestar_real/M 94_sub from the repository root) it also prints, per
frame, the stars found, the median FWHM and the time, next to the old measure
(``frames.quality.measure_stars``: sep detection, FWHM = 2 x half-light radius).

    NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/bench_detect.py [--fits F] [--repeat 20]

Run with NUMBA_NUM_THREADS=1 (and nothing else busy) for the one-core figure.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from supadupstack.catalogue import DetectionSettings, detect_stars, median_fwhm

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "seestar_real" / "M 94_sub"


def synthetic_frame(n_stars: int = 300, fwhm: float = 3.7, beta: float = 3.0, seed: int = 1):
    """(1080, 1920) float32 luminance in ADU: Moffat stars sampled at pixel centres on a
    1000 ADU sky with a 10 % gradient, Poisson noise (1 e-/ADU) plus 10 ADU read noise."""
    rng = np.random.default_rng(seed)
    h, w = 1080, 1920
    sky = 1000.0 * (1.0 + 0.1 * np.arange(w) / w)
    img = np.tile(sky, (h, 1))
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    norm = (beta - 1.0) / (np.pi * alpha**2)
    half = 30
    g = np.arange(-half, half + 1)
    for x, y, f in zip(
        rng.uniform(5, w - 5, n_stars),
        rng.uniform(5, h - 5, n_stars),
        10 ** rng.uniform(3.3, 6.0, n_stars),
    ):
        xi, yi = int(round(x)), int(round(y))
        ys, xs = slice(max(yi - half, 0), yi + half + 1), slice(max(xi - half, 0), xi + half + 1)
        gy = g[max(half - yi, 0) :][: img[ys, xs].shape[0]] + yi
        gx = g[max(half - xi, 0) :][: img[ys, xs].shape[1]] + xi
        r2 = (gx[None, :] - x) ** 2 + (gy[:, None] - y) ** 2
        img[ys, xs] += f * norm * (1.0 + r2 / alpha**2) ** (-beta)
    img = np.minimum(img, 65535.0)
    img = rng.poisson(img) + rng.normal(0.0, 10.0, img.shape)
    return img.astype(np.float32)


def time_calls(
    lum: np.ndarray, repeat: int, settings: DetectionSettings
) -> tuple[float, np.ndarray]:
    """(median ms per call, the catalogue), after one warm-up call."""
    stars = detect_stars(lum, settings)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        stars = detect_stars(lum, settings)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times)), stars


def describe(stars: np.ndarray) -> str:
    good = (stars["flags"] == 0) & (stars["snr"] >= 10)
    return (
        f"{len(stars)} stars ({int((stars['snr'] >= 10).sum())} SNR>=10, "
        f"{int(good.sum())} clean), median FWHM {median_fwhm(stars):.2f} px"
    )


def real_frames(repeat: int, settings: DetectionSettings, limit: int) -> None:
    """Per real M 94 frame: new catalogue vs the old sep-based measure."""
    from supadupstack.config import Config
    from supadupstack.frames import quality
    from supadupstack.frames.calibrate import calibrate_frame
    from supadupstack.frames.fits_io import load_pixels, read_frames

    frames, skips = read_frames(sorted(REAL.glob("*.fit"))[:limit])
    for skip in skips:
        print(f"  skipped {skip}")
    old = getattr(quality, "measure_stars", None)
    print(f"\nreal frames: {REAL}")
    print(f"{'frame':>24} {'ms':>6} {'stars':>6} {'snr>=10':>8} {'FWHM':>6} | old: n  FWHM")
    for frame in frames:
        image = calibrate_frame(frame, load_pixels(frame), Config().calibration)
        lum = np.ascontiguousarray(quality.luminance(image))
        ms, stars = time_calls(lum, repeat, settings)
        old_txt = ""
        if old is not None:
            n_old, fwhm_old = old(lum, settings.sigma)
            old_txt = f"{n_old:4d} {fwhm_old:5.2f}"
        print(
            f"{frame.path.stem[-24:]:>24} {ms:6.1f} {len(stars):6d} "
            f"{int((stars['snr'] >= 10).sum()):8d} {median_fwhm(stars):6.2f} | {old_txt}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fits", type=Path, help="measure this FITS luminance instead")
    ap.add_argument("--repeat", type=int, default=20, help="timed calls per image")
    ap.add_argument("--sigma", type=float, default=5.0, help="detection threshold")
    ap.add_argument("--real-limit", type=int, default=23, help="at most this many real frames")
    args = ap.parse_args()
    settings = DetectionSettings(sigma=args.sigma)
    if args.fits:
        from astropy.io import fits

        lum = np.asarray(fits.getdata(args.fits), dtype=np.float32)
        if lum.ndim == 3:  # (C, H, W) colour: mean of the planes
            lum = lum.mean(axis=0, dtype=np.float32)
        label = str(args.fits)
    else:
        t0 = time.perf_counter()
        lum = synthetic_frame()
        label = f"synthetic 1080x1920, 300 stars (made in {time.perf_counter() - t0:.1f} s)"
    t0 = time.perf_counter()
    detect_stars(lum[:64, :64], settings)
    print(f"first call (numba compile or cache load): {time.perf_counter() - t0:.2f} s")
    ms, stars = time_calls(lum, args.repeat, settings)
    print(f"{label}: {ms:.1f} ms per call; {describe(stars)}")
    if REAL.is_dir():
        real_frames(max(args.repeat // 4, 3), settings, args.real_limit)
    else:
        print(f"(no real frames at {REAL})")


if __name__ == "__main__":
    main()
