"""Register by stars: a few anchors carry a WCS (sidecar, header or a solve), every other frame
is matched to one by its star catalogue and gets the anchor's distortion plus a fitted linear
part. Checked against the simulator's true WCS, with solvers that fail, and on the real
Seestar frames with their astrometry.net sidecars hidden."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from supadupstack.astrometry import solvers
from supadupstack.astrometry.anchors import attach_wcs_by_stars
from supadupstack.catalogue.stage import make_catalogues
from supadupstack.config import Config
from supadupstack.errors import AstrometryError
from supadupstack.frames.fits_io import read_frames
from supadupstack.simulate import simulate_dataset


def _load(path: Path) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(fits.getheader(path))


def disagreement(a: WCS, b: WCS, width: int, height: int) -> tuple[float, float]:
    """(rms over a 40×40 grid, largest at the four corners) of |b⁻¹(a(p)) − p|, pixels."""
    gx, gy = np.meshgrid(np.linspace(0, width - 1, 40), np.linspace(0, height - 1, 40))
    px = np.column_stack([gx.ravel(), gy.ravel()])
    back = b.all_world2pix(a.all_pix2world(px, 0), 0)
    d = np.hypot(*(back - px).T)
    corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], float)
    back = b.all_world2pix(a.all_pix2world(corners, 0), 0)
    return float(np.sqrt(np.mean(d**2))), float(np.max(np.hypot(*(back - corners).T)))


def _cfg() -> Config:
    cfg = Config()
    cfg.execution.workers = 1
    cfg.astrometry.solver = "none"
    return cfg


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> Path:
    """Three simulated sessions of 3 full-size frames (night 3 rotated by 70°), no sidecars."""
    root = tmp_path_factory.mktemp("reg")
    simulate_dataset(root, "sds-nights", n_frames=3, seed=4)
    return root


def _frames(root: Path, keep_sidecars: tuple[str, ...] = ()):
    """The simulated frames with catalogues; the true WCS as sidecar only for ``keep``."""
    paths = sorted((root / "frames").rglob("*.fit"))
    for p in paths:
        side = p.with_suffix(".wcs")
        side.unlink(missing_ok=True)
        if p.stem in keep_sidecars:
            shutil.copy(root / "truth" / "wcs" / side.name, side)
    frames, _ = read_frames(paths)
    frames, skips, _ = make_catalogues(frames, _cfg())
    assert not skips
    return frames


def _flagged(root: Path, flag: str) -> set[str]:
    """Stems of the frames the simulator spoiled with ``flag`` (e.g. "black": no stars)."""
    import json

    doc = json.loads((root / "truth" / "manifest.json").read_text())
    return {Path(f["path"]).stem for f in doc["frames"] if flag in f["flags"]}


def _truth(root: Path, frame) -> WCS:
    return _load(root / "truth" / "wcs" / f"{frame.path.stem}.wcs")


def test_one_anchor_registers_every_session_to_truth(nights: Path) -> None:
    """Only one frame (of night 1) has a WCS and no solver is installed: the frames of all
    three nights — night 3 rotated by 70° and overlapping by ~60 % — are registered to it: the
    median frame within 0.06 px rms of its true WCS, every sharp frame within 0.1 px rms and
    0.25 px at the corners (the frame blurred to 7 px FWHM, which the quality gate rejects
    later, within 0.15 px rms). The black frame (no stars) is skipped, saying why."""
    stems = sorted(p.stem for p in (nights / "frames").rglob("*.fit"))
    frames = _frames(nights, keep_sidecars=(stems[0],))
    kept, skips, summary = attach_wcs_by_stars(frames, _cfg().astrometry, 30.0, solve=True)
    black = _flagged(nights, "black")
    # night 3 has 2× night 1's seeing: its trailed frame keeps too few clean stars to match
    # the one anchor across the 70° rotation (with a solver it would be solved instead)
    hard = {s for s in _flagged(nights, "trail")}
    skipped = {s.path.stem for s in skips}
    assert black <= skipped <= black | hard and len(kept) == 9 - len(skipped)
    for s in skips:
        assert "stars match no anchor; plate solving disabled" in s.reason
        assert s.reason.startswith("no WCS: its ")
    assert summary.anchors == [str(f.path) for f in frames if f.path.stem == stems[0]]
    assert summary.registered == len(kept) - 1 and summary.solved == 0
    errors, blurred = [], _flagged(nights, "blurred")
    for f in kept:
        rms, corner = disagreement(f.wcs, _truth(nights, f), f.width, f.height)
        bound = 0.15 if f.path.stem in blurred else 0.1
        assert rms <= bound and corner <= 0.25, (f.name, f.wcs_source, rms, corner)
        errors.append(rms)
        if f.wcs_source == "registered":
            assert f.wcs_note.startswith(f"registered to {Path(summary.anchors[0]).name}")
            side = fits.getheader(f.path.with_suffix(".wcs"))
            assert side["SDSWCS"] == "registered" and side["SDSNSTAR"] >= 20
            assert side["SDSRMS"] == pytest.approx(f.wcs_rms_px, abs=1e-4)
    assert np.median(errors) <= 0.06


class TruthSolver:
    """A plate solver that knows the true WCS but fails on every frame not in ``solvable``."""

    name = "truth"

    def __init__(self, root: Path, solvable: set[str]):
        self.root, self.solvable, self.calls = root, solvable, []

    def solve(self, frame, cfg, workdir):
        self.calls.append(frame.path.stem)
        if frame.path.stem not in self.solvable:
            raise AstrometryError("no solution (test)")
        return _load(self.root / "truth" / "wcs" / f"{frame.path.stem}.wcs")


def test_frames_a_solver_cannot_solve_are_registered(nights: Path, monkeypatch) -> None:
    """Each night's best frame fails to solve; the next candidate solves and becomes the
    anchor; the failing frames are then registered to it, never lost."""
    frames = _frames(nights)
    by_session: dict[str, list] = {}
    for f in frames:
        by_session.setdefault(f.path.parent.name, []).append(f)
    best = {
        k: sorted(v, key=lambda f: (-f.quality.n_stars, f.quality.fwhm_px))
        for k, v in by_session.items()
    }
    solvable = {v[1].path.stem for v in best.values()}
    solver = TruthSolver(nights, solvable)
    monkeypatch.setattr(solvers, "find_solver", lambda name="auto": solver)
    cfg = _cfg().astrometry
    cfg.solver = "auto"
    kept, skips, summary = attach_wcs_by_stars(frames, cfg, 30.0, solve=True)
    # the black frame (14 faint detections) may match its night's anchor or be skipped
    black = _flagged(nights, "black")
    assert {s.path.stem for s in skips} <= black and len(kept) + len(skips) == 9
    assert all(s.reason.endswith("no solution (test)") for s in skips)  # no match, no solve
    assert sorted(Path(a).stem for a in summary.anchors) == sorted(solvable)
    assert {v[0].path.stem for v in best.values()} <= set(solver.calls)  # tried first, failed
    assert summary.solved == 3 and summary.registered == len(kept) - 3
    for f in kept:
        if f.path.stem in black:
            continue
        rms, corner = disagreement(f.wcs, _truth(nights, f), f.width, f.height)
        bound = 0.15 if f.path.stem in _flagged(nights, "blurred") else 0.1
        assert rms <= bound and corner <= 0.3, (f.name, rms, corner)


def test_given_wcs_is_refined_to_the_anchor(nights: Path) -> None:
    """Every frame has its true sidecar but one, off by 0.3 px (a solver's error): it is
    re-fitted to its night's anchor and lands within 0.05 px of the truth again; with
    ``astrometry.refine = false`` it keeps its error. The user's sidecar is never rewritten."""
    stems = tuple(p.stem for p in (nights / "frames").rglob("*.fit"))
    frames = _frames(nights, keep_sidecars=stems)
    _, _, first = attach_wcs_by_stars(frames, _cfg().astrometry, 30.0, solve=True)
    spoiled = _flagged(nights, "trail") | _flagged(nights, "black")
    assert len(first.anchors) == 3 and first.refined >= 6 - len(spoiled)
    bad = next(
        f
        for f in frames
        if str(f.path) not in first.anchors and f.path.parent.name == "night1"
        and f.path.stem not in spoiled | _flagged(nights, "cloudy")
    )  # fmt: skip
    side = bad.path.with_suffix(".wcs")
    header = fits.getheader(side)
    header["CRPIX1"] += 0.3
    header.tofile(side, overwrite=True)
    for refine, expected in ((True, 0.0), (False, 0.3)):
        cfg = _cfg().astrometry
        cfg.refine = refine
        frames, _ = read_frames([f.path for f in frames])
        frames, _, _ = make_catalogues(frames, _cfg())
        kept, skips, summary = attach_wcs_by_stars(frames, cfg, 30.0, solve=True)
        assert skips == [] and summary.anchors == first.anchors
        again = next(f for f in kept if f.path == bad.path)
        assert again.wcs_source == ("refined" if refine else "sidecar")
        rms, _ = disagreement(again.wcs, _truth(nights, again), again.width, again.height)
        assert rms == pytest.approx(expected, abs=0.05), (refine, rms)
    assert fits.getheader(side)["CRPIX1"] == header["CRPIX1"]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "supadupstack", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)


