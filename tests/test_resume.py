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


def _run(
    frames: Path, out: Path, kill_at: str | None = None, extra=()
) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(ENV, None)
    if kill_at:
        env[ENV] = kill_at
    cmd = [sys.executable, "-m", "supadupstack", "run", str(frames), "-o", str(out), *ARGS]
    cmd += list(extra)
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


@pytest.mark.slow
def test_kill_between_a_tiles_two_writes_never_reuses_stale_metadata(tiny, tmp_path) -> None:
    """A tile's FITS is written, the run dies before its JSON: the next run rebuilds that tile
    (the JSON of an earlier run with other settings beside it is not taken) and gives the same
    FITS as a run that was never killed."""
    frames, reference = tiny
    out = tmp_path / "out"
    other = _run(frames, out, extra=["--set", "stacking.kappa_high=2.5"])
    assert other.returncode == 0, other.stderr
    tiles = out / "work" / "megatiles"
    stale = sorted(tiles.glob("*.json"))[0].read_text()
    killed = _run(frames, out, kill_at="megatile-meta")
    assert killed.returncode == -9
    # the worst case: the stale JSON of the earlier settings sits beside the new FITS
    fresh = [p for p in tiles.glob("*.fits") if not p.with_suffix(".json").exists()]
    assert len(fresh) == 1
    fresh[0].with_suffix(".json").write_text(stale)
    resumed = _run(frames, out)
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "supadupstack.fits").read_bytes() == reference
    assert "reused from an earlier run" not in (out / "supadupstack.log").read_text()


@pytest.mark.slow
def test_a_new_session_restacks_only_its_batches(tmp_path) -> None:
    """Night 1, then nights 1 + 2: the second run reuses night 1's mega-tiles (the canvas grows
    but keeps its projection) and gives the FITS of its own batches' work."""
    simulate_dataset(tmp_path / "sim", "sds-nights", n_frames=3, seed=6, sidecars=True)
    root = tmp_path / "sim" / "frames" / "SIM 94_sub"
    nights = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(nights) >= 2
    first = tmp_path / "in"
    first.mkdir()
    nights[0].rename(first / nights[0].name)
    out = tmp_path / "out"
    args = ["--set", "sds.min_batch_size=2", "--set", "sds.target_batch_size=3"]
    one = _run(first, out, extra=args)
    assert one.returncode == 0, one.stderr
    n_first = _batches(out)
    nights[1].rename(first / nights[1].name)
    both = _run(first, out, extra=args)
    assert both.returncode == 0, both.stderr
    n_both = _batches(out)
    assert n_both > n_first
    log = (out / "supadupstack.log").read_text()
    assert log.count("reused from an earlier run") == n_first
    assert "projection of the earlier run kept" in log
    assert f"reused {n_first} of {n_both} batches from an earlier run" in both.stdout


def _batches(out: Path) -> int:
    import json

    return len(json.loads((out / "supadupstack.report.json").read_text())["tiles"])
