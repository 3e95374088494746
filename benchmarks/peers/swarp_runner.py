"""SWarp (Bertin, Debian package ``swarp``) on the same debayered frames and the same grid.

SWarp cannot debayer, so each frame is calibrated exactly as supadupstack does it and written
as three float32 FITS planes carrying the frame's WCS; SWarp then resamples and co-adds each
channel onto the shared grid, given to it as a ``.head`` file beside ``IMAGEOUT_NAME``.
Settings: RESAMPLING_TYPE BILINEAR, SUBTRACT_BACK N, FSCALASTRO_TYPE NONE, COMBINE_TYPE as
asked (MEDIAN by default: the only built-in combine that removes a satellite trail without
per-pixel noise maps), all cores (NTHREADS 0).

SWarp's WCS library reads TAN and TPV (PV distortion) but not SIP: a frame WCS with SIP terms
is written as its linear TAN part (``WCS.to_header()`` without ``relax``) and the count of such
frames is reported. The simulated sidecars are pure TAN, so nothing is lost there.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from supadupstack.config import Config
from supadupstack.errors import SupaDupError
from supadupstack.frames.calibrate import calibrate_frame
from supadupstack.frames.fits_io import load_pixels
from supadupstack.frames.model import Frame

from .grid import load_frames, load_grid, write_output
from .monitor import tool_output

CHANNELS = ("R", "G", "B")


@dataclass
class SwarpFacts:
    """What the SWarp run did: seconds spent preparing planes vs in SWarp, SIP frames."""

    prep_s: float
    swarp_s: float
    sip_dropped: int
    combine: str


def binary() -> str | None:
    """Path of the SWarp executable (``SWarp`` on Debian, ``swarp`` elsewhere) or None."""
    return shutil.which("SWarp") or shutil.which("swarp")


def version() -> str | None:
    """First line SWarp prints for ``-v`` ("SWarp version 2.41.5 (...)") or None."""
    exe = binary()
    text = tool_output([exe, "-v"]) if exe else ""
    return text.splitlines()[0] if text else None


def _tan_header(wcs: WCS) -> tuple[fits.Header, bool]:
    """Linear TAN header of a frame WCS (SIP dropped) and whether SIP was dropped."""
    cel = wcs.celestial
    has_sip = cel.sip is not None
    if has_sip:
        cel = cel.deepcopy()
        cel.sip = None
        ctype = [c.replace("-SIP", "") for c in cel.wcs.ctype]
        cel.wcs.ctype = ctype
    return cel.to_header(), has_sip


def write_planes(frames: list[Frame], cfg: Config, folder: Path) -> tuple[list[list[Path]], int]:
    """Calibrate every frame and write its R, G, B planes; (paths per channel, SIP frames)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[list[Path]] = [[], [], []]
    sip = 0
    for i, f in enumerate(frames):
        img = calibrate_frame(f, load_pixels(f), cfg.calibration)
        hdr, dropped = _tan_header(f.wcs)
        sip += dropped
        for c in range(3):
            p = folder / f"f{i:04d}_{CHANNELS[c]}.fits"
            fits.PrimaryHDU(np.ascontiguousarray(img[..., c]), header=hdr).writeto(
                p, overwrite=True
            )
            paths[c].append(p)
    return paths, sip


def write_head(wcs: WCS, shape: tuple[int, int], path: Path) -> Path:
    """SWarp ``.head`` file: the output grid as plain 80-column FITS cards ending in END."""
    hdr = wcs.to_header()
    hdr.insert(0, ("NAXIS2", shape[0]))
    hdr.insert(0, ("NAXIS1", shape[1]))
    hdr.insert(0, ("NAXIS", 2))
    lines = [card.image for card in hdr.cards] + ["END".ljust(80)]
    path.write_text("\n".join(lines) + "\n")
    return path


def swarp_channel(exe: str, inputs: list[Path], out: Path, combine: str, tmp: Path) -> None:
    """Run SWarp on one channel's planes; ``out`` (+ ``.head`` beside it) is the grid."""
    listfile = tmp / f"{out.stem}.list"
    listfile.write_text("\n".join(str(p) for p in inputs) + "\n")
    cmd = [
        exe,
        f"@{listfile}",
        "-c",
        "/dev/null",
        "-IMAGEOUT_NAME",
        str(out),
        "-WEIGHTOUT_NAME",
        str(out.with_suffix(".weight.fits")),
        "-COMBINE_TYPE",
        combine,
        "-RESAMPLING_TYPE",
        "BILINEAR",
        "-SUBTRACT_BACK",
        "N",
        "-FSCALASTRO_TYPE",
        "NONE",
        "-RESAMPLE_DIR",
        str(tmp),
        "-VMEM_DIR",
        str(tmp),
        "-MEM_MAX",
        "2048",
        "-COMBINE_BUFSIZE",
        "1024",
        "-NTHREADS",
        "0",
        "-WRITE_XML",
        "N",
        "-VERBOSE_TYPE",
        "QUIET",
        "-COPY_KEYWORDS",
        "",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0 or not out.exists():
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise SupaDupError(f"SWarp failed on {out.name}: {' | '.join(tail)}")


def run(
    frames_dir: Path, grid_path: Path, out: Path, cfg: Config, combine: str, tmp: Path
) -> SwarpFacts:
    """Prepare planes, SWarp each channel onto the grid, stack to (3, H, W) and write ``out``."""
    exe = binary()
    if exe is None:
        raise SupaDupError("SWarp is not installed (run benchmarks/setup_peers.sh)")
    wcs, shape = load_grid(grid_path)
    t0 = time.perf_counter()
    paths, sip = write_planes(load_frames(frames_dir, cfg), cfg, tmp / "planes")
    t1 = time.perf_counter()
    planes, weights = [], []
    for c in range(3):
        target = tmp / f"coadd_{CHANNELS[c]}.fits"
        write_head(wcs, shape, target.with_suffix(".head"))
        swarp_channel(exe, paths[c], target, combine, tmp)
        planes.append(fits.getdata(target).astype(np.float32))
        weights.append(fits.getdata(target.with_suffix(".weight.fits")).astype(np.float32))
    t2 = time.perf_counter()
    image = np.stack(planes)
    if image.shape[1:] != tuple(shape):
        raise SupaDupError(f"SWarp wrote {image.shape[1:]}, expected the grid {tuple(shape)}")
    dead = weights[1] <= 0
    image[:, dead] = np.nan
    write_output(out, image, weights[1], wcs)
    return SwarpFacts(t1 - t0, t2 - t1, sip, combine)
