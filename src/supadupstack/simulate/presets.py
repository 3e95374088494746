"""Simulated datasets with ground truth: presets "sds-nights", "mosaic-2x2" and "tiny".

``simulate_dataset`` writes raw Seestar-like subs under ``<out>/frames/`` and the truth under
``<out>/truth/``: per-frame true WCS (``wcs/<stem>.wcs``), the star catalogue (``stars.csv``),
the noise-free signal per channel on a north-up reference grid (``signal.fits``, ADU per pixel
per sub-exposure at transparency 1, no sky) and ``manifest.json`` listing everything (every
frame's full ``SubSpec``: transparency, sky, FWHM, flags ...). Same arguments → identical bytes:
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
from supadupstack.simulate import camera
from supadupstack.simulate.camera import SubSpec, Trail
from supadupstack.simulate.sky import Galaxy, StarCatalogue, make_catalogue, render

PRESETS = ("sds-nights", "mosaic-2x2", "tiny")
FIELD_RA, FIELD_DEC = 192.72, 41.12
PEDESTAL = camera.PEDESTAL_ADU


@dataclass
class Session:
    """One night (or one mosaic panel) of frames: geometry, conditions and camera unit."""

    name: str
    start: str
    up_deg: float
    transparency: float
    sky_total_g: float
    g_over_r: float
    g_over_b: float
    offset_px: tuple[float, float] = (0.0, 0.0)
    rotation_span_deg: float = 2.0
    drift_px: tuple[float, float] = (20.0, 10.0)
    step_px: tuple[float, float] = (0.0, 0.0)
    gradient: tuple[float, float] = (0.01, 0.015)
    fwhm_px: float = 3.7
    unit: int = 0
    tz_hours: float = -4.0
    additive_sky: bool = False
    cadence_s: float = 11.3

    def sky_signal(self) -> tuple[float, float, float]:
        """Per-channel sky above the pedestal reproducing the total G/R, G/B ratios."""
        g = self.sky_total_g
        return (g / self.g_over_r - PEDESTAL, g - PEDESTAL, g / self.g_over_b - PEDESTAL)


UNITS = [
    ("S50_5im0a001", "4.27", 33.0, -79.8, 1555),
    ("S50_5im0b002", "4.43", 44.7, -0.6, 1655),
    ("S50_5im0c003", "4.47", 48.1, 11.6, 1610),
]


def _sessions_sds() -> list[Session]:
    # Modelled on the real M 94 sessions A1, A2 (same night, +4.4 h) and B (another night,
    # moonlit: brighter sky with better transparency → the extra sky is additive). Seeing
    # differs 2× between the nights (FWHM 3.2 / 4.8 / 6.4 px: 7.6″ / 11.4″ / 15.2″), as on
    # real Seestar nights, so that photometry which depends on seeing shows in the gains. night2
    # differs from night1 only by transparency: its sky above the camera pedestal is 0.85×
    # night1's, same colour and gradient, so its true gain is exactly 1/0.85.
    return [
        Session(
            "night1",
            "2025-03-27T01:20:32.955",
            -178.72,
            1.00,
            996.0,
            1.180,
            1.254,
            offset_px=(10, -25),
            rotation_span_deg=2.5,
            drift_px=(12, 15),
            fwhm_px=3.2,
            unit=0,
        ),
        Session(
            "night2",
            "2025-03-27T05:45:00.730",
            -178.46,
            0.85,
            PEDESTAL + 0.85 * (996.0 - PEDESTAL),  # differs from night1 only by transparency
            1.180,
            1.254,
            offset_px=(-20, 15),
            rotation_span_deg=2.0,
            drift_px=(8, -6),
            step_px=(45, -20),
            fwhm_px=4.8,
            unit=0,
        ),
        Session(
            "night3",
            "2025-04-09T20:54:22.790",
            111.8,
            1.10,
            1290.0,
            1.213,
            1.250,
            offset_px=(30, 40),
            rotation_span_deg=3.0,
            drift_px=(-40, 60),
            unit=1,
            tz_hours=2.0,
            additive_sky=True,
            gradient=(0.05, -0.03),
            fwhm_px=6.4,
        ),
    ]


def _sessions_mosaic(rng: np.random.Generator) -> list[Session]:
    out = []
    for k, (px, py) in enumerate([(-1, -1), (1, -1), (-1, 1), (1, 1)]):
        sky = float(rng.uniform(700.0, 1250.0))
        out.append(
            Session(
                f"panel{k + 1}",
                f"2025-05-0{k + 1}T22:10:05.120",
                -178.6 + rng.uniform(-1, 1),
                float(rng.uniform(0.85, 1.1)),
                sky,
                float(rng.uniform(1.13, 1.21)),
                float(rng.uniform(1.16, 1.26)),
                offset_px=(px * 0.5 * 0.76 * 1080, py * 0.5 * 0.78 * 1920),
                rotation_span_deg=1.5,
                drift_px=(10, 12),
                unit=k % 2,
                tz_hours=2.0,
                gradient=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.03, 0.03))),
            )
        )
    return out


def _sessions_tiny() -> list[Session]:
    return [
        Session(
            "tiny",
            "2025-03-27T01:20:32.955",
            -178.72,
            1.0,
            996.0,
            1.18,
            1.254,
            rotation_span_deg=3.0,
            drift_px=(8, -10),
        )
    ]


def _bad_frames(n: int) -> dict[tuple[int, int], str]:
    """(session index, frame index) → flag, for sds-nights."""
    return {
        (0, n // 2): "cloudy",
        (1, n // 2): "blurred",
        (2, (n - 1) // 2): "trail",
        (2, n - 1): "black",
    }


def _apply_flag(spec: SubSpec, flag: str, rng: np.random.Generator) -> None:
    if flag == "cloudy":
        spec.transparency *= 0.35
        spec.sky_adu = tuple(1.6 * s for s in spec.sky_adu)
    elif flag == "blurred":
        spec.fwhm_px *= 2.0
    elif flag == "trail":
        w, h = spec.width, spec.height
        spec.trail = Trail(
            float(rng.uniform(0, w)),
            -5.0,
            float(rng.uniform(0, w)),
            h + 5.0,
            peak_adu=float(rng.uniform(1000, 2500)),
        )
    elif flag == "black":
        spec.transparency *= 0.01
        spec.sky_adu = tuple(0.01 * s for s in spec.sky_adu)
        spec.pedestal_adu = 15.0


def _hot_pixels(seed: int, unit: int, w: int, h: int) -> list[tuple[int, int, float]]:
    rng = np.random.default_rng([seed, 7001, unit])
    n = max(3, int(12 * w * h / (1080 * 1920)))
    xs, ys = rng.integers(0, w, n), rng.integers(0, h, n)
    levels = rng.uniform(2000.0, 40000.0, n)
    return [(int(x), int(y), round(float(v), 1)) for x, y, v in zip(xs, ys, levels)]


def _specs(
    sessions, n, width, height, seed, obj, flags_by_index, beta
) -> list[tuple[SubSpec, list]]:
    """Every frame's spec: the session's pointing path, seeing (4 % frame-to-frame jitter in
    FWHM) and transparency (±2 %), then the bad-frame flags."""
    out = []
    for si, ses in enumerate(sessions):
        rng = np.random.default_rng([seed, 101, si])
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
                gradient=ses.gradient,
                hot_pixels=_hot_pixels(seed, ses.unit, width, height),
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
                _apply_flag(spec, flag, rng)
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


def _preset_setup(preset: str, n_frames: int | None, seed: int):
    """(sessions, frames per session, width, height, object, flags, half-size, density, galaxy)."""
    if preset == "sds-nights":
        n = 20 if n_frames is None else n_frames
        if n < 2:
            raise SupaDupError("preset sds-nights needs at least 2 frames per session")
        gal = Galaxy(FIELD_RA + 0.01, FIELD_DEC - 0.005)
        return _sessions_sds(), n, 1080, 1920, "SIM 94", _bad_frames(n), 1.0, 135.0, gal
    if preset == "mosaic-2x2":
        n = 10 if n_frames is None else n_frames
        ses = _sessions_mosaic(np.random.default_rng([seed, 303]))
        gal = Galaxy(FIELD_RA + 0.01, FIELD_DEC - 0.005)
        return ses, n, 1080, 1920, "SIM Mosaic", {}, 1.6, 135.0, gal
    if preset == "tiny":
        n = 6 if n_frames is None else n_frames
        gal = Galaxy(
            FIELD_RA + 0.02,
            FIELD_DEC + 0.02,
            bulge_re_arcsec=10.0,
            disk_re_arcsec=30.0,
            disk_ie_adu=80.0,
        )
        return _sessions_tiny(), n, 256, 384, "SIM Tiny", {}, 0.25, 2500.0, gal
    raise SupaDupError(f"unknown simulate preset {preset!r}; allowed: {', '.join(PRESETS)}")


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

    ``n_frames`` is per session (sds-nights) or per panel (mosaic-2x2); None → preset default
    (20, 10, 6). ``sidecars`` also writes the true WCS as ``<stem>.wcs`` beside each frame.
    ``psf_beta``: Moffat β of the stars (0: Gaussian). ``last_session_colour``: per-channel
    factors (R, G, B) on the last session's transparency, a colour change between nights such
    as differential extinction at another airmass (stars and galaxy; the sky is unchanged).
    """
    if not (psf_beta == 0 or 1.5 <= psf_beta <= 20):
        raise SupaDupError(f"psf beta must be 0 (Gaussian) or within 1.5-20, got {psf_beta:g}")
    out_dir = Path(out_dir)
    sessions, n, width, height, obj, flags, half, density, galaxy = _preset_setup(
        preset, n_frames, seed
    )
    if n < 1:
        raise SupaDupError("the number of frames must be at least 1")
    rng_cat = np.random.default_rng([seed, 404])
    stars = make_catalogue(rng_cat, FIELD_RA, FIELD_DEC, half, density_per_deg2=density)
    specs = _specs(sessions, n, width, height, seed, obj, flags, psf_beta)
    if last_session_colour is not None:
        last = sessions[-1].name
        for spec, ses_name, _ in specs:
            if ses_name == last:
                spec.colour = tuple(float(v) for v in last_session_colour)
    truth = out_dir / "truth"
    (truth / "wcs").mkdir(parents=True, exist_ok=True)
    frames = []
    for spec, ses_name, fl in specs:
        stem = f"Light_{obj}_{spec.exptime:.1f}s_IRCUT_{camera.file_stamp(spec)}"
        rel = Path("frames") / f"{obj}_sub" / ses_name / f"{stem}.fit"
        data = camera.raw_sub(spec, stars, galaxy)
        camera.write_sub(out_dir / rel, data, camera.sub_header(spec))
        wcs = camera.frame_wcs(spec.ra, spec.dec, spec.up_deg, width, height)
        side = camera.sidecar_header(wcs, width, height)
        side.tofile(truth / "wcs" / f"{stem}.wcs", overwrite=True)
        if sidecars:
            side.tofile((out_dir / rel).with_suffix(".wcs"), overwrite=True)
        sky_total = [s + spec.pedestal_adu for s in spec.sky_adu]
        noise = [math.sqrt(spec.adu_per_e * s + spec.read_noise_adu**2) for s in spec.sky_adu]
        frames.append(
            {
                "path": rel.as_posix(),
                "wcs": f"wcs/{stem}.wcs",
                "session": ses_name,
                "date_obs": spec.date_obs,
                "transparency": spec.transparency,
                "colour": list(spec.colour),
                "sky_total_adu": sky_total,
                "noise_adu": noise,
                "fwhm_px": spec.fwhm_px,
                "flags": fl,
                "spec": spec_to_dict(spec),
            }
        )
    ref_wcs, shape = _reference_grid([s for s, _, _ in specs])
    signal = render(ref_wcs, shape, stars, galaxy, 3.7, psf_beta, 1.0, None)
    hdr = ref_wcs.to_header()
    hdr["BUNIT"] = ("adu", "ADU per pixel per sub-exposure, transparency 1")
    fits.PrimaryHDU(signal, header=hdr).writeto(truth / "signal.fits", overwrite=True)
    stars.write_csv(truth / "stars.csv")
    manifest = {
        "preset": preset,
        "seed": seed,
        "frames_per_session": n,
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
        "sessions": [dataclasses.asdict(s) for s in sessions],
        "galaxy": galaxy.to_dict(),
        "stars": "stars.csv",
        "n_stars": len(stars),
        "signal": "signal.fits",
        "signal_shape": list(shape),
        "frames": frames,
    }
    path = truth / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def load_galaxy(manifest: dict) -> Galaxy:
    d = dict(manifest["galaxy"])
    d["colour"] = tuple(d["colour"])
    return Galaxy(**d)


def load_stars(truth_dir: Path, manifest: dict) -> StarCatalogue:
    return StarCatalogue.read_csv(Path(truth_dir) / manifest["stars"])
