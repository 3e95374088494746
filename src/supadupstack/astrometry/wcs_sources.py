"""Where a frame's WCS comes from without solving: its header or a ``<stem>.wcs`` sidecar.

Also the small WCS measures the rest of the pipeline needs: the pixel scale at the frame centre
(arcsec/px), the sky position of the frame centre (degrees) and the largest pixel disagreement
between two WCS over a whole frame. Pixel coordinates here are numpy/astropy 0-based; the FITS
files themselves keep 1-based CRPIX, which astropy converts on reading.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS

from supadupstack.errors import AstrometryError
from supadupstack.outputs.atomic import write_atomic

SIDECAR_SUFFIX = ".wcs"
MIN_SCALE_ARCSEC = 1e-3  # plausible pixel scales (arcsec/px) of a real image
MAX_SCALE_ARCSEC = 3.6e4


class _Unusable(ValueError):
    """A WCS header that is present but cannot be used (the message says why)."""


def _header_size(header: fits.Header) -> tuple[int | None, int | None]:
    """Image width/height from the header (compressed, plain or astrometry.net IMAGEW/H)."""
    for wkey, hkey in (("ZNAXIS1", "ZNAXIS2"), ("NAXIS1", "NAXIS2"), ("IMAGEW", "IMAGEH")):
        w, h = header.get(wkey), header.get(hkey)
        if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
            return w, h
    return None, None


def _has_celestial_keys(header: fits.Header) -> bool:
    c1 = str(header.get("CTYPE1", "")).upper()
    c2 = str(header.get("CTYPE2", "")).upper()
    if not (c1.startswith("RA--") and c2.startswith("DEC-")):
        return False
    has_cd = "CD1_1" in header or "CD2_2" in header
    has_pc = "CDELT1" in header and "CDELT2" in header
    return has_cd or has_pc


_NUMERIC_KEYS = ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2")
_MATRIX_KEYS = ("CD1_1", "CD1_2", "CD2_1", "CD2_2", "PC1_1", "PC1_2", "PC2_1", "PC2_2")


def _check_numbers(header: fits.Header) -> None:
    """wcslib silently replaces a non-numeric CRVAL/CD value by its default (0 or 1); refuse
    such headers instead of trusting a made-up WCS."""
    for key in _NUMERIC_KEYS + _MATRIX_KEYS + ("CDELT1", "CDELT2"):
        if key not in header:
            if key in _NUMERIC_KEYS:
                raise _Unusable(f"{key} missing")
            continue
        value = header[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Unusable(f"{key} is not a number ({value!r})")
        if not math.isfinite(float(value)):
            raise _Unusable(f"{key} is not finite")


def _build(header: fits.Header, width: int | None, height: int | None) -> WCS:
    """A celestial 2-D WCS from ``header``, checked at the frame centre; raise _Unusable."""
    if not _has_celestial_keys(header):
        raise _Unusable("no celestial WCS keys (CTYPE RA---/DEC-- with CD or CDELT)")
    _check_numbers(header)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            wcs = WCS(header, naxis=2, relax=True)
    except (ValueError, KeyError, TypeError, MemoryError) as exc:  # WcsError is a ValueError
        raise _Unusable(_first_line(exc)) from None
    if not wcs.has_celestial:
        raise _Unusable("WCS is not celestial")
    matrix = wcs.pixel_scale_matrix
    det = float(np.linalg.det(matrix)) if np.all(np.isfinite(matrix)) else float("nan")
    if not math.isfinite(det) or det == 0.0:
        raise _Unusable("singular or non-finite CD/PC matrix")
    if not np.all(np.isfinite(wcs.wcs.crval)) or not np.all(np.isfinite(wcs.wcs.crpix)):
        raise _Unusable("non-finite CRVAL/CRPIX")
    if width is None or height is None:
        cx, cy = float(wcs.wcs.crpix[0]) - 1.0, float(wcs.wcs.crpix[1]) - 1.0
    else:
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        wcs.pixel_shape = (width, height)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ra, dec = wcs.all_pix2world([[cx, cy]], 0)[0]
    except (ValueError, MemoryError) as exc:
        raise _Unusable(f"cannot evaluate at the frame centre ({_first_line(exc)})") from None
    if not (math.isfinite(ra) and math.isfinite(dec)):
        raise _Unusable("WCS is not finite at the frame centre")
    if width is not None and height is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scale = pixel_scale_arcsec(wcs, width, height)
        if not (MIN_SCALE_ARCSEC <= scale <= MAX_SCALE_ARCSEC):  # also False for NaN
            raise _Unusable(f'implausible pixel scale at the frame centre ({scale:.3g}"/px)')
    return wcs


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def header_wcs(header: fits.Header) -> WCS | None:
    """The header's celestial WCS (TAN, TAN-SIP ...), or None when absent or unusable.

    Never raises: a frame whose header WCS is missing or broken simply falls through to the
    sidecar and the solver.
    """
    width, height = _header_size(header)
    try:
        return _build(header, width, height)
    except _Unusable:
        return None


def sidecar_path(frame_path: Path) -> Path:
    """``<stem>.wcs`` next to the frame (the astrometry.net / ASTAP convention)."""
    frame_path = Path(frame_path)
    return frame_path.with_name(frame_path.stem + SIDECAR_SUFFIX)


def _read_wcs_header(path: Path) -> fits.Header:
    """The header of a ``.wcs`` file: a FITS header (astrometry.net) or, failing that, the
    unpadded card text some ASTAP versions write."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            return fits.getheader(path)
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        first_error = exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            header = fits.Header.fromfile(str(path), sep="", endcard=False, padding=False)
    except (OSError, ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError):
        raise _Unusable(_first_line(first_error)) from None
    if len(header) == 0:
        raise _Unusable(_first_line(first_error))
    return header