def _bright_star_rms(frame_wcs: WCS, anchor_wcs: WCS, frame_stars, anchor_stars) -> float:
    """rms (px) of the frame's bright stars mapped through the two WCSs onto the anchor's
    stars (nearest within 1.5 px): how well a WCS pair agrees with the stars themselves."""
    from scipy.spatial import cKDTree

    ra, dec = frame_wcs.all_pix2world(frame_stars[:, 0], frame_stars[:, 1], 0)
    ax, ay = anchor_wcs.all_world2pix(ra, dec, 0)
    dist, _ = cKDTree(anchor_stars).query(np.column_stack([ax, ay]), distance_upper_bound=1.5)
    dist = dist[np.isfinite(dist)]
    assert dist.size >= 10
    return float(np.sqrt(np.mean(dist**2)))


@pytest.mark.solver
@pytest.mark.slow
def test_real_m94_with_sidecars_hidden(real_dir: Path, tmp_path: Path) -> None:
    """The 23 real M 94 subs without their sidecars: `run` plate-solves one anchor per session
    (3 solves) and registers the other 20. Measured against the shipped astrometry.net
    solutions:

    - the anchors are those very solutions (same solver, same options: ≤ 0.01 px);
    - a registered WCS maps the frame's bright stars onto the anchor's at ≤ 0.22 px rms (measured
      0.14–0.21), never worse than the two shipped solutions do (+ 0.02 px; they give
      0.19–0.42): the registration follows the stars;
    - it agrees with the frame's own shipped solution to 0.25 px rms (median over frames). Not
      better: each shipped SIP rests on 8–15 Tycho-2 stars and is uncertain by up to ~2 px at
      the corners (three unit-B solutions put bright stars 0.32–0.35 px off, against 0.14–0.24
      for the others), so that comparison measures the shipped solutions as much as ours;
    - and the stack is at least as sharp as one made with the shipped sidecars (FWHM ≤ +0.5 %).
    """
    from test_solver_real import _need_solver

    _need_solver()
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for p in sorted((real_dir / "M 94_sub").glob("*.fit")):
        shutil.copy(p, hidden / p.name)
    res = _cli("run", str(hidden), "-o", str(tmp_path / "reg"), "-q")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "reg" / "supadupstack.report.json").read_text())
    astro = report["astrometry"]
    assert astro["solved"] == 3 and astro["registered"] == 20 and astro["solves_failed"] == 0
    assert len(report["frames_used"]) + len(report["frames_rejected"]) == 23
    ship = _cli(
        "run", str(real_dir / "M 94_sub"), "-o", str(tmp_path / "ship"), "-q",
        "--set", "astrometry.refine=false",
    )  # fmt: skip
    assert ship.returncode == 0, ship.stderr
    shipped_fwhm = json.loads((tmp_path / "ship" / "supadupstack.report.json").read_text())
    assert report["output"]["fwhm_px"] <= 1.005 * shipped_fwhm["output"]["fwhm_px"]

    frames, _ = read_frames(sorted(hidden.glob("*.fit")))
    frames, _, _ = make_catalogues(frames, _cfg())
    by_name = {f.name: f for f in frames}
    anchors = {Path(a).name for a in astro["anchors"]}
    agreement, stars = [], []
    for f in frames:
        shipped = _load(real_dir / "M 94_sub" / f"{f.path.stem}.wcs")
        ours = _load(f.path.with_suffix(".wcs"))
        rms, _ = disagreement(ours, shipped, f.width, f.height)
        if f.name in anchors:
            assert rms <= 0.01, (f.name, rms)
            continue
        anchor = by_name[fits.getheader(f.path.with_suffix(".wcs"))["SDSANCH"]]
        anchor_wcs = _load(anchor.path.with_suffix(".wcs"))
        xy, sigma = f.catalogue.positions()
        bright = xy[sigma < 0.2]
        target = anchor.catalogue.positions()[0]
        star_rms = _bright_star_rms(ours, anchor_wcs, bright, target)
        star_rms_shipped = _bright_star_rms(
            shipped, _load(real_dir / "M 94_sub" / f"{anchor.path.stem}.wcs"), bright, target
        )
        stars.append((star_rms, star_rms_shipped))
        agreement.append(rms)
    assert len(agreement) == 20 and np.median(agreement) <= 0.25
    for star_rms, star_rms_shipped in stars:
        assert star_rms <= min(0.22, star_rms_shipped + 0.02), (star_rms, star_rms_shipped)
