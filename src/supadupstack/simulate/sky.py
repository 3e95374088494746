"""The simulated sky: a star catalogue, an extended object, and rendering them onto any WCS grid.

Units: positions in degrees (ICRS/J2000), fluxes in ADU per 10 s sub-exposure at transparency
1.0 (what a Seestar S50 records, before the pedestal and noise). A star's ``flux[c]`` is its
total flux in the full-resolution colour-c image, i.e. the sum over all pixels if every pixel had
filter c. Rendering uses the same code for frames and for the truth grid, so a frame resampled
onto the truth grid must reproduce the truth image (up to resampling error).

Stars are drawn by stamping small PSF cut-outs (Moffat by default), never by evaluating each
star over the whole frame, so a full 1080x1920 frame renders in a few milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from astropy.wcs import WCS

if TYPE_CHECKING:
    from supadupstack.simulate.nebula import Nebula

# Colour index (0=R, 1=G, 2=B) of each position of a 2x2 CFA cell, numpy row 0 first.
CFA_INDEX = {
    "GRBG": np.array([[1, 0], [2, 1]]),
    "RGGB": np.array([[0, 1], [1, 2]]),
    "BGGR": np.array([[2, 1], [1, 0]]),
    "GBRG": np.array([[1, 2], [0, 1]]),
}


@dataclass
class StarCatalogue:
    """Stars of the simulated field: ``ra``, ``dec`` [deg] (N,), ``flux`` (N, 3) R,G,B [ADU/sub]."""

    ra: np.ndarray
    dec: np.ndarray
    flux: np.ndarray

    def __len__(self) -> int:
        return int(self.ra.size)

    def write_csv(self, path: Path) -> None:
        """Plain CSV (id, ra, dec, flux_r, flux_g, flux_b), byte-stable for a given catalogue."""
        lines = ["id,ra_deg,dec_deg,flux_r_adu,flux_g_adu,flux_b_adu"]
        for i in range(len(self)):
            f = self.flux[i]
            lines.append(f"{i},{self.ra[i]:.9f},{self.dec[i]:.9f},{f[0]:.4f},{f[1]:.4f},{f[2]:.4f}")
        path.write_text("\n".join(lines) + "\n")

    @classmethod
    def read_csv(cls, path: Path) -> StarCatalogue:
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        return cls(ra=data[:, 1], dec=data[:, 2], flux=data[:, 3:6].copy())


@dataclass
class Galaxy:
    """A two-component (Sérsic bulge + exponential disk) galaxy.

    Sizes in arcsec, position angle in degrees E of N, surface brightness in ADU per pixel of
    ``pixel_arcsec`` at the effective radius (G channel); ``colour`` = (R/G, 1, B/G).
    """

    ra: float
    dec: float
    bulge_re_arcsec: float = 25.0
    bulge_n: float = 2.5
    bulge_ie_adu: float = 250.0
    disk_re_arcsec: float = 95.0
    disk_ie_adu: float = 60.0
    axis_ratio: float = 0.7
    pa_deg: float = 30.0
    colour: tuple[float, float, float] = (0.9, 1.0, 0.65)
    pixel_arcsec: float = 2.38

    def to_dict(self) -> dict:
        d = asdict(self)
        d["colour"] = list(self.colour)
        return d

    def extent_arcsec(self) -> float:
        """Radius beyond which the profile is below ~0.1 ADU/px (render box half-size)."""
        return 7.0 * self.disk_re_arcsec

    def surface_brightness(self, xi: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """G-channel ADU/px at tangent-plane offsets (xi east, eta north) in arcsec."""
        pa = math.radians(self.pa_deg)
        major = xi * math.sin(pa) + eta * math.cos(pa)
        minor = xi * math.cos(pa) - eta * math.sin(pa)
        r = np.sqrt(major**2 + (minor / self.axis_ratio) ** 2 + (0.5 * self.pixel_arcsec) ** 2)
        bn = 2.0 * self.bulge_n - 1.0 / 3.0
        bulge = self.bulge_ie_adu * np.exp(
            -bn * ((r / self.bulge_re_arcsec) ** (1.0 / self.bulge_n) - 1.0)
        )
        disk = self.disk_ie_adu * np.exp(-1.678 * (r / self.disk_re_arcsec - 1.0))
        return (bulge + disk).astype(np.float32)


def make_catalogue(
    rng: np.random.Generator,
    ra0: float,
    dec0: float,
    half_size_deg: float,
    density_per_deg2: float = 300.0,
    flux_min_adu: float = 1500.0,
    flux_max_adu: float = 1.5e6,
    slope: float = 0.75,
) -> StarCatalogue:
    """Uniform star field with a power-law luminosity function N(>F) ∝ F^-slope.

    ``slope`` = 0.75 is the Euclidean-like count slope seen at high galactic latitude
    (d log N / dm ≈ 0.3). ``density_per_deg2`` counts stars brighter than ``flux_min_adu``
    (G channel). The defaults give about 20-35 stars with SNR > 10 per Seestar 10 s sub.
    """
    area = (2 * half_size_deg) ** 2
    n = int(rng.poisson(density_per_deg2 * area))
    xi = rng.uniform(-half_size_deg, half_size_deg, n)
    eta = rng.uniform(-half_size_deg, half_size_deg, n)
    u = rng.uniform(0.0, 1.0, n)
    lo = flux_min_adu**-slope
    hi = flux_max_adu**-slope
    g = (lo - u * (lo - hi)) ** (-1.0 / slope)
    r_over_g = 10 ** (-0.4 * rng.normal(0.15, 0.25, n))
    b_over_g = 10 ** (-0.4 * rng.normal(0.45, 0.3, n))
    flux = np.stack([g * r_over_g, g, g * b_over_g], axis=1)
    ra, dec = tangent_to_sky(ra0, dec0, xi, eta)
    return StarCatalogue(ra=ra, dec=dec, flux=flux)


def tangent_to_sky(ra0: float, dec0: float, xi: np.ndarray, eta: np.ndarray):
    """Gnomonic de-projection: offsets (xi east, eta north) [deg] around (ra0, dec0) → ra, dec."""
    x, y = np.radians(xi), np.radians(eta)
    d0, a0 = math.radians(dec0), math.radians(ra0)
    denom = math.cos(d0) - y * math.sin(d0)
    ra = a0 + np.arctan2(x, denom)
    dec = np.arctan2(math.sin(d0) + y * math.cos(d0), np.hypot(x, denom))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def gnomonic(ra, dec, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Tangent-plane offsets (xi east, eta north; degrees) of (ra, dec) around (ra0, dec0),
    by astropy's TAN projection: the simulator stays an oracle independent of the pipeline's
    own projection code."""
    tan = WCS(naxis=2)
    tan.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    tan.wcs.crval = [ra0, dec0]
    tan.wcs.crpix = [1.0, 1.0]  # 0-based pixel (0, 0) = tangent point
    tan.wcs.cdelt = [1.0, 1.0]  # one "pixel" per degree of intermediate coordinate
    xi, eta = tan.wcs_world2pix(np.asarray(ra, np.float64), np.asarray(dec, np.float64), 0)
    return xi, eta


