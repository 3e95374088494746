"""``Mosaic``: image + coverage + alpha + WCS that always move together (DESIGN §6).

Every crop goes through ``Mosaic.crop``, which slices the three arrays and shifts the WCS
reference pixel by the same amount, so a star keeps its sky position exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.wcs import WCS


@dataclass
class Mosaic:
    """A result on the canvas. ``image`` float32 (H, W, C) NaN = no data; ``coverage`` float32
    (H, W) summed frame weights; ``alpha`` uint8 (H, W) 0..255; ``wcs`` celestial, 0-based."""

    image: np.ndarray
    coverage: np.ndarray
    alpha: np.ndarray
    wcs: WCS
    history: list[dict] = field(default_factory=list)

    @classmethod
    def from_arrays(cls, image: np.ndarray, coverage: np.ndarray, wcs: WCS) -> Mosaic:
        valid = (coverage > 0) & np.isfinite(image).all(axis=-1)
        alpha = np.where(valid, 255, 0).astype(np.uint8)
        image = image.copy()
        image[~valid] = np.nan
        return cls(image, np.where(valid, coverage, 0).astype(np.float32), alpha, wcs.deepcopy())

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    def crop(self, y0: int, y1: int, x0: int, x1: int, step: str = "crop") -> None:
        """Keep rows y0:y1 and columns x0:x1 of everything; shift CRPIX accordingly."""
        h, w = self.shape
        y0, y1 = max(0, int(y0)), min(h, int(y1))
        x0, x1 = max(0, int(x0)), min(w, int(x1))
        if y1 <= y0 or x1 <= x0:
            raise ValueError(f"empty crop box {(y0, y1, x0, x1)} for shape {(h, w)}")
        self.image = self.image[y0:y1, x0:x1].copy()
        self.coverage = self.coverage[y0:y1, x0:x1].copy()
        self.alpha = self.alpha[y0:y1, x0:x1].copy()
        wcs = self.wcs.deepcopy()
        wcs.wcs.crpix = [wcs.wcs.crpix[0] - x0, wcs.wcs.crpix[1] - y0]
        wcs.pixel_shape = (x1 - x0, y1 - y0)
        self.wcs = wcs
        self.history.append({"step": step, "box": [y0, y1, x0, x1], "shape_before": [h, w]})

    def mask(self, drop: np.ndarray) -> int:
        """Set the pixels in ``drop`` to no data (NaN, coverage 0, alpha 0); returns count."""
        n = int((drop & (self.alpha > 0)).sum())
        self.image[drop] = np.nan
        self.coverage[drop] = 0
        self.alpha[drop] = 0
        return n

    def valid_box(self) -> tuple[int, int, int, int] | None:
        """(y0, y1, x0, x1) bounding box of pixels with alpha > 0, or None when empty."""
        rows = np.nonzero((self.alpha > 0).any(axis=1))[0]
        cols = np.nonzero((self.alpha > 0).any(axis=0))[0]
        if rows.size == 0:
            return None
        return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
