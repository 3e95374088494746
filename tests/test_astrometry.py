"""Astrometry stage (DESIGN §3.2): header WCS, sidecars, solver adapters, attach_wcs order.

The real solver is exercised in test_solver_real.py; here solvers are fakes (small scripts on
PATH or in-process objects) so that command lines, outputs, failures and timeouts are checked
without astrometry.net.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from supadupstack.astrometry import register, solvers
from supadupstack.astrometry.register import attach_wcs
from supadupstack.astrometry.solvers import AstapSolver, AstrometryNetSolver, find_solver
from supadupstack.astrometry.wcs_sources import (
    centre_radec,
    header_wcs,
    max_pixel_disagreement,
    pixel_scale_arcsec,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from supadupstack.config import AstrometryConfig
from supadupstack.errors import AstrometryError, SupaDupError
from supadupstack.frames.fits_io import read_frame, read_header
from supadupstack.frames.model import Frame
from supadupstack.outputs import atomic

N1 = "NGC 7023_sub/Light_NGC 7023_10.0s_IRCUT_20240730-224436.fit"
M94_FIRST = "M 94_sub/Light_M 94_10.0s_IRCUT_20250326-212046.fit"


def tan_header(scale_deg: float = 1e-3, width: int = 200, height: int = 120) -> fits.Header:
    h = fits.Header()
    h["NAXIS"] = 2
    h["NAXIS1"] = width
    h["NAXIS2"] = height
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.0, 30.0
    h["CRPIX1"], h["CRPIX2"] = 100.5, 60.5
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -scale_deg, 0.0, 0.0, scale_deg
    return h


# --------------------------------------------------------------------------- header WCS


def test_header_wcs_tan_maps_crpix_to_crval_and_gives_scale():
    wcs = header_wcs(tan_header(scale_deg=2.4 / 3600))
    assert wcs is not None
    ra, dec = wcs.all_pix2world([[99.5, 59.5]], 0)[0]  # CRPIX 100.5/60.5 are 1-based
    assert ra == pytest.approx(150.0, abs=1e-9) and dec == pytest.approx(30.0, abs=1e-9)
    assert pixel_scale_arcsec(wcs, 200, 120) == pytest.approx(2.4, rel=1e-4)


def test_header_wcs_pc_cdelt_form():
    h = tan_header()
    for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        del h[k]
    h["CDELT1"], h["CDELT2"] = -2.0 / 3600, 2.0 / 3600
    h["PC1_1"], h["PC2_2"] = 1.0, 1.0
    wcs = header_wcs(h)
    assert wcs is not None
    assert pixel_scale_arcsec(wcs, 200, 120) == pytest.approx(2.0, rel=1e-4)


def test_header_wcs_honours_sip():
    h = tan_header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    h["A_ORDER"], h["B_ORDER"] = 2, 2
    h["A_2_0"] = 1e-4  # x distortion of 1e-4 * u**2 pixels
    sip = header_wcs(h)
    plain = header_wcs(tan_header())
    assert sip is not None and sip.sip is not None
    # 0-based x=0 is u = -99.5 px from CRPIX: SIP shifts it by 1e-4 * 99.5**2 = 0.990 px.
    world = sip.all_pix2world([[0.0, 59.5]], 0)
    x_plain = plain.all_world2pix(world, 0)[0, 0]
    assert x_plain - 0.0 == pytest.approx(1e-4 * 99.5**2, abs=1e-3)


def test_header_wcs_absent_on_seestar_raw_header(real_dir):
    header = read_header(read_frame(real_dir / M94_FIRST))
    assert "CTYPE1" not in header
    assert header_wcs(header) is None
    assert header_wcs(fits.Header()) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"CD1_1": 0.0, "CD2_2": 0.0},  # singular matrix
        {"CTYPE1": "RA---XYZ"},  # unknown projection
        {"CTYPE1": "GLON-TAN", "CTYPE2": "GLAT-TAN"},  # not RA/Dec
        {"CD1_1": "abc"},  # text where a number belongs
        {"CRVAL2": "nan"},
        {"CRVAL2": 95.0},  # impossible declination
        {"CD1_1": 1e300},  # absurd pixel scale
        {"CTYPE1": "RA---TAN-SIP", "CTYPE2": "DEC--TAN-SIP", "A_ORDER": 2, "A_2_0": 1e300},
    ],
)
def test_header_wcs_garbage_values_give_none(changes):
    h = tan_header()
    for key, value in changes.items():
        h[key] = value
    assert header_wcs(h) is None


def test_header_wcs_without_matrix_keys_is_none():
    h = tan_header()
    for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        del h[k]
    assert header_wcs(h) is None


# --------------------------------------------------------------------------- sidecars


def test_sidecar_path_keeps_spaces_and_stem():
    p = Path("/data/M 94_sub/Light_M 94_10.0s_IRCUT_20250326-212046.fit")
    assert sidecar_path(p) == Path("/data/M 94_sub/Light_M 94_10.0s_IRCUT_20250326-212046.wcs")


def test_real_sidecars_scale_and_centre(real_dir):
    frames = sorted(real_dir.glob("*/*.fit"))
    assert len(frames) == 25
    for path in frames:
        frame = read_frame(path)
        wcs = read_sidecar(sidecar_path(path), frame.width, frame.height)
        assert wcs.sip is not None
        scale = pixel_scale_arcsec(wcs, frame.width, frame.height)
        assert 2.37 <= scale <= 2.38, (path.name, scale)
        # Independent check of the scale: the sky length of the central row / its pixel length.
        cy = (frame.height - 1) / 2
        a, b = wcs.pixel_to_world([0, frame.width - 1], [cy, cy])
        assert a.separation(b).arcsec / (frame.width - 1) == pytest.approx(scale, rel=2e-3)
        frame.wcs = wcs
        assert frame.scale_arcsec == pytest.approx(scale)


def test_sidecar_write_read_roundtrip_keeps_sip(tmp_path, real_dir):
    wcs = read_sidecar(real_dir / M94_FIRST.replace(".fit", ".wcs"))
    out = tmp_path / "a b.wcs"
    write_sidecar(wcs, out, 1080, 1920)
    back = read_sidecar(out)
    assert back.sip is not None
    assert max_pixel_disagreement(wcs, back, 1080, 1920) < 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a b.wcs"]  # no temp file left


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a FITS header\n", None],
    ids=["empty", "text", "fits-without-wcs"],
)
def test_corrupt_sidecar_message(tmp_path, content):
    path = tmp_path / "Light 1.wcs"
    if content is None:
        fits.PrimaryHDU().writeto(path)
    else:
        path.write_bytes(content)
    with pytest.raises(AstrometryError) as info:
        read_sidecar(path)
    msg = str(info.value)
    assert msg.startswith("corrupt WCS sidecar Light 1.wcs: ")
    assert "\n" not in msg and len(msg) > len("corrupt WCS sidecar Light 1.wcs: ")


def test_ngc7023_header_astap_wcs_agrees_with_sidecar(real_dir):
    frame = read_frame(real_dir / N1)
    header = read_header(frame)
    assert header.get("ASTAP_ZEMOSAIC_SOLVED") is True
    hw = header_wcs(header)
    assert hw is not None and hw.sip is None
    side = read_sidecar(sidecar_path(frame.path))
    d = max_pixel_disagreement(hw, side, frame.width, frame.height)
    assert d < 0.5
    assert max_pixel_disagreement(side, side, frame.width, frame.height) < 1e-6


def test_max_pixel_disagreement_measures_a_shift():
    a = header_wcs(tan_header())
    b = a.deepcopy()
    b.wcs.crpix = b.wcs.crpix + np.array([0.3, -0.4])
    assert max_pixel_disagreement(a, b, 200, 120, step=7) == pytest.approx(0.5, abs=1e-6)


# --------------------------------------------------------------------------- precession


def test_precessed_header_radec_near_solved_centre(real_dir, m94_frames):
    """Header RA/DEC (JNow session target) precessed to J2000 vs the sidecar's frame centre.

    Per frame, the offset must be < 2' unless the frame's own pointing is > 2' from the median
    pointing of the frames sharing its header target (the header is the session target, not
    updated per frame); per target, the median solved centre must be < 2' from the hint. The
    precessed hint must also beat the raw header value read as J2000 for every frame.
    """
    by_target: dict[tuple, list] = {}
    report = []
    for path in m94_frames:
        frame = read_frame(path)
        assert frame.ra_hint is not None and frame.dec_hint is not None
        wcs = read_sidecar(sidecar_path(path), frame.width, frame.height)
        centre = SkyCoord(*centre_radec(wcs, frame.width, frame.height), unit="deg")
        hint = SkyCoord(frame.ra_hint, frame.dec_hint, unit="deg")
        raw = SkyCoord(frame.ra_header, frame.dec_header, unit="deg")
        off, raw_off = centre.separation(hint).arcmin, centre.separation(raw).arcmin
        assert off < raw_off
        by_target.setdefault((frame.ra_header, frame.dec_header), []).append((path, centre, off))
        report.append(f"{path.name[-19:-4]} {off:.2f}' (raw {raw_off:.2f}')")
    print("\n".join(report))
    for items in by_target.values():
        ras = np.array([c.ra.deg for _, c, _ in items])
        decs = np.array([c.dec.deg for _, c, _ in items])
        median = SkyCoord(np.median(ras), np.median(decs), unit="deg")
        first = read_frame(items[0][0])
        hint = SkyCoord(first.ra_hint, first.dec_hint, unit="deg")
        assert median.separation(hint).arcmin < 2.0
        for path, centre, off in items:
            if off >= 2.0:
                assert centre.separation(median).arcmin > 2.0, (path.name, off)


# --------------------------------------------------------------------------- solver adapters


def s50_frame(path: Path, ra: float | None = 192.78, dec: float | None = 41.12) -> Frame:
    return Frame(
        path=path, width=1080, height=1920, kind="bayer", bayer_pattern="GRBG",
        focal_mm=250.0, pixel_um=2.9, ra_hint=ra, dec_hint=dec,
    )  # fmt: skip


def test_astrometry_net_command_line(tmp_path):
    cfg = AstrometryConfig(radius_deg=1.5, scale_tolerance=0.1, downsample=2, timeout_s=60)
    image = tmp_path / "my frame.fit"
    cmd = AstrometryNetSolver("solve-field").command(s50_frame(image), cfg, tmp_path, image)
    assert cmd[0] == "solve-field" and cmd[-1] == str(image)

    def arg(opt):
        return cmd[cmd.index(opt) + 1]

    assert float(arg("--ra")) == pytest.approx(192.78) and float(arg("--dec")) == 41.12
    assert float(arg("--radius")) == 1.5
    nominal = 206.264806 * 2.9 / 250
    assert float(arg("--scale-low")) == pytest.approx(nominal * 0.9, rel=1e-5)
    assert float(arg("--scale-high")) == pytest.approx(nominal * 1.1, rel=1e-5)
    assert arg("--scale-units") == "arcsecperpix" and arg("-z") == "2"
    assert arg("--tweak-order") == "2" and arg("--dir") == str(tmp_path)
    assert arg("--temp-dir") == str(tmp_path)
    for opt in ("--new-fits", "--corr", "--rdls", "--match", "--index-xyls", "--solved"):
        assert arg(opt) == "none"
    for flag in ("--no-plots", "--overwrite", "--no-verify"):
        assert flag in cmd
    blind = AstrometryNetSolver("solve-field").command(
        s50_frame(image, None, None), cfg, tmp_path, image
    )
    assert "--ra" not in blind and "--dec" not in blind and "--radius" not in blind


def test_astap_command_line(tmp_path):
    cfg = AstrometryConfig(radius_deg=3.0, downsample=2)
    image = tmp_path / "my frame.fit"
    cmd = AstapSolver("astap_cli").command(s50_frame(image, 192.78, 41.12), cfg, tmp_path, image)

    def arg(opt):
        return cmd[cmd.index(opt) + 1]

    assert arg("-f") == str(image) and "-wcs" in cmd and "-update" not in cmd
    assert float(arg("-ra")) == pytest.approx(192.78 / 15, abs=1e-6)
    assert float(arg("-spd")) == pytest.approx(131.12, abs=1e-6)
    assert float(arg("-r")) == 3.0 and arg("-z") == "2"
    fov = 1920 * (206.264806 * 2.9 / 250) / 3600
    assert float(arg("-fov")) == pytest.approx(fov, abs=1e-5)
    assert Path(arg("-o")).parent == tmp_path
    blind = AstapSolver("astap").command(s50_frame(image, None, None), cfg, tmp_path, image)
    assert "-ra" not in blind and float(blind[blind.index("-r") + 1]) == 180


def test_find_solver_choices(monkeypatch):
    paths = {"solve-field": "/x/solve-field", "astap_cli": None, "astap": "/x/astap"}
    monkeypatch.setattr(shutil, "which", lambda name: paths.get(name))
    assert isinstance(find_solver("auto"), AstrometryNetSolver)
    astap = find_solver("astap")
    assert isinstance(astap, AstapSolver) and astap.executable == "/x/astap"
    assert find_solver("none") is None
    paths["solve-field"] = None
    assert isinstance(find_solver("auto"), AstapSolver)
    assert find_solver("astrometry.net") is None
    with pytest.raises(AstrometryError, match="unknown plate solver"):
        find_solver("bogus")


def test_timeout_kills_the_process_group(tmp_path):
    script = "sleep 60 & echo $! > child.pid; wait"
    start = time.monotonic()
    with pytest.raises(AstrometryError, match=r"timed out after 0.5 s"):
        solvers.run_command(["sh", "-c", script], tmp_path, 0.5)
    assert time.monotonic() - start < 10
    pid = int((tmp_path / "child.pid").read_text())
    time.sleep(0.2)
    gone = not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert gone


def fake_executable(tmp_path: Path, name: str, body: str) -> Path:
    """A Python script named ``name`` in tmp_path/bin (prepend that folder to PATH)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text(f"#!{sys.executable}\nimport sys, shutil, os\nargs = sys.argv[1:]\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


FAKE_SOLVE_FIELD = """
def arg(opt):
    return args[args.index(opt) + 1]
open(os.path.join(arg("--dir"), "args.txt"), "w").write("\\n".join(args))
if os.environ.get("FAKE_SOLUTION"):
    shutil.copy(os.environ["FAKE_SOLUTION"], os.path.join(arg("--dir"), arg("--out") + ".wcs"))
"""


def copy_frame(real_dir: Path, rel: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(real_dir / rel, dest / Path(rel).name))


def test_attach_wcs_with_fake_solve_field(tmp_path, real_dir, monkeypatch):
    frame_path = copy_frame(real_dir, M94_FIRST, tmp_path / "in put")
    solution = real_dir / M94_FIRST.replace(".fit", ".wcs")
    exe = fake_executable(tmp_path, "solve-field", FAKE_SOLVE_FIELD)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setenv("FAKE_SOLUTION", str(solution))
    frame = read_frame(frame_path)
    calls = []
    kept, skips = attach_wcs(
        [frame], AstrometryConfig(solver="astrometry.net"), solve=True,
        progress=lambda d, t, m: calls.append((d, t, m)),
    )  # fmt: skip
    assert skips == [] and kept == [frame] and frame.wcs_source == "solved"
    assert calls and calls[-1][:2] == (1, 1) and "solved" in calls[-1][2]
    side = sidecar_path(frame_path)
    assert side.is_file()
    ref = read_sidecar(solution)
    assert max_pixel_disagreement(read_sidecar(side), ref, 1080, 1920) < 1e-6
    assert max_pixel_disagreement(frame.wcs, ref, 1080, 1920) < 1e-6
    # Nothing but the frame and its sidecar next to the input.
    assert sorted(p.name for p in frame_path.parent.iterdir()) == [frame_path.name, side.name]
    # Solving again is not needed: the sidecar now wins.
    monkeypatch.delenv("FAKE_SOLUTION")
    again = read_frame(frame_path)
    kept, skips = attach_wcs([again], AstrometryConfig(), solve=True)
    assert again.wcs_source == "sidecar" and not skips


def test_fake_solve_field_without_solution_is_a_skip(tmp_path, real_dir, monkeypatch):
    frame_path = copy_frame(real_dir, M94_FIRST, tmp_path / "in")
    exe = fake_executable(tmp_path, "solve-field", FAKE_SOLVE_FIELD)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}/usr/bin:/bin")
    monkeypatch.delenv("FAKE_SOLUTION", raising=False)
    kept, skips = attach_wcs([read_frame(frame_path)], AstrometryConfig(), solve=True)
    assert kept == [] and len(skips) == 1
    assert skips[0].reason == "no WCS: astrometry.net found no solution"
    assert not sidecar_path(frame_path).exists()


