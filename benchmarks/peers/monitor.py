"""Running the peer tools: wall time and peak memory of a command's whole process tree (psutil
polling), a tool's version output, and scratch folders for their intermediate files.

Peak memory is the largest *sum* of the resident set sizes (RSS) of the process and all its
descendants seen at any poll (every ``interval_s``, 20 ms by default). Pages shared between
processes (numba/numpy libraries, copy-on-write after fork) are counted once per process, so
the figure is an upper bound of the physical memory used; a spike shorter than the polling
interval can be missed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass
class Measured:
    """One command's wall seconds, peak tree RSS (MiB), exit status and output tail."""

    wall_s: float
    peak_mb: float
    returncode: int
    output_tail: str


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_measured(
    cmd: list[str], log_path: Path, interval_s: float = 0.02, env: dict | None = None
) -> Measured:
    """Run ``cmd`` to completion, polling its process tree; stdout+stderr go to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    peak = 0
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        proc = psutil.Process(popen.pid)
        while popen.poll() is None:
            peak = max(peak, _tree_rss(proc))
            time.sleep(interval_s)
        wall = time.perf_counter() - t0
    tail = log_path.read_text(errors="replace")[-2000:]
    return Measured(wall, peak / 2**20, popen.returncode, tail)


def tool_output(cmd: list[str]) -> str:
    """What a short command (a tool's version flag) prints, stdout then stderr, stripped."""
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (out.stdout + out.stderr).strip()


@contextmanager
def scratch_dir(path: Path) -> Iterator[Path]:
    """A fresh, empty ``path`` for a tool's intermediate files, removed afterwards (they can
    take gigabytes: planes, converted and registered frames)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
