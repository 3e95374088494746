"""Result tab: the stretched preview, the run summary plot, and a button that opens the output
folder; all read from the report the ``run`` command wrote."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from supadupstack.errors import SupaDupError
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
        self.shown: list[Path] = []
        self.note = QLabel("no run yet", self)
        self.note.setWordWrap(True)
        self.open_button = QPushButton("Open output folder", self)
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(self.open_folder)
        self.preview, self.summary = QLabel(self), QLabel(self)
        pictures = QWidget(self)
        row = QHBoxLayout(pictures)
        for label in (self.preview, self.summary):
            label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
            row.addWidget(label)
        scroll = QScrollArea(self)
        scroll.setWidget(pictures)
        scroll.setWidgetResizable(True)
        top = QHBoxLayout()
        top.addWidget(self.note, 1)
        top.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(scroll, 1)

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
        self.shown = []
        for label, picture in (
            (self.preview, out.get("png")),
            (self.summary, report.get("plots", {}).get("summary")),
        ):
            pixmap = QPixmap(str(picture)) if picture else QPixmap()
            if not pixmap.isNull():
                label.setPixmap(pixmap.scaledToWidth(min(pixmap.width(), PICTURE_WIDTH)))
                self.shown.append(Path(picture))
            else:
                label.setText("(no picture)")
        n = len(report.get("frames_used", []))
        self.note.setText(f"{n} frames stacked: {out.get('fits', '')}")
        self.open_button.setEnabled(True)
        return report

    def open_folder(self) -> None:
        if self.folder is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.folder)))