FAKE_ASTAP = """
out = args[args.index("-o") + 1]
if os.environ.get("FAKE_SOLUTION"):
    shutil.copy(os.environ["FAKE_SOLUTION"], out + ".wcs")
    open(out + ".ini", "w").write("PLTSOLVD=T\\n")
    sys.exit(0)
open(out + ".ini", "w").write("PLTSOLVD=F\\nERROR=No solution found!\\n")
sys.exit(1)
"""


def test_fake_astap_success_and_failure(tmp_path, real_dir, monkeypatch):
    frame_path = copy_frame(real_dir, M94_FIRST, tmp_path / "in")
    exe = fake_executable(tmp_path, "astap_cli", FAKE_ASTAP)
    solver = AstapSolver(str(exe))
    frame = read_frame(frame_path)
    cfg = AstrometryConfig()
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(AstrometryError, match=r"^ASTAP found no solution \(exit 1\): No sol"):
        solver.solve(frame, cfg, work)
    solution = real_dir / M94_FIRST.replace(".fit", ".wcs")
    monkeypatch.setenv("FAKE_SOLUTION", str(solution))
    wcs = solver.solve(frame, cfg, work)
    assert max_pixel_disagreement(wcs, read_sidecar(solution), 1080, 1920) < 1e-6
    assert sorted(p.name for p in frame_path.parent.iterdir()) == [frame_path.name]


