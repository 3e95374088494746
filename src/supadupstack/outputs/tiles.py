"""The ``TILES`` binary table of the final FITS: one row per tile (mega-tile or master tile).

Per-tile gains once went into ``GAINnnn`` header cards, which tools read as the camera's
GAIN; a table holds every channel, the offsets and the checks without that collision. The
modes fill a ``TileTable`` with plain arrays (this package never imports a mode); the writer
turns it into the extension. ``harmonised tile = GAIN · tile + OFFSET`` per channel, in ADU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits


@dataclass
class TileColumn:
    """One column: ``values`` (n,) or (n, channels); ``unit`` FITS TUNIT; ``about`` the
    TTYPE card's comment (what the column means)."""

    values: np.ndarray
    about: str
    unit: str = ""


@dataclass
class TileTable:
    """Columns by name, in insertion order, all with the same number of rows."""

    columns: dict[str, TileColumn] = field(default_factory=dict)

    def add(self, name: str, values, about: str, unit: str = "") -> None:
        """Add a column; ``None`` entries of a float column become NaN."""
        arr = np.asarray(values)
        if arr.dtype == object:
            arr = np.array([np.nan if v is None else v for v in values], np.float64)
        self.columns[name] = TileColumn(arr, about, unit)

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.columns.values())).values) if self.columns else 0


def _format(arr: np.ndarray) -> str:
    """FITS TFORM of a column: repeat count for vector cells, L/J/K/D by dtype."""
    repeat = int(np.prod(arr.shape[1:])) if arr.ndim > 1 else 1
    if arr.dtype == bool:
        code = "L"
    elif np.issubdtype(arr.dtype, np.integer):
        code = "K"
    else:
        code = "D"
    return f"{repeat}{code}" if repeat != 1 else code


def tiles_hdu(table: TileTable) -> fits.BinTableHDU:
    """The ``TILES`` extension of ``table`` (units in TUNITn, meanings as TTYPEn comments)."""
    cols = []
    for name, col in table.columns.items():
        arr = col.values.astype(np.float64) if col.values.dtype.kind == "f" else col.values
        cols.append(fits.Column(name=name, format=_format(arr), unit=col.unit or None, array=arr))
    hdu = fits.BinTableHDU.from_columns(cols, name="TILES")
    for i, col in enumerate(table.columns.values(), start=1):
        hdu.header.comments[f"TTYPE{i}"] = col.about
    hdu.header.add_comment("One row per tile: harmonised tile = GAIN * tile + OFFSET (per channel)")
    return hdu
