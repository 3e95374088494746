"""Finding frame files, reading their headers into ``Frame`` records, loading their pixels.

Every failure is a ``FrameError`` with a one-line reason (not FITS, truncated, no image ...),
so callers can skip the file and report why.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError
from astropy.utils.exceptions import AstropyWarning

from supadupstack.errors import FrameError
from supadupstack.frames import header as hdr
from supadupstack.frames.model import Frame, Skip

STACKED_PREFIXES = ("stacked_", "dso_stacked_")
# what the FITS reader and header parsing raise on damaged or hostile files
PARSE_ERRORS = (
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    ArithmeticError,
    UnicodeError,
    RecursionError,
    MemoryError,
    VerifyError,
    EOFError,
)
COMPRESSED = (".gz", ".fz")
MAX_FRAME_PIXELS = 400_000_000  # 3 planes of a 130 Mpx sensor: beyond that, not a frame


def _is_skipped_name(name: str, include_stacked: bool) -> str | None:
    low = name.lower()
    if "_thn" in low:
        return "thumbnail"
    if not include_stacked and low.startswith(STACKED_PREFIXES):
        return "stacked product (use ingest.include_stacked to read it)"
    return None


def _under(path: Path, folders: list[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def scan_inputs(
    inputs: Iterable[str | Path],
    extensions: Iterable[str] = (".fit", ".fits", ".fts"),
    recursive: bool = True,
    include_stacked: bool = False,
    exclude: Iterable[Path] = (),
) -> tuple[list[Path], list[Skip]]:
    """Frame files under the given files/folders, sorted, plus the files skipped and why.

    Folders are walked (recursively by default); paths with spaces are fine. Thumbnails and
    stacked products are skipped with a reason; other non-FITS files in folders are ignored.
    Compressed FITS (``.gz``, ``.fz`` after an extension) is read too. Nothing under the
    ``exclude`` paths (a run's own output and work folders, its image) is ever read.
    """
    exts = tuple(e.lower() for e in extensions)
    exts = exts + tuple(e + z for e in exts for z in COMPRESSED) + (".fz",)
    skip_dirs = [Path(e).resolve() for e in exclude]
    found: list[Path] = []
    skips: list[Skip] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            skips.append(Skip(p, "no such file or folder"))
            continue
        if _under(p.resolve(), skip_dirs):
            skips.append(Skip(p, "inside the run's own output or work folder"))
            continue
        if p.is_file():
            found.append(p)
            continue
        if not os.access(p, os.R_OK | os.X_OK):
            skips.append(Skip(p, "folder not readable (permission denied)"))
            continue
        walker = os.walk(p) if recursive else [(str(p), [], os.listdir(p))]
        for dirpath, dirnames, filenames in walker:
            dirnames[:] = sorted(
                d for d in dirnames if not _under((Path(dirpath) / d).resolve(), skip_dirs)
            )
            for fname in sorted(filenames):
                fp = Path(dirpath) / fname
                if not fname.lower().endswith(exts) or _under(fp.resolve(), skip_dirs):
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


def _gzip_size(path: Path) -> int | None:
    """Uncompressed size of a gzip file from its trailer (mod 2**32; None when unknown)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                return None
            fh.seek(-4, os.SEEK_END)
            size = int.from_bytes(fh.read(4), "little")
    except OSError:
        return None
    return size if path.stat().st_size < 2**32 else None


def _check_complete(path: Path, hdul: fits.HDUList, index: int) -> None:
    """Raise before any pixel is read if the header declares more data than the file holds
    (a truncated copy, a corrupt or hostile header) or an implausibly large image."""
    h = hdul[index].header
    compressed = isinstance(hdul[index], fits.CompImageHDU)
    prefix = "ZNAXIS" if "ZNAXIS" in h else "NAXIS"  # astropy shows a tile-compressed HDU
    nbytes = abs(int(h.get("ZBITPIX", h["BITPIX"]))) // 8  # with its image keys
    npix = 1
    for ax in range(1, int(h[prefix]) + 1):
        npix *= int(h[f"{prefix}{ax}"])
    if npix > MAX_FRAME_PIXELS:
        raise FrameError(f"image of {npix / 1e6:.0f} Mpx declared: larger than any frame")
    if compressed:
        return
    nbytes *= npix
    info = hdul.fileinfo(index)
    size = path.stat().st_size
    if path.name.lower().endswith(".gz"):
        size = _gzip_size(path)
        if size is None:
            return
    if info is not None and info["datLoc"] + nbytes > size:
        have = max(0, size - info["datLoc"])
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
    except PARSE_ERRORS as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
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


_STRUCTURAL = ("SIMPLE", "EXTEND", "NAXIS", "BITPIX", "HISTORY", "COMMENT", "")


def _merged_header(hdul: fits.HDUList, index: int) -> fits.Header:
    """The image HDU's header, completed with the primary header's keys it lacks (a Siril or
    PixInsight multi-extension file keeps DATE-OBS, EXPTIME ... in the primary)."""
    h = hdul[index].header.copy()
    if index > 0:
        for card in hdul[0].header.cards:
            if card.keyword not in _STRUCTURAL and card.keyword not in h:
                h.append(card)
    return h


def _refuse_own_products(h: fits.Header) -> None:
    """A supadupstack output or work file (an earlier run's result) is never a frame."""
    creator = str(h.get("CREATOR", ""))
    if creator.startswith("supadupstack") or "TILEKEY" in h or "SDSMODE" in h:
        raise FrameError("a supadupstack product (an earlier run's output), not a raw frame")


def read_frame(path: str | Path) -> Frame:
    """Read one file's header into a Frame (no pixels). Raises FrameError with the reason.

    This is the one path that decides "not a frame": whatever a damaged or hostile file makes
    the FITS reader or the header parsing raise becomes a FrameError (a reported skip).
    """
    try:
        return _read_frame(Path(path))
    except FrameError:
        raise
    except PARSE_ERRORS as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise FrameError(f"unreadable FITS header ({first})") from None


def _read_frame(p: Path) -> Frame:
    with _open(p) as hdul:
        try:
            index = _image_hdu_index(hdul)
            _check_complete(p, hdul, index)
        except (OSError, KeyError, ValueError) as exc:
            raise FrameError(f"damaged FITS structure ({exc})") from None
        h = _merged_header(hdul, index)
    _refuse_own_products(h)
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
        exposure_s=hdr.exposure_s(h),
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
    """Keep the first of files with identical content; the others are skipped with a reason.

    Files are compared by size and first megabyte, then byte for byte: two frames that only
    begin alike are both kept.
    """
    seen: dict[str, list[Path]] = {}
    kept: list[Path] = []
    skips: list[Skip] = []
    for p in paths:
        try:
            key = content_key(p)
            twin = next((q for q in seen.get(key, []) if filecmp.cmp(q, p, shallow=False)), None)
        except OSError as exc:
            skips.append(Skip(p, f"unreadable: {exc.strerror or exc}"))
            continue
        if twin is not None:
            skips.append(Skip(p, f"duplicate of {twin.name}"))
            continue
        seen.setdefault(key, []).append(p)
        kept.append(p)
    return kept, skips
