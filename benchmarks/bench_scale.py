"""SDS at scale: 200 and 1,000 simulated full-size Seestar frames (sidecar WCS given).

Prints, per size: wall time, seconds per frame, and the peak RSS of the whole process tree
(the CLI and its worker processes, sampled every 50 ms). Targets (issue 7): peak memory
differs by < 20 % between the two sizes, ≤ 0.25 s per frame end to end on 2 cores, ≤ 3 GB.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 200 1000] [--root /tmp/sds-scale]

Simulated datasets are kept in --root and reused by later runs (simulation is not timed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from supadupstack.simulate import simulate_dataset


def tree_rss(proc: psutil.Process) -> int:
    """Resident memory of a process and all its children, bytes."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_measured(cmd: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak tree RSS bytes, return code) of a command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            with contextlib.suppress(psutil.Error):
                peak = max(peak, tree_rss(ps))
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = proc.communicate()
    stop.set()
    t.join()
    if proc.returncode:
        print(err, file=sys.stderr)
    return time.perf_counter() - t0, peak, proc.returncode


def dataset(root: Path, n_frames: int) -> Path:
    per_session = -(-n_frames // 3)
    folder = root / f"nights-{per_session}"
    if not (folder / "truth" / "manifest.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        t = time.perf_counter()
        simulate_dataset(folder, "sds-nights", n_frames=per_session, seed=7, sidecars=True)
        print(f"  simulated {3 * per_session} frames in {time.perf_counter() - t:.0f}s")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    ap.add_argument("--root", default="/tmp/sds-scale")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    root = Path(args.root)
    exe = [sys.executable, "-m", "supadupstack"]
    rows = []
    for n in args.sizes:
        data = dataset(root, n)
        out = root / f"out-{n}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [*exe, "run", str(data / "frames"), "-o", str(out), "-q", "-j", str(args.workers)]
        wall, peak, rc = run_measured(cmd)
        report = json.loads((out / "supadupstack.report.json").read_text()) if rc == 0 else {}
        frames = len(report.get("frames_used", [])) + len(report.get("frames_rejected", []))
        rows.append((n, frames, wall, peak, report.get("seconds", {})))
        print(
            f"{frames:5d} frames: {wall:7.1f} s wall, {wall / max(frames, 1):.3f} s/frame, "
            f"peak RSS {peak / 2**30:.2f} GiB, stages {report.get('seconds')}"
        )
    if len(rows) >= 2:
        lo, hi = rows[0][3], rows[-1][3]
        print(f"peak memory {rows[-1][1]} vs {rows[0][1]} frames: {100 * (hi / lo - 1):+.1f} %")


if __name__ == "__main__":
    main()
