"""Siril (Debian package ``siril``, ``siril-cli``) stacking the raw Bayer frames itself.

Siril is driven the way a Siril user stacks Seestar subs: a generated ``.ssf`` script converts
the raw FITS with debayering (Siril reads ``BAYERPAT``; its default demosaicing, RCD),
registers them by global star alignment onto the first frame (Siril's own default, made
explicit with ``setref`` so the stack's WCS is known) and stacks with winsorized σ rejection
3/3, additive-with-scaling normalisation and noise weights into a 32-bit float FITS. See
``script`` for each line and why it is there.

Siril needs a working directory of its own: the frames are linked (never copied or written to)
under ``work/in`` in time order, Siril writes its sequences under ``work/proc``, and its
configuration goes to ``work/cfg`` (``XDG_CONFIG_HOME``) so the run uses Siril's defaults and
leaves the user's settings alone.

For the truth metrics the stack, which lies in the pixel grid of its reference frame, gets that
frame's sidecar WCS (after checking Siril did not flip its rows), is scaled back to ADU and is
resampled onto the shared benchmark grid (``reproject_interp``, bilinear).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from supadupstack.errors import SupaDupError
from supadupstack.frames.fits_io import load_pixels
from supadupstack.frames.model import Frame

from .grid import footprint_coverage, load_grid, resample, write_output
from .monitor import Measured, run_measured, scratch_dir, tool_output
from .table import Row

BASENAME = "light"
# Siril 1.0's star detection threshold (``setfindstar`` sigma, in units of the background
# noise; its default is 1.0). At 1.0 Siril finds ~9 stars per simulated frame and registers 1
# of 48 (its log: "Not enough star pairs (8)"); at 0.5 31 of 48; at 0.3 every frame but the
# cloudy, blurred and black ones, where a user lowering it until the good frames register
# stops.
FINDSTAR_SIGMA = 0.3
FINDSTAR_ROUNDNESS = 0.5  # Siril's default
# Siril's 32-bit float pixels are the 16-bit ADU divided by 65535 (USHRT_MAX).
ADU_PER_UNIT = 65535.0


@dataclass
class SirilFacts:
    """What Siril did: seconds per step (from its log), the reference, the frames it stacked.

    ``ref`` and ``stacked`` are 0-based indices into the frames in time order; ``convert_s`` is
    the wall time left after registration and stacking (start-up and conversion).
    """

    version: str
    findstar_sigma: float
    ref: int
    stacked: list[int] = field(default_factory=list)
    register_s: float = float("nan")
    stack_s: float = float("nan")
    convert_s: float = float("nan")
    rejection: list[str] = field(default_factory=list)


def binary() -> str | None:
    """Path of ``siril-cli`` (the console Siril) or None."""
    return shutil.which("siril-cli")


def version() -> str | None:
    """Siril's version number, e.g. "1.0.6", or None when it is not installed."""
    exe = binary()
    match = re.search(r"(\d+\.\d+\.\d+\S*)", tool_output([exe, "--version"]) if exe else "")
    return match.group(1) if match else None


def script(findstar_sigma: float = FINDSTAR_SIGMA, ref: int = 1) -> str:
    """The Siril 1.0 script (``ref`` is 1-based, as Siril counts), run from the work folder.

    - ``requires 1.0.0``: the commands and options below are those of Siril 1.0 (checked on
      1.0.6); an older Siril stops here with a clear error.
    - ``setfindstar SIGMA 0.5``: star detection threshold (see ``FINDSTAR_SIGMA``) and
      Siril's default roundness; registration drops frames with too few matched star pairs
      (8 or 9 are too few for Siril 1.0.6's default ``-minpairs``).
    - ``cd in`` / ``convert light -debayer -out=../proc``: FITS → Siril sequence
      ``light_00001.fit``... in ``proc``, demosaiced with the header's ``BAYERPAT`` (Siril's
      default RCD); without ``-debayer`` Siril would only link the CFA frames.
    - ``cd ../proc`` / ``setref light REF``: the registration reference, so the stack's pixel
      grid is that frame's and its sidecar WCS applies.
    - ``register light``: global star alignment (homography, Siril 1.0's default), writes the
      resampled ``r_light_*.fit``; frames with too few star pairs are left out.
    - ``stack r_light rej w 3 3 -norm=addscale -weighted -out=../stack``: winsorized σ
      rejection 3/3 (Siril's default), additive normalisation with scaling, weights from the
      background noise; the 32-bit result stays in ADU/65535 (no ``-output_norm``, which
      would stretch min..max to 0..1 and lose the ADU scale the noise metric needs).
    - ``close``: the sequence is closed before Siril exits.
    """
    lines = [
        "requires 1.0.0",
        f"setfindstar {findstar_sigma:g} {FINDSTAR_ROUNDNESS:g}",
        "cd in",
        f"convert {BASENAME} -debayer -out=../proc",
        "cd ../proc",
        f"setref {BASENAME} {ref}",
        f"register {BASENAME}",
        f"stack r_{BASENAME} rej w 3 3 -norm=addscale -weighted -out=../stack",
        "close",
    ]
    return "\n".join(lines) + "\n"


