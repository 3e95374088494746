"""Stopping a run: SIGTERM and Ctrl-C print one line and stop the workers; SIGKILL of the run
leaves no process behind (the workers' watchdog ends them); nothing partial is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from supadupstack.simulate import simulate_dataset

ARGS = ["--set", "sds.min_batch_size=2", "--set", "sds.target_batch_size=2", "-j", "2", "-q"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("signals")
    simulate_dataset(root / "sim", "tiny", n_frames=8, seed=3, sidecars=True)
    return root / "sim" / "frames"


def _ctrl_c_default() -> None:
    """A run started from a background job inherits SIGINT ignored (the shell's rule), and
    Python then leaves it ignored: give the run a terminal's default, as a user's has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(frames: Path, out: Path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """Start a run in its own process group; return it once its pool workers are busy."""
    cmd = [sys.executable, "-m", "supadupstack", "run", str(frames), "-o", str(out), *ARGS]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_ctrl_c_default,
    )
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        kids = me.children(recursive=True)
        if len(kids) >= 3:  # the forkserver and two pool workers
            return proc, kids
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"the run never started its pool workers (exit {proc.poll()})")


def _all_gone(procs: list[psutil.Process], within_s: float = 10.0) -> list[int]:
    """PIDs still alive after ``within_s`` seconds (zombies count as gone)."""
    _, alive = psutil.wait_procs(procs, timeout=within_s)
    return [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def _no_partial_outputs(out: Path) -> None:
    assert not list(out.rglob("*.part"))
    assert not (out / "supadupstack.fits").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "code", "line"),
    [
        ("SIGTERM", 143, "supadupstack: stopped (SIGTERM)"),
        ("SIGINT", 130, "supadupstack: interrupted"),
    ],
)
def test_signal_stops_workers_with_one_line(frames, tmp_path, how, code, line) -> None:
    out = tmp_path / "out"
    proc, kids = _start(frames, out)
    if how == "SIGINT":  # Ctrl-C: the terminal signals the whole foreground process group
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert stderr.strip().splitlines() == [line], stderr
    assert "Traceback" not in stdout + stderr
    assert _all_gone(kids) == []
    _no_partial_outputs(out)


@pytest.mark.slow
def test_sigkill_of_the_run_leaves_no_process(frames, tmp_path) -> None:
    out = tmp_path / "out"
    proc, kids = _start(frames, out)
    proc.kill()
    proc.wait(timeout=30)
    assert _all_gone(kids) == []
    _no_partial_outputs(out)
    # and the killed run resumes: the next run finishes and writes the FITS
    cmd = [sys.executable, "-m", "supadupstack", "run", str(frames), "-o", str(out), *ARGS]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (out / "supadupstack.fits").is_file()
