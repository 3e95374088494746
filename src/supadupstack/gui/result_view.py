"""The Result tab's picture: a zoomable, pannable view (wheel zooms around the cursor, drag
pans) and the maps read from the output FITS for it: COVERAGE as a normalised grey map and
the no-data area (ALPHA == 0) as a tint, both downscaled and flipped like the preview."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from astropy.io import fits
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView

from supadupstack.errors import SupaDupError

MAP_MAX_SIDE = 2048  # px: longest side of a map, like the preview's default
ZOOM_STEP = 1.25  # per wheel notch
ZOOM_RANGE = (0.02, 64.0)  # the view's scale is kept within these
NODATA_TINT = QColor(255, 0, 255, 170)  # magenta, mostly opaque


def _small(data: np.ndarray, interpolation: int) -> np.ndarray:
    """A 2-D map with its longest side capped, FITS row 0 at the bottom (as the preview)."""
    h, w = data.shape[-2:]
    scale = min(1.0, MAP_MAX_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        data = cv2.resize(data, size, interpolation=interpolation)
    return np.ascontiguousarray(data[::-1])


def read_maps(path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(coverage as float32, no-data mask as bool) of an output FITS, downscaled; None for an
    extension the file lacks. Raises ``SupaDupError`` with one line when it cannot be read."""
    try:
        with fits.open(path, memmap=False) as hdus:
            names = {h.name for h in hdus}
            cov = np.asarray(hdus["COVERAGE"].data, np.float32) if "COVERAGE" in names else None
            alpha = np.asarray(hdus["ALPHA"].data, np.uint8) if "ALPHA" in names else None
    except (OSError, ValueError, TypeError) as exc:
        raise SupaDupError(f"cannot read {path}: {exc}") from None
    cov = None if cov is None or cov.ndim != 2 else _small(np.nan_to_num(cov), cv2.INTER_AREA)
    nodata = None if alpha is None or alpha.ndim != 2 else _small(alpha, cv2.INTER_NEAREST) == 0
    return cov, nodata


def grey_pixmap(cov: np.ndarray) -> QPixmap:
    """Coverage as grey: 0 black, the largest value white."""
    top = float(cov.max()) if cov.size else 0.0
    grey = np.zeros(cov.shape, np.uint8) if top <= 0 else (cov / top * 255).astype(np.uint8)
    grey = np.ascontiguousarray(grey)
    h, w = grey.shape
    image = QImage(grey.data, w, h, w, QImage.Format.Format_Grayscale8)
    return QPixmap.fromImage(image.copy())


def tinted(base: QPixmap, nodata: np.ndarray) -> QPixmap:
    """``base`` (or black, when it is empty) with the no-data pixels painted over in magenta."""
    h, w = nodata.shape
    argb = np.where(nodata, np.uint32(NODATA_TINT.rgba()), np.uint32(0)).astype(np.uint32)
    argb = np.ascontiguousarray(argb)
    mask = QImage(argb.data, w, h, 4 * w, QImage.Format.Format_ARGB32).copy()
    out = QPixmap(base) if not base.isNull() else QPixmap(w, h)
    if base.isNull():
        out.fill(QColor("black"))
    painter = QPainter(out)
    painter.drawImage(out.rect(), mask)
    painter.end()
    return out


class ZoomView(QGraphicsView):
    """One picture; the wheel zooms around the cursor, dragging pans."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.item = QGraphicsPixmapItem()
        self.scene().addItem(self.item)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)

    def set_pixmap(self, pixmap: QPixmap, fit_width: int | None = None) -> None:
        """Show ``pixmap``; with ``fit_width``, reset the zoom so it is at most that wide."""
        self.item.setPixmap(pixmap)
        self.scene().setSceneRect(self.item.boundingRect())
        if fit_width is not None and not pixmap.isNull():
            self.resetTransform()
            self.zoom(min(1.0, fit_width / pixmap.width()))

    def pixmap(self) -> QPixmap:
        return self.item.pixmap()

    def scale_factor(self) -> float:
        """The current zoom (1.0: one picture pixel per screen pixel)."""
        return self.transform().m11()

    def zoom(self, factor: float) -> None:
        """Zoom by ``factor`` (kept within ``ZOOM_RANGE``)."""
        now = self.scale_factor()
        target = min(max(now * factor, ZOOM_RANGE[0]), ZOOM_RANGE[1])
        self.scale(target / now, target / now)

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.zoom(ZOOM_STEP ** (event.angleDelta().y() / 120))
