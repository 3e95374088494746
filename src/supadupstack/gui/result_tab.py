"""Result tab: the stretched preview (zoom and pan; "coverage" shows the output FITS's COVERAGE
map instead, "alpha" tints its no-data area), the run summary plot, and a button that opens
the output folder; all read from the report the ``run`` command wrote."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from supadupstack.errors import SupaDupError
from supadupstack.gui.result_view import ZoomView, grey_pixmap, read_maps, tinted
from supadupstack.smallfile import read_small_text

REPORT_MAX = 64 << 20  # bytes
PICTURE_WIDTH = 660  # px at most: preview and summary side by side in the default window


def report_path(path: Path, name: str) -> Path:
    """The report JSON of a run: ``path`` itself when it is a file; in an output folder its
    ``NAME.report.json``, else its only ``*.report.json``."""
    path = Path(path)
    if not path.is_dir():
        return path
    named = path / f"{name}.report.json"
    found = sorted(path.glob("*.report.json"))
    return found[0] if not named.is_file() and len(found) == 1 else named


class ResultTab(QWidget):
    """Shows a finished run: ``show_report(path)``; ``shown`` lists the pictures drawn."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.folder: Path | None = None
        self.fits: Path | None = None
        self.shown: list[Path] = []
        self.base = QPixmap()
        self.maps: tuple | None = None  # (coverage, no-data mask), read when first needed
        self.note = QLabel("no run yet", self)
        self.note.setWordWrap(True)
        self.open_button = QPushButton("Open output folder", self)
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(self.open_folder)
        self.coverage = QCheckBox("coverage", self)
        self.alpha = QCheckBox("alpha", self)
        for box in (self.coverage, self.alpha):
            box.setEnabled(False)
            box.toggled.connect(self.redraw)
        self.preview, self.summary = ZoomView(self), QLabel(self)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea(self)
        scroll.setWidget(self.summary)
        scroll.setWidgetResizable(True)
        top = QHBoxLayout()
        for widget, stretch in ((self.note, 1), (self.coverage, 0), (self.alpha, 0)):
            top.addWidget(widget, stretch)
        top.addWidget(self.open_button)
        pictures = QHBoxLayout()
        pictures.addWidget(self.preview, 1)
        pictures.addWidget(scroll, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(pictures, 1)

    def show_report(self, path: Path) -> dict:
        """Read the run's report JSON and show its preview and summary plot."""
        text = read_small_text(Path(path), REPORT_MAX, "report", SupaDupError)
        try:
            report = json.loads(text)
        except ValueError as exc:
            raise SupaDupError(f"report {path} is not valid JSON: {exc}") from None
        if not isinstance(report, dict):
            raise SupaDupError(f"report {path} is not a run report (a JSON object)")
        out = report.get("output", {})
        self.folder = Path(path).parent
        self.fits = Path(out["fits"]) if out.get("fits") else None
        self.maps, self.shown = None, []
        self.base = QPixmap(str(out["png"])) if out.get("png") else QPixmap()
        if not self.base.isNull():
            self.shown.append(Path(out["png"]))
        self.preview.set_pixmap(self.base, PICTURE_WIDTH)
        for box in (self.coverage, self.alpha):
            box.setEnabled(self.fits is not None)
        if self.coverage.isChecked() or self.alpha.isChecked():
            self.redraw()
        summary = report.get("plots", {}).get("summary")
        pixmap = QPixmap(str(summary)) if summary else QPixmap()
        if not pixmap.isNull():
            self.summary.setPixmap(pixmap.scaledToWidth(min(pixmap.width(), PICTURE_WIDTH)))
            self.shown.append(Path(summary))
        else:
            self.summary.setText("(no picture)")
        n = len(report.get("frames_used", []))
        self.note.setText(f"{n} frames stacked: {out.get('fits', '')}")
        self.open_button.setEnabled(True)
        return report

    def redraw(self) -> None:
        """Show the preview, or the coverage map, with the no-data area tinted on request
        (the maps are read from the output FITS the first time they are needed)."""
        picture = self.base
        if self.coverage.isChecked() or self.alpha.isChecked():
            if self.maps is None and self.fits is not None:
                try:
                    self.maps = read_maps(self.fits)
                except SupaDupError as exc:
                    self.note.setText(str(exc))
                    self.maps = (None, None)
            cov, nodata = self.maps or (None, None)
            if self.coverage.isChecked() and cov is not None:
                picture = grey_pixmap(cov)
            if self.alpha.isChecked() and nodata is not None:
                picture = tinted(picture, nodata)
        self.preview.set_pixmap(
            picture, PICTURE_WIDTH if picture.size() != self.preview.pixmap().size() else None
        )

    def zoom(self, factor: float) -> None:
        """Zoom the picture by ``factor`` (the wheel does the same around the cursor)."""
        self.preview.zoom(factor)

    def open_folder(self) -> None:
        if self.folder is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.folder)))
