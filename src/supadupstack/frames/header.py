"""Header facts of Seestar and generic FITS frames (DESIGN §3.1).

Seestar writes RA/DEC of the target in JNow (equinox of date); ``precess_to_j2000`` moves them
to J2000 so they can serve as a plate-solving hint.
"""

from __future__ import annotations

import math
import warnings

from astropy import units as u
from astropy.coordinates import FK5, SkyCoord
from astropy.io import fits
from astropy.time import Time

BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")


def header_float(header: fits.Header, *keys: str) -> float | None:
    """First of ``keys`` present with a finite numeric value."""
    for key in keys:
        value = header.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(float(value)):
            return float(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                continue
            if math.isfinite(f):
                return f
    return None


MAX_EXPOSURE_S = 86400.0


def exposure_s(header: fits.Header) -> float | None:
    """EXPTIME/EXPOSURE in seconds when plausible (0 < t ≤ a day), else None (unknown)."""
    t = header_float(header, "EXPTIME", "EXPOSURE")
    return t if t is not None and 0 < t <= MAX_EXPOSURE_S else None


def header_str(header: fits.Header, *keys: str) -> str | None:
    for key in keys:
        value = header.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def bayer_pattern(header: fits.Header) -> str | None:
    """The CFA pattern (applies to numpy row 0) or None; unknown values are ignored."""
    value = header_str(header, "BAYERPAT", "COLORTYP")
    if value and value.upper() in BAYER_PATTERNS:
        return value.upper()
    return None


DATE_YEARS = (1900, 2200)  # a DATE-OBS outside is a clock or header error: date unknown


def parse_date_obs(header: fits.Header) -> tuple[str | None, float | None]:
    """DATE-OBS as ISO UTC string and MJD; (None, None) when absent, unparsable or outside
    the years 1900–2200."""
    value = header_str(header, "DATE-OBS", "DATE_OBS")
    if not value or len(value) > 64:
        return None, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ERFA "dubious year" for odd dates
            t = Time(value, format="isot", scale="utc")
            year = int(t.ymdhms.year)
            if not DATE_YEARS[0] <= year <= DATE_YEARS[1]:
                return None, None
            return t.isot, float(t.mjd)
    except (ValueError, TypeError, OverflowError):
        return None, None


def is_seestar(header: fits.Header) -> bool:
    text = " ".join(str(header.get(k, "")) for k in ("CREATOR", "INSTRUME", "TELESCOP"))
    return "seestar" in text.lower() or str(header.get("TELESCOP", "")).startswith("S50_")


def precess_to_j2000(ra_deg: float, dec_deg: float, date_iso: str | None) -> tuple[float, float]:
    """Precess an equinox-of-date (JNow) position to J2000 (FK5). Degrees in, degrees out."""
    if not date_iso:
        return ra_deg, dec_deg
    equinox = Time(date_iso, scale="utc")
    c = SkyCoord(ra_deg * u.deg, dec_deg * u.deg, frame=FK5(equinox=equinox))
    j = c.transform_to(FK5(equinox="J2000"))
    return float(j.ra.deg), float(j.dec.deg)


def pointing_hint(header: fits.Header, date_iso: str | None) -> tuple[float | None, ...]:
    """(ra_header, dec_header, ra_hint_j2000, dec_hint_j2000) from RA/DEC-like keys.

    Seestar frames and frames with ``EQUINOX`` other than 2000 are precessed; others are
    taken as J2000.
    """
    ra = header_float(header, "RA", "OBJCTRA_DEG", "CRVAL1_HINT")
    dec = header_float(header, "DEC", "OBJCTDEC_DEG")
    if ra is None or dec is None or not (-90 <= dec <= 90):
        return None, None, None, None
    equinox = header_float(header, "EQUINOX")
    jnow = is_seestar(header) or (equinox is not None and abs(equinox - 2000.0) > 0.01)
    if jnow:
        ra_j, dec_j = precess_to_j2000(ra % 360.0, dec, date_iso)
    else:
        ra_j, dec_j = ra % 360.0, dec
    return ra, dec, ra_j, dec_j
