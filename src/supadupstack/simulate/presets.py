"""Simulated datasets with ground truth: presets "sds-nights", "mosaic-2x2", "tiny",
"gradients" and "nebula" (sessions in ``nights.py``).

``simulate_dataset`` writes raw Seestar-like subs under ``<out>/frames/`` and the truth under
``<out>/truth/``: per-frame true WCS (``wcs/<stem>.wcs``), the star catalogue (``stars.csv``),
the noise-free signal per channel on a north-up reference grid (``signal.fits``, ADU per pixel
per sub-exposure at transparency 1, no sky) and ``manifest.json`` listing everything (every
frame's full ``SubSpec``: transparency, sky, FWHM, flags ...; the nebula's components when the
preset has one, every frame's gradient amplitude when a dome scripts it). Same arguments →
identical bytes:
every random draw comes from ``numpy.random.default_rng`` seeded by (seed, purpose, index).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from supadupstack.errors import SupaDupError
from supadupstack.simulate import camera, nights
from supadupstack.simulate.camera import SubSpec, Trail
from supadupstack.simulate.nebula import Nebula, make_nebula
from supadupstack.simulate.nights import UNITS, Session
from supadupstack.simulate.sky import Galaxy, StarCatalogue, make_catalogue, render

PRESETS = ("sds-nights", "mosaic-2x2", "tiny", "gradients", "nebula")
FIELD_RA, FIELD_DEC = 192.72, 41.12
PEDESTAL = camera.PEDESTAL_ADU
# preset gradients: the default galaxy (disk 95″ = 40 px) grown 1.6× so that its halo, above
# 1 ADU/px out to ~210 px along the major axis, spans 40 % of the frame's width
GRADIENTS_GALAXY = Galaxy(
    FIELD_RA + 0.01, FIELD_DEC - 0.005, bulge_re_arcsec=35.0, disk_re_arcsec=150.0, disk_ie_adu=45.0
)


def _specs(
    sessions: list[Session],
    n: int,
    width: int,
    height: int,
    seed: int,
    obj: str,
    flags_by_index: dict[tuple[int, int], str],
    beta: float,
) -> list[tuple[SubSpec, str, list[str]]]:
    """Every frame's (spec, session name, flags): the session's pointing path, seeing (4 %
    frame-to-frame jitter in FWHM), transparency (±2 %) and sky gradient (the session's, or
    its dome's per frame), then the bad-frame flags."""
    out = []
    for si, ses in enumerate(sessions):
        rng = np.random.default_rng([seed, 101, si])
        dome_rng = np.random.default_rng([seed, 505, si])
        unit_name, program, lat, lon, focus = UNITS[ses.unit % len(UNITS)]
        base = camera.frame_wcs(FIELD_RA, FIELD_DEC, ses.up_deg, width, height)
        t0 = Time(ses.start, scale="utc")
        t = 0.0
        for i in range(n):
            frac = i / (n - 1) if n > 1 else 0.5
            step = ses.step_px if i >= n // 2 else (0.0, 0.0)
            dx = ses.offset_px[0] + ses.drift_px[0] * frac + step[0] + rng.normal(0, 1.5)
            dy = ses.offset_px[1] + ses.drift_px[1] * frac + step[1] + rng.normal(0, 1.5)
            c = base.pixel_to_world((width - 1) / 2 + dx, (height - 1) / 2 + dy)
            date = (t0 + t * u.s).isot
            t += ses.cadence_s + float(rng.uniform(0.0, 0.2))
            spec = SubSpec(
                width=width,
                height=height,
                ra=float(c.ra.deg),
                dec=float(c.dec.deg),
                up_deg=ses.up_deg + ses.rotation_span_deg * (frac - 0.5),
                date_obs=date,
                fwhm_px=round(ses.fwhm_px * float(np.exp(rng.normal(0, 0.04))), 3),
                psf_beta=beta,
                transparency=round(ses.transparency * float(rng.uniform(0.98, 1.02)), 4),
                sky_adu=ses.sky_signal(),
                gradient=(
                    ses.dome.gradient(frac, dome_rng, width, height) if ses.dome else ses.gradient
                ),
                hot_pixels=nights.hot_pixels(seed, ses.unit, width, height),
                seed=int(np.random.default_rng([seed, 202, si, i]).integers(0, 2**62)),
                object_name=obj,
                target_ra=FIELD_RA,
                target_dec=FIELD_DEC,
                telescope=unit_name,
                program=program,
                ccd_temp=round(24.0 - 1.5 * si, 3),
                site_lat=lat,
                site_lon=lon,
                focuspos=focus,
                tz_hours=ses.tz_hours,
            )
            flags = []
            flag = flags_by_index.get((si, i))
            if flag:
                nights.apply_flag(spec, flag, rng)
                flags.append(flag)
            out.append((spec, ses.name, flags))
    return out


def _reference_grid(specs: list[SubSpec], margin: int = 8) -> tuple[WCS, tuple[int, int]]:
    """North-up TAN grid at the frame scale covering every frame footprint."""
    s = camera.PIXEL_ARCSEC / 3600.0
    ref = WCS(naxis=2)
    ref.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    ref.wcs.crval = [FIELD_RA, FIELD_DEC]
    ref.wcs.crpix = [0.0, 0.0]
    ref.wcs.cd = [[-s, 0.0], [0.0, s]]
    ref.wcs.radesys = "ICRS"
    ref.wcs.equinox = 2000.0
    xs, ys = [], []
    for sp in specs:
        fw = camera.frame_wcs(sp.ra, sp.dec, sp.up_deg, sp.width, sp.height)
        cx = np.array([-0.5, sp.width - 0.5, sp.width - 0.5, -0.5])
        cy = np.array([-0.5, -0.5, sp.height - 0.5, sp.height - 0.5])
        x, y = ref.all_world2pix(*fw.all_pix2world(cx, cy, 0), 0)
        xs.extend(x)
        ys.extend(y)
    x0, y0 = math.floor(min(xs)) - margin, math.floor(min(ys)) - margin
    w, h = math.ceil(max(xs)) + margin - x0 + 1, math.ceil(max(ys)) + margin - y0 + 1
    ref.wcs.crpix = [1.0 - x0, 1.0 - y0]
    ref.pixel_shape = (w, h)
    return ref, (h, w)


def spec_to_dict(spec: SubSpec) -> dict:
    d = dataclasses.asdict(spec)
    d["sky_adu"] = list(spec.sky_adu)
    d["colour"] = list(spec.colour)
    d["gradient"] = list(spec.gradient)
    d["hot_pixels"] = [list(p) for p in spec.hot_pixels]
    return d


def spec_from_dict(d: dict) -> SubSpec:
    d = dict(d)
    d["sky_adu"] = tuple(d["sky_adu"])
    d["colour"] = tuple(d.get("colour", (1.0, 1.0, 1.0)))
    d["gradient"] = tuple(d["gradient"])
    d["hot_pixels"] = [tuple(p) for p in d["hot_pixels"]]
    d["trail"] = Trail(**d["trail"]) if d.get("trail") else None
    return SubSpec(**d)


@dataclass
class Setup:
    """What a preset fixes: sessions, frames per session, frame size [px], OBJECT name,
    bad-frame flags, star field half-size [deg] and density [stars/deg²], extended objects."""

    sessions: list[Session]
    n: int
    width: int
    height: int
    obj: str
    flags: dict[tuple[int, int], str]
    half_deg: float
    density: float
    galaxy: Galaxy | None
    nebula: Nebula | None = None


def _preset_setup(preset: str, n_frames: int | None, seed: int) -> Setup:
    if preset == "sds-nights":
        n = 20 if n_frames is None else n_frames
        if n < 2:
            raise SupaDupError("preset sds-nights needs at least 2 frames per session")
        gal = Galaxy(FIELD_RA + 0.01, FIELD_DEC - 0.005)
        return Setup(
            nights.sessions_sds(), n, 1080, 1920, "SIM 94", nights.bad_frames(n), 1.0, 135.0, gal
        )
    if preset == "mosaic-2x2":
        n = 10 if n_frames is None else n_frames
        ses = nights.sessions_mosaic(np.random.default_rng([seed, 303]))
        gal = Galaxy(FIELD_RA + 0.01, FIELD_DEC - 0.005)
        return Setup(ses, n, 1080, 1920, "SIM Mosaic", {}, 1.6, 135.0, gal)
    if preset == "tiny":
        n = 6 if n_frames is None else n_frames
        gal = Galaxy(
            FIELD_RA + 0.02,
            FIELD_DEC + 0.02,
            bulge_re_arcsec=10.0,
            disk_re_arcsec=30.0,
            disk_ie_adu=80.0,
        )
        return Setup(nights.sessions_tiny(), n, 256, 384, "SIM Tiny", {}, 0.25, 2500.0, gal)
    if preset == "gradients":
        n = 12 if n_frames is None else n_frames
        return Setup(
            nights.sessions_dome(), n, 1080, 1920, "SIM Gradients", {}, 1.0, 135.0, GRADIENTS_GALAXY
        )
    if preset == "nebula":
        n = 12 if n_frames is None else n_frames
        half_x, half_y = (0.5 * d * camera.PIXEL_ARCSEC for d in (1080, 1920))
        neb = make_nebula(np.random.default_rng([seed, 606]), FIELD_RA, FIELD_DEC, half_x, half_y)
        return Setup(nights.sessions_dome(), n, 1080, 1920, "SIM Nebula", {}, 1.0, 300.0, None, neb)
    raise SupaDupError(f"unknown simulate preset {preset!r}; allowed: {', '.join(PRESETS)}")


def preset_specs(
    preset: str, n_frames: int | None = None, seed: int = 0, psf_beta: float = camera.PSF_BETA
) -> list[tuple[SubSpec, str, list[str]]]:
    """Every frame's (spec, session name, flags) of a preset, without rendering anything."""
    st = _preset_setup(preset, n_frames, seed)
    return _specs(st.sessions, st.n, st.width, st.height, seed, st.obj, st.flags, psf_beta)


def simulate_dataset(
    out_dir: Path,
    preset: str = "sds-nights",
    n_frames: int | None = None,
    seed: int = 0,
    sidecars: bool = False,
    psf_beta: float = camera.PSF_BETA,
    last_session_colour: tuple[float, float, float] | None = None,
) -> Path:
    """Write a simulated dataset and its truth under ``out_dir``; returns the manifest path.

    ``n_frames`` is per session (sds-nights, gradients, nebula) or per panel (mosaic-2x2); None
    → preset default (20, 10, 6, 12, 12). ``sidecars`` also writes the true WCS as
    ``<stem>.wcs`` beside each frame. ``psf_beta``: Moffat β of the stars (0: Gaussian).
    ``last_session_colour``: per-channel factors (R, G, B) on the last session's transparency,
    a colour change between nights such as differential extinction at another airmass (stars,
    galaxy and nebula; the sky is unchanged).
    """
    if not (psf_beta == 0 or 1.5 <= psf_beta <= 20):
        raise SupaDupError(f"psf beta must be 0 (Gaussian) or within 1.5-20, got {psf_beta:g}")
    out_dir = Path(out_dir)
    st = _preset_setup(preset, n_frames, seed)
    if st.n < 1:
        raise SupaDupError("the number of frames must be at least 1")
    rng_cat = np.random.default_rng([seed, 404])
    stars = make_catalogue(rng_cat, FIELD_RA, FIELD_DEC, st.half_deg, density_per_deg2=st.density)
    specs = _specs(st.sessions, st.n, st.width, st.height, seed, st.obj, st.flags, psf_beta)
    if last_session_colour is not None:
        last = st.sessions[-1].name
        for spec, ses_name, _ in specs:
            if ses_name == last:
                spec.colour = tuple(float(v) for v in last_session_colour)
    truth = out_dir / "truth"
    (truth / "wcs").mkdir(parents=True, exist_ok=True)
    frames = []
    for spec, ses_name, fl in specs:
        stem = f"Light_{st.obj}_{spec.exptime:.1f}s_IRCUT_{camera.file_stamp(spec)}"
        rel = Path("frames") / f"{st.obj}_sub" / ses_name / f"{stem}.fit"
        data = camera.raw_sub(spec, stars, st.galaxy, st.nebula)
        camera.write_sub(out_dir / rel, data, camera.sub_header(spec))
        wcs = camera.frame_wcs(spec.ra, spec.dec, spec.up_deg, st.width, st.height)
        side = camera.sidecar_header(wcs, st.width, st.height)
        side.tofile(truth / "wcs" / f"{stem}.wcs", overwrite=True)
        if sidecars:
            side.tofile((out_dir / rel).with_suffix(".wcs"), overwrite=True)
        entry = _frame_entry(spec, ses_name, fl, rel.as_posix(), f"wcs/{stem}.wcs")
        if st.sessions[0].dome is not None:
            entry.update(nights.gradient_summary(spec))
        frames.append(entry)
    ref_wcs, shape = _reference_grid([s for s, _, _ in specs])
    signal = render(ref_wcs, shape, stars, st.galaxy, 3.7, psf_beta, 1.0, None, st.nebula)
    hdr = ref_wcs.to_header()
    hdr["BUNIT"] = ("adu", "ADU per pixel per sub-exposure, transparency 1")
    fits.PrimaryHDU(signal, header=hdr).writeto(truth / "signal.fits", overwrite=True)
    stars.write_csv(truth / "stars.csv")
    manifest = _manifest(preset, seed, st, psf_beta, stars, shape, frames)
    path = truth / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def _frame_entry(spec: SubSpec, session: str, flags: list[str], rel: str, wcs: str) -> dict:
    """A frame's manifest record: file, true WCS file, conditions, sky and noise [ADU]."""
    sky_total = [s + spec.pedestal_adu for s in spec.sky_adu]
    noise = [math.sqrt(spec.adu_per_e * s + spec.read_noise_adu**2) for s in spec.sky_adu]
    return {
        "path": rel,
        "wcs": wcs,
        "session": session,
        "date_obs": spec.date_obs,
        "transparency": spec.transparency,
        "colour": list(spec.colour),
        "sky_total_adu": sky_total,
        "noise_adu": noise,
        "fwhm_px": spec.fwhm_px,
        "flags": flags,
        "spec": spec_to_dict(spec),
    }


def _manifest(
    preset: str,
    seed: int,
    st: Setup,
    psf_beta: float,
    stars: StarCatalogue,
    shape: tuple[int, int],
    frames: list[dict],
) -> dict:
    """The truth manifest; a ``nebula`` key only when the preset has one."""
    manifest = {
        "preset": preset,
        "seed": seed,
        "frames_per_session": st.n,
        "camera": {
            "adu_per_e": camera.ADU_PER_E,
            "pedestal_adu": PEDESTAL,
            "read_noise_adu": camera.READ_NOISE_ADU,
            "pixel_arcsec": camera.PIXEL_ARCSEC,
            "bayer": "GRBG",
            "psf": "moffat",
            "psf_beta": psf_beta,
        },
        "field": {"ra": FIELD_RA, "dec": FIELD_DEC},
        "truth_fwhm_px": 3.7,
        "sessions": [s.to_dict() for s in st.sessions],
        "galaxy": st.galaxy.to_dict() if st.galaxy is not None else None,
    }
    if st.nebula is not None:
        manifest["nebula"] = st.nebula.to_dict()
    manifest.update(
        {
            "stars": "stars.csv",
            "n_stars": len(stars),
            "signal": "signal.fits",
            "signal_shape": list(shape),
            "frames": frames,
        }
    )
    return manifest


def load_galaxy(manifest: dict) -> Galaxy | None:
    """The manifest's galaxy, or None when the preset has none (nebula)."""
    if manifest.get("galaxy") is None:
        return None
    d = dict(manifest["galaxy"])
    d["colour"] = tuple(d["colour"])
    return Galaxy(**d)


def load_nebula(manifest: dict) -> Nebula | None:
    """The manifest's nebula, or None when the preset has none."""
    return Nebula.from_dict(manifest["nebula"]) if manifest.get("nebula") else None


def load_stars(truth_dir: Path, manifest: dict) -> StarCatalogue:
    return StarCatalogue.read_csv(Path(truth_dir) / manifest["stars"])