# --------------------------------------------------------------------------- attach_wcs


class FakeSolver:
    """In-process solver: returns the given WCS, or raises for frames named in ``fail``."""

    name = "fake"

    def __init__(self, wcs: WCS | None, fail: tuple[str, ...] = ()):
        self.wcs, self.fail, self.calls = wcs, fail, []

    def solve(self, frame, cfg, workdir):
        self.calls.append(frame.name)
        assert Path(workdir).is_dir() and Path(workdir) != frame.path.parent
        if self.wcs is None or frame.name in self.fail:
            raise AstrometryError("fake solver failed")
        return self.wcs.deepcopy()


def test_attach_wcs_order_sidecar_beats_header(tmp_path, real_dir):
    n1 = copy_frame(real_dir, N1, tmp_path)
    n1_plain = copy_frame(real_dir, N1, tmp_path / "plain")
    m94 = copy_frame(real_dir, M94_FIRST, tmp_path)
    bare = copy_frame(real_dir, "M 94_sub/Light_M 94_10.0s_IRCUT_20250409-225435.fit", tmp_path)
    # A deliberately different sidecar for the frame with a header WCS: the sidecar wins.
    shifted = read_sidecar(real_dir / N1.replace(".fit", ".wcs"))
    shifted.wcs.crpix = shifted.wcs.crpix + 25.0
    write_sidecar(shifted, sidecar_path(n1), 1080, 1920)
    shutil.copy(real_dir / M94_FIRST.replace(".fit", ".wcs"), sidecar_path(m94))
    frames = [read_frame(p) for p in (n1, m94, bare, n1_plain)]
    kept, skips = attach_wcs(frames, AstrometryConfig(), solve=False)
    assert skips == [] and kept == frames
    assert [f.wcs_source for f in frames] == ["sidecar", "sidecar", "none", "header"]
    header_w = header_wcs(read_header(frames[3]))
    on_disk = read_sidecar(sidecar_path(n1))
    assert max_pixel_disagreement(frames[0].wcs, on_disk, 1080, 1920) < 1e-9
    assert max_pixel_disagreement(frames[0].wcs, header_w, 1080, 1920) > 20
    assert max_pixel_disagreement(frames[3].wcs, header_w, 1080, 1920) < 1e-9
    assert frames[2].wcs is None
    # A corrupt sidecar next to a frame with a header WCS: the header is used.
    sidecar_path(n1).write_text("garbage")
    frame = read_frame(n1)
    kept, skips = attach_wcs([frame], AstrometryConfig(), solve=False)
    assert skips == [] and frame.wcs_source == "header"


