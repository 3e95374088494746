"""Compile the numba kernels ahead of a first run, several processes at once.

Every ``@njit(cache=True)`` kernel compiles on its first call and is then read from numba's
on-disk cache: ~15 CPU-seconds for the kernels of a default run, paid by the first run after
an install (and by every worker process of it at once). ``compile_kernels`` runs the pipeline's
own stage functions on tiny synthetic inputs, so each kernel compiles with exactly the argument
types a run gives it, in a few processes at once (numba compiles one function at a time per
process); ``ensure_compiled`` does so only when a marker per group says this CPU and these
kernel sources (``_kernel_cache.sources_key``, whose change also empties the caches) have not
been compiled yet. ``supadupstack warmup`` (also ``python -m supadupstack.warmup``) compiles
every kernel; ``scripts/dev.sh env`` runs it. A wheel installed by plain pip cannot run code
at install time: there the first run warms up.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numba
import numpy as np

from supadupstack._kernel_cache import sources_key

log = logging.getLogger(__name__)


def _cpu_key() -> str:
    """Hash of the CPU numba compiles for: its cache keeps one entry per CPU."""
    from numba.core.registry import cpu_target

    magic = cpu_target.target_context.codegen().magic_tuple()
    return hashlib.sha256(repr(magic).encode()).hexdigest()[:12]


def cache_dir() -> Path | None:
    """Where numba caches this package's kernels (beside the sources, or the user cache when
    they are read-only); None when caching is off (NUMBA_DISABLE_JIT, nowhere writable)."""
    from supadupstack import order_stats

    path = getattr(getattr(order_stats.select_kth, "_cache", None), "_cache_path", None)
    return Path(path) if path else None


# Warm-up groups: tiny runs of the stage functions, one process each.


def _star_image(h: int = 160, w: int = 192, seed: int = 0) -> np.ndarray:
    """(h, w, 3) float32 sky with a dozen stars (FWHM ~3.5 px) and noise, in ADU."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = rng.normal(800.0, 12.0, (h, w))
    stars = zip(rng.uniform(12, h - 12, 12), rng.uniform(12, w - 12, 12), rng.uniform(2e3, 4e4, 12))
    for y, x, flux in stars:
        img += flux / (2 * np.pi * 1.5**2) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.5)
    return np.repeat(img[..., None], 3, axis=2).astype(np.float32)


def _warm_catalogue() -> None:
    """Star detection and fits (the largest group: a process of its own)."""
    from supadupstack.catalogue.stage import detection_settings, measure_quality
    from supadupstack.config import Config

    measure_quality(_star_image(), detection_settings(Config()))


def _warm_calibration() -> None:
    """Hot pixels (Bayer and mono), then resampling onto a canvas."""
    from supadupstack.frames.hotpixels import repair_hot_pixels

    raw = _star_image()[..., 1].copy()
    raw[7, 9] += 5e4
    repair_hot_pixels(raw, "GRBG")
    repair_hot_pixels(raw, None)
    _warm_canvas()


def _warm_canvas() -> None:
    """Resampling onto a canvas."""
    from astropy.wcs import WCS

    from supadupstack.canvas import canvas_from_frames, resample_to_canvas
    from supadupstack.config import Config

    img = _star_image(64, 80)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [180.0, 40.0]
    wcs.wcs.crpix = [40.5, 32.5]
    wcs.wcs.cd = [[-1e-3, 1e-4], [1e-4, 1e-3]]
    cfg = Config()
    canvas = canvas_from_frames([wcs], [img.shape[:2]], cfg.canvas)
    resample_to_canvas(img, wcs, canvas, cfg.resample.kernel, cfg.resample.grid_step_px)


def _patches(n: int = 5):
    from supadupstack.canvas.resample import Patch

    rng = np.random.default_rng(1)
    weight = np.ones((24, 40), np.float32)
    data = rng.normal(500, 9, (n, 24, 40, 3)).astype(np.float32)
    return [Patch(i, 2 * i, data[i], weight) for i in range(n)]


def _warm_stacking() -> None:
    """The default stacking: winsorized (or no) rejection with a weighted mean."""
    from supadupstack.config import StackingConfig
    from supadupstack.stacking.engine import stack_patches

    stack_patches(_patches(), StackingConfig())


def _warm_other_stacking() -> None:
    """Kappa-sigma, linear-fit clipping and the median, and the public per-pixel rejection."""
    from supadupstack.config import StackingConfig
    from supadupstack.stacking import reject
    from supadupstack.stacking.engine import stack_patches

    stack_patches(_patches(), StackingConfig(rejection="kappa_sigma"))
    stack = np.stack([p.data for p in _patches()])
    for method in ("winsorized_sigma", "kappa_sigma", "linear_fit_clip"):
        reject.reject(stack, method)


