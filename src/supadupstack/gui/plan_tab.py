"""Plan tab: the SDS batch plan drawn like ``plan.png`` (footprints coloured by batch over
the frame-count map, RA/Dec axes), the planner's settings as editors generated from the
config schema that re-plan live, and save/load of the plan JSON that ``run --plan`` reads."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from supadupstack.config import Config
from supadupstack.gui.options import changed_signal, editor, schema_field, value_of

PLANNER_KEYS = (
    "sds.target_batch_size",
    "sds.coverage_threshold",
    "sds.session_gap_min",
    "sds.min_batch_size",
)
REPLAN_DELAY_MS = 150  # wait for the spin box to settle before re-planning


class PlanTab(QWidget):
    """Emits ``settings_changed`` (dotted key, value) after an edit settles, ``save_requested``
    and ``load_requested`` with a path; ``show_plan`` puts a computed plan on the canvas."""

    settings_changed = Signal(str, object)
    save_requested = Signal(str)
    load_requested = Signal(str)
    point_clicked = Signal(float, float)

    def __init__(self, cfg: Config, parent=None):
        super().__init__(parent)
        self.editors: dict[str, QWidget] = {}
        form = QFormLayout()
        for dotted in PLANNER_KEYS:
            widget = editor(cfg, dotted, self)
            changed_signal(widget).connect(self._edited)
            self.editors[dotted] = widget
            label = QLabel(dotted.split(".", 1)[1].replace("_", " "), self)
            label.setToolTip(schema_field(cfg, dotted).metadata.get("doc", ""))
            form.addRow(label, widget)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(REPLAN_DELAY_MS)
        self.timer.timeout.connect(self._settled)
        self._pending: set[str] = set()
        self.save_button = QPushButton("Save plan…", self)
        self.load_button = QPushButton("Load plan…", self)
        self.save_button.clicked.connect(self._pick_save)
        self.load_button.clicked.connect(self._pick_load)
        self.save_button.setEnabled(False)
        self.status = QLabel("no plan yet", self)
        self.status.setWordWrap(True)
        side = QVBoxLayout()
        side.addLayout(form)
        side.addWidget(self.save_button)
        side.addWidget(self.load_button)
        side.addWidget(self.status)
        side.addStretch(1)
        self.canvas: FigureCanvasQTAgg | None = None
        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(False)
        layout = QHBoxLayout(self)
        layout.addLayout(side)
        layout.addWidget(self.scroll, 1)

    def _edited(self, *_args) -> None:
        sender = self.sender()
        if sender is not None:
            self._pending.add(sender.objectName())
        self.timer.start()

    def _settled(self) -> None:
        for dotted in sorted(self._pending):
            self.settings_changed.emit(dotted, value_of(self.editors[dotted]))
        self._pending.clear()

    def _pick_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save plan", "plan.json", "JSON (*.json)")
        if path:
            self.save_requested.emit(path)

    def _pick_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load plan", "", "JSON (*.json)")
        if path:
            self.load_requested.emit(path)

    def show_plan(self, figure, note: str) -> None:
        """Put the plan's matplotlib figure on a Qt canvas (replacing the last one)."""
        self.canvas = FigureCanvasQTAgg(figure)
        self.canvas.mpl_connect("button_press_event", self._clicked)
        width, height = (round(v) for v in figure.get_size_inches() * figure.dpi)
        self.canvas.setFixedSize(width, height)
        self.canvas.draw()
        self.scroll.setWidget(self.canvas)  # the scroll area deletes the previous canvas
        self.save_button.setEnabled(True)
        self.status.setText(note)

    def _clicked(self, event) -> None:
        """A click on the map (the figure's first axes): its canvas pixel is emitted."""
        axes = self.canvas.figure.axes if self.canvas is not None else []
        if axes and event.inaxes is axes[0] and event.xdata is not None:
            self.point_clicked.emit(float(event.xdata), float(event.ydata))

    def show_note(self, note: str) -> None:
        self.status.setText(note)
