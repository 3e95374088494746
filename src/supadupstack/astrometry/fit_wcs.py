"""A frame's TAN-SIP WCS from stars it shares with an anchor frame (DESIGN §3.3).

The optical distortion of a Seestar is fixed to the sensor, so a frame of the same camera
carries the anchor's distortion at the same *pixel* positions: the registered WCS keeps the
anchor's reference pixel (CRPIX) and SIP polynomials (A, B, AP, BP) and fits only the linear
part, CD (scale, rotation, shear) and the tangent point CRVAL, to the matched stars:

    frame pixel q → u = q − crpix → g = u + SIP(u) → (ξ, η) = CD · g  → sky (TAN about CRVAL)

The sky position of each matched star comes from the anchor (its centroid through the anchor's
WCS). The fit is linear in the tangent plane of the current CRVAL; the plane's origin is moved
to the fitted reference point and the fit repeated until the shift is below 1e-9 px (3 rounds),
with 3σ clipping of pairs (never below 0.3 px) so a false pair cannot pull the solution.
Pairs are weighted by 1/σ², σ the expected centroid error of the pair: on real 10 s frames a
star of SNR 15 is placed to ~0.4 px, one of SNR 100 to ~0.1 px (seeing), so equal weights would
let the many faint stars set the solution.

Units: pixels are 0-based (astropy's origin 0), angles in degrees; residuals in frame pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS, Sip

from supadupstack.astrometry.wcs_sources import from_gnomonic, gnomonic

CLIP_SIGMA = 3.0
CLIP_FLOOR_PX = 0.3
MIN_PAIRS = 6


@dataclass(frozen=True)
class RegisteredWcs:
    """The fitted WCS and how well the stars support it."""

    wcs: WCS
    rms_px: float  # weighted rms residual of the pairs kept, in frame pixels
    n_stars: int  # pairs kept after clipping


def _linear_part(wcs: WCS) -> np.ndarray:
    """The 2×2 CD matrix (degrees per pixel) of a WCS given with CD or PC + CDELT."""
    w = wcs.wcs
    return np.array(w.cd if w.has_cd() else w.get_pc() * w.cdelt[:, None], dtype=np.float64)


def _undistort(anchor: WCS, xy: np.ndarray) -> np.ndarray:
    """g = u + SIP(u), u = xy − crpix: the anchor's distortion applied to frame pixels."""
    crpix = anchor.wcs.crpix - 1.0  # 0-based
    u = xy - crpix
    if anchor.sip is None:
        return u
    return u + _sip_offsets(anchor.sip, u)


def _sip_offsets(sip: Sip, u: np.ndarray) -> np.ndarray:
    """Forward SIP (A, B) offsets at pixel offsets ``u`` (N, 2) from the reference pixel."""
    out = np.zeros_like(u)
    for k, coeffs in enumerate((sip.a, sip.b)):
        order = coeffs.shape[0] - 1
        for p in range(order + 1):
            for q in range(order + 1 - p):
                if coeffs[p, q] != 0.0:
                    out[:, k] += coeffs[p, q] * u[:, 0] ** p * u[:, 1] ** q
    return out


def _fit_affine(g: np.ndarray, plane: np.ndarray, w: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Weighted least-squares M (2, 3) with plane ≈ M · [g, 1] over the kept pairs (3×3 normal
    equations in float64: no threaded LAPACK, the same bits on every backend)."""
    design = np.column_stack([g[keep], np.ones(int(keep.sum()))])
    weighted = design * w[keep, None]
    return np.linalg.solve(weighted.T @ design, weighted.T @ plane[keep]).T


def _build(anchor: WCS, cd: np.ndarray, crval: tuple[float, float], shape) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"] if anchor.sip else ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = anchor.wcs.crpix
    wcs.wcs.cd = cd
    wcs.wcs.crval = crval
    wcs.wcs.radesys = anchor.wcs.radesys or "ICRS"
    if anchor.wcs.radesys == "FK5":
        wcs.wcs.equinox = anchor.wcs.equinox
    if anchor.sip is not None:
        s = anchor.sip
        wcs.sip = Sip(s.a, s.b, s.ap, s.bp, s.crpix)
    wcs.pixel_shape = shape
    wcs.wcs.set()
    return wcs


def fit_registered_wcs(
    anchor: WCS,
    anchor_xy: np.ndarray,
    frame_xy: np.ndarray,
    shape: tuple[int, int],
    start_crval: tuple[float, float] | None = None,
    sigma_px: np.ndarray | None = None,
) -> RegisteredWcs | None:
    """The frame's WCS from matched star pairs (row i of ``anchor_xy`` ↔ row i of
    ``frame_xy``, pixels). ``shape`` = (width, height) of the frame. ``start_crval`` is a first
    guess of the sky position of the frame's reference pixel (default: the anchor's CRVAL);
    ``sigma_px`` the expected error of each pair (default: equal). None when fewer than
    ``MIN_PAIRS`` pairs survive clipping.
    """
    if len(anchor_xy) < MIN_PAIRS:
        return None
    ra, dec = anchor.all_pix2world(anchor_xy[:, 0], anchor_xy[:, 1], 0)
    g = _undistort(anchor, np.asarray(frame_xy, dtype=np.float64))
    sigma = np.ones(len(g)) if sigma_px is None else np.asarray(sigma_px, dtype=np.float64)
    w = 1.0 / sigma**2
    crval = tuple(float(v) for v in (start_crval or anchor.wcs.crval))
    keep = np.ones(len(g), dtype=bool)
    for _ in range(8):
        xi, eta = gnomonic(ra, dec, crval[0], crval[1])
        plane = np.column_stack([xi, eta])
        m = _fit_affine(g, plane, w, keep)
        crval = from_gnomonic(m[0, 2], m[1, 2], crval[0], crval[1])
        resid = _residual_px(m, g, plane)
        z = resid / sigma
        keep_new = (z <= CLIP_SIGMA * _rms(z[keep])) | (resid <= CLIP_FLOOR_PX)
        if keep_new.sum() < MIN_PAIRS:
            return None
        shift = math.hypot(m[0, 2], m[1, 2]) / math.sqrt(abs(np.linalg.det(m[:, :2])))
        if np.array_equal(keep_new, keep) and shift < 1e-9:
            break
        keep = keep_new
    xi, eta = gnomonic(ra, dec, crval[0], crval[1])
    plane = np.column_stack([xi, eta])
    m = _fit_affine(g, plane, w, keep)
    resid = _residual_px(m, g, plane)[keep]
    rms = float(np.sqrt(np.sum(w[keep] * resid**2) / np.sum(w[keep])))
    wcs = _build(anchor, m[:, :2], crval, shape)
    return RegisteredWcs(wcs=wcs, rms_px=rms, n_stars=int(keep.sum()))


def _residual_px(m: np.ndarray, g: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """|model − star| of each pair, converted from the tangent plane to frame pixels."""
    model = g @ m[:, :2].T + m[:, 2]
    diff = np.linalg.solve(m[:, :2], (plane - model).T).T
    return np.hypot(diff[:, 0], diff[:, 1])


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2))) if values.size else float("nan")
