"""Simulator speed: seconds per full-size (1080x1920) sub, render + noise + FITS write.

Usage: python benchmarks/bench_simulate.py [N_PER_SESSION]  (default 5 → 15 subs, sds-nights).
Timings on a shared machine are noisy; the target is < 0.3 s per frame on one core.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from supadupstack.simulate import simulate_dataset


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        simulate_dataset(Path(tmp), "sds-nights", n_frames=n, seed=0)
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        simulate_dataset(Path(tmp) / "one", "sds-nights", n_frames=2, seed=0)
        small = time.perf_counter() - t1
    per_frame = (total - small) / (3 * (n - 2)) if n > 2 else total / (3 * n)
    print(
        f"sds-nights {3 * n} frames: {total:.2f} s total, {per_frame:.3f} s per frame "
        "(truth grid and catalogue excluded by differencing)"
    )


if __name__ == "__main__":
    main()
