"""Final products (DESIGN §7): FITS with COVERAGE/ALPHA, stretched PNG/JPG, report JSON.

All writes are atomic (temp file + rename): nothing partial ever sits under a final name.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
from astropy.io import fits

from supadupstack import __version__
from supadupstack.config import OutputConfig
from supadupstack.outputs.atomic import write_atomic, write_text_atomic
from supadupstack.outputs.color import star_white_balance
from supadupstack.outputs.stretch import stretch
from supadupstack.outputs.tiles import TileTable, tiles_hdu
from supadupstack.polish.mosaic import Mosaic

NODATA_VALUE = {"zero": 0.0, "nan": np.nan}


def write_fits(
    m: Mosaic,
    path: Path,
    cards: dict[str, tuple],
    nodata: str = "zero",
    tiles: TileTable | None = None,
) -> Path:
    """Primary float32 (C, H, W) or (H, W) + ``COVERAGE`` float32 + ``ALPHA`` uint8, each
    with the mosaic's WCS, + the ``TILES`` table when given.

    No-data pixels (ALPHA 0) of the primary image are written as 0.0 (``nodata="zero"``,
    the PixInsight and Siril convention: Siril reports NaN statistics for a NaN-holed image)
    or NaN (``"nan"``); the in-memory mosaic keeps NaN. ``cards`` maps KEYWORD → (value,
    comment); keys longer than 8 chars become HIERARCH; a ``HISTORY`` key adds a history card.
    """
    primary = fits.PrimaryHDU(_primary_data(m, NODATA_VALUE[nodata]))
    primary.header.update(m.wcs.to_header(relax=True))
    primary.header["BUNIT"] = ("ADU", "per sub-exposure, after normalisation")
    primary.header["CREATOR"] = (f"supadupstack {__version__}", "software")
    primary.header["NODATA"] = (nodata, "value of no-data pixels; valid where ALPHA > 0")
    _add_cards(primary.header, cards)
    cov = fits.ImageHDU(m.coverage.astype(np.float32), name="COVERAGE")
    cov.header.update(m.wcs.to_header(relax=True))
    alpha = fits.ImageHDU(m.alpha.astype(np.uint8), name="ALPHA")
    alpha.header.update(m.wcs.to_header(relax=True))
    hdus = [primary, cov, alpha] + ([tiles_hdu(tiles)] if tiles and tiles.columns else [])
    hdul = fits.HDUList(hdus)
    return write_atomic(Path(path), lambda p: hdul.writeto(p, output_verify="silentfix"))


def _primary_data(m: Mosaic, fill: float) -> np.ndarray:
    """The image as FITS wants it ((C, H, W) or (H, W) float32), ``fill`` where ALPHA is 0."""
    image = np.where((m.alpha > 0)[..., None], m.image, np.float32(fill)).astype(np.float32)
    return np.moveaxis(image, -1, 0) if image.shape[-1] > 1 else image[..., 0]


def _add_cards(header: fits.Header, cards: dict[str, tuple]) -> None:
    """Cards in order; non-finite floats are left out (FITS has no NaN value)."""
    for key, (value, comment) in cards.items():
        if isinstance(value, float) and not math.isfinite(value):
            continue
        if key == "HISTORY":
            header.add_history(str(value))
            continue
        name = key if len(key) <= 8 else f"HIERARCH {key}"
        header[name] = (value, comment)


def preview_rgba(m: Mosaic, cfg: OutputConfig) -> np.ndarray:
    """uint8 RGBA preview, longest side capped, FITS row 0 at the bottom (sky orientation)."""
    valid = (m.alpha > 0) & np.isfinite(m.image).all(axis=-1)
    image = m.image
    if cfg.white_balance == "stars":
        sky = np.array([np.median(image[..., c][valid]) for c in range(image.shape[-1])])
        factors = star_white_balance(image, valid).astype(np.float32)
        image = (image - sky.astype(np.float32)) * factors + sky.astype(np.float32)
    rgb = stretch(image, valid, cfg.stretch, cfg.linked, cfg.preview_sky)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    # binary transparency: the feathered ALPHA of the FITS would glow on light backgrounds
    rgba = np.dstack([rgb * 255.0, np.where(valid, 255.0, 0.0).astype(np.float32)])
    h, w = m.shape
    scale = min(1.0, cfg.preview_max_side / max(h, w))
    if scale < 1.0:
        rgba = downscale_premultiplied(rgba, (max(1, round(w * scale)), max(1, round(h * scale))))
    return np.clip(np.round(rgba[::-1]), 0, 255).astype(np.uint8)


def downscale_premultiplied(rgba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average an (H, W, 4) float RGBA image (0..255) to ``size`` = (width, height).

    Colour is averaged premultiplied by alpha, then divided by the averaged alpha: a plain
    average mixes the black of no-data pixels into the data's edge pixels (dark fringes).
    """
    alpha = rgba[..., 3:4] / 255.0
    small = cv2.resize(np.dstack([rgba[..., :3] * alpha, rgba[..., 3]]), size, cv2.INTER_AREA)
    cover = small[..., 3:4] / 255.0
    colour = np.divide(small[..., :3], cover, out=np.zeros_like(small[..., :3]), where=cover > 0)
    return np.dstack([colour, small[..., 3]])


def write_preview(m: Mosaic, path: Path, cfg: OutputConfig) -> Path:
    """PNG (RGBA, NaN transparent) or JPG (RGB on black) by the file suffix."""
    from PIL import Image

    rgba = preview_rgba(m, cfg)
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):
        img = Image.fromarray(rgba[..., :3])
        return write_atomic(Path(path), lambda p: img.save(p, format="JPEG", quality=92))
    img = Image.fromarray(rgba, mode="RGBA")
    return write_atomic(Path(path), lambda p: img.save(p, format="PNG"))


def write_report(report: dict, path: Path) -> Path:
    """The run's report as indented JSON (NaN written as null)."""
    return write_text_atomic(Path(path), json.dumps(_clean(report), indent=2) + "\n")


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