def test_solve_without_solver_skips_with_reason(tmp_path, real_dir, monkeypatch):
    m94 = copy_frame(real_dir, M94_FIRST, tmp_path)
    shutil.copy(real_dir / M94_FIRST.replace(".fit", ".wcs"), sidecar_path(m94))
    bare = copy_frame(real_dir, "M 94_sub/Light_M 94_10.0s_IRCUT_20250409-225435.fit", tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    frames = [read_frame(m94), read_frame(bare)]
    kept, skips = attach_wcs(frames, AstrometryConfig(), solve=True)
    assert [f.wcs_source for f in kept] == ["sidecar"]
    assert len(skips) == 1 and skips[0].path == bare
    assert skips[0].reason == (
        "no WCS: no plate solver installed "
        "(install astrometry.net with Tycho-2 index files, or ASTAP)"
    )
    # Explicit solver choice / disabled solving give their own reason.
    frames = [read_frame(bare)]
    _, skips = attach_wcs(frames, AstrometryConfig(solver="none"), solve=True)
    assert "disabled" in skips[0].reason


def test_corrupt_sidecar_skip_unless_solved(tmp_path, real_dir, monkeypatch):
    path = copy_frame(real_dir, M94_FIRST, tmp_path)
    sidecar_path(path).write_text("garbage")
    kept, skips = attach_wcs([read_frame(path)], AstrometryConfig(), solve=False)
    assert kept == [] and len(skips) == 1
    assert skips[0].reason.startswith(f"corrupt WCS sidecar {sidecar_path(path).name}: ")
    good = read_sidecar(real_dir / M94_FIRST.replace(".fit", ".wcs"))
    monkeypatch.setattr(solvers, "find_solver", lambda name="auto": FakeSolver(good))
    frame = read_frame(path)
    kept, skips = attach_wcs([frame], AstrometryConfig(), solve=True)
    assert skips == [] and frame.wcs_source == "solved"
    assert max_pixel_disagreement(read_sidecar(sidecar_path(path)), good, 1080, 1920) < 1e-6
    # When solving fails too, the skip names both problems.
    sidecar_path(path).write_text("garbage")
    monkeypatch.setattr(solvers, "find_solver", lambda name="auto": FakeSolver(None))
    _, skips = attach_wcs([read_frame(path)], AstrometryConfig(), solve=True)
    assert skips[0].reason.startswith("no WCS: fake solver failed (corrupt WCS sidecar ")


def test_parallel_solving_keeps_order_and_reports_failures(tmp_path, real_dir, monkeypatch):
    names = sorted(p.name for p in (real_dir / "M 94_sub").glob("*.fit"))[:5]
    paths = [copy_frame(real_dir, f"M 94_sub/{n}", tmp_path) for n in names]
    good = read_sidecar(real_dir / M94_FIRST.replace(".fit", ".wcs"))
    fake = FakeSolver(good, fail=(names[2],))
    monkeypatch.setattr(solvers, "find_solver", lambda name="auto": fake)
    frames = [read_frame(p) for p in paths]
    cfg = AstrometryConfig(workers=3, write_sidecar=False)
    kept, skips = attach_wcs(frames, cfg, solve=True)
    assert sorted(fake.calls) == names
    assert [f.name for f in kept] == [n for i, n in enumerate(names) if i != 2]
    assert [(s.path, s.reason) for s in skips] == [(paths[2], "no WCS: fake solver failed")]
    assert all(f.wcs_source == "solved" and f.wcs.pixel_shape == (1080, 1920) for f in kept)
    assert not any(sidecar_path(p).exists() for p in paths)  # write_sidecar=False


def test_unwritable_folder_keeps_wcs_in_memory(tmp_path, real_dir, monkeypatch, caplog):
    path = copy_frame(real_dir, M94_FIRST, tmp_path)
    good = read_sidecar(real_dir / M94_FIRST.replace(".fit", ".wcs"))
    monkeypatch.setattr(solvers, "find_solver", lambda name="auto": FakeSolver(good))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(register, "write_sidecar", refuse)
    frame = read_frame(path)
    with caplog.at_level(logging.WARNING, logger="supadupstack.astrometry.register"):
        kept, skips = attach_wcs([frame], AstrometryConfig(), solve=True)
    assert kept == [frame] and not skips and frame.wcs is not None
    assert "cannot write WCS sidecar" in caplog.text and "Permission denied" in caplog.text
    assert not sidecar_path(path).exists()


def test_write_sidecar_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    wcs = header_wcs(tan_header())

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(SupaDupError, match="No space left on device"):
        write_sidecar(wcs, tmp_path / "x.wcs", 200, 120)
    assert list(tmp_path.iterdir()) == []


FAKE_FAILING = """
from astropy.io import fits
image = args[-1]
with open(os.environ["FAKE_LOG"], "w") as fh:
    fh.write(f"{image}\\n{fits.getheader(image)['NAXIS']}\\n")
print("Reading input file 1 of 1...")
print("index.c:12: cannot open index file /nowhere/index-4107.fits")
print("bye")
sys.exit(3)
"""


def test_solver_failure_reason_and_colour_cube_input(tmp_path, monkeypatch):
    """A failing solve-field gives its root-cause line; a (3,H,W) cube is handed over as 2-D."""
    cube = tmp_path / "in" / "colour frame.fits"
    cube.parent.mkdir()
    data = np.random.default_rng(1).normal(100, 5, (3, 64, 48)).astype(np.float32)
    fits.PrimaryHDU(data).writeto(cube)
    frame = read_frame(cube)
    assert frame.kind == "rgb"
    exe = fake_executable(tmp_path, "solve-field", FAKE_FAILING)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log.txt"))
    kept, skips = attach_wcs([frame], AstrometryConfig(solver="astrometry.net"), solve=True)
    assert kept == [] and len(skips) == 1
    assert skips[0].reason == (
        "no WCS: solve-field failed (exit 3): index.c:12: cannot open index file "
        "/nowhere/index-4107.fits"
    )
    image, naxis = (tmp_path / "log.txt").read_text().split()[-2:]
    assert naxis == "2" and Path(image).parent != cube.parent
    assert sorted(p.name for p in cube.parent.iterdir()) == [cube.name]
