"""Frame → canvas resampling over the frame's bounding box (DESIGN §3.5).

Positions: canvas pixel → frame pixel through the frame's full WCS, exact on a coarse grid
and spline-interpolated between (``mapping``, error ~1e-5 px). Kernels:

- ``lanczos3`` (default): our Lanczos-3 at the exact float64 positions (``lanczos``): keeps
  stars sharp (stack FWHM / input FWHM 1.001 on real M 94 frames), centroids to 0.002 px, and
  does not smooth the noise; ~1.3× bilinear's cost.
- ``bilinear``: OpenCV ``remap``, bilinear. Fast, but broadens stars (stack FWHM ×1.068) and
  smooths the noise (the stack looks 9 % less noisy than its frames allow); an option.
- ``lanczos``: OpenCV's Lanczos-4; sharp, ~3× bilinear's cost, positions quantised to
  1/32 px (centroid errors up to 0.03 px); an option.

A canvas pixel whose kernel taps leave the frame or touch a NaN comes out NaN in every channel
with weight 0 (OpenCV: NaN is the constant border).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from astropy.wcs import WCS

from supadupstack.canvas.canvas import Canvas, frame_footprint
from supadupstack.canvas.lanczos import lanczos3_resample
from supadupstack.canvas.mapping import coordinate_map, map_spline

OPENCV_KERNELS = {"bilinear": cv2.INTER_LINEAR, "lanczos": cv2.INTER_LANCZOS4}
KERNELS = ("lanczos3", *OPENCV_KERNELS)
DEFAULT_KERNEL = "lanczos3"


@dataclass
class Patch:
    """A frame or stack on the canvas, kept over its bounding box.

    ``data[0, 0]`` is canvas pixel (y0, x0). ``data`` is float32 (h, w, C), NaN where there is
    no data. ``weight`` is float32 (h, w): the resampling weight in [0, 1] for a resampled frame,
    or the coverage (sum of accepted frame weights) for a stack.
    """

    y0: int
    x0: int
    data: np.ndarray
    weight: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.data.shape[0]), int(self.data.shape[1])

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(y0, x0, h, w) on the canvas."""
        return self.y0, self.x0, self.shape[0], self.shape[1]


def footprint_box(
    wcs: WCS, frame_shape: tuple[int, int], canvas: Canvas, margin: int = 1
) -> tuple[int, int, int, int] | None:
    """(y0, x0, h, w) canvas box holding the frame's footprint, clipped; None if disjoint."""
    radec = frame_footprint(wcs, frame_shape[1], frame_shape[0], n_edge=32)
    x, y = canvas.wcs.wcs_world2pix(radec[:, 0], radec[:, 1], 0)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return None
    x0 = max(int(math.floor(np.min(x))) - margin, 0)
    y0 = max(int(math.floor(np.min(y))) - margin, 0)
    x1 = min(int(math.ceil(np.max(x))) + margin + 1, canvas.width)
    y1 = min(int(math.ceil(np.max(y))) + margin + 1, canvas.height)
    if x1 <= x0 or y1 <= y0:
        return None
    return y0, x0, y1 - y0, x1 - x0


def remap_image(
    image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, kernel: str = "bilinear"
) -> np.ndarray:
    """cv2.remap of an (H, W, C) float32 image with NaN outside; returns (h, w, C) float32.

    ``kernel``: one of ``OPENCV_KERNELS`` (the maps are float32 positions).
    """
    if kernel not in OPENCV_KERNELS:
        raise ValueError(f"unknown OpenCV kernel {kernel!r}; allowed: {', '.join(OPENCV_KERNELS)}")
    interp = OPENCV_KERNELS[kernel]
    nan4 = (float("nan"),) * 4
    chans = image.shape[2]
    if chans in (1, 3, 4):
        src = image[..., 0] if chans == 1 else image
        out = cv2.remap(
            np.ascontiguousarray(src, dtype=np.float32),
            map_x,
            map_y,
            interp,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=nan4,
        )
        return out.reshape(map_x.shape + (chans,))
    planes = [
        cv2.remap(
            np.ascontiguousarray(image[..., c], dtype=np.float32),
            map_x,
            map_y,
            interp,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=nan4,
        )
        for c in range(chans)
    ]
    return np.stack(planes, axis=-1)


def resample_to_canvas(
    image: np.ndarray,
    wcs: WCS,
    canvas: Canvas,
    kernel: str = DEFAULT_KERNEL,
    grid_step: int = 32,
) -> Patch | None:
    """Resample an (H, W, C) (or (H, W)) float32 frame onto the canvas; None without overlap.

    ``kernel``: one of ``KERNELS`` (module docstring). The patch is cropped to the canvas
    pixels that received data. Weight is 1 where every channel is finite, 0 elsewhere (where
    it is NaN in every channel).
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; allowed: {', '.join(KERNELS)}")
    img = image[..., None] if image.ndim == 2 else image
    box = footprint_box(wcs, img.shape[:2], canvas)
    if box is None:
        return None
    if kernel == "lanczos3":
        data, weight, spans = lanczos3_resample(img, map_spline(wcs, canvas, box, grid_step))
        return _cropped(box, data, weight, spans)
    map_x, map_y = coordinate_map(wcs, canvas, box, grid_step)
    data = remap_image(img, map_x, map_y, kernel)
    total = data[..., 0].copy()
    for c in range(1, data.shape[2]):
        total += data[..., c]
    valid = ~np.isnan(total)  # NaN in any channel (inf - inf too) marks the pixel invalid
    # channels of a pixel can differ only when the input has NaN (the border is NaN in all)
    if data.shape[2] > 1 and not np.isfinite(img.sum()) and not valid.all():
        np.copyto(data, np.float32(np.nan), where=~valid[..., None])
    rows = np.flatnonzero(valid.any(axis=1))
    spans = np.full((valid.shape[0], 2), -1, np.int64)
    if rows.size:
        cols = np.flatnonzero(valid.any(axis=0))
        spans[rows] = cols[0], cols[-1]
    return _cropped(box, data, valid.view(np.uint8).astype(np.float32), spans)


def _cropped(
    box: tuple[int, int, int, int], data: np.ndarray, weight: np.ndarray, spans: np.ndarray
) -> Patch | None:
    """The patch of box cut to the rows and columns that hold data (views, no copy); None if
    none does. spans (h, 2): each row's first and last column of weight > 0, -1 when none."""
    rows = np.flatnonzero(spans[:, 0] >= 0)
    if rows.size == 0:
        return None
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    c0, c1 = int(spans[rows, 0].min()), int(spans[rows, 1].max()) + 1
    return Patch(
        y0=box[0] + r0,
        x0=box[1] + c0,
        data=data[r0:r1, c0:c1],
        weight=weight[r0:r1, c0:c1],
    )
