"""``supadupstack gui``: open the window on folders (and an earlier run's result), or save a
screenshot of one of its tabs offscreen and exit (the README's pictures)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QEventLoop, qInstallMessageHandler
from PySide6.QtWidgets import QApplication

from supadupstack.config import Config
from supadupstack.errors import SupaDupError
from supadupstack.gui.app import MainWindow
from supadupstack.gui.tasks import one_line

TABS = ("frames", "plan", "run", "result")  # the window's tabs, in order


def screenshot(window: MainWindow, path: Path, tab: str = "plan") -> Path:
    """Save what the window shows with the tab ``tab`` (one of ``TABS``) on top as a PNG."""
    window.tabs.setCurrentIndex(TABS.index(tab))
    QApplication.processEvents()
    if not window.grab().save(str(path)):
        raise SupaDupError(f"cannot write the screenshot {path}")
    return path


def _quiet_qt_messages() -> None:
    """Drop the offscreen platform's note that it cannot size windows; other Qt messages go
    to stderr as usual."""

    def handler(kind, _context, message: str) -> None:
        if "propagateSizeHints" not in message:
            print(message, file=sys.stderr)

    qInstallMessageHandler(handler)


def _usage_error(folders: list[str], tab: str, result: Path | None) -> str | None:
    """Why a screenshot cannot be made with these arguments, or None."""
    if tab not in TABS:
        return f"--screenshot-tab must be one of {', '.join(TABS)}, not {tab!r}"
    if tab == "result" and result is None:
        return "--screenshot-tab result needs --result OUTDIR (the output folder of a run)"
    if tab != "result" and not folders:
        return "--screenshot needs a FOLDER"
    return None


def _shoot(window: MainWindow, shot: Path, tab: str, loop: QEventLoop) -> None:
    """Save the screenshot, say where, and end the loop (a failure: the window's error)."""
    try:
        screenshot(window, shot, tab)
    except SupaDupError as exc:
        window.error(one_line(exc))
        return
    print(f"screenshot: {shot}")
    loop.quit()


def _screenshot_run(window: MainWindow, folders: list[str], shot: Path, tab: str) -> int:
    """Load the folders (if any), shoot once the plan is drawn (at once when there are none)
    and return 0, or 1 after the one-line reason of a failure."""
    outcome = {"code": 0}
    loop = QEventLoop()  # its own loop: quitting it leaves the application as it was

    def failed(_reason: str) -> None:
        outcome["code"] = 1
        loop.quit()

    window.planned.connect(lambda: _shoot(window, shot, tab, loop))
    window.failed.connect(failed)
    if not folders:
        _shoot(window, shot, tab, loop)
        return outcome["code"]
    window.add_folders(list(folders))
    loop.exec()
    return outcome["code"]


def run_gui(
    folders: list[str],
    cfg: Config,
    shot: Path | None = None,
    tab: str | None = None,
    result: Path | None = None,
) -> int:
    """Open the window on the folders, with ``result`` (an earlier run's output folder or
    report) on the Result tab; with ``shot``, save the tab ``tab`` (default: result when
    ``result`` is given, else plan) as a PNG offscreen and exit: 0, 1 on a failure, 2 for
    bad arguments."""
    tab = tab or ("result" if result is not None else "plan")
    if shot is not None:
        reason = _usage_error(folders, tab, result)
        if reason:
            print(f"supadupstack: error: {reason}", file=sys.stderr)
            return 2
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    _quiet_qt_messages()
    app = QApplication.instance() or QApplication(["supadupstack"])
    window = MainWindow(cfg, quiet_errors=shot is not None)
    window.show()
    shown = result is None or window.show_result(result)
    if shot is None:
        if folders:
            window.add_folders(list(folders))
        app.exec()
        window.tasks.wait()
        return 0
    code = _screenshot_run(window, folders, Path(shot), tab) if shown else 1
    window.close()
    window.tasks.wait()
    return code
