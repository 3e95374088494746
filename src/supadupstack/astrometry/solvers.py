"""Adapters for local plate solvers: astrometry.net ``solve-field`` and ASTAP.

Each adapter builds a command line from the frame's hints (J2000 RA/Dec in degrees, nominal
pixel scale in arcsec/px from FOCALLEN/XPIXSZ), runs it in a private working directory (so no
file ever lands next to the input frame), kills the whole process group on timeout and reads
the solver's ``.wcs`` output. Every failure is an ``AstrometryError`` with a one-line reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from supadupstack.astrometry.wcs_sources import load_wcs_file
from supadupstack.config import AstrometryConfig
from supadupstack.errors import AstrometryError
from supadupstack.frames.model import Frame

SOLVER_NAMES = ("auto", "astrometry.net", "astap", "none")
INSTALL_HINT = "(install astrometry.net with Tycho-2 index files, or ASTAP)"
NO_SOLVER_REASON = f"no plate solver installed {INSTALL_HINT}"
_OUT = "solution"  # base name of the solver's outputs inside the working directory


class Solver(Protocol):
    name: str

    def solve(self, frame: Frame, cfg: AstrometryConfig, workdir: Path) -> WCS: ...


def _fmt(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


_CAUSE = re.compile(r"couldn'?t|cannot|can't|failed|error|no such|not found|invalid", re.I)


def _tail(text: str) -> str:
    """One line of a solver's output for an error message: the first line that names a
    problem (usually the root cause), else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "no output"
    causes = [ln for ln in lines if _CAUSE.search(ln)]
    return (causes[0] if causes else lines[-1])[:200]


