"""Standard FITS header cards of the final image, read by Siril, PixInsight and photometry tools.

The pixel values are "ADU per sub-exposure after normalisation": every frame is scaled to the
reference's photometric level, so the image reads like one (very clean) sub-exposure. Hence:

- ``EXPTIME`` [s] is the sub-exposure time the values are scaled to: the median exposure of
  the frames used. A tool that divides by EXPTIME gets ADU/s of the stack.
- ``TOTALEXP`` [s] (and Siril's ``LIVETIME``) is the sum of the exposures of the frames used:
  the integration time of the stack. ``NCOMBINE`` (and Siril's ``STACKCNT``) is their count.
- ``DATE-OBS`` is the start of the first frame used, ``DATE-END`` the end of the last one
  (its start + its exposure), both ISO 8601 UTC; ``MJD-OBS`` is DATE-OBS as MJD.
- ``OBJECT`` is the frames' most common OBJECT; ``TELESCOP``, ``INSTRUME`` and ``FILTER``
  list every distinct value seen, most common first, joined with ", ".
- ``PIXSCALE`` [arcsec/px] is the output grid's scale; ``XPIXSZ``/``YPIXSZ`` [µm] the
  sensor's pixel size and ``FOCALLEN`` [mm] the *effective* focal length that turns that
  pixel size into the output scale (pixel µm × 206.265 / PIXSCALE), so tools deriving the
  scale from FOCALLEN and XPIXSZ get the output grid's, not the sensor's.

A key the frames do not carry is left out rather than written with a made-up value.
"""

from __future__ import annotations

import math
from collections import Counter

import astropy.units as u
import numpy as np
from astropy.time import Time

from supadupstack.frames.model import Frame

ARCSEC_PER_RAD_OVER_1000 = 206.264806  # arcsec per radian / 1000: µm / mm → arcsec


def observation_cards(used: list[Frame], scale_arcsec: float | None) -> dict[str, tuple]:
    """The standard cards for the frames used and the output pixel scale [arcsec/px]."""
    cards: dict[str, tuple] = {"NCOMBINE": (len(used), "number of frames combined")}
    cards["STACKCNT"] = (len(used), "number of frames combined (Siril)")
    cards.update(time_cards(used))
    cards.update(exposure_cards(used))
    cards.update(name_cards(used))
    cards.update(optics_cards(used, scale_arcsec))
    return cards


def time_cards(used: list[Frame]) -> dict[str, tuple]:
    """DATE-OBS / MJD-OBS (start of the first frame) and DATE-END (end of the last frame).

    DATE-END is written only when every dated frame has an exposure (else the true end is
    unknown). Times are astropy ``Time`` sums (two doubles): no rounding through an MJD float.
    """
    dated = [f for f in used if f.mjd_obs is not None and f.date_obs]
    if not dated:
        return {}
    first = min(dated, key=lambda f: (f.mjd_obs, f.date_obs))
    cards = {
        "DATE-OBS": (first.date_obs, "[UTC] start of the first frame used"),
        "MJD-OBS": (float(first.mjd_obs), "[d] DATE-OBS as MJD (UTC)"),
    }
    if all(f.exposure_s is not None for f in dated):
        starts = Time([f.date_obs for f in dated], format="isot", scale="utc")
        ends = starts + np.array([f.exposure_s for f in dated], np.float64) * u.s
        last = ends[int(np.argmax(ends.mjd))]
        cards["DATE-END"] = (last.isot, "[UTC] end of the last frame used")
    return cards


def exposure_cards(used: list[Frame]) -> dict[str, tuple]:
    """EXPTIME (median sub-exposure, the scale of the pixel values) and TOTALEXP / LIVETIME
    (sum of exposures); the sum only when every frame used has a known exposure [s]."""
    known = [float(f.exposure_s) for f in used if f.exposure_s is not None]
    if not known:
        return {}
    cards = {
        "EXPTIME": (float(np.median(known)), "[s] sub-exposure the pixel values are scaled to")
    }
    if len(known) == len(used):
        total = float(sum(known))
        cards["TOTALEXP"] = (total, "[s] total exposure of frames used")
        cards["LIVETIME"] = (total, "[s] total exposure of frames used (Siril)")
    return cards


def name_cards(used: list[Frame]) -> dict[str, tuple]:
    """OBJECT (most common, every distinct one in a HISTORY card when there are several),
    TELESCOP, INSTRUME and FILTER (every distinct value, most common first)."""
    cards: dict[str, tuple] = {}
    objects = distinct([f.object_name for f in used])
    if objects:
        cards["OBJECT"] = (objects[0][0], "most common OBJECT of the frames used")
    if len(objects) > 1:
        listed = ", ".join(f"{name} ({n})" for name, n in objects)
        cards["HISTORY"] = (f"OBJECT of the frames used (frames): {listed}", "")
    for key, attr, what in NAMED:
        values = distinct([getattr(f, attr) for f in used])
        if values:
            cards[key] = (", ".join(v for v, _ in values), f"{what} of the frames used")
    return cards


NAMED = (
    ("TELESCOP", "telescope", "telescope(s)"),
    ("INSTRUME", "instrument", "instrument(s)"),
    ("FILTER", "filter_name", "filter(s)"),
)


def distinct(values: list[str | None]) -> list[tuple[str, int]]:
    """(value, count) of the non-empty values, most common first (ties: first seen first)."""
    return Counter(v.strip() for v in values if v and v.strip()).most_common()


def optics_cards(used: list[Frame], scale_arcsec: float | None) -> dict[str, tuple]:
    """PIXSCALE [arcsec/px] of the output grid; XPIXSZ/YPIXSZ [µm] (median of the frames')
    and the effective FOCALLEN [mm] giving PIXSCALE with that pixel size."""
    cards: dict[str, tuple] = {}
    if scale_arcsec is None or not math.isfinite(scale_arcsec) or scale_arcsec <= 0:
        return cards
    cards["PIXSCALE"] = (round(scale_arcsec, 6), "[arcsec/px] output pixel scale")
    sizes = [float(f.pixel_um) for f in used if f.pixel_um and f.pixel_um > 0]
    if sizes:
        pixel_um = float(np.median(sizes))
        cards["XPIXSZ"] = (pixel_um, "[um] sensor pixel size")
        cards["YPIXSZ"] = (pixel_um, "[um] sensor pixel size")
        focal = pixel_um * ARCSEC_PER_RAD_OVER_1000 / scale_arcsec
        cards["FOCALLEN"] = (round(focal, 3), "[mm] effective: XPIXSZ*206.265/PIXSCALE")
    return cards