def moffat_alpha(fwhm_px: float, beta: float) -> float:
    return fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _stamps(dx: np.ndarray, dy: np.ndarray, half: int, fwhm: float, beta: float) -> np.ndarray:
    """(N, 2h+1, 2h+1) PSF stamps sampled at pixel centres, normalised to unit infinite sum."""
    g = np.arange(-half, half + 1, dtype=np.float64)
    xx = g[None, None, :] - dx[:, None, None]
    yy = g[None, :, None] - dy[:, None, None]
    r2 = xx * xx + yy * yy
    if beta <= 0:  # Gaussian
        s2 = (fwhm / 2.3548200450309493) ** 2
        return np.exp(-0.5 * r2 / s2) / (2 * math.pi * s2)
    alpha = moffat_alpha(fwhm, beta)
    return (beta - 1.0) / (math.pi * alpha**2) * (1.0 + r2 / alpha**2) ** (-beta)


def _colour_map(pattern: str | None, shape: tuple[int, int], y0: int, x0: int) -> np.ndarray:
    """CFA colour index of pixels [y0:y0+h, x0:x0+w] (h, w = shape)."""
    cell = CFA_INDEX[pattern]
    yy = (np.arange(shape[0]) + y0) % 2
    xx = (np.arange(shape[1]) + x0) % 2
    return cell[yy[:, None], xx[None, :]]