class _Running:
    """Solver processes running now, so an interrupted run can end them (they run in their own
    sessions, out of reach of the terminal's Ctrl-C, and would outlive the run)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.procs: set[subprocess.Popen] = set()

    def kill_all(self) -> None:
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)


RUNNING = _Running()


def run_command(cmd: list[str], cwd: Path, timeout_s: float) -> tuple[int, str]:
    """Run ``cmd`` in its own process group; (exit code, stdout+stderr). On timeout the whole
    group (the solver's helper processes included) is killed and AstrometryError raised."""
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise AstrometryError(f"cannot start {Path(cmd[0]).name}: {exc.strerror or exc}") from None
    with RUNNING.lock:
        RUNNING.procs.add(proc)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise AstrometryError(f"solver timed out after {timeout_s:g} s") from None
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        with RUNNING.lock:
            RUNNING.procs.discard(proc)
    return proc.returncode, out or ""


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def _solver_input(frame: Frame, workdir: Path) -> Path:
    """The file handed to the solver: the frame itself, except colour cubes, which become a
    2-D luminance FITS in ``workdir`` (solvers read only one plane of a cube)."""
    if frame.kind != "rgb":
        return Path(frame.path).resolve()
    from supadupstack.frames.fits_io import load_pixels

    lum = np.nansum(load_pixels(frame), axis=0, dtype=np.float32)
    path = workdir / "luminance.fits"
    fits.PrimaryHDU(lum).writeto(path, overwrite=True)
    return path


def _read_output(path: Path, frame: Frame, solver: str) -> WCS:
    try:
        return load_wcs_file(path, frame.width, frame.height)
    except ValueError as exc:
        raise AstrometryError(f"{solver} output unreadable: {exc}") from None


@dataclass
class AstrometryNetSolver:
    """astrometry.net ``solve-field`` (needs index files, e.g. Tycho-2 08–19 for ~1° fields)."""

    executable: str
    name: str = "astrometry.net"

    def command(self, frame: Frame, cfg: AstrometryConfig, workdir: Path, image: Path) -> list:
        cmd = [
            self.executable,
            "--dir", str(workdir),
            "--out", _OUT,
            "--temp-dir", str(workdir),
            "--temp-axy",
            "-z", str(cfg.downsample),
            "--tweak-order", "2",
            "--no-plots",
            "--overwrite",
            "--no-verify",
            "--cpulimit", str(max(1, int(cfg.timeout_s))),
        ]  # fmt: skip
        for opt in ("--new-fits", "--corr", "--rdls", "--match", "--index-xyls", "--solved"):
            cmd += [opt, "none"]
        if frame.ra_hint is not None and frame.dec_hint is not None:
            cmd += ["--ra", _fmt(frame.ra_hint), "--dec", _fmt(frame.dec_hint)]
            cmd += ["--radius", _fmt(cfg.radius_deg)]
        scale = frame.nominal_scale_arcsec
        if scale:
            low, high = scale * (1 - cfg.scale_tolerance), scale * (1 + cfg.scale_tolerance)
            cmd += ["--scale-units", "arcsecperpix", "--scale-low", _fmt(low)]
            cmd += ["--scale-high", _fmt(high)]
        if frame.hdu_index > 0 and frame.kind != "rgb":
            cmd += ["--extension", str(frame.hdu_index)]
        cmd.append(str(image))
        return cmd

    def solve(self, frame: Frame, cfg: AstrometryConfig, workdir: Path) -> WCS:
        workdir = Path(workdir)
        cmd = self.command(frame, cfg, workdir, _solver_input(frame, workdir))
        code, out = run_command(cmd, workdir, cfg.timeout_s)
        result = workdir / f"{_OUT}.wcs"
        if result.is_file():
            return _read_output(result, frame, self.name)
        if code != 0:
            raise AstrometryError(f"solve-field failed (exit {code}): {_tail(out)}")
        raise AstrometryError("astrometry.net found no solution")


ASTAP_EXIT = {
    1: "no solution",
    2: "not enough stars detected",
    16: "error reading the image",
    32: "no star database found",
    33: "error reading the star database",
}


@dataclass
class AstapSolver:
    """ASTAP command-line solver (``astap_cli`` or ``astap``, with a star database)."""

    executable: str
    name: str = "astap"

    def command(self, frame: Frame, cfg: AstrometryConfig, workdir: Path, image: Path) -> list:
        # ASTAP: -ra in hours, -spd = south-pole distance (dec + 90) in degrees, -fov = image
        # height in degrees (0 = auto), -r = search radius in degrees, -wcs = write an
        # astrometry.net-style .wcs, -o = base name of the outputs (.wcs/.ini).
        cmd = [self.executable, "-f", str(image), "-o", str(workdir / _OUT), "-wcs"]
        cmd += ["-z", str(cfg.downsample)]
        if frame.ra_hint is not None and frame.dec_hint is not None:
            cmd += ["-ra", _fmt(frame.ra_hint / 15.0), "-spd", _fmt(frame.dec_hint + 90.0)]
            cmd += ["-r", _fmt(cfg.radius_deg)]
        else:
            cmd += ["-r", "180"]
        scale = frame.nominal_scale_arcsec
        fov = frame.height * scale / 3600.0 if scale else 0.0
        cmd += ["-fov", _fmt(fov)]
        return cmd

    def solve(self, frame: Frame, cfg: AstrometryConfig, workdir: Path) -> WCS:
        workdir = Path(workdir)
        image = _solver_input(frame, workdir)
        if image == Path(frame.path).resolve():
            # A link inside workdir: whatever ASTAP writes beside its input stays in workdir.
            link = workdir / ("input" + Path(frame.path).suffix)
            try:
                link.symlink_to(image)
                image = link
            except OSError:
                pass
        code, out = run_command(self.command(frame, cfg, workdir, image), workdir, cfg.timeout_s)
        result = workdir / f"{_OUT}.wcs"
        if code == 0 and result.is_file():
            return _read_output(result, frame, self.name)
        ini = workdir / f"{_OUT}.ini"
        detail = ""
        if ini.is_file():
            for line in ini.read_text(errors="replace").splitlines():
                if line.startswith("ERROR="):
                    detail = line[6:].strip()
        reason = detail or ASTAP_EXIT.get(code) or _tail(out)
        raise AstrometryError(f"ASTAP found no solution (exit {code}): {reason}")


def find_solver(name: str = "auto") -> Solver | None:
    """The requested solver when installed (on PATH), else None.

    ``auto`` prefers astrometry.net, then ASTAP; ``none`` disables solving.
    """
    if name not in SOLVER_NAMES:
        raise AstrometryError(f"unknown plate solver {name!r}; allowed: {', '.join(SOLVER_NAMES)}")
    if name in ("auto", "astrometry.net"):
        exe = shutil.which("solve-field")
        if exe:
            return AstrometryNetSolver(exe)
    if name in ("auto", "astap"):
        for candidate in ("astap_cli", "astap"):
            exe = shutil.which(candidate)
            if exe:
                return AstapSolver(exe)
    return None


def no_solver_reason(name: str) -> str:
    """Why no solver is available for configuration value ``name`` (one line)."""
    if name == "none":
        return "plate solving disabled (astrometry.solver = 'none')"
    missing = {"astrometry.net": "astrometry.net solve-field", "astap": "ASTAP (astap_cli/astap)"}
    if name in missing:
        return f"no plate solver installed: {missing[name]} not found on PATH {INSTALL_HINT}"
    return NO_SOLVER_REASON