def _warm_photometry() -> None:
    """Cross-convolved star photometry (patches cropped and whole: numba compiles each array
    layout once) and the inter-tile gain solver."""
    from supadupstack.canvas.resample import Patch
    from supadupstack.catalogue.stage import catalogue_of_image, detection_settings
    from supadupstack.config import Config
    from supadupstack.stacking.gain_solver import PairFit, solve
    from supadupstack.stacking.photometry import photometric_fit

    img = _star_image(200, 240)
    stars = catalogue_of_image(img, detection_settings(Config())).stars
    weight = np.ones(img.shape[:2], np.float32)
    photometric_fit(Patch(0, 0, img, weight), Patch(0, 0, img * 0.9, weight), stars, stars)
    cropped = img[:, :239]  # a view, as resampled frames and tiles read from disk are
    one = weight[:, :239].copy()
    photometric_fit(Patch(0, 0, cropped, one), Patch(0, 0, cropped, one), stars, stars)
    pairs = [PairFit(0, 1, [1.1] * 3, [0.0] * 3, [1.0] * 3, [1.0] * 3, 9, 99, "", 1e4)]
    solve([0, 1], pairs, 0, [1.0, 1.0], 3, (0.5, 2.0))


GROUPS: dict[str, Callable[[], None]] = {  # the longest first: a free process takes the next
    "catalogue": _warm_catalogue,
    "stacking": _warm_stacking,
    "other-stacking": _warm_other_stacking,
    "calibration": _warm_calibration,
    "photometry": _warm_photometry,
}
# what a default run compiles
RUN_GROUPS = ("catalogue", "stacking", "calibration", "photometry")


def _run_group(name: str) -> float:
    t = time.process_time()
    GROUPS[name]()
    return time.process_time() - t


def _run_group_safely(name: str) -> float:
    """``_run_group`` that logs a failure and returns NaN: the warm-up must not stop a run."""
    try:
        return _run_group(name)
    except Exception as exc:  # noqa: BLE001 - a kernel that fails here fails in the run too
        log.warning("numba warm-up of %s failed: %s", name, exc)
        return float("nan")


def compile_kernels(groups: tuple[str, ...] = tuple(GROUPS), workers: int = 0) -> dict:
    """Compile the kernels of ``groups`` with ``workers`` processes at once (0: one per core):
    the first group (the largest) here, the others in fresh interpreters, which each take
    ~1.5 s to start. Returns {group: CPU seconds} (NaN for a group that failed: its kernels
    then compile on first use, as without a warm-up)."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(groups)))
    if workers == 1:
        return {name: _run_group_safely(name) for name in groups}
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing compiled yet
    with ProcessPoolExecutor(max_workers=workers - 1, mp_context=spawn) as pool:
        futures = {name: pool.submit(_run_group, name) for name in groups[1:]}
        out = {groups[0]: _run_group_safely(groups[0])}
        for name, fut in futures.items():
            try:
                out[name] = fut.result()
            except Exception as exc:  # noqa: BLE001 - a warm-up failure must not stop a run
                log.warning("numba warm-up of %s failed: %s", name, exc)
                out[name] = float("nan")
    return out


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock in ``folder``: concurrent processes warm up one at a time."""
    with open(folder / "supadupstack-warmup.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _missing(folder: Path, groups: tuple[str, ...], key: str) -> tuple[str, ...]:
    """The groups not yet compiled for these sources on this CPU (a marker file per group)."""
    cpu = _cpu_key()
    out = []
    for name in groups:
        try:
            done = (folder / f"supadupstack-{cpu}-{name}.done").read_text() == key
        except OSError:
            done = False
        if not done:
            out.append(name)
    return tuple(out)


def _compile_missing(
    folder: Path, groups: tuple[str, ...], key: str, workers: int, note: Callable[[str], None]
) -> float:
    """Under the lock: compile the groups still missing (another process may have done some
    while this one waited), then mark them done for this key."""
    todo = _missing(folder, groups, key)
    if not todo:
        return 0.0
    t = time.monotonic()
    note(f"compiling the numba kernels once ({', '.join(todo)}) ...")
    cpu = compile_kernels(todo, workers)
    for name, seconds in cpu.items():
        if np.isfinite(seconds):
            (folder / f"supadupstack-{_cpu_key()}-{name}.done").write_text(key)
    spent = time.monotonic() - t
    note(f"kernels compiled in {spent:.1f} s ({sum(cpu.values()):.1f} CPU-s)")
    return spent


def ensure_compiled(
    groups: tuple[str, ...] = RUN_GROUPS, workers: int = 0, note: Callable[[str], None] = log.info
) -> float:
    """Compile ``groups`` unless already done for these kernel sources on this CPU; returns the
    seconds spent (0 when nothing was to do: a hash of the sources and a few file reads).
    A change of the sources had emptied the kernels' caches at import (``_kernel_cache``)."""
    folder = cache_dir()
    if folder is None or numba.config.DISABLE_JIT:
        return 0.0
    key = sources_key()
    if not _missing(folder, groups, key):
        return 0.0
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder):
            return _compile_missing(folder, groups, key, workers, note)
    except OSError as exc:  # a read-only cache: numba compiles on first use, as without
        log.info("numba warm-up skipped: %s", exc)
        return 0.0


def main(argv: list[str] | None = None) -> int:
    """``python -m supadupstack.warmup [-j N]``: compile every kernel now."""
    import argparse

    p = argparse.ArgumentParser(prog="supadupstack warmup", description=__doc__.splitlines()[0])
    p.add_argument("-j", "--workers", type=int, default=0, help="processes (default: cores)")
    args = p.parse_args(argv)
    ensure_compiled(tuple(GROUPS), args.workers, note=lambda s: print(s, file=sys.stderr))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
