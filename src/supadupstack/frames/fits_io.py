"""Finding frame files, reading their headers into ``Frame`` records, loading their pixels.

Every failure is a ``FrameError`` with a one-line reason (not FITS, truncated, no image ...),
so callers can skip the file and report why.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from supadupstack.errors import FrameError
from supadupstack.frames import header as hdr
from supadupstack.frames.model import Frame, Skip

STACKED_PREFIXES = ("stacked_", "dso_stacked_")


def _is_skipped_name(name: str, include_stacked: bool) -> str | None:
    low = name.lower()
    if "_thn" in low:
        return "thumbnail"
    if not include_stacked and low.startswith(STACKED_PREFIXES):
        return "stacked product (use ingest.include_stacked to read it)"
    return None


def scan_inputs(
    inputs: Iterable[str | Path],
    extensions: Iterable[str] = (".fit", ".fits", ".fts"),
    recursive: bool = True,
    include_stacked: bool = False,
) -> tuple[list[Path], list[Skip]]:
    """Frame files under the given files/folders, sorted, plus the files skipped and why.

    Folders are walked (recursively by default); paths with spaces are fine. Thumbnails and
    stacked products are skipped with a reason; other non-FITS files in folders are ignored.
    """
    exts = tuple(e.lower() for e in extensions)
    found: list[Path] = []
    skips: list[Skip] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            skips.append(Skip(p, "no such file or folder"))
            continue
        if p.is_file():
            found.append(p)
            continue
        walker = os.walk(p) if recursive else [(str(p), [], os.listdir(p))]
        for dirpath, dirnames, filenames in walker:
            dirnames.sort()
            for fname in sorted(filenames):
                fp = Path(dirpath) / fname
                if not fname.lower().endswith(exts):
                    continue
                if not fp.is_file():
                    skips.append(Skip(fp, "unreadable: broken link or not a regular file"))
                    continue
                why = _is_skipped_name(fname, include_stacked)
                if why:
                    skips.append(Skip(fp, why))
                else:
                    found.append(fp)
    unique = sorted(dict.fromkeys(f.resolve() for f in found))
    return unique, skips


def _image_hdu_index(hdul: fits.HDUList) -> int:
    for i, h in enumerate(hdul):
        if isinstance(h, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
            naxis = h.header.get("ZNAXIS", h.header.get("NAXIS", 0))
            if naxis in (2, 3):
                return i
    raise FrameError("FITS file has no 2-D or 3-D image data")


def _check_complete(path: Path, hdul: fits.HDUList, index: int) -> None:
    """Raise if the file is shorter than its header says (a truncated copy)."""
    h = hdul[index].header
    if isinstance(hdul[index], fits.CompImageHDU):
        return
    nbytes = abs(int(h["BITPIX"])) // 8
    for ax in range(1, int(h["NAXIS"]) + 1):
        nbytes *= int(h[f"NAXIS{ax}"])
    info = hdul.fileinfo(index)
    if info is not None and info["datLoc"] + nbytes > path.stat().st_size:
        have = max(0, path.stat().st_size - info["datLoc"])
        raise FrameError(f"truncated FITS: {have} of {nbytes} data bytes present")


def _open(path: Path) -> fits.HDUList:
    try:
        if path.stat().st_size == 0:
            raise FrameError("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            return fits.open(path, memmap=False, lazy_load_hdus=False)
    except FrameError:
        raise
    except PermissionError:
        raise FrameError("permission denied") from None
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FrameError(f"not a readable FITS file ({first})") from None


def _kind_and_size(h: fits.Header) -> tuple[str, int, int, str | None]:
    naxis = int(h.get("ZNAXIS", h.get("NAXIS", 0)))
    w = int(h.get("ZNAXIS1", h.get("NAXIS1", 0)))
    ht = int(h.get("ZNAXIS2", h.get("NAXIS2", 0)))
    if naxis == 3:
        n3 = int(h.get("ZNAXIS3", h.get("NAXIS3", 0)))
        if n3 != 3:
            raise FrameError(f"3-D image with {n3} planes (expected 3 colour planes)")
        return "rgb", w, ht, None
    if w < 16 or ht < 16:
        raise FrameError(f"image too small ({w}x{ht})")
    pattern = hdr.bayer_pattern(h)
    return ("bayer" if pattern else "mono"), w, ht, pattern


def read_frame(path: str | Path) -> Frame:
    """Read one file's header into a Frame (no pixels). Raises FrameError with the reason."""
    p = Path(path)
    with _open(p) as hdul:
        try:
            index = _image_hdu_index(hdul)
            _check_complete(p, hdul, index)
        except (OSError, KeyError, ValueError) as exc:
            raise FrameError(f"damaged FITS structure ({exc})") from None
        h = hdul[index].header.copy()
        if index > 0:
            primary = hdul[0].header
            for key in primary:
                if key not in h and key not in ("SIMPLE", "EXTEND", "NAXIS", "BITPIX"):
                    h[key] = primary[key]
    kind, w, ht, pattern = _kind_and_size(h)
    date_iso, mjd = hdr.parse_date_obs(h)
    ra_h, dec_h, ra_j, dec_j = hdr.pointing_hint(h, date_iso)
    return Frame(
        path=p,
        width=w,
        height=ht,
        kind=kind,
        hdu_index=index,
        bayer_pattern=pattern,
        exposure_s=hdr.header_float(h, "EXPTIME", "EXPOSURE"),
        date_obs=date_iso,
        mjd_obs=mjd,
        gain=hdr.header_float(h, "GAIN"),
        focal_mm=hdr.header_float(h, "FOCALLEN"),
        pixel_um=hdr.header_float(h, "XPIXSZ", "PIXSIZE1"),
        filter_name=hdr.header_str(h, "FILTER"),
        instrument=hdr.header_str(h, "INSTRUME"),
        telescope=hdr.header_str(h, "TELESCOP"),
        object_name=hdr.header_str(h, "OBJECT"),
        eq_mode=bool(h.get("EQMODE", 0) == 1),
        ra_header=ra_h,
        dec_header=dec_h,
        ra_hint=ra_j,
        dec_hint=dec_j,
    )


