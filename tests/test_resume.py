"""A run killed (SIGKILL) at three stages resumes, reuses finished work, and gives the same FITS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from supadupstack.execution.faults import ENV
from supadupstack.simulate import simulate_dataset

ARGS = ["--set", "sds.min_batch_size=2", "--set", "sds.target_batch_size=2", "-j", "1", "-q"]


def _run(frames: Path, out: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(ENV, None)
    if kill_at:
        env[ENV] = kill_at
    cmd = [sys.executable, "-m", "supadupstack", "run", str(frames), "-o", str(out), *ARGS]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, bytes]:
    root = tmp_path_factory.mktemp("resume")
    simulate_dataset(root / "sim", "tiny", seed=5, sidecars=True)
    frames = root / "sim" / "frames"
    ref = _run(frames, root / "reference")
    assert ref.returncode == 0, ref.stderr
    return frames, (root / "reference" / "supadupstack.fits").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "reused"), [("megatile:1", 1), ("coadd", 3), ("save:fits", 3)])
def test_killed_run_resumes_identically(tiny, tmp_path: Path, stage: str, reused: int) -> None:
    frames, reference = tiny
    out = tmp_path / "out"
    killed = _run(frames, out, kill_at=stage)
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    if stage != "save:fits":
        assert not (out / "supadupstack.fits").exists()
    assert not (out / "supadupstack.report.json").exists()
    resumed = _run(frames, out)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert (out / "supadupstack.fits").read_bytes() == reference
    log = (out / "supadupstack.log").read_text()
    assert log.count("reused from an earlier run") == reused
    assert not list(out.glob(".*.part"))
