"""Files a user can trust: modes from the umask, one lock per output folder, a fresh log per
run, temporary files that only their own dead run's cleanup removes."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supadupstack.astrometry.wcs_sources import header_wcs, write_sidecar
from supadupstack.outputs.atomic import remove_stale_parts, write_text_atomic
from supadupstack.simulate import simulate_dataset

ARGS = ["-q", "--set", "sds.min_batch_size=2", "--set", "sds.target_batch_size=3", "-j", "1"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("files")
    simulate_dataset(root / "sim", "tiny", seed=2, sidecars=True)
    return root / "sim" / "frames"


def _run(frames: Path, out: Path, umask: int | None = None, extra=()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "supadupstack", "run", str(frames), "-o", str(out), *ARGS, *extra]
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=pre
    )


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.slow
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_every_file_gets_the_umask_mode(frames, tmp_path, umask, mode) -> None:
    out = tmp_path / "out"
    proc = _run(frames, out, umask)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    written = [p for p in out.rglob("*") if p.is_file() and p.name != ".supadupstack.lock"]
    names = {p.name for p in written}
    assert {"supadupstack.fits", "supadupstack.png", "supadupstack.report.json"} <= names
    assert {"supadupstack.log", "plan.json", "plan.png", "canvas.json"} <= names
    assert any(n.startswith("megatile_") for n in names)
    assert {oct(_mode(p)) for p in written} == {oct(mode)}, [
        (p.name, oct(_mode(p))) for p in written
    ]


def test_sidecars_in_the_users_folder_get_the_umask_mode(tmp_path) -> None:
    from astropy.io import fits

    hdr = fits.Header()
    hdr.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=10.0, CRVAL2=20.0, CRPIX1=50.0)
    hdr.update(CRPIX2=40.0, CD1_1=-6e-4, CD1_2=0.0, CD2_1=0.0, CD2_2=6e-4)
    old = os.umask(0o022)
    try:
        write_sidecar(header_wcs(hdr), tmp_path / "frame.wcs", 100, 80)
        write_text_atomic(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "frame.wcs") == 0o644 and _mode(tmp_path / "x.json") == 0o644


def test_a_second_run_into_the_same_folder_refuses(frames, tmp_path) -> None:
    out = tmp_path / "out"
    first = _run(frames, out)
    lock = out / ".supadupstack.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGSTOP)  # hold the first run inside its work
    try:
        second = _run(frames, out)
        _, err = second.communicate(timeout=120)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 1
    assert err.strip().splitlines() == [
        f"supadupstack: error: another supadupstack run (pid {first.pid}) is using "
        f"{out.resolve()}; wait for it or choose another output folder"
    ]
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err  # the first run was not disturbed
    assert (out / "supadupstack.fits").is_file()


def test_lock_held_by_another_process(frames, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".supadupstack.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write("4242\n")
        fh.flush()
        proc = _run(frames, out)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "(pid 4242)" in err and len(err.strip().splitlines()) == 1
    assert not (out / "supadupstack.fits").exists()


@pytest.mark.slow
def test_each_run_writes_its_own_log(frames, tmp_path) -> None:
    out = tmp_path / "out"
    for _ in range(2):
        proc = _run(frames, out)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    logs = sorted((out / "work" / "logs").glob("run-*.log"))
    assert len(logs) == 2
    final = (out / "supadupstack.log").read_text()
    assert final == logs[-1].read_text()
    assert final.count("run started") == 1 and "reused from an earlier run" in final
    assert "reused from an earlier run" not in logs[0].read_text()


def test_only_a_dead_runs_temporary_files_are_removed(tmp_path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stale = tmp_path / f".supadupstack.fits.{dead.pid}.abc123.part"
        live = tmp_path / f".supadupstack.fits.{alive.pid}.def456.part"
        final = tmp_path / "supadupstack.fits"
        for p in (stale, live, final):
            p.write_text("x")
        assert remove_stale_parts([tmp_path]) == 1
        assert not stale.exists() and live.exists() and final.exists()
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["inside", "same"])
def test_a_rerun_never_reads_its_own_outputs_as_frames(frames, tmp_path, where) -> None:
    """``-o`` inside (or equal to) the input folder: the second run sees exactly the frames of
    the first, never ``supadupstack.fits`` or ``work/megatiles/*.fits``, and gives the same
    image."""
    import json
    import shutil

    d = tmp_path / "in"
    shutil.copytree(frames, d)
    out = d / "stacked" if where == "inside" else d
    reports, images = [], []
    for _ in range(2):
        proc = _run(d, out)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        reports.append(json.loads((out / "supadupstack.report.json").read_text()))
        images.append((out / "supadupstack.fits").read_bytes())
    first, second = reports
    assert sorted(second["frames_used"]) == sorted(first["frames_used"])
    named = second["frames_used"] + [s["path"] for s in second["skipped_files"]]
    named += [r["path"] for r in second["frames_rejected"]]
    own = [p for p in named if Path(p).name.startswith(("supadupstack", "megatile_"))]
    assert own == [] and len(second["frames_used"]) == len(list(frames.rglob("*.fit")))
    assert images[1] == images[0]
