"""Run tab: the mode, output folder and every option of the config schema (editors made from
the fields' metadata, one page per section), Run and Cancel, a progress bar per stage and the
log streaming in. Run starts the CLI's own ``run`` command in a child process (``QProcess``);
Cancel sends it SIGTERM, which the CLI handles like Ctrl-C (a later run reuses its batches).
"""

from __future__ import annotations

import dataclasses
import re
import sys

from PySide6.QtCore import QProcess, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from supadupstack.config import MODES, SECTIONS, Config, set_key, validate
from supadupstack.configcheck import kind
from supadupstack.gui.options import editor, value_of

# what the CLI's Progress writes when stderr is not a terminal: "stage: done/total (1.2s)"
PROGRESS_LINE = re.compile(r"^([A-Za-z][\w -]*): (\d+)/(\d+) \(")
EDITABLE = ("int", "float", "bool", "str")


def editable(f: dataclasses.Field, value) -> bool:
    """Fields the form shows: numbers, switches, choices and text that hold a value (lists
    and unset values are left to a config file)."""
    return value is not None and (bool(f.metadata.get("choices")) or kind(f) in EDITABLE)


class RunTab(QWidget):
    """Emits ``run_requested`` (Run pressed) and ``finished`` (exit code) when the child ends."""

    run_requested = Signal()
    finished = Signal(int)
    stage_progress = Signal(str, int, int)
    import_requested = Signal(str)
    export_requested = Signal(str)

    def __init__(self, cfg: Config, parent=None):
        super().__init__(parent)
        self.mode = QComboBox(self)
        self.mode.addItems(list(MODES))
        self.mode.setCurrentText(cfg.mode)
        self.out = QLineEdit(self)
        self.out.setPlaceholderText("output folder")
        browse = QPushButton("…", self)
        browse.clicked.connect(self._pick_out)
        self.editors: dict[str, QWidget] = {}
        self.sections = QTabWidget(self)
        for section in SECTIONS:
            page, form = QWidget(), QFormLayout()
            page.setLayout(form)
            for f in dataclasses.fields(getattr(cfg, section)):
                if not editable(f, getattr(getattr(cfg, section), f.name)):
                    continue
                dotted = f"{section}.{f.name}"
                self.editors[dotted] = editor(cfg, dotted, page)
                form.addRow(f.name.replace("_", " "), self.editors[dotted])
            scroll = QScrollArea(self)
            scroll.setWidget(page)
            scroll.setWidgetResizable(True)
            self.sections.addTab(scroll, section)
        self.run_button = QPushButton("Run", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run_requested)
        self.import_button = QPushButton("Import TOML…", self)
        self.export_button = QPushButton("Export TOML…", self)
        self.import_button.clicked.connect(self._pick_import)
        self.export_button.clicked.connect(self._pick_export)
        self.cancel_button.clicked.connect(self.cancel)
        self.overall = QProgressBar(self)
        self.bars: dict[str, QProgressBar] = {}
        self.bar_form = QFormLayout()
        self.log = QPlainTextEdit(self)
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.process: QProcess | None = None
        self.cancelled = False
        top = QHBoxLayout()
        for w in (QLabel("mode", self), self.mode, QLabel("output", self), self.out, browse):
            top.addWidget(w)
        top.addWidget(self.import_button)
        top.addWidget(self.export_button)
        top.addWidget(self.run_button)
        top.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.sections, 2)
        layout.addWidget(self.overall)
        layout.addLayout(self.bar_form)
        layout.addWidget(self.log, 3)

    def _pick_out(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder")
        if folder:
            self.out.setText(folder)

    def _pick_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import config", "", "TOML (*.toml)")
        if path:
            self.import_requested.emit(path)

    def _pick_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export config", "run.toml", "TOML (*.toml)")
        if path:
            self.export_requested.emit(path)

    def options(self, cfg: Config) -> Config:
        """``cfg`` with the form's values, checked like ``--set`` (raises ``ConfigError``)."""
        set_key(cfg, "mode", self.mode.currentText())
        for dotted, widget in self.editors.items():
            set_key(cfg, dotted, value_of(widget))
        validate(cfg)
        return cfg

    @property
    def running(self) -> bool:
        return self.process is not None

    def start(self, args: list[str]) -> None:
        """Start ``python -m supadupstack ARGS`` and stream its output into the log."""
        for bar in self.bars.values():
            bar.deleteLater()
        self.bars.clear()
        while self.bar_form.rowCount():
            self.bar_form.removeRow(0)
        self.overall.setRange(0, 0)  # busy until the child ends
        self.log.clear()
        self.cancelled = False
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.log.appendPlainText("$ supadupstack " + " ".join(args))
        self.process.start(sys.executable, ["-m", "supadupstack", *args])

    def cancel(self) -> None:
        """Stop the run cleanly: SIGTERM, which the CLI turns into an orderly stop."""
        if self.process is not None:
            self.cancelled = True
            self.log.appendPlainText("[gui] cancelling …")
            self.process.terminate()

    def _read(self) -> None:
        if self.process is None:
            return
        text = bytes(self.process.readAllStandardOutput().data()).decode("utf-8", "replace")
        for line in text.splitlines():
            self.log.appendPlainText(line)
            found = PROGRESS_LINE.match(line)
            if found:
                stage, done, total = found[1], int(found[2]), int(found[3])
                self._bar(stage).setRange(0, max(total, 1))
                self._bar(stage).setValue(min(done, total))
                self.stage_progress.emit(stage, done, total)

    def _bar(self, stage: str) -> QProgressBar:
        if stage not in self.bars:
            self.bars[stage] = QProgressBar(self)
            self.bar_form.addRow(stage, self.bars[stage])
        return self.bars[stage]

    def _finished(self, code: int, _status) -> None:
        self._read()
        self.process = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.overall.setRange(0, 100)
        self.overall.setValue(100 if code == 0 else 0)
        if self.cancelled:
            self.log.appendPlainText("[gui] stopped; Run again resumes (finished batches kept)")
        self.finished.emit(code)
