"""The real astrometry.net solver on the 25 real Seestar frames, with their sidecars hidden.

Skipped when ``solve-field`` is not on PATH, unless SUPADUPSTACK_REQUIRE_SOLVER=1 (CI), where
a missing solver is a failure. The shipped sidecars were made with the Tycho-2 index files
07–19; a solution found with another index scale rests on other reference stars, and its
order-2 SIP then differs at the frame edge by up to ~1.4 px (measured), so the strict 0.5 px
comparison is made for the frames whose sidecar's index file is installed here, and
``test_sidecar_index_files_installed`` says which index package is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from astropy.io import fits

from supadupstack.astrometry import attach_wcs, read_sidecar, sidecar_path
from supadupstack.astrometry.wcs_sources import header_wcs, max_pixel_disagreement
from supadupstack.config import AstrometryConfig
from supadupstack.frames.fits_io import read_frames

pytestmark = [pytest.mark.solver, pytest.mark.slow]

REQUIRED = os.environ.get("SUPADUPSTACK_REQUIRE_SOLVER") == "1"
WCS_KEYS = re.compile(
    r"^(WCSAXES|CTYPE\d|CUNIT\d|CRVAL\d|CRPIX\d|CDELT\d|CD\d_\d|PC\d_\d|LONPOLE|LATPOLE|"
    r"RADESYS|EQUINOX|MJDREF|[AB]P?_(ORDER|\d_\d))$"
)


def _need_solver() -> None:
    if shutil.which("solve-field") is None:
        msg = "astrometry.net solve-field is not on PATH"
        if REQUIRED:
            pytest.fail(f"{msg} (SUPADUPSTACK_REQUIRE_SOLVER=1)")
        pytest.skip(msg)


def _index_dirs() -> list[Path]:
    dirs = [Path("/usr/share/astrometry")]
    for cfg in (Path("/etc/astrometry.cfg"), Path("/usr/local/astrometry/etc/astrometry.cfg")):
        if cfg.is_file():
            for line in cfg.read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] == "add_path":
                    dirs.append(Path(parts[1]))
    return dirs


def _installed_scales() -> set[int]:
    """Tycho-2 index scales (7 for index-tycho2-07 ...) the solver can use."""
    found = set()
    for d in _index_dirs():
        for p in d.glob("index-tycho2-*.fits"):
            m = re.match(r"index-tycho2-(\d+)", p.name)
            if m:
                found.add(int(m.group(1)))
    return found


def _sidecar_scale(path: Path) -> int | None:
    """The index scale an astrometry.net sidecar was solved with (COMMENT 'index id: 41NN')."""
    for line in fits.getheader(path).get("COMMENT", []):
        m = re.search(r"index id:\s*41(\d\d)", str(line))
        if m:
            return int(m.group(1))
    return None


def _strip_wcs(path: Path) -> None:
    """Remove the header WCS (NGC 7023 10 s frame) so that the solver handles all 25 frames."""
    with fits.open(path, mode="update") as hdul:
        h = hdul[0].header
        for key in [k for k in h if WCS_KEYS.match(k)]:
            del h[key]
        for key in ("MJD-OBS", "ASTAP_ZEMOSAIC_SOLVED"):
            h.remove(key, ignore_missing=True)


@pytest.fixture(scope="module")
def solved(real_dir, tmp_path_factory):
    """All 25 frames copied (no sidecars) to folders with spaces, solved with 2 workers."""
    _need_solver()
    root = tmp_path_factory.mktemp("solve real")
    originals = {}
    for src in sorted(real_dir.glob("*/*.fit")):
        dest_dir = root / src.parent.name
        dest_dir.mkdir(exist_ok=True)
        dest = Path(shutil.copy(src, dest_dir / src.name))
        originals[dest] = src
        if header_wcs(fits.getheader(dest)) is not None:
            _strip_wcs(dest)
            assert header_wcs(fits.getheader(dest)) is None
    frames, skips = read_frames(sorted(originals))
    assert not skips and len(frames) == 25
    cfg = AstrometryConfig(workers=2, timeout_s=120)
    kept, skips = attach_wcs(frames, cfg, solve=True)
    return root, originals, frames, kept, skips


def test_solves_at_least_24_of_25(solved):
    root, originals, frames, kept, skips = solved
    n_solved = sum(f.wcs_source == "solved" for f in kept)
    print(f"solved {n_solved} of {len(frames)}; skips: {[(s.path.name, s.reason) for s in skips]}")
    assert n_solved >= 24
    assert len(kept) + len(skips) == 25
    assert all(s.reason.startswith("no WCS: ") for s in skips)
    # A sidecar for each solved frame, and nothing else next to the frames.
    for folder in {p.parent for p in originals}:
        names = {p.name for p in folder.iterdir()}
        fits_names = {p.name for p in originals if p.parent == folder}
        wcs_names = {sidecar_path(f.path).name for f in kept if f.path.parent == folder}
        assert names == fits_names | wcs_names


def test_solutions_agree_with_shipped_sidecars(solved):
    root, originals, frames, kept, skips = solved
    installed = _installed_scales()
    report, strict_bad, loose_bad = [], [], []
    for frame in kept:
        shipped = sidecar_path(originals[frame.path])
        ref = read_sidecar(shipped, frame.width, frame.height)
        d = max_pixel_disagreement(frame.wcs, ref, frame.width, frame.height)
        written = read_sidecar(sidecar_path(frame.path), frame.width, frame.height)
        assert max_pixel_disagreement(written, frame.wcs, frame.width, frame.height) < 1e-6
        scale = _sidecar_scale(shipped)
        same_index = scale in installed
        report.append(f"{frame.name}: {d:.3f} px (sidecar index {scale:02d}, installed "
                      f"{same_index})")  # fmt: skip
        if same_index and d >= 0.5:
            strict_bad.append((frame.name, d))
        if d >= 2.0:
            loose_bad.append((frame.name, d))
    print("\n".join(report))
    assert not strict_bad, f"solutions > 0.5 px from the shipped sidecar: {strict_bad}"
    assert not loose_bad, f"solutions > 2 px from the shipped sidecar: {loose_bad}"


def test_sidecar_index_files_installed(real_dir):
    """The 0.5 px agreement for every frame needs the index files the sidecars were made with."""
    _need_solver()
    needed = {_sidecar_scale(p) for p in real_dir.glob("*/*.wcs")} - {None}
    missing = sorted(needed - _installed_scales())
    if missing:
        pkgs = ", ".join(f"astrometry-data-tycho2-{s:02d}-littleendian" for s in missing)
        msg = f"index files used by the shipped sidecars are not installed: {pkgs}"
        if REQUIRED:
            pytest.fail(msg)
        pytest.skip(msg)
