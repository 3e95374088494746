"""Observing sessions of the simulated presets: geometry, conditions, camera unit, bad frames,
and the light-pollution dome that tilts the sky of every frame.

A ``Session`` is one night (or one mosaic panel) of frames; the preset module turns it into
one ``SubSpec`` per frame. Sky levels are in ADU (camera pedestal included in
``sky_total_g``), angles in degrees, offsets in frame pixels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from supadupstack.simulate import camera
from supadupstack.simulate.camera import SubSpec, Trail

PEDESTAL = camera.PEDESTAL_ADU


@dataclass
class Dome:
    """A light-pollution dome seen through one session: a linear sky gradient per frame.

    ``dir_*_deg``: direction of increasing sky on the sensor (0 = +x, 90 = +y), at the
    session's first and last frame; it turns as the target moves in azimuth relative to the
    dome and the field rotates on the alt-az mount's sensor. ``amp_*``: peak-to-peak sky change
    across the frame as a fraction of the sky (|gx| + |gy| of ``SubSpec.gradient``), which
    changes with the target's altitude. Each frame adds Gaussian jitter (``dir_jitter_deg``,
    and ``amp_jitter`` as a log-normal σ), and the amplitude is kept within ``amp_range``.
    """

    dir_start_deg: float
    dir_end_deg: float
    amp_start: float
    amp_end: float
    dir_jitter_deg: float = 4.0
    amp_jitter: float = 0.08
    amp_range: tuple[float, float] = (0.04, 0.12)

    def gradient(
        self, frac: float, rng: np.random.Generator, width: int, height: int
    ) -> tuple[float, float]:
        """``SubSpec.gradient`` (gx, gy) of the frame at ``frac`` (0 = first, 1 = last) of the
        session: a plane rising along the direction, peak-to-peak amplitude as documented."""
        phi = math.radians(
            self.dir_start_deg
            + (self.dir_end_deg - self.dir_start_deg) * frac
            + rng.normal(0.0, self.dir_jitter_deg)
        )
        amp = (self.amp_start + (self.amp_end - self.amp_start) * frac) * math.exp(
            rng.normal(0.0, self.amp_jitter)
        )
        amp = min(max(amp, self.amp_range[0]), self.amp_range[1])
        # per-pixel slope s with s·(w|cos φ| + h|sin φ|) = amp: peak-to-peak over the frame
        s = amp / (width * abs(math.cos(phi)) + height * abs(math.sin(phi)))
        return round(s * math.cos(phi) * width, 6), round(s * math.sin(phi) * height, 6)


def gradient_summary(spec: SubSpec) -> dict:
    """Peak-to-peak fraction of the sky across the frame and direction on the sensor [deg, 0 =
    +x, 90 = +y] of a frame's linear sky gradient."""
    gx, gy = spec.gradient
    direction = math.degrees(math.atan2(gy / spec.height, gx / spec.width))
    return {"gradient_pp": round(abs(gx) + abs(gy), 6), "gradient_dir_deg": round(direction, 3)}


@dataclass
class Session:
    """One night (or one mosaic panel) of frames: geometry, conditions and camera unit.

    ``gradient`` is every frame's (gx, gy) unless a ``dome`` scripts it frame by frame.
    """

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
    dome: Dome | None = None

    def sky_signal(self) -> tuple[float, float, float]:
        """Per-channel sky above the pedestal reproducing the total G/R, G/B ratios."""
        g = self.sky_total_g
        return (g / self.g_over_r - PEDESTAL, g - PEDESTAL, g / self.g_over_b - PEDESTAL)

    def to_dict(self) -> dict:
        """The manifest's record; no ``dome`` key without a dome (older manifests unchanged)."""
        d = asdict(self)
        if self.dome is None:
            del d["dome"]
        return d


UNITS = [
    ("S50_5im0a001", "4.27", 33.0, -79.8, 1555),
    ("S50_5im0b002", "4.43", 44.7, -0.6, 1655),
    ("S50_5im0c003", "4.47", 48.1, 11.6, 1610),
]


def sessions_sds() -> list[Session]:
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


def sessions_mosaic(rng: np.random.Generator) -> list[Session]:
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


def sessions_tiny() -> list[Session]:
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


def sessions_dome() -> list[Session]:
    """Two sessions of one light-polluted night (presets ``gradients`` and ``nebula``).

    The dome's direction on the sensor turns by 45-50° through each session and the second
    session starts where the target has moved on (directions 25-70° then 100-150°); its
    strength falls from 11.5 % to 7 % of the sky as the target climbs, then rises from 5 % to
    9 % as it sinks towards the dome. Geometry and seeing as sds-nights' night1/night2.
    """
    night1, night2 = sessions_sds()[:2]
    return [
        replace(night1, name="dusk", fwhm_px=3.4, dome=Dome(25.0, 70.0, 0.115, 0.07)),
        replace(
            night2,
            name="late",
            transparency=0.92,
            sky_total_g=PEDESTAL + 0.9 * (996.0 - PEDESTAL),
            fwhm_px=4.2,
            dome=Dome(100.0, 150.0, 0.05, 0.09),
        ),
    ]


def bad_frames(n: int) -> dict[tuple[int, int], str]:
    """(session index, frame index) → flag, for sds-nights."""
    return {
        (0, n // 2): "cloudy",
        (1, n // 2): "blurred",
        (2, (n - 1) // 2): "trail",
        (2, n - 1): "black",
    }


def apply_flag(spec: SubSpec, flag: str, rng: np.random.Generator) -> None:
    """Make ``spec`` a bad frame of kind ``flag`` (cloudy, blurred, trail, black)."""
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


def hot_pixels(seed: int, unit: int, w: int, h: int) -> list[tuple[int, int, float]]:
    """The camera unit's hot pixels (x, y, ADU added), the same in every frame of the unit."""
    rng = np.random.default_rng([seed, 7001, unit])
    n = max(3, int(12 * w * h / (1080 * 1920)))
    xs, ys = rng.integers(0, w, n), rng.integers(0, h, n)
    levels = rng.uniform(2000.0, 40000.0, n)
    return [(int(x), int(y), round(float(v), 1)) for x, y, v in zip(xs, ys, levels)]
