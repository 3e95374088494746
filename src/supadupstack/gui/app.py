"""The main window (tabs: Frames, Plan, Run, Result); ``launch.run_gui`` opens it.

Every action goes through ``session`` (the CLI's functions) on a worker thread (``tasks``);
the window only shows results. A failure shows a message box with its one-line reason.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

from PySide6.QtCore import QMimeData, Signal
from PySide6.QtWidgets import QMainWindow, QMessageBox, QTabWidget

from supadupstack.config import Config, overrides, set_key, validate
from supadupstack.errors import SupaDupError
from supadupstack.gui import config_file, session
from supadupstack.gui.frames_tab import FramesTab, dropped_folders
from supadupstack.gui.options import set_value
from supadupstack.gui.plan_tab import PlanTab
from supadupstack.gui.result_tab import ResultTab, report_path
from supadupstack.gui.run_tab import RunTab
from supadupstack.gui.tasks import Tasks, one_line

WINDOW_SIZE = (1400, 1000)  # px: the window as opened, and the screenshot's size


class MainWindow(QMainWindow):
    """One window over one set of folders. Signals for whoever drives it (tests, the
    screenshot): ``loaded`` after the table is filled, ``planned`` after a plan is drawn,
    ``failed`` with the one-line reason shown in a message box."""

    loaded = Signal()
    planned = Signal()
    failed = Signal(str)
    run_finished = Signal(int)

    def __init__(self, cfg: Config | None = None, quiet_errors: bool = False):
        super().__init__()
        self.cfg = cfg if cfg is not None else Config()
        self.quiet_errors = quiet_errors
        self.folders: list[str] = []
        self.data: session.Loaded | None = None
        self.plan: session.Planned | None = None
        self._plan_request = 0
        self.tasks = Tasks(self)
        self.frames_tab = FramesTab(self)
        self.plan_tab = PlanTab(self.cfg, self)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.frames_tab, "Frames")
        self.tabs.addTab(self.plan_tab, "Plan")
        self.run_tab = RunTab(self.cfg, self)
        self.result_tab = ResultTab(self)
        self.tabs.addTab(self.run_tab, "Run")
        self.tabs.addTab(self.result_tab, "Result")
        self.run_tab.run_requested.connect(self.start_run)
        self.run_tab.finished.connect(self._run_ended)
        self.run_tab.import_requested.connect(self.import_toml)
        self.run_tab.export_requested.connect(self.export_toml)
        self._run_out: Path | None = None
        self._run_name = ""
        self.setCentralWidget(self.tabs)
        self.setWindowTitle("supadupstack")
        self.resize(*WINDOW_SIZE)
        self.frames_tab.add_requested.connect(self.add_folders)
        self.frames_tab.model.excluded_changed.connect(self.replan)
        self.frames_tab.model.batch_moved.connect(self.move_frame)
        self.plan_tab.settings_changed.connect(self.change_setting)
        self.plan_tab.save_requested.connect(self.save_plan)
        self.plan_tab.load_requested.connect(self.load_plan)
        self.plan_tab.point_clicked.connect(self.select_at)
        self.setAcceptDrops(True)

    # --- messages -------------------------------------------------------------------
    def error(self, reason: str) -> None:
        """Show one failure: a message box with the one-line reason (never a traceback)."""
        self.failed.emit(reason)
        if self.quiet_errors:
            print(f"supadupstack: error: {reason}", file=sys.stderr)
            return
        QMessageBox.warning(self, "supadupstack", reason)

    # --- frames ---------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Accept a drag that carries local files or folders."""
        if dropped_folders(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Dropped folders (or the folders of dropped files) are added like "Add folder"."""
        if self.drop(event.mimeData()):
            event.acceptProposedAction()

    def drop(self, mime: QMimeData) -> bool:
        """Add the local folders a drop carries; False when it carries none."""
        folders = dropped_folders(mime)
        if folders:
            self.add_folders(folders)
        return bool(folders)

    def add_folders(self, folders: list[str]) -> None:
        """Read the folders (with those already loaded) on a worker thread."""
        for folder in folders:
            if not Path(folder).is_dir():
                self.error(f"cannot read folder {folder}: not a folder")
                return
            if not os.access(folder, os.R_OK | os.X_OK):
                self.error(f"cannot read folder {folder}: permission denied")
                return
        wanted = self.folders + [f for f in folders if f not in self.folders]
        cfg = copy.deepcopy(self.cfg)
        self.frames_tab.show_progress(0, 0, f"reading {len(wanted)} folder(s) …")
        self.tasks.start(
            lambda progress: session.load(wanted, cfg, progress),
            self._loaded,
            self._load_failed,
            self.frames_tab.show_progress,
        )

    def _loaded(self, data: session.Loaded) -> None:
        self.data, self.folders = data, data.folders
        n_ok = sum(1 for r in data.rows if r["verdict"] == "ok")
        note = (
            f"{len(data.rows)} frame(s) read, {n_ok} pass the gates, "
            f"{len(data.skips)} skipped; {len(data.frames)} of the target can be planned"
        )
        self.frames_tab.show_rows(data.rows, note)
        self.loaded.emit()
        self.replan()

    def _load_failed(self, reason: str) -> None:
        self.frames_tab.show_rows(self.data.rows if self.data else [], "nothing loaded")
        self.error(reason)

    # --- plan -----------------------------------------------------------------------
    def change_setting(self, dotted: str, value) -> None:
        """A planner setting edited: checked like ``--set`` (``validate``), then re-plan."""
        cfg = copy.deepcopy(self.cfg)
        try:
            set_key(cfg, dotted, value)
            validate(cfg)
        except SupaDupError as exc:
            self.plan_tab.show_note(one_line(exc))
            self.error(one_line(exc))
            return
        self.cfg = cfg
        if dotted in self.run_tab.editors:
            set_value(self.run_tab.editors[dotted], value)
        self.replan()

    def replan(self) -> None:
        """Plan the loaded frames (less those excluded) again, off the UI thread; a newer
        request makes the results of older ones be dropped."""
        if self.data is None:
            return
        self._plan_request += 1
        request, frames = self._plan_request, self.data.frames
        cfg, excluded = copy.deepcopy(self.cfg), set(self.frames_tab.model.excluded)
        self.plan_tab.show_note("planning …")
        self.tasks.start(
            lambda _progress: session.plan(frames, cfg, excluded),
            lambda planned: self._planned(request, planned),
            self._plan_failed,
        )

    def _planned(self, request: int, planned: session.Planned) -> None:
        if request != self._plan_request:
            return  # a newer plan is on its way
        self.plan = planned
        sizes = [len(b) for b in planned.plan.batches]
        batch_of = {p: i for i, b in enumerate(planned.plan.batches) for p in b}
        self.frames_tab.model.set_batches(batch_of)
        note = f"{len(sizes)} batch(es) of {planned.plan.n_frames} frames: {sizes}"
        note += "".join(f"\n{n}" for n in planned.notes[:5])
        self.plan_tab.show_plan(planned.figure, note)
        self.planned.emit()

    def _plan_failed(self, reason: str) -> None:
        self.plan_tab.show_note(reason)
        self.error(reason)

    def move_frame(self, path: str, batch: int) -> None:
        """Move one frame to another batch by hand (a number past the last: a new batch)."""
        if self.plan is None or self.data is None:
            self.error("no plan yet")
            return
        self._plan_request += 1
        request, planned, frames = self._plan_request, self.plan, self.data.frames
        cfg = copy.deepcopy(self.cfg)
        self.tasks.start(
            lambda _progress: session.move(planned, frames, path, batch, cfg),
            lambda moved: self._planned(request, moved),
            self._plan_failed,
        )

    def select_at(self, x: float, y: float) -> list[str]:
        """Select, in the Frames table, the planned frames whose footprint holds the clicked
        point of the plan map (canvas pixels); returns their paths."""
        if self.plan is None or self.data is None:
            return []
        paths = session.frames_at(self.plan, self.data.frames, x, y)
        self.frames_tab.select_paths(paths)
        names = ", ".join(Path(p).name for p in paths[:5]) + (" …" if len(paths) > 5 else "")
        self.plan_tab.show_note(f"{len(paths)} frame(s) here{': ' + names if paths else ''}")
        return paths

    def save_plan(self, path: str) -> None:
        if self.plan is None:
            self.error("no plan to save yet")
            return
        try:
            session.save(self.plan, Path(path))
        except (SupaDupError, OSError) as exc:
            self.error(one_line(exc))
            return
        self.plan_tab.show_note(f"plan saved: {path}")

    def load_plan(self, path: str) -> None:
        """Read a plan JSON (checked against the loaded frames) and draw it."""
        if self.data is None:
            self.error("add a folder of frames before loading a plan")
            return
        self._plan_request += 1
        request, frames = self._plan_request, self.data.frames
        cfg, excluded = copy.deepcopy(self.cfg), set(self.frames_tab.model.excluded)
        self.tasks.start(
            lambda _progress: session.read(Path(path), frames, cfg, excluded),
            lambda planned: self._planned(request, planned),
            self._plan_failed,
        )

    # --- run ------------------------------------------------------------------------
    def start_run(self) -> None:
        """Start the CLI's ``run`` on the loaded folders with the form's options and the plan
        shown (saved beside the outputs as ``gui.plan.json``) in a child process."""
        if self.run_tab.running:
            return
        if self.data is None:
            self.error("add a folder of frames before running")
            return
        out = self.run_tab.out.text().strip()
        if not out:
            self.error("choose an output folder")
            return
        try:
            cfg = self.run_tab.options(copy.deepcopy(self.cfg))
            Path(out).mkdir(parents=True, exist_ok=True)
            args = ["run", *self.folders, "-o", out, "--mode", cfg.mode]
            if cfg.mode == "sds" and self.plan is not None:
                plan = session.save(self.plan, Path(out) / "gui.plan.json")
                args += ["--plan", str(plan)]
        except (SupaDupError, OSError) as exc:
            self.error(one_line(exc))
            return
        for item in overrides(cfg):
            args += ["--set", item]
        self._run_out, self._run_name = Path(out), cfg.output.name
        self.run_tab.start(args)

    def import_toml(self, path: str) -> bool:
        """Read a whole config file into the editors and the plan settings (re-plans)."""
        return config_file.import_toml(self, path)

    def export_toml(self, path: str) -> bool:
        """Write the whole configuration the Run tab would run with as TOML."""
        return config_file.export_toml(self, path)

    def cancel_run(self) -> None:
        self.run_tab.cancel()

    def show_result(self, path: Path) -> bool:
        """Show a finished run's report (a file, or the output folder that holds it) on the
        Result tab and switch to it; False (after the one-line message) when it cannot."""
        try:
            self.result_tab.show_report(report_path(Path(path), self.cfg.output.name))
        except SupaDupError as exc:
            self.error(one_line(exc))
            return False
        self.tabs.setCurrentWidget(self.result_tab)
        return True

    def _run_ended(self, code: int) -> None:
        if code == 0 and self._run_out is not None:
            self.show_result(self._run_out / f"{self._run_name}.report.json")
        elif not self.run_tab.cancelled:
            lines = self.run_tab.log.toPlainText().splitlines()
            said = [x for x in lines if x.startswith("supadupstack: ")]
            self.error(said[-1].removeprefix("supadupstack: ") if said else f"run exit code {code}")
        self.run_finished.emit(code)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if self.run_tab.process is not None:
            self.run_tab.cancel()
            self.run_tab.process.waitForFinished(30_000)
        self.tasks.wait()
        super().closeEvent(event)
