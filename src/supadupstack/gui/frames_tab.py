"""Frames tab: add folders, one sortable row per frame (what ``inspect`` prints), and a
"use" check box per frame to exclude it from the plan by hand."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelection,
    QItemSelectionModel,
    QMimeData,
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

COLUMNS = (
    "use",
    "file",
    "session",
    "batch",
    "time (UTC)",
    "WCS",
    "sky",
    "noise",
    "stars",
    "FWHM",
    "verdict",
)
NUMERIC = ("session", "batch", "sky", "noise", "stars", "FWHM")


def _mean(values) -> float | None:
    return sum(values) / len(values) if values else None


def cell(row: dict, column: str) -> Any:
    """The value a column shows for one inspect row (numbers stay numbers, for sorting)."""
    if column == "file":
        return Path(row["path"]).name
    if column == "session":
        return row.get("session")
    if column == "batch":
        return row.get("batch")
    if column == "time (UTC)":
        return (row.get("date_obs") or "")[:19].replace("T", " ")
    if column == "WCS":
        return row.get("wcs_source", "")
    if column == "sky":
        return _mean(row.get("sky"))
    if column == "noise":
        return _mean(row.get("noise"))
    if column == "stars":
        return row.get("n_stars")
    if column == "FWHM":
        return row.get("fwhm_px")
    if column == "verdict":
        note = f"; wcs {row['wcs_note']}" if row.get("wcs_note") else ""
        return row.get("verdict", "") + note
    return None


def shown(value: Any) -> str:
    """A cell's text: numbers rounded, missing values as a dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def dropped_folders(mime: QMimeData) -> list[str]:
    """The local folders of a drop's URLs (a file stands for its folder; non-local URLs and
    missing paths are ignored), each once, in order."""
    folders: list[str] = []
    for url in mime.urls() if mime.hasUrls() else []:
        if not url.isLocalFile():
            continue
        path = Path(url.toLocalFile())
        folder = path if path.is_dir() else path.parent if path.is_file() else None
        if folder is not None and str(folder) not in folders:
            folders.append(str(folder))
    return folders


class FramesModel(QAbstractTableModel):
    """The inspect rows; column 0 is a check box (checked: the frame is used)."""

    excluded_changed = Signal()
    batch_moved = Signal(str, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[dict] = []
        self.excluded: set[str] = set()

    def set_rows(self, rows: list[dict]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.excluded &= {r["path"] for r in rows}
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, column = self.rows[index.row()], COLUMNS[index.column()]
        if column == "use":
            if role == Qt.ItemDataRole.CheckStateRole:
                used = row["path"] not in self.excluded
                return Qt.CheckState.Checked if used else Qt.CheckState.Unchecked
            if role == Qt.ItemDataRole.UserRole:
                return int(row["path"] not in self.excluded)
            return None
        value = cell(row, column)
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return shown(value) if role == Qt.ItemDataRole.DisplayRole or value is None else value
        if role == Qt.ItemDataRole.UserRole:  # the sort key
            if value is None:
                return -math.inf if column in NUMERIC else ""
            return value
        if role == Qt.ItemDataRole.ToolTipRole:
            return row["path"] if column == "file" else shown(value)
        return None

    def flags(self, index: QModelIndex):
        base = super().flags(index)
        if index.isValid() and COLUMNS[index.column()] == "use":
            return base | Qt.ItemFlag.ItemIsUserCheckable
        in_plan = index.isValid() and self.rows[index.row()].get("batch") is not None
        if in_plan and COLUMNS[index.column()] == "batch":
            return base | Qt.ItemFlag.ItemIsEditable
        return base

    def set_batches(self, batch_of: dict[str, int]) -> None:
        """Show each frame's batch (None: not in the plan)."""
        for row in self.rows:
            row["batch"] = batch_of.get(row["path"])
        if self.rows:
            column = COLUMNS.index("batch")
            self.dataChanged.emit(self.index(0, column), self.index(len(self.rows) - 1, column))

    def setData(self, index: QModelIndex, value, role=Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid():
            return False
        if COLUMNS[index.column()] == "batch" and role == Qt.ItemDataRole.EditRole:
            try:
                batch = int(value)
            except (TypeError, ValueError):
                return False
            self.batch_moved.emit(self.rows[index.row()]["path"], batch)
            return True
        if role != Qt.ItemDataRole.CheckStateRole:
            return False
        self.set_used(self.rows[index.row()]["path"], Qt.CheckState(value) == Qt.CheckState.Checked)
        self.dataChanged.emit(index, index, [role])
        return True

    def set_used(self, path: str, used: bool) -> None:
        """Include (``used``) or exclude one frame by its path."""
        before = set(self.excluded)
        if used:
            self.excluded.discard(path)
        else:
            self.excluded.add(path)
        if self.excluded != before:
            self.excluded_changed.emit()


class FramesTab(QWidget):
    """The table with its buttons; ``add_requested`` carries folders the user picked."""

    add_requested = Signal(list)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = FramesModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.table = QTableView(self)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.sortByColumn(COLUMNS.index("time (UTC)"), Qt.SortOrder.AscendingOrder)
        self.add_button = QPushButton("Add folder…", self)
        self.add_button.clicked.connect(self._pick_folder)
        self.status = QLabel("no frames yet: add a folder", self)
        self.progress = QProgressBar(self)
        self.progress.setVisible(False)
        top = QHBoxLayout()
        top.addWidget(self.add_button)
        top.addWidget(self.status, 1)
        top.addWidget(self.progress)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table)

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of frames")
        if folder:
            self.add_requested.emit([folder])

    def show_progress(self, done: int, total: int, detail: str = "") -> None:
        """The loading's progress (``total`` 0: busy, no count known yet)."""
        self.progress.setVisible(True)
        self.progress.setRange(0, max(total, 0))
        self.progress.setValue(min(done, total) if total else 0)
        if detail:
            self.status.setText(detail)

    def show_rows(self, rows: list[dict], note: str) -> None:
        self.progress.setVisible(False)
        self.model.set_rows(rows)
        self.table.resizeColumnsToContents()
        self.status.setText(note)

    def select_paths(self, paths: list[str]) -> None:
        """Select (highlight) the rows of these frames, scrolled to the first."""
        wanted, selection = set(paths), QItemSelection()
        for r, row in enumerate(self.model.rows):
            if row["path"] in wanted:
                first = self.proxy.mapFromSource(self.model.index(r, 0))
                last = self.proxy.mapFromSource(self.model.index(r, len(COLUMNS) - 1))
                selection.select(first, last)
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect
        self.table.selectionModel().select(selection, flags)
        if not selection.isEmpty():
            self.table.scrollTo(selection.indexes()[0])

    def selected_paths(self) -> list[str]:
        """The paths of the selected rows."""
        rows = {self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()}
        return [self.model.rows[r]["path"] for r in sorted(rows)]