def load_wcs_file(path: Path, width: int | None = None, height: int | None = None) -> WCS:
    """Load a ``.wcs`` file; raise ValueError (one line) when unreadable or not celestial.

    ``width``/``height`` (pixels) say where the frame centre is for the finiteness check;
    without them the file's IMAGEW/IMAGEH are used.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise _Unusable("empty file")
    except OSError as exc:
        raise _Unusable(exc.strerror or _first_line(exc)) from None
    header = _read_wcs_header(path)
    if width is None or height is None:
        width, height = _header_size(header)
    return _build(header, width, height)


def read_sidecar(path: Path, width: int | None = None, height: int | None = None) -> WCS:
    """Read an astrometry.net/ASTAP ``.wcs`` sidecar (TAN-SIP, FITS 1-based CRPIX).

    Raises AstrometryError("corrupt WCS sidecar NAME: ...") when unreadable or not celestial.
    """
    path = Path(path)
    try:
        return load_wcs_file(path, width, height)
    except ValueError as exc:
        raise AstrometryError(f"corrupt WCS sidecar {path.name}: {exc}") from None


def write_sidecar(wcs: WCS, path: Path, width: int, height: int, cards: dict | None = None) -> None:
    """Write ``wcs`` as an astrometry.net-style ``.wcs`` file, atomically, with the umask's mode
    (``cards``: extra header cards, name → (value, comment)).

    Raises SupaDupError (one line) when the folder is not writable; a half-written file is
    never left behind.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        header = wcs.to_header(relax=True)
    header["IMAGEW"] = (int(width), "Image width, in pixels.")
    header["IMAGEH"] = (int(height), "Image height, in pixels.")
    for key, value in (cards or {}).items():
        header[key] = value
    hdu = fits.PrimaryHDU(header=header)
    write_atomic(Path(path), lambda p: hdu.writeto(p, overwrite=True))


def centre_radec(wcs: WCS, width: int, height: int) -> tuple[float, float]:
    """(RA, Dec) in degrees of the frame centre ((W-1)/2, (H-1)/2 in 0-based pixels)."""
    ra, dec = wcs.all_pix2world([[(width - 1) / 2.0, (height - 1) / 2.0]], 0)[0]
    return float(ra) % 360.0, float(dec)


def gnomonic(ra, dec, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Tangent-plane offsets (xi east, eta north; degrees) of (ra, dec) around (ra0, dec0)."""
    r, d = np.radians(ra), np.radians(dec)
    r0, d0 = math.radians(ra0), math.radians(dec0)
    cosc = np.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(r - r0)
    xi = np.cos(d) * np.sin(r - r0) / cosc
    eta = (math.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(r - r0)) / cosc
    return np.degrees(xi), np.degrees(eta)


def from_gnomonic(xi: float, eta: float, ra0: float, dec0: float) -> tuple[float, float]:
    """Inverse of ``gnomonic`` for one point: (RA, Dec) in degrees of the tangent-plane offset
    (xi east, eta north; degrees) around (ra0, dec0)."""
    x, y = math.radians(xi), math.radians(eta)
    d0, a0 = math.radians(dec0), math.radians(ra0)
    denom = math.cos(d0) - y * math.sin(d0)
    ra = a0 + math.atan2(x, denom)
    dec = math.atan2(math.sin(d0) + y * math.cos(d0), math.hypot(x, denom))
    return math.degrees(ra) % 360.0, math.degrees(dec)


def pixel_scale_arcsec(wcs: WCS, width: int, height: int) -> float:
    """Pixel scale at the frame centre in arcsec/px: sqrt(|det J|) of the pixel→sky Jacobian,
    by central differences of ±0.5 px projected on the tangent plane there (SIP included)."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    pts = np.array([[cx, cy], [cx - 0.5, cy], [cx + 0.5, cy], [cx, cy - 0.5], [cx, cy + 0.5]])
    world = wcs.all_pix2world(pts, 0)
    xi, eta = gnomonic(world[:, 0], world[:, 1], float(world[0, 0]), float(world[0, 1]))
    jac = np.array([[xi[2] - xi[1], xi[4] - xi[3]], [eta[2] - eta[1], eta[4] - eta[3]]])
    return float(math.sqrt(abs(np.linalg.det(jac))) * 3600.0)


def max_pixel_disagreement(
    wcs_a: WCS, wcs_b: WCS, width: int, height: int, step: int = 16
) -> float:
    """Largest distance (pixels) between a pixel and where its wcs_a sky position falls
    under wcs_b, over a grid of every ``step`` px that includes the frame's last row/column."""
    xs = np.unique(np.append(np.arange(0, width, step, dtype=float), width - 1.0))
    ys = np.unique(np.append(np.arange(0, height, step, dtype=float), height - 1.0))
    gx, gy = np.meshgrid(xs, ys)
    px = np.column_stack([gx.ravel(), gy.ravel()])
    world = wcs_a.all_pix2world(px, 0)
    back = wcs_b.all_world2pix(world, 0, tolerance=1e-6, maxiter=50, quiet=True)
    return float(np.max(np.hypot(back[:, 0] - px[:, 0], back[:, 1] - px[:, 1])))