def render(
    wcs: WCS,
    shape: tuple[int, int],
    stars: StarCatalogue,
    galaxy: Galaxy | None,
    fwhm_px: float,
    psf_beta: float = 3.0,
    scale: float | tuple[float, float, float] = 1.0,
    pattern: str | None = None,
    nebula: Nebula | None = None,
) -> np.ndarray:
    """Noise-free signal [ADU] of stars, galaxy and nebula on a pixel grid, without sky.

    ``pattern`` None → (3, H, W) full-resolution R, G, B planes; a Bayer pattern → (H, W) CFA
    mosaic where each pixel holds only its own colour. ``scale`` multiplies everything
    (transparency): one factor, or one per channel (R, G, B: a colour change). Galaxy surface
    brightness is converted to this grid's pixel area. ``nebula``: a ``nebula.Nebula`` or None.
    """
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (3,))
    h, w = shape
    out = np.zeros((h, w) if pattern else (3, h, w), dtype=np.float32)
    if len(stars):
        _render_stars(out, wcs, stars, fwhm_px, psf_beta, scale, pattern)
    if galaxy is not None:
        _render_galaxy(out, wcs, galaxy, scale, pattern)
    if nebula is not None:
        nebula.render_into(out, wcs, scale, pattern)
    return out


def _render_stars(out, wcs, stars, fwhm, beta, scale, pattern) -> None:
    h, w = out.shape[-2:]
    x, y = wcs.all_world2pix(stars.ra, stars.dec, 0)
    base = int(math.ceil(4.0 * fwhm))
    big = int(math.ceil(12.0 * fwhm))
    reach = np.where(stars.flux[:, 1] * scale[1] > 2.0e5, big, base)
    inside = (x > -reach) & (x < w - 1 + reach) & (y > -reach) & (y < h - 1 + reach)
    for half in (base, big):
        sel = np.nonzero(inside & (reach == half))[0]
        if sel.size == 0:
            continue
        xi = np.rint(x[sel]).astype(int)
        yi = np.rint(y[sel]).astype(int)
        stamps = _stamps(x[sel] - xi, y[sel] - yi, half, fwhm, beta).astype(np.float32)
        flux = (stars.flux[sel] * scale).astype(np.float32)
        for k in range(sel.size):
            y0, x0 = yi[k] - half, xi[k] - half
            ya, yb = max(y0, 0), min(y0 + 2 * half + 1, h)
            xa, xb = max(x0, 0), min(x0 + 2 * half + 1, w)
            if ya >= yb or xa >= xb:
                continue
            st = stamps[k, ya - y0 : yb - y0, xa - x0 : xb - x0]
            if pattern:
                cmap = _colour_map(pattern, st.shape, ya, xa)
                out[ya:yb, xa:xb] += st * flux[k][cmap]
            else:
                out[:, ya:yb, xa:xb] += st[None] * flux[k][:, None, None]


def _render_galaxy(out, wcs: WCS, gal: Galaxy, scale: float, pattern) -> None:
    h, w = out.shape[-2:]
    xc, yc = wcs.all_world2pix([gal.ra], [gal.dec], 0)
    pix_arcsec = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600.0
    half = int(math.ceil(gal.extent_arcsec() / pix_arcsec))
    xa, xb = max(int(xc[0]) - half, 0), min(int(xc[0]) + half + 1, w)
    ya, yb = max(int(yc[0]) - half, 0), min(int(yc[0]) + half + 1, h)
    if xa >= xb or ya >= yb:
        return
    gy, gx = np.mgrid[ya:yb, xa:xb]
    ra, dec = wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
    xi, eta = gnomonic(ra, dec, gal.ra, gal.dec)
    sb = gal.surface_brightness(xi * 3600.0, eta * 3600.0).reshape(gy.shape)
    sb *= np.float32((pix_arcsec / gal.pixel_arcsec) ** 2)
    colour = np.asarray(gal.colour, dtype=np.float32) * scale.astype(np.float32)
    if pattern:
        out[ya:yb, xa:xb] += sb * colour[_colour_map(pattern, sb.shape, ya, xa)]
    else:
        out[:, ya:yb, xa:xb] += sb[None] * colour[:, None, None]
