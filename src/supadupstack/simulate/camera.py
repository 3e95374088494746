"""A Seestar S50-like camera: WCS of a pointing, one raw GRBG sub, its FITS header and file.

Camera model (fitted to the real subs in ../shared/seestar_real, see tests/test_simulate.py):
raw ADU = pedestal + Poisson(electrons) * adu_per_e + read noise, with 15.1 ADU per electron
(gain 0.066 e-/ADU: the real sky variance grows as 15.1 x (sky - 446 ADU) in every channel),
pedestal 468 ADU and read noise 18 ADU (1.2 e-). The sky has a per-channel level (green excess
like the real frames), a linear gradient, and the stars/galaxy are scaled by the transparency.
All parameters are per frame (``SubSpec``), so presets can script sessions and bad frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from astropy import units as u
from astropy.coordinates import FK5, SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from supadupstack.simulate.sky import Galaxy, StarCatalogue, render

if TYPE_CHECKING:
    from supadupstack.simulate.nebula import Nebula

PIXEL_ARCSEC = 2.38
FOCAL_MM = 250
PIXEL_UM = 2.9
ADU_PER_E = 15.1
PEDESTAL_ADU = 468.0
READ_NOISE_ADU = 18.0
PSF_BETA = 3.0  # Moffat β of real seeing-limited stars (2.5-4); 0 renders Gaussians


@dataclass
class Trail:
    """A satellite trail: endpoints in frame pixels (0-based x, y), peak ADU, Gaussian sigma px."""

    x0: float
    y0: float
    x1: float
    y1: float
    peak_adu: float = 1500.0
    sigma_px: float = 1.2


@dataclass
class SubSpec:
    """Everything that defines one simulated sub (deterministic given ``seed``).

    ``up_deg``: "up is ... degrees E of N" (astrometry.net's convention); the WCS has the
    mirrored parity of raw Seestar frames. ``sky_adu``: sky signal (R, G, B) above the pedestal
    at the frame centre; ``gradient``: fractional sky change per frame width/height (gx, gy).
    ``colour``: per-channel factors on the transparency (R, G, B), e.g. the differential
    extinction of a night at another airmass.
    """

    width: int
    height: int
    ra: float
    dec: float
    up_deg: float
    date_obs: str
    exptime: float = 10.0
    fwhm_px: float = 3.7
    psf_beta: float = PSF_BETA
    transparency: float = 1.0
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel extinction factors
    sky_adu: tuple[float, float, float] = (374.0, 528.0, 326.0)
    gradient: tuple[float, float] = (0.0, 0.0)
    pedestal_adu: float = PEDESTAL_ADU
    read_noise_adu: float = READ_NOISE_ADU
    adu_per_e: float = ADU_PER_E
    hot_pixels: list[tuple[int, int, float]] = field(default_factory=list)
    trail: Trail | None = None
    seed: int = 0
    # header facts
    object_name: str = "SIM"
    target_ra: float = 0.0
    target_dec: float = 0.0
    telescope: str = "S50_5im00001"
    program: str = "4.27"
    ccd_temp: float = 20.0
    site_lat: float = 45.0
    site_lon: float = 5.0
    focuspos: int = 1600
    tz_hours: float = 0.0


def frame_wcs(
    ra: float, dec: float, up_deg: float, width: int, height: int, scale_arcsec=PIXEL_ARCSEC
) -> WCS:
    """TAN WCS centred on the frame, mirrored parity like raw Seestar subs.

    CD = s·[[cos u, sin u], [−sin u, cos u]] reproduces astrometry.net's solutions of real
    frames (e.g. up = −178.72° → CD1_1 ≈ CD2_2 ≈ −s, CD1_2 ≈ −CD2_1 < 0).
    """
    s = scale_arcsec / 3600.0
    t = math.radians(up_deg)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra % 360.0, dec]
    w.wcs.crpix = [(width + 1) / 2.0, (height + 1) / 2.0]
    w.wcs.cd = [[s * math.cos(t), s * math.sin(t)], [-s * math.sin(t), s * math.cos(t)]]
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    w.pixel_shape = (width, height)
    return w


def sidecar_header(wcs: WCS, width: int, height: int) -> fits.Header:
    """An astrometry.net-like ``.wcs`` header (no data) for the true WCS."""
    h = fits.Header()
    h["SIMPLE"] = True
    h["BITPIX"] = 8
    h["NAXIS"] = 0
    h["EXTEND"] = True
    h.update(wcs.to_header(relax=True))
    for key in ("DATE-OBS", "MJD-OBS", "DATEREF", "MJDREFI", "MJDREFF", "CDELT1", "CDELT2"):
        h.remove(key, ignore_missing=True, remove_all=True)
    cd = wcs.pixel_scale_matrix
    for i in (1, 2):
        for j in (1, 2):
            h.remove(f"PC{i}_{j}", ignore_missing=True)
            h[f"CD{i}_{j}"] = (float(cd[i - 1, j - 1]), "Transformation matrix")
    h["IMAGEW"] = (width, "Image width,  in pixels.")
    h["IMAGEH"] = (height, "Image height, in pixels.")
    h["HISTORY"] = "True WCS written by the supadupstack simulator."
    return h


def jnow(ra: float, dec: float, date_obs: str) -> tuple[float, float]:
    """J2000 → equinox of date (FK5), as the Seestar writes its RA/DEC header keys."""
    c = SkyCoord(ra * u.deg, dec * u.deg, frame=FK5(equinox="J2000"))
    d = c.transform_to(FK5(equinox=Time(date_obs, scale="utc")))
    return float(d.ra.deg), float(d.dec.deg)


def file_stamp(spec: SubSpec) -> str:
    """Local save time (DATE-OBS + EXPTIME + 2.5 s, in the site's time zone) as yyyymmdd-hhmmss."""
    t = Time(spec.date_obs, scale="utc") + (spec.exptime + 2.5 + 3600.0 * spec.tz_hours) * u.s
    return t.to_datetime().strftime("%Y%m%d-%H%M%S")


def sub_header(spec: SubSpec) -> fits.Header:
    """The header cards of a real Seestar S50 raw sub, in the same order (no WCS keys)."""
    ra_now, dec_now = jnow(spec.target_ra, spec.target_dec, spec.date_obs)
    cards = [
        ("CREATOR", "ZWO Seestar S50", "Capture software"),
        ("PRODUCER", "ZWO", "Powered by ZWO"),
        ("XORGSUBF", 0, "Subframe X position in binned pixels"),
        ("YORGSUBF", 0, "Subframe Y position in binned pixels"),
        ("FOCALLEN", FOCAL_MM, "Focal length of telescope in mm"),
        ("APERTURE", 5.0, "Name of field of view aperture"),
        ("PROGRAM", spec.program, "The name of the software task that created the"),
        ("XBINNING", 1, "Camera X Bin"),
        ("YBINNING", 1, "Camera Y Bin"),
        ("CCDXBIN", 1, "Camera X Bin"),
        ("CCDYBIN", 1, "Camera Y Bin"),
        ("XPIXSZ", PIXEL_UM, "pixel size in microns (with binning)"),
        ("YPIXSZ", PIXEL_UM, "pixel size in microns (with binning)"),
        ("IMAGETYP", "Light", "Type of image"),
        ("EXPOSURE", spec.exptime, "Exposure time in seconds"),
        ("EXPTIME", spec.exptime, "Exposure time in seconds"),
        ("CCD-TEMP", spec.ccd_temp, "sensor temperature in C"),
        ("RA", round(ra_now, 6), "Object Right Ascension in degrees"),
        ("DEC", round(dec_now, 6), "Object Declination in degrees"),
        ("SITELONG", spec.site_lon, "longitude of the imaging site in degrees"),
        ("SITELAT", spec.site_lat, "latitude of the imaging site in degrees"),
        ("DATE-OBS", spec.date_obs, "Image created time"),
        ("FILTER", "IRCUT", "Filter used when taking image"),
        ("INSTRUME", "Seestar S50", "Camera model"),
        ("BAYERPAT", "GRBG", "Bayer pattern"),
        ("GAIN", 80, "Gain Value"),
        ("FOCUSPOS", spec.focuspos, "Focuser position in steps"),
        ("TELESCOP", spec.telescope, "Telescope name"),
        ("OBJECT", spec.object_name, "name or catalog number of object being imaged"),
        ("TOTALEXP", spec.exptime, "Total Exposure Time in seconds"),
    ]
    h = fits.Header()
    for key, value, comment in cards:
        h[key] = (value, comment)
    return h


def sky_plane(spec: SubSpec) -> np.ndarray:
    """Sky signal (H, W) float32 in ADU above the pedestal, CFA-sampled (GRBG)."""
    h, w = spec.height, spec.width
    gx, gy = spec.gradient
    fx = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / w * gx
    fy = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / h * gy
    plane = 1.0 + fy[:, None] + fx[None, :]
    r, g, b = (np.float32(v) for v in spec.sky_adu)
    plane[0::2, 0::2] *= g
    plane[0::2, 1::2] *= r
    plane[1::2, 0::2] *= b
    plane[1::2, 1::2] *= g
    return plane


def trail_plane(spec: SubSpec, shape: tuple[int, int]) -> np.ndarray | None:
    """The trail's signal (H, W) [ADU], or None; same value in every CFA colour."""
    t = spec.trail
    if t is None:
        return None
    h, w = shape
    dx, dy = t.x1 - t.x0, t.y1 - t.y0
    length = math.hypot(dx, dy)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = np.abs((xx - t.x0) * dy - (yy - t.y0) * dx) / length
    return (t.peak_adu * np.exp(-0.5 * (dist / t.sigma_px) ** 2)).astype(np.float32)


def signal_cfa(
    spec: SubSpec, stars: StarCatalogue, galaxy: Galaxy | None, nebula: Nebula | None = None
) -> np.ndarray:
    """Noise-free CFA frame (H, W) float32 in ADU: stars + galaxy + nebula (× transparency) +
    sky + trail. No pedestal, noise or hot pixels.
    """
    wcs = frame_wcs(spec.ra, spec.dec, spec.up_deg, spec.width, spec.height)
    shape = (spec.height, spec.width)
    scale = tuple(spec.transparency * c for c in spec.colour)
    img = render(wcs, shape, stars, galaxy, spec.fwhm_px, spec.psf_beta, scale, "GRBG", nebula)
    img += sky_plane(spec)
    trail = trail_plane(spec, shape)
    if trail is not None:
        img += trail
    return img


def raw_sub(
    spec: SubSpec, stars: StarCatalogue, galaxy: Galaxy | None, nebula: Nebula | None = None
) -> np.ndarray:
    """The raw uint16 sub (H, W): Poisson electrons, read noise, pedestal, hot pixels, clipping.

    ``nebula``: a ``nebula.Nebula`` (extended signal) or None."""
    rng = np.random.default_rng(spec.seed)
    signal = signal_cfa(spec, stars, galaxy, nebula)
    np.maximum(signal, 0.0, out=signal)
    electrons = rng.poisson(signal / np.float32(spec.adu_per_e)).astype(np.float32)
    adu = electrons * np.float32(spec.adu_per_e)
    adu += rng.standard_normal(adu.shape, dtype=np.float32) * np.float32(spec.read_noise_adu)
    adu += np.float32(spec.pedestal_adu)
    for x, y, level in spec.hot_pixels:
        if 0 <= y < spec.height and 0 <= x < spec.width:
            adu[y, x] += np.float32(level)
    np.clip(np.rint(adu), 0, 65535, out=adu)
    return adu.astype(np.uint16)


def write_sub(path: Path, data: np.ndarray, header: fits.Header) -> None:
    """Write a uint16 (H, W) sub as BITPIX 16 + BZERO 32768, structural cards as the Seestar's.

    Written by hand (header block + big-endian data, both padded to 2880 bytes) so the bytes
    depend only on the inputs and the card order matches the real files.
    """
    h, w = data.shape
    cards = [
        ("SIMPLE", True, "file does conform to FITS standard"),
        ("BITPIX", 16, "number of bits per data pixel"),
        ("NAXIS", 2, "number of data axes"),
        ("NAXIS1", w, "length of data axis 1"),
        ("NAXIS2", h, "length of data axis 2"),
        ("EXTEND", True, "FITS dataset may contain extensions"),
        ("COMMENT", "  FITS (Flexible Image Transport System) format is defined in 'Astronomy"),
        ("COMMENT", "  and Astrophysics', volume 376, page 359; bibcode: 2001A&A...376..359H"),
        ("BZERO", 32768, "offset data range to that of unsigned short"),
        ("BSCALE", 1, "default scaling factor"),
    ]
    full = fits.Header()
    for card in [*cards, *header.cards]:
        full.append(fits.Card(*card) if isinstance(card, tuple) else card, bottom=True)
    raw = (np.ascontiguousarray(data, dtype=np.uint16) ^ np.uint16(0x8000)).astype(">u2")
    body = raw.tobytes()
    pad = (-len(body)) % 2880
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(full.tostring().encode("ascii"))
        fh.write(body)
        fh.write(b"\0" * pad)
    tmp.replace(path)
