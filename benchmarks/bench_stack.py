"""Benchmark: stack 30 frames of 1080×1920×3 with winsorized rejection (target ≤ 3 s, 2 cores).

Prints the time of ``stack_patches`` (linear_fit normalisation + noise weights + winsorized
sigma + weighted mean, the defaults) and of the rejection/combination pass alone, and the
peak resident memory (psutil) above the inputs. Numba is compiled by a warm-up run first.
Timings on a shared machine are noisy: the best of ``--repeat`` runs is reported, with the
CPU seconds of that run (all threads; less sensitive to other processes than wall time).
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import psutil

from supadupstack.canvas.resample import Patch
from supadupstack.config import StackingConfig
from supadupstack.stacking import engine


def make_patches(n: int, h: int, w: int, seed: int = 0) -> list[Patch]:
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (h, w, 3)).astype(np.float32) * 50 + 800
    out = []
    for i in range(n):
        noise = rng.standard_normal((h, w, 3), dtype=np.float32) * 12
        data = base * (1 + 0.01 * i) + noise + 5 * i
        out.append(Patch(0, 0, data, np.ones((h, w), np.float32)))
    return out


class PeakRss:
    """Samples the process RSS every 5 ms in a thread."""

    def __init__(self) -> None:
        self.proc = psutil.Process(os.getpid())
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--budget-mb", type=int, default=2048)
    args = ap.parse_args()
    import numba

    print(f"numba threads: {numba.get_num_threads()}  cores: {os.cpu_count()}")
    cfg = StackingConfig(memory_budget_mb=args.budget_mb)
    engine.stack_patches(make_patches(3, 64, 64), cfg)  # compile / load the numba cache
    patches = make_patches(args.frames, 1080, 1920)
    base_rss = psutil.Process(os.getpid()).memory_info().rss
    in_mb = sum(p.data.nbytes + p.weight.nbytes for p in patches) / 2**20
    known = [np.full(3, 12.0)] * len(patches)  # a run measures noise once, at ingestion
    for label, c, noise in (
        ("full (linear_fit + noise weights + winsorized + mean)", cfg, None),
        ("full, noise known from ingestion (as in a run)", cfg, known),
        (
            "rejection + combine only (normalization none)",
            StackingConfig(normalization="none", memory_budget_mb=args.budget_mb),
            known,
        ),
    ):
        best, cpu, peak, facts = np.inf, np.inf, 0, {}
        for _ in range(args.repeat):
            with PeakRss() as mon:
                t, c0 = time.perf_counter(), time.process_time()
                _, facts = engine.stack_patches(patches, c, noise=noise)
                wall = time.perf_counter() - t
                if wall < best:
                    best, cpu = wall, time.process_time() - c0
            peak = max(peak, mon.peak)
        print(
            f"{label}: {args.frames} x 1080x1920x3 in {best:.2f} s (best of {args.repeat}; "
            f"CPU {cpu:.2f} s); "
            f"rejected {facts['rejected_fraction']:.3%}; chunks {facts['n_chunks']}"
        )
        print(
            f"  inputs {in_mb:.0f} MiB; peak RSS above inputs {(peak - base_rss) / 2**20:.0f} MiB "
            f"(budget {args.budget_mb} MiB)"
        )


if __name__ == "__main__":
    main()