def read_header(frame: Frame) -> fits.Header:
    """The full header of the frame's image HDU (for WCS parsing)."""
    with _open(frame.path) as hdul:
        return hdul[frame.hdu_index].header.copy()


def load_pixels(frame: Frame) -> np.ndarray:
    """Raw pixels as float32: (H, W) for bayer/mono, (3, H, W) for rgb. BZERO applied.

    Zeros are kept as data (black-subtracted firmware); NaN/inf stay as they are.
    """
    with _open(frame.path) as hdul:
        try:
            data = hdul[frame.hdu_index].data
        except (OSError, ValueError, TypeError) as exc:
            raise FrameError(f"cannot read pixel data ({exc})") from None
        if data is None:
            raise FrameError("FITS file has no image data")
        arr = np.asarray(data, dtype=np.float32)
    expected = (
        (frame.height, frame.width) if frame.kind != "rgb" else (3, frame.height, frame.width)
    )
    if arr.shape != expected:
        raise FrameError(f"pixel array shape {arr.shape} differs from header {expected}")
    return arr


def read_frames(paths: Iterable[Path]) -> tuple[list[Frame], list[Skip]]:
    """Read many headers; unreadable files become Skips with their reason."""
    frames: list[Frame] = []
    skips: list[Skip] = []
    for p in paths:
        try:
            frames.append(read_frame(p))
        except FrameError as exc:
            skips.append(Skip(p, str(exc)))
    return frames, skips


def content_key(path: Path, block: int = 1 << 20) -> str:
    """A fingerprint of a file's content: its size and the hash of its first megabyte.

    Two raw subs never share their first megabyte (header time stamp, noise), so equal keys
    mean the same exposure copied under another name.
    """
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        h.update(fh.read(block))
    return f"{path.stat().st_size}:{h.hexdigest()}"


def drop_duplicates(paths: list[Path]) -> tuple[list[Path], list[Skip]]:
    """Keep the first of files with identical content; the others are skipped with a reason."""
    seen: dict[str, Path] = {}
    kept: list[Path] = []
    skips: list[Skip] = []
    for p in paths:
        try:
            key = content_key(p)
        except OSError as exc:
            skips.append(Skip(p, f"unreadable: {exc.strerror or exc}"))
            continue
        if key in seen:
            skips.append(Skip(p, f"duplicate of {seen[key].name}"))
            continue
        seen[key] = p
        kept.append(p)
    return kept, skips