def link_frames(frames: list[Frame], folder: Path) -> list[Path]:
    """Link the frames as ``light_0000.fit``... in time order (Siril converts in name order).

    Plain names also spare Siril the spaces of Seestar folder names; links keep the dataset
    read-only (a copy is made only where links are not possible).
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        p = folder / f"{BASENAME}_{i:04d}.fit"
        try:
            p.symlink_to(Path(f.path).resolve())
        except OSError:
            shutil.copyfile(f.path, p)
        paths.append(p)
    return paths


def parse_log(text: str) -> dict:
    """Seconds Siril's log gives per command (``{command}_s``: the "Execution time" it prints
    while that command runs; ms are converted) and its per-channel pixel rejection lines."""
    out: dict = {"rejection": re.findall(r"Pixel rejection in channel #\d: [^\n]*", text)}
    command = None
    for line in text.splitlines():
        started = re.search(r"Running command: (\w+)", line)
        if started:
            command = started.group(1)
            continue
        took = re.search(r"Execution time: (.*)", line)
        if took and command:
            out[f"{command}_s"] = out.get(f"{command}_s", 0.0) + _seconds(took.group(1))
    return out


def _seconds(text: str) -> float:
    """Seconds of a Siril duration: "74.31 ms", "22.62 s", "1 min 05.20 s", "1 h 2 min 3 s"."""
    unit_s = {"h": 3600.0, "min": 60.0, "s": 1.0, "ms": 1e-3}
    parts = re.findall(r"([\d.]+)\s*(ms|min|h|s)\b", text)
    return sum(float(v) * unit_s[u] for v, u in parts) if parts else float("nan")


def stacked_indices(proc: Path) -> list[int]:
    """0-based indices of the frames Siril registered (and so stacked): its r_light files."""
    found = [re.fullmatch(rf"r_{BASENAME}_(\d+)\.fit", p.name) for p in proc.iterdir()]
    return sorted(int(m.group(1)) - 1 for m in found if m)


def run(
    exe: str, frames: list[Frame], work: Path, log: Path, sigma: float = FINDSTAR_SIGMA
) -> tuple[Measured, SirilFacts]:
    """Run Siril on ``frames`` in the empty folder ``work``; the stack is ``work/stack.fit``.

    Wall time and peak memory are those of the siril-cli process tree only.
    """
    link_frames(frames, work / "in")
    (work / "cfg").mkdir(parents=True)
    ssf = work / "stack.ssf"
    ssf.write_text(script(sigma, 1))
    env = dict(os.environ, XDG_CONFIG_HOME=str(work / "cfg"))
    m = run_measured([exe, "-d", str(work), "-s", str(ssf)], log, env=env)
    facts = SirilFacts(version() or "?", sigma, ref=0)
    if m.returncode == 0 and (work / "stack.fit").exists():
        info = parse_log(log.read_text(errors="replace"))
        facts.stacked = stacked_indices(work / "proc")
        facts.register_s = info.get("register_s", float("nan"))
        facts.stack_s = info.get("stack_s", float("nan"))
        facts.convert_s = m.wall_s - facts.register_s - facts.stack_s
        facts.rejection = info["rejection"]
    return m, facts


def _binned_corr(a: np.ndarray, b: np.ndarray, k: int = 4) -> float:
    """Pearson correlation of two (H, W) images after k×k binning (Bayer/noise smoothed)."""
    h, w = (a.shape[0] // k) * k, (a.shape[1] // k) * k
    x = np.nan_to_num(a[:h, :w]).reshape(h // k, k, w // k, k).mean(axis=(1, 3))
    y = np.nan_to_num(b[:h, :w]).reshape(h // k, k, w // k, k).mean(axis=(1, 3))
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / max(np.sqrt((x * x).sum() * (y * y).sum()), 1e-30))


def orient(image: np.ndarray, ref_raw: np.ndarray) -> tuple[np.ndarray, bool]:
    """(image in the reference frame's FITS row order, whether it had to be flipped).

    Siril 1.0.6 writes its stack in the input FITS row order, with or without
    ``ROWORDER = 'TOP-DOWN'`` on the frames (it copies that key to the stack; tried on the
    tiny preset), but Siril's row-order handling has changed between versions, so the G plane
    is compared with the raw reference frame both ways rather than assumed. Raises when neither
    orientation matches (the stack is not in the reference frame's grid).
    """
    if image.shape[1:] != ref_raw.shape:
        raise SupaDupError(f"Siril stack {image.shape[1:]} is not the reference {ref_raw.shape}")
    as_is = _binned_corr(image[1], ref_raw)
    flipped = _binned_corr(image[1, ::-1], ref_raw)
    if max(as_is, flipped) < 0.3:
        raise SupaDupError(f"Siril stack does not match its reference frame ({as_is:.2f})")
    if flipped > as_is:
        return np.ascontiguousarray(image[:, ::-1]), True
    return image, False


def native(stack: Path, frames: list[Frame], facts: SirilFacts, out: Path) -> tuple[Path, bool]:
    """Siril's stack in ADU, in its reference frame's row order, with that frame's sidecar WCS.

    COVERAGE counts the stacked frames' footprints on the reference frame's pixels. Returns the
    output path and whether Siril's rows had to be flipped.
    """
    ref = frames[facts.ref]
    image = np.asarray(fits.getdata(stack), np.float32) * np.float32(ADU_PER_UNIT)
    image, flipped = orient(image, load_pixels(ref))
    wcs = ref.wcs.celestial
    cov = footprint_coverage([frames[i] for i in facts.stacked], wcs, image.shape[1:])
    return write_output(out, image, cov, wcs), flipped


def to_grid(
    native_fits: Path, frames: list[Frame], facts: SirilFacts, grid_path: Path, out: Path
) -> Path:
    """The native stack resampled onto the benchmark grid (bilinear), NaN off its footprint.

    COVERAGE counts the stacked frames' footprints inside the reference frame's footprint, the
    only part of the sky Siril's stack holds.
    """
    with fits.open(native_fits) as h:
        image = np.asarray(h[0].data, np.float32)
        wcs_in = WCS(h[0].header).celestial
    wcs, shape = load_grid(grid_path)
    grid_img = resample(image, wcs_in, wcs, shape)
    cov = footprint_coverage([frames[i] for i in facts.stacked], wcs, shape)
    cov[footprint_coverage([frames[facts.ref]], wcs, shape) <= 0] = 0.0
    grid_img[:, cov <= 0] = np.nan
    return write_output(out, grid_img, cov, wcs)


def bench(
    exe: str,
    frames: list[Frame],
    grid_path: Path,
    work: Path,
    logs: Path,
    label: str,
    sigma: float = FINDSTAR_SIGMA,
) -> tuple[Row, list[str], Path | None]:
    """Siril's benchmark row, its notes and its native-grid output (None when it failed).

    Writes ``work/siril.native.fits`` (reference grid) and ``work/siril.fits`` (benchmark
    grid); the converted and registered frames (a few GB on long nights) are removed after.
    """
    with scratch_dir(work / "siril_tmp") as folder:
        m, facts = run(exe, frames, folder, logs / "siril.log", sigma)
        if m.returncode != 0 or not (folder / "stack.fit").exists():
            return Row.failed(label, m.output_tail), [], None
        nat, flipped = native(folder / "stack.fit", frames, facts, work / "siril.native.fits")
        to_grid(nat, frames, facts, grid_path, work / "siril.fits")
    dropped = [Path(frames[i].path).name for i in range(len(frames)) if i not in facts.stacked]
    rejection = "; ".join(r.split(": ", 1)[-1] for r in facts.rejection)
    notes = [
        f"Siril {facts.version} wall time, from its log: {facts.register_s:.1f} s registering, "
        f"{facts.stack_s:.1f} s stacking (normalisation, weights, rejection), "
        f"{facts.convert_s:.1f} s starting and converting (debayering) the frames. "
        f"It stacked {len(facts.stacked)} of {len(frames)} frames onto its reference "
        f"{Path(frames[facts.ref].path).name} (rows flipped: {'yes' if flipped else 'no'}); "
        f"star matching failed on {len(dropped)}: {', '.join(dropped) or 'none'}. "
        f"Its pixel rejection per channel (low - high): {rejection}.",
    ]
    return Row(label, m.wall_s, len(frames), m.peak_mb, len(facts.stacked)), notes, nat


def native_note(native_m: dict, grid_m: dict, like_sds: Path, sds_fits: Path) -> str:
    """Note: Siril's metrics on its own grid against those after resampling onto the shared
    grid (a second bilinear resampling smooths noise), and the share of the SDS output's pixels
    its stack covers (only its reference frame's footprint, so its metrics are on fewer pixels).
    """
    with fits.open(like_sds) as h:
        siril_ok = np.isfinite(h[0].data[1])
    with fits.open(sds_fits) as h:
        sds_ok = np.asarray(h["ALPHA"].data) > 0
    share = float(siril_ok.sum()) / max(float(sds_ok.sum()), 1.0)

    def fig(m: dict) -> str:
        return (
            f"noise/ideal G {m['noise_ratio_vs_ideal'][1]:.3f}, star-flux MAD "
            f"{m['star_flux_ratio_mad']:.4f}, astrometric rms {m['astrometric_rms_px']:.3f} px, "
            f"slope G {m['slope'][1]:.4f}"
        )

    return (
        f"Siril's stack holds only its reference frame's footprint: its metrics are measured on "
        f"{100 * share:.0f}% of the SDS output's pixels. On its own grid (no second resampling) "
        f"it has {fig(native_m)}; resampled onto the shared grid, {fig(grid_m)}."
    )
